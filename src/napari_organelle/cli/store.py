"""``napari-organelle store``: the training store from the command line.

This closes the human-in-the-loop cycle without napari::

    napari-organelle segment cell.tif --out results/
    # correct results/cell/mitochondria.tif in Fiji, QuPath, napari, ...
    napari-organelle store add cell.tif --from-results results/cell --annotator ana
    napari-organelle train --base em-organelles --data ~/.local/share/.../training-store \\
        --out em-lab
    napari-organelle segment cell.tif --out results2/ --model em-lab@1

``store add`` saves corrected label TIFFs as samples (with provenance: the
source file, plane, pixel size, the model that proposed them, who corrected
them); ``store list`` shows the samples; ``store exclude`` / ``store restore``
take one out of training and bring it back (nothing is ever deleted).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, StoreError
from ..store import layout

if TYPE_CHECKING:
    from ..store import SampleRecord, SaveResult, TrainingStore

#: the reviewed-region word meaning "every pixel was checked"
REVIEWED_ALL = "all"
#: what ``provenance.extra["via"]`` says for samples saved by this command
VIA = "cli"


@dataclass(frozen=True)
class LabelFile:
    """One class's corrected labels, as given on the command line.

    Attributes:
        class_name: the organelle, as named in the store.
        path: the label TIFF (or PNG).
        data: its pixels, as read.
        objects: True if the file holds object ids (saved as instances),
            False for a mask (any value above 0 is the class).
    """

    class_name: str
    path: Path
    data: np.ndarray
    objects: bool


@dataclass(frozen=True)
class PlaneSample:
    """One 2-D sample ready for :meth:`~napari_organelle.store.TrainingStore.save`."""

    plane: tuple[int, ...]
    image: np.ndarray
    labels: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    proposals: dict[str, np.ndarray]


# ---------------------------------------------------------------------- the parser


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Create the ``store`` sub-command's parser (with add, list, exclude, restore)."""
    default_store = layout.default_store_path()
    parser = subparsers.add_parser(
        "store", help="save corrected label TIFFs to the training store; list, exclude, restore",
        description="The training store from the command line: 'add' saves corrected labels "
                    "(from any editor) as training samples with their provenance, 'list' shows "
                    "the samples, 'exclude'/'restore' take one out of training and back.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  napari-organelle store add cell.tif --from-results results/cell\n"
               "  napari-organelle store add cell.tif --labels mitochondria=mito.tif "
               "er=er.tif --annotator ana\n"
               "  napari-organelle store add stack.tif --labels mitochondria=mito.tif "
               "--plane 12 --reviewed 0,0,256,256\n"
               "  napari-organelle store list --all\n"
               "  napari-organelle store exclude 3fa2c1d0e9b87a65_v2 --reason 'wrong plane'")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", help="save corrected labels of an image as training samples",
        description="Save corrected labels of IMAGE to the training store, one sample per "
                    "plane. A label file holding only 0 and 1 is a mask; one holding larger "
                    "values holds object ids (kept as instances). Saving the same pixels again "
                    "changes nothing; changed pixels become the next version of the sample.")
    add.add_argument("image", type=Path, metavar="IMAGE",
                     help="the image the labels were drawn on (TIFF/OME-TIFF, PNG, JPEG)")
    add.add_argument("--labels", nargs="+", default=[], metavar="CLASS=FILE",
                     help="corrected labels per class, e.g. mitochondria=mito.tif er=er.tif")
    add.add_argument("--from-results", type=Path, metavar="DIR",
                     help="a folder 'napari-organelle segment' wrote for IMAGE (OUT/<stem>), "
                          "with the label TIFFs corrected in place; the model that proposed "
                          "them is read from its summary.json. --labels overrides a class (the "
                          "file in DIR then counts as the proposal, to record changed pixels)")
    _store_argument(add, default_store)
    add.add_argument("--reviewed", nargs="+", default=[REVIEWED_ALL], metavar="all|Y0,X0,Y1,X1",
                     help="where the labels were checked: 'all' (default) or boxes in pixels "
                          "(half-open); outside them the pixels are stored as 'not reviewed' "
                          "and teach nothing")
    add.add_argument("--plane", nargs="+", default=[], metavar="I",
                     help="stacks: the plane(s) the labels were corrected on, one sample each "
                          "(e.g. --plane 3 4 5; T,Z for a stack with two plane axes)")
    add.add_argument("--channel", type=int, metavar="I",
                     help="multichannel images: the channel the labels were drawn on (samples "
                          "keep one channel)")
    add.add_argument("--pixel-size", type=float, metavar="NM",
                     help="pixel size in nm (default: read from the file)")
    add.add_argument("--annotator", metavar="NAME",
                     help="who corrected the labels (default: the login name)")
    add.add_argument("--model", metavar="NAME@VER",
                     help="the model whose proposal was corrected (default: from "
                          "--from-results' summary.json; none: drawn from scratch)")
    add.add_argument("--add-classes", nargs="+", default=[], metavar="CLASS",
                     help="classes an existing store does not have yet (refused otherwise, so "
                          "a misspelt class cannot become a new one)")
    add.set_defaults(func=run_add)

    listing = actions.add_parser("list", help="list the samples (current versions)",
                                 description="One line per sample: its current version.")
    _store_argument(listing, default_store)
    listing.add_argument("--all", action="store_true", help="include excluded samples")
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    listing.set_defaults(func=run_list)

    exclude = actions.add_parser(
        "exclude", help="take a sample out of training (reversible)",
        description="Take a sample version out of training. Nothing is deleted: "
                    "'store restore ID' brings it back.")
    exclude.add_argument("sample_id", metavar="ID", help="the sample id, as 'store list' shows")
    exclude.add_argument("--reason", default="", metavar="TEXT",
                         help="why (recorded in the store's manifest)")
    _store_argument(exclude, default_store)
    exclude.set_defaults(func=run_exclude)

    restore = actions.add_parser("restore", help="bring an excluded sample back into training",
                                 description="Undo 'store exclude ID'.")
    restore.add_argument("sample_id", metavar="ID", help="the sample id ('store list --all')")
    _store_argument(restore, default_store)
    restore.set_defaults(func=run_restore)
    return parser


