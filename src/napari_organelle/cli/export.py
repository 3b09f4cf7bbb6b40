"""``napari-organelle export``: turn the training store into a data set for training."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..progress import Progress
from ..progress import run as run_progress
from ..store import TrainingStore, default_store_path, export_nnunet, export_tiff


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Create the ``export`` sub-command's parser."""
    parser = subparsers.add_parser(
        "export",
        help="export the training store as an nnU-Net v2 dataset or TIFF pairs",
        description=(
            "Export the current version of every non-excluded sample in a training store. "
            "'nnunet' writes OUT/DatasetNNN_NAME (imagesTr, labelsTr, dataset.json) with an "
            "'ignore' label for unreviewed pixels; 'tiff' writes OUT/train/images and "
            "OUT/train/masks/<class> with 255 for unreviewed pixels. Both write a dataset card."
        ),
    )
    parser.add_argument(
        "--store", type=Path, default=None, metavar="DIR",
        help=f"training store folder (default: {default_store_path()})",
    )
    parser.add_argument("--format", required=True, choices=("nnunet", "tiff"), help="output format")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR",
        help="nnunet: the nnUNet_raw folder to add the dataset to; tiff: the new dataset folder",
    )
    parser.add_argument(
        "--dataset-id", type=int, default=None, metavar="N",
        help="nnU-Net dataset ID, 1-999 (default: lowest free ID from 500)",
    )
    parser.add_argument(
        "--name", default="Organelles", help="nnU-Net dataset name (default: %(default)s)"
    )
    parser.add_argument(
        "--licence", default=None, metavar="TEXT",
        help="licence of the exported data, e.g. CC-BY-4.0 (recorded in the dataset card)",
    )
    parser.add_argument(
        "--classes", default=None, metavar="A,B",
        help="comma-separated classes to export, in label order (default: all with samples)",
    )
    parser.add_argument(
        "--precedence", default=None, metavar="A,B",
        help="nnunet: where classes overlap the first listed wins (default: smallest class first)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print progress")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the export; returns the exit status (errors raise OrganelleError)."""
    store = TrainingStore(args.store if args.store is not None else default_store_path())
    classes = _names(args.classes)
    if args.format == "nnunet":
        work = export_nnunet(
            store, args.out, dataset_id=args.dataset_id, name=args.name, classes=classes,
            precedence=_names(args.precedence), licence=args.licence,
        )
    else:
        work = export_tiff(store, args.out, classes=classes, licence=args.licence)
    result = run_progress(work, on_progress=None if args.quiet else _Reporter())
    skipped = f", {len(result.skipped)} skipped (see the dataset card)" if result.skipped else ""
    print(f"exported {result.cases} cases{skipped} to {result.path}")
    return 0


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


class _Reporter:
    """Print progress to stderr at most a few times a second (and the last step)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self._interval_s = interval_s
        self._last = 0.0

    def __call__(self, report: Progress) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval_s or report.done == report.total:
            self._last = now
            print(f"[{report.done}/{report.total}] {report.message}", file=sys.stderr)
