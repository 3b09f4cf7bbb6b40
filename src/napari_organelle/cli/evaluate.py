"""``napari-organelle evaluate``: score a model on a data set with ground truth.

Argument parsing and printing only: the scoring is
:func:`napari_organelle.evaluation.evaluate_dataset` (data set layout, the
scores and how not-annotated pixels are left out are described there), wired
here to a model through :func:`napari_organelle.evaluation.model_predictor`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..progress import Progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a model on a data set with ground-truth masks",
        description="Segment every image of a data set split and score it against the masks: "
                    "pixel Dice, IoU, precision, recall, F1 and object F1 (pooled over the split).")
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR",
                        help="folder with dataset.json and <split>/images, <split>/masks/<class>")
    parser.add_argument("--model", required=True, metavar="NAME|PATH",
                        help="model name, name@version or folder")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--class-map", nargs="+", default=[], metavar="DATA=MODEL",
                        help="compare data class DATA with model class MODEL, e.g. "
                             "membranes=cell_boundary")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the scores as JSON")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--tile", type=int, default=None, metavar="N", help="tile edge in pixels")
    parser.add_argument("--tta", action="store_true", help="average over flips (slower)")
    parser.add_argument("--iou-threshold", type=float, default=0.5,
                        help="IoU at which objects match (default: 0.5)")
    parser.add_argument("--volume", action="store_true",
                        help="the split's slices (in name order) are one volume: segment it "
                             "with objects linked across Z and score it in 3-D (3-D object F1 "
                             "and AP); off by default, even when dataset.json says 'volume'")
    parser.add_argument("--z-consensus", action="store_true",
                        help="with --volume: smooth the probabilities along Z before "
                             "thresholding")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for the network (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def parse_class_map(items: list[str]) -> dict[str, str]:
    """``["membranes=cell_boundary"]`` -> ``{"membranes": "cell_boundary"}``."""
    mapping = {}
    for item in items:
        data_class, _, model_class = item.partition("=")
        if not data_class.strip() or not model_class.strip():
            raise InputError("--class-map takes DATA=MODEL pairs such as membranes=cell_boundary, "
                             f"not {item!r}")
        mapping[data_class.strip()] = model_class.strip()
    return mapping


def run(args: argparse.Namespace) -> int:
    """Run ``napari-organelle evaluate``; returns the exit status."""
    from ..evaluation import evaluate_dataset, format_table, model_predictor, read_dataset_info
    from ..models import load_model

    class_map = parse_class_map(args.class_map)
    if args.z_consensus and not args.volume:
        raise InputError("--z-consensus smooths along Z: it needs --volume")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    model_classes = {spec.name: spec.kind for spec in model.card.classes}
    info = read_dataset_info(args.dataset)
    data_classes = (info.split_classes(args.split) if (args.dataset / args.split).is_dir()
                    else [])
    wanted = sorted({class_map.get(name, name) for name in data_classes} & set(model_classes))
    started = time.perf_counter()
    predict = model_predictor(model, classes=wanted or list(model_classes), device=args.device,
                              tile_size=args.tile, tta=args.tta, volume=args.volume,
                              z_step_nm=info.z_step_nm, z_consensus=args.z_consensus,
                              on_progress=(_print_segment_progress
                                           if args.volume and not args.quiet else None))
    evaluation = evaluate_dataset(
        args.dataset, args.split, predict, class_map, model_classes=model_classes,
        iou_threshold=args.iou_threshold, on_progress=None if args.quiet else _print_progress,
        volume=args.volume,
    )
    seconds = time.perf_counter() - started
    if not args.quiet:
        print(file=sys.stderr)

    model_name = getattr(model.card, "full_name", None) or str(args.model)
    n_images = max((score.n_images for score in evaluation.scores.values()), default=0)
    what = f"{n_images} images"
    if evaluation.volume:
        what = (f"one volume, z step {_format_nm(evaluation.z_step_nm)}"
                f"{', z-consensus' if args.z_consensus else ''}")
    print(f"{model_name} on {args.dataset.name}/{args.split} ({what}, "
          f"pixel size {_format_nm(evaluation.pixel_size_nm)}, "
          f"model {_format_nm(model.card.pixel_size_nm)})")
    print(format_table(evaluation))
    for note in evaluation.notes:
        print(f"note: {note}")
    print(f"segmented and scored in {seconds:.1f} s")
    if args.json:
        report = {"model": model_name, **evaluation.to_dict(), "seconds": round(seconds, 1)}
        if evaluation.volume:
            report["z_consensus"] = bool(args.z_consensus)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"scores written to {args.json}")
    return 0


# --------------------------------------------------------------------------- helpers


def _format_nm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} nm"


def _print_segment_progress(progress: Progress) -> None:
    print(f"\rsegmenting the volume: {100 * progress.fraction:5.1f}% {progress.message:<40}",
          end="", file=sys.stderr, flush=True)


def _print_progress(progress: Progress) -> None:
    print(f"\revaluating: {progress.done}/{progress.total} {progress.message:<40}", end="",
          file=sys.stderr, flush=True)