def _store_argument(parser: argparse.ArgumentParser, default_store: Path) -> None:
    parser.add_argument("--store", type=Path, default=None, metavar="DIR",
                        help=f"training store folder (default: {default_store})")


def _store_path(args: argparse.Namespace) -> Path:
    # Looked up at run time (not parse time) so it is the Correct widget's default too.
    path = args.store if args.store is not None else layout.default_store_path()
    return Path(path).expanduser().absolute()


# ---------------------------------------------------------------------- store add


def run_add(args: argparse.Namespace) -> int:
    """Save the corrected labels of one image; returns the exit status.

    Everything is read and checked before the store is opened, so a wrong
    argument writes nothing (not even a new, empty store).

    Raises:
        InputError: a file is missing or does not fit the image, an argument
            is malformed, or a class is not one of the store's.
        StoreError: the store cannot be read or written.
    """
    from ..io import read_image
    from ..store.prepare import prepare_sample
    from ..store.provenance import Provenance, split_model

    if not args.labels and args.from_results is None:
        raise InputError("give the corrected labels: --labels CLASS=FILE [...] or "
                         "--from-results DIR (a folder written by napari-organelle segment)")
    image_file = read_image(args.image)
    stack, stack_axes = _grey_stack(image_file.data, image_file.axes, args.channel,
                                    args.image.name)
    planes = _planes(args.plane, stack.shape, stack_axes, args.image.name)

    summary: dict[str, Any] = {}
    corrected: dict[str, Path] = {}
    proposal_files: dict[str, Path] = {}
    if args.from_results is not None:
        summary, corrected = _results_folder(args.from_results)
        segmented = Path(str(summary.get("image") or "")).name
        if segmented and segmented != args.image.name:
            print(f"note: {args.from_results} holds the results for {segmented}, not "
                  f"{args.image.name}; saving them for {args.image.name}", file=sys.stderr)
    for class_name, path in _label_arguments(args.labels).items():
        if class_name in corrected:  # the segment output is what the edited copy started from
            proposal_files[class_name] = corrected[class_name]
        corrected[class_name] = path
    kinds = {name: str(spec.get("kind")) for name, spec in (summary.get("classes") or {}).items()
             if isinstance(spec, dict)}
    label_files = [_read_labels(name, path, kinds.get(name)) for name, path in corrected.items()]
    proposals = {name: _read_labels(name, path, kinds.get(name)).data
                 for name, path in proposal_files.items()}
    reviewed = _reviewed(args.reviewed)

    samples = [
        _plane_sample(stack, plane, label_files, proposals, args.image.name)
        for plane in planes
    ]
    classes = [label.class_name for label in label_files]
    _check_new_classes(args.add_classes, classes)
    for sample in samples:  # dry run: the store's own checks, before the store is touched
        prepare_sample(sample.image, sample.labels, reviewed, known_classes=classes,
                       instances=sample.instances, proposals=sample.proposals)
    model_name, model_version = split_model(args.model or summary.get("model"))
    pixel_size = _pixel_size(args.pixel_size, image_file.pixel_size_nm,
                             summary.get("pixel_size_nm"))
    extra: dict[str, Any] = {
        "via": VIA,
        "reviewed": REVIEWED_ALL if reviewed is True else [list(box) for box in reviewed],
        "label_files": {label.class_name: str(label.path.absolute()) for label in label_files},
    }
    if args.from_results is not None:
        extra["results"] = str(args.from_results.absolute())

    store = _open_for_saving(_store_path(args), classes, args.add_classes)
    for sample in samples:
        provenance = Provenance(
            source_path=str(args.image.absolute()),
            plane=tuple(sample.plane),
            plane_axes=stack_axes[:-2],
            pixel_size_nm=None if pixel_size is None else (pixel_size, pixel_size),
            model_name=model_name,
            model_version=model_version,
            annotator=args.annotator,
            extra=extra,
        )
        result = store.save(sample.image, sample.labels, reviewed, provenance,
                            instances=sample.instances, proposals=sample.proposals)
        _print_saved(result, sample.plane, store.path)
    return 0


def _open_for_saving(store_path: Path, classes: Sequence[str],
                     new_classes: Sequence[str]) -> TrainingStore:
    """Open the store (creating it with ``classes`` if there is none yet).

    Raises:
        InputError: an existing store lacks a class that ``--add-classes``
            does not name (a misspelling must not become a new class).
        StoreError: the store cannot be created, read or written.
    """
    from ..store import TrainingStore, open_store

    if not (store_path / layout.STORE_FILE).exists():
        return open_store(store_path, classes=classes)
    store = TrainingStore(store_path)
    _check_known_classes(store.classes, classes, new_classes, store_path)
    store.add_classes(new_classes)
    return store


def _pixel_size(given: float | None, from_file: float | None,
                from_summary: Any) -> float | None:
    """The pixel size in nm: ``--pixel-size``, else the file's, else the one segment used.

    Raises:
        InputError: ``--pixel-size`` is not a positive number.
    """
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise InputError(f"--pixel-size must be a positive number of nm, not {given}")
        return float(given)
    if from_file is not None:
        return float(from_file)
    if isinstance(from_summary, (int, float)) and math.isfinite(from_summary) and from_summary > 0:
        return float(from_summary)
    return None


def _grey_stack(data: np.ndarray, axes: str, channel: int | None,
                name: str) -> tuple[np.ndarray, str]:
    """The image without its channel axis: ``(..., Y, X)`` and its axis letters.

    Raises:
        InputError: a multichannel image without ``--channel``, or a channel
            that does not exist.
    """
    channel_axis = next((i for i, axis in enumerate(axes) if axis in "CS"), None)
    if channel_axis is None:
        if channel is not None:
            raise InputError(f"{name} has a single channel (axes {axes}): drop --channel")
        return data, axes
    count = data.shape[channel_axis]
    if channel is None:
        raise InputError(f"{name} has {count} channels (axes {axes}); samples keep one: say "
                         "which channel the labels were drawn on with --channel I")
    if not 0 <= channel < count:
        raise InputError(f"--channel {channel}: {name} has channels 0 to {count - 1}")
    return np.take(data, channel, axis=channel_axis), axes.replace(axes[channel_axis], "")


def _planes(items: Sequence[str], shape: tuple[int, ...], axes: str,
            name: str) -> list[tuple[int, ...]]:
    """Parse ``--plane`` into indices along the non-spatial axes, one tuple per sample.

    Raises:
        InputError: a stack without ``--plane``, ``--plane`` for a 2-D
            image, or an index that is malformed or out of range.
    """
    leading, leading_axes = shape[:-2], axes[:-2]
    if not leading:
        if items:
            raise InputError(f"{name} is a 2-D image with no planes: drop --plane")
        return [()]
    example = ",".join("0" for _ in leading)
    if not items:
        raise InputError(f"{name} is a stack of {_shape_text(leading)} planes (axes {axes}); "
                         f"say which plane the labels were corrected on with --plane "
                         f"{','.join(leading_axes) if len(leading) > 1 else 'I'} "
                         f"(e.g. --plane {example})")
    planes: list[tuple[int, ...]] = []
    for item in items:
        parts = item.split(",")
        if len(parts) != len(leading) or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"--plane {item}: give {len(leading)} index(es) for the axes "
                             f"{leading_axes} of {name}, e.g. --plane {example}")
        plane = tuple(int(p) for p in parts)
        for index, count, axis in zip(plane, leading, leading_axes):
            if index >= count:
                raise InputError(f"--plane {item}: {name} has {axis} planes 0 to {count - 1}")
        if plane not in planes:
            planes.append(plane)
    return planes


def _label_arguments(items: Sequence[str]) -> dict[str, Path]:
    """Parse ``--labels CLASS=FILE ...``.

    Raises:
        InputError: an item without ``=``, an invalid class name, or a class
            given twice.
    """
    files: dict[str, Path] = {}
    for item in items:
        class_name, sep, file_name = item.partition("=")
        class_name = class_name.strip()
        if not sep or not class_name or not file_name:
            raise InputError(f"--labels takes CLASS=FILE pairs such as mitochondria=mito.tif, "
                             f"not {item!r}")
        try:
            layout.check_class_name(class_name)
        except InputError as error:
            raise InputError(f"--labels {item}: {error}") from None
        if class_name in files:
            raise InputError(f"--labels names class {class_name!r} twice")
        files[class_name] = Path(file_name).expanduser()
    return files


def _results_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Read a folder written by ``napari-organelle segment`` for one image.

    Returns:
        Its ``summary.json`` and the label TIFF of each class in it.

    Raises:
        InputError: the folder, its summary or its label TIFFs are missing.
    """
    what = "--from-results takes the folder napari-organelle segment wrote for the image " \
           "(OUT/<image stem>)"
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; {what}")
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{folder} has no summary.json; {what}")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{summary_path} cannot be read: {error}") from None
    if not isinstance(summary, dict):
        # The top-level OUT/summary.json is a list over images: the wrong folder.
        raise InputError(f"{summary_path} is not one image's summary; {what}")
    # Dot-files are the segment command's temporary files, not results.
    files = {path.stem: path for path in sorted(folder.glob("*.tif"))
             if not path.name.startswith(".")}
    if not files:
        raise InputError(f"{folder} has no label TIFFs (<class>.tif); {what}")
    return summary, files


def _read_labels(class_name: str, path: Path, kind: str | None) -> LabelFile:
    """Read one class's label file and decide whether it holds masks or object ids.

    Args:
        class_name: the class it holds.
        path: the file.
        kind: ``"instance"`` or ``"semantic"`` when the segment summary says;
            None to decide from the values (ids above 1 mean objects).

    Raises:
        InputError: the file is missing or unreadable, or holds values that
            are not labels (negative or fractional).
    """
    from ..io import read_image

    if not path.is_file():
        raise InputError(f"labels for {class_name}: {path} does not exist")
    data = np.asarray(read_image(path).data)
    if data.dtype == bool:
        return LabelFile(class_name, path, data.astype(np.uint8), objects=kind == "instance")
    if data.dtype.kind == "f":
        if not (np.isfinite(data).all() and (data == np.round(data)).all()):
            raise InputError(f"labels for {class_name}: {path.name} holds fractional values; "
                             "labels must be whole numbers (0 = background)")
        data = data.astype(np.int64)
    if data.dtype.kind not in "ui":
        raise InputError(f"labels for {class_name}: {path.name} has {data.dtype} pixels; "
                         "labels must be whole numbers (0 = background)")
    if data.size and data.min() < 0:
        raise InputError(f"labels for {class_name}: {path.name} holds negative values; "
                         "labels must be 0 (background) or above")
    objects = kind == "instance" if kind in ("instance", "semantic") else bool(
        data.size and data.max() > 1)
    return LabelFile(class_name, path, data, objects)


def _plane_sample(stack: np.ndarray, plane: tuple[int, ...], label_files: Sequence[LabelFile],
                  proposals: dict[str, np.ndarray], image_name: str) -> PlaneSample:
    """Cut one plane out of the image and every label file.

    Raises:
        InputError: a label file fits neither the image nor one plane of it.
    """
    labels: dict[str, np.ndarray] = {}
    instances: dict[str, np.ndarray] = {}
    for label in label_files:
        values = _plane_of(label.data, stack.shape, plane, f"labels for {label.class_name}",
                           label.path.name, image_name)
        if label.objects:
            instances[label.class_name] = values
        else:  # any value above 0 is the class: editors paint with whatever label is selected
            labels[label.class_name] = (values > 0).astype(np.uint8)
    plane_proposals = {
        name: _plane_of(data, stack.shape, plane, f"the proposal for {name}", "", image_name) > 0
        for name, data in proposals.items()
    }
    image = np.asarray(stack[plane]) if plane else np.asarray(stack)
    return PlaneSample(plane, image, labels, instances, plane_proposals)


def _plane_of(data: np.ndarray, image_shape: tuple[int, ...], plane: tuple[int, ...],
              what: str, file_name: str, image_name: str) -> np.ndarray:
    """One plane of a label array that is either the whole stack or a single plane."""
    # Some editors add leading axes of length 1 (a one-plane "stack"): they mean nothing.
    while data.ndim > len(image_shape) and data.shape[0] == 1:
        data = data[0]
    if data.shape == image_shape:
        return np.asarray(data[plane]) if plane else np.asarray(data)
    if plane and data.shape == image_shape[-2:]:
        return np.asarray(data)
    plane_text = f" (or one {_shape_text(image_shape[-2:])} plane of it)" if plane else ""
    name = f" {file_name}" if file_name else ""
    raise InputError(f"{what}:{name} is {_shape_text(data.shape)} pixels but {image_name} is "
                     f"{_shape_text(image_shape)}{plane_text}: give the labels made for "
                     "this image")


def _reviewed(items: Sequence[str]) -> bool | list[tuple[int, int, int, int]]:
    """Parse ``--reviewed``: True for ``all``, else a list of ``(y0, x0, y1, x1)`` boxes.

    Raises:
        InputError: an item that is neither ``all`` nor four whole numbers.
    """
    if [item.strip().lower() for item in items] == [REVIEWED_ALL]:
        return True
    boxes: list[tuple[int, int, int, int]] = []
    for item in items:
        parts = [part.strip() for part in item.split(",")]
        if len(parts) != 4 or not all(part.isdigit() for part in parts):
            raise InputError(f"--reviewed takes 'all' or boxes Y0,X0,Y1,X1 in pixels (e.g. "
                             f"0,0,256,256), not {item!r}")
        y0, x0, y1, x1 = (int(part) for part in parts)
        boxes.append((y0, x0, y1, x1))
    return boxes


def _check_new_classes(new_classes: Sequence[str], classes: Sequence[str]) -> None:
    """``--add-classes`` may only name classes that labels are given for."""
    for name in new_classes:
        if name not in classes:
            raise InputError(f"--add-classes {name}: no labels are given for {name!r} "
                             f"(the labels are for {', '.join(classes)})")


def _check_known_classes(store_classes: Sequence[str], classes: Sequence[str],
                         new_classes: Sequence[str], store_path: Path) -> None:
    """Refuse classes an existing store lacks, unless ``--add-classes`` names them."""
    unknown = [name for name in classes if name not in store_classes and name not in new_classes]
    if unknown:
        names = ", ".join(unknown)
        known = ", ".join(store_classes) or "none yet"
        raise InputError(f"the training store {store_path} has no class {names} (its classes: "
                         f"{known}); check the spelling, or add it as a new class with "
                         f"--add-classes {' '.join(unknown)}")


def _print_saved(result: SaveResult, plane: tuple[int, ...], store_path: Path) -> None:
    record = result.sample
    where = f"; plane {','.join(map(str, plane))}" if plane else ""
    text = f"{record.id} (version {record.version}; {', '.join(record.classes)}{where})"
    if result.duplicate:
        print(f"{text} (duplicate: unchanged) in {store_path}")
        if record.excluded:
            print(f"  note: that sample is excluded from training; "
                  f"napari-organelle store restore {record.id} brings it back")
    else:
        print(f"saved {text} to {store_path}")


# ---------------------------------------------------------------------- list, exclude, restore


def run_list(args: argparse.Namespace) -> int:
    """Print the store's samples (current versions); returns the exit status.

    Raises:
        StoreError: there is no store at the path, or it is damaged.
    """
    from ..store import TrainingStore

    store = TrainingStore(_store_path(args))
    records = store.samples(include_excluded=args.all)
    if args.json:
        print(json.dumps([dataclasses.asdict(record) for record in records], indent=2))
        return 0
    if not records:
        print(f"no samples in {store.path}")
        return 0
    rows = [_list_row(record, args.all) for record in records]
    header = ["id", "version", "classes", "shape", "annotator", "saved", "source", "plane"]
    if args.all:
        header.append("excluded")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _list_row(record: SampleRecord, show_excluded: bool) -> list[str]:
    from ..store.provenance import Provenance

    provenance = Provenance.from_dict(record.provenance)
    plane = ",".join(str(i) for i in provenance.plane) or "-"
    row = [record.id, str(record.version), ",".join(record.classes),
           "x".join(str(n) for n in record.shape), provenance.annotator or "-",
           record.saved.replace("T", " ").replace("+00:00", " UTC"),
           provenance.source_name or "-", plane]
    if show_excluded:
        row.append("excluded" if record.excluded else "-")
    return row


def run_exclude(args: argparse.Namespace) -> int:
    """Exclude a sample from training; returns the exit status.

    Raises:
        InputError: no sample has this id.
        StoreError: no store at the path, or it cannot be written.
    """
    store = _existing_store(args)
    if store.exclude(args.sample_id, reason=args.reason):
        print(f"excluded {args.sample_id} from training (napari-organelle store restore "
              f"{args.sample_id} undoes it)")
    else:
        print(f"{args.sample_id} was already excluded")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """Bring an excluded sample back into training; returns the exit status.

    Raises:
        InputError: no sample has this id.
        StoreError: no store at the path, or it cannot be written.
    """
    store = _existing_store(args)
    if store.restore(args.sample_id):
        print(f"restored {args.sample_id}: it is used for training again")
    else:
        print(f"{args.sample_id} was not excluded")
    return 0


def _existing_store(args: argparse.Namespace) -> TrainingStore:
    from ..store import TrainingStore

    path = _store_path(args)
    if not (path / layout.STORE_FILE).exists():
        raise StoreError(f"there is no training store at {path}; pass --store DIR")
    return TrainingStore(path)


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join(str(n) for n in shape)
