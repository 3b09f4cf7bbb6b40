"""``napari-organelle evaluate``: score a model on a data set with ground truth.

The scoring itself is :func:`evaluate_dataset`, which takes any prediction
callable, so it is tested (and usable) without a model; the command wires it
to :func:`napari_organelle.inference.segment`. A data set is a folder laid out
as::

    <dataset>/dataset.json                       pixel_size_nm, classes, ... (optional)
    <dataset>/<split>/images/<name>.tif
    <dataset>/<split>/masks/<class>/<name>.tif   0/1 masks
    <dataset>/<split>/instances/<class>/<name>.tif   instance labels (optional)

Scores are pooled over the split (see :mod:`napari_organelle.metrics`):
pixel Dice, IoU, precision, recall and F1 for every class, object F1 at IoU
0.5 for the model's instance classes (true objects from ``instances/`` when
present, else the connected components of the mask).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..progress import Progress, run as run_progress

if TYPE_CHECKING:  # imported where used: keeps ``napari-organelle --help`` fast
    import pandas as pd

    from ..metrics import ClassScores

#: ``predict(image, pixel_size_nm) -> {model class: label image or mask}``
PredictFn = Callable[[np.ndarray, "float | None"], Mapping[str, np.ndarray]]

_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class DatasetEvaluation:
    """Scores of one split of a data set.

    Attributes:
        dataset: the data set folder.
        split: the split scored (``test``).
        pixel_size_nm: pixel size passed to the predictor (from dataset.json).
        scores: pooled scores per data class.
        class_map: data class -> model class, for the classes scored.
        instance_classes: data classes scored as objects too.
        per_image: scores per (image, class).
        notes: classes skipped and other things to know.
        iou_threshold: IoU at which objects matched.
    """

    dataset: Path
    split: str
    pixel_size_nm: float | None
    scores: dict[str, ClassScores]
    class_map: dict[str, str]
    instance_classes: frozenset[str]
    per_image: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    iou_threshold: float = 0.5

    def table(self) -> pd.DataFrame:
        """Pooled scores, one row per data class, with the ``model_class`` it was compared with.

        Object columns are nan for classes not scored as objects.
        """
        from ..metrics import scores_to_dataframe

        table = scores_to_dataframe(self.scores)
        table.insert(0, "model_class", [self.class_map[name] for name in table.index])
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (undefined scores become null)."""
        classes = {}
        for name, record in self.table().iterrows():
            classes[str(name)] = {
                "kind": "instance" if name in self.instance_classes else "semantic",
                **{key: _json_value(value) for key, value in record.items()},
            }
        return {
            "dataset": str(self.dataset),
            "split": self.split,
            "pixel_size_nm": self.pixel_size_nm,
            "iou_threshold": self.iou_threshold,
            "classes": classes,
            "per_image": [
                {key: _json_value(value) for key, value in row.items()}
                for row in self.per_image.to_dict(orient="records")
            ],
            "notes": list(self.notes),
        }


def evaluate_dataset(
    dataset_dir: str | Path,
    split: str,
    predict_fn: PredictFn,
    class_map: Mapping[str, str] | None = None,
    *,
    model_classes: Mapping[str, str],
    iou_threshold: float = 0.5,
    on_progress: Callable[[Progress], None] | None = None,
) -> DatasetEvaluation:
    """Predict every image of a split and score the predictions against the masks.

    Args:
        dataset_dir: data set folder (layout in the module notes).
        split: sub-folder to score, e.g. ``"test"``.
        predict_fn: called as ``predict_fn(image, pixel_size_nm)`` for each
            image; returns a label image or mask per model class.
        class_map: data class -> model class for classes named differently
            (e.g. ``{"membranes": "cell_boundary"}``); others keep their name.
        model_classes: model class name -> kind (``"instance"`` or
            ``"semantic"``). Data classes the model lacks are skipped with a
            note; instance classes are also scored as objects.
        iou_threshold: IoU at which objects match.
        on_progress: called after each image.

    Returns:
        A :class:`DatasetEvaluation`.

    Raises:
        InputError: if the folder is not a data set, a mask is missing, a
            prediction is missing or has the wrong shape, or the model shares
            no class with the data set.

    Examples:
        A "model" that returns the truth scores 1.0 (``dataset`` is a folder
        laid out as above with a ``mitochondria`` class):

        >>> def perfect(image, pixel_size_nm):                   # doctest: +SKIP
        ...     return {"mitochondria": (image > 100).astype(np.uint8)}
        >>> evaluation = evaluate_dataset(dataset, "test", perfect,  # doctest: +SKIP
        ...                               model_classes={"mitochondria": "instance"})
        >>> evaluation.table().loc["mitochondria", ["dice", "object_f1"]].tolist()  # doctest: +SKIP
        [1.0, 1.0]
    """
    work = evaluate_dataset_iter(dataset_dir, split, predict_fn, class_map,
                                 model_classes=model_classes, iou_threshold=iou_threshold)
    return run_progress(work, on_progress)


def evaluate_dataset_iter(
    dataset_dir: str | Path,
    split: str,
    predict_fn: PredictFn,
    class_map: Mapping[str, str] | None = None,
    *,
    model_classes: Mapping[str, str],
    iou_threshold: float = 0.5,
) -> Generator[Progress, None, DatasetEvaluation]:
    """:func:`evaluate_dataset` as a generator yielding a :class:`Progress` per image."""
    dataset = Path(dataset_dir)
    info = _read_dataset_info(dataset)
    split_dir = dataset / split
    image_dir = split_dir / "images"
    if not image_dir.is_dir():
        splits = sorted(p.name for p in dataset.iterdir() if (p / "images").is_dir()) if dataset.is_dir() else []
        raise InputError(
            f"{image_dir} does not exist; is {dataset} a data set folder? "
            f"(splits found: {', '.join(splits) or 'none'})"
        )
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES)
    if not images:
        raise InputError(f"{image_dir} holds no TIFF images")

    data_classes = _data_classes(info, split_dir)
    mapping = {name: name for name in data_classes}
    for data_class, model_class in (class_map or {}).items():
        if data_class not in mapping:
            raise InputError(
                f"the class map names {data_class!r}, which {dataset.name} does not have "
                f"(its classes: {', '.join(data_classes)})"
            )
        mapping[data_class] = model_class
    notes = []
    scored = {}
    for data_class, model_class in mapping.items():
        if model_class in model_classes:
            scored[data_class] = model_class
        else:
            renamed = f" (as {model_class!r})" if model_class != data_class else ""
            notes.append(f"class {data_class!r}{renamed} skipped: the model has no such class")
    if not scored:
        raise InputError(
            f"the model's classes ({', '.join(model_classes)}) and the data set's "
            f"({', '.join(data_classes)}) have none in common; map them with --class-map DATA=MODEL"
        )
    instance_classes = frozenset(c for c, m in scored.items() if model_classes[m] == "instance")
    pixel_size = _pixel_size(info, notes)

    import tifffile

    from ..metrics import MetricAccumulator

    accumulator = MetricAccumulator(iou_threshold)
    for index, path in enumerate(images):
        image = tifffile.imread(path)
        try:
            predictions = predict_fn(image, pixel_size)
        except InputError as error:
            raise InputError(f"{path.name}: {error}") from None
        for data_class, model_class in scored.items():
            if model_class not in predictions:
                raise InputError(f"{path.name}: the prediction has no {model_class!r} class")
            truth = _read_truth(split_dir, data_class, path, instances=data_class in instance_classes)
            try:
                accumulator.add(data_class, predictions[model_class], truth,
                                objects=data_class in instance_classes, image=path.name)
            except InputError as error:
                raise InputError(f"{path.name}, class {data_class!r}: {error}") from None
        yield Progress(index + 1, len(images), path.name)

    return DatasetEvaluation(
        dataset=dataset,
        split=split,
        pixel_size_nm=pixel_size,
        scores=accumulator.scores(),
        class_map=scored,
        instance_classes=instance_classes,
        per_image=accumulator.per_image_dataframe(),
        notes=notes,
        iou_threshold=float(iou_threshold),
    )


def format_table(evaluation: DatasetEvaluation) -> str:
    """The printed table: one row per class, pixel scores and object F1 ("-" for semantic classes)."""
    import pandas as pd

    table = evaluation.table()
    threshold = f"{evaluation.iou_threshold:g}"
    rows = []
    for name, record in table.iterrows():
        row = {"class": name if record["model_class"] == name else f"{name} -> {record['model_class']}"}
        for column, title in (("dice", "Dice"), ("iou", "IoU"), ("precision", "precision"),
                              ("recall", "recall"), ("f1", "F1")):
            row[title] = _format_score(record[column])
        row[f"object F1@{threshold}"] = (
            _format_score(record["object_f1"]) if name in evaluation.instance_classes else "-"
        )
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


# --------------------------------------------------------------------------- command line


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
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def parse_class_map(items: list[str]) -> dict[str, str]:
    """``["membranes=cell_boundary"]`` -> ``{"membranes": "cell_boundary"}``."""
    mapping = {}
    for item in items:
        data_class, _, model_class = item.partition("=")
        if not data_class.strip() or not model_class.strip():
            raise InputError(f"--class-map takes DATA=MODEL pairs such as membranes=cell_boundary, not {item!r}")
        mapping[data_class.strip()] = model_class.strip()
    return mapping


def model_predictor(model: Any, *, classes: list[str], device: str = "auto",
                    tile_size: int | None = None, tta: bool = False) -> PredictFn:
    """A :data:`PredictFn` that segments with ``model`` through the inference core."""
    from ..inference import segment

    def predict(image: np.ndarray, pixel_size_nm: float | None) -> Mapping[str, np.ndarray]:
        result = segment(image, model, pixel_size_nm=pixel_size_nm, device=device,
                         tile_size=tile_size, tta=tta, classes=classes)
        return result.labels

    return predict


def run(args: argparse.Namespace) -> int:
    from ..models import load_model

    class_map = parse_class_map(args.class_map)
    model = load_model(args.model)
    model_classes = {spec.name: spec.kind for spec in model.card.classes}
    info = _read_dataset_info(args.dataset)
    data_classes = _data_classes(info, args.dataset / args.split) if (args.dataset / args.split).is_dir() else []
    wanted = sorted({class_map.get(name, name) for name in data_classes} & set(model_classes))
    predict = model_predictor(model, classes=wanted or list(model_classes), device=args.device,
                              tile_size=args.tile, tta=args.tta)
    evaluation = evaluate_dataset(
        args.dataset, args.split, predict, class_map, model_classes=model_classes,
        iou_threshold=args.iou_threshold, on_progress=None if args.quiet else _print_progress,
    )
    if not args.quiet:
        print(file=sys.stderr)

    model_name = getattr(model.card, "full_name", None) or str(args.model)
    n_images = max((score.n_images for score in evaluation.scores.values()), default=0)
    print(f"{model_name} on {args.dataset.name}/{args.split} ({n_images} images, "
          f"pixel size {_format_nm(evaluation.pixel_size_nm)}, model {_format_nm(model.card.pixel_size_nm)})")
    print(format_table(evaluation))
    for note in evaluation.notes:
        print(f"note: {note}")
    if args.json:
        report = {"model": model_name, **evaluation.to_dict()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"scores written to {args.json}")
    return 0


# --------------------------------------------------------------------------- helpers


def _read_dataset_info(dataset: Path) -> dict[str, Any]:
    path = dataset / "dataset.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read as JSON: {error}") from None


def _data_classes(info: Mapping[str, Any], split_dir: Path) -> list[str]:
    """Classes listed in dataset.json, else the sub-folders of ``masks/``."""
    classes = [str(name) for name in info.get("classes", [])]
    if not classes:
        masks = split_dir / "masks"
        classes = sorted(p.name for p in masks.iterdir() if p.is_dir()) if masks.is_dir() else []
    if not classes:
        raise InputError(f"{split_dir} has no masks/<class> folders and dataset.json lists no classes")
    return classes


def _pixel_size(info: Mapping[str, Any], notes: list[str]) -> float | None:
    """One pixel size in nm from dataset.json (a number or a per-axis list), or None."""
    value = info.get("pixel_size_nm")
    if value is None:
        notes.append("dataset.json gives no pixel size: images are segmented at their own scale")
        return None
    sizes = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not sizes or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise InputError(f"dataset.json: pixel_size_nm must be positive, not {value!r}")
    if max(sizes) > 1.01 * min(sizes):
        notes.append(f"anisotropic pixels {sizes} nm: the mean is used for segmentation")
    return float(np.mean(sizes))


def _read_truth(split_dir: Path, data_class: str, image_path: Path, *, instances: bool) -> np.ndarray:
    """The true labels of one image and class: instance labels when wanted and present, else the mask."""
    import tifffile

    if instances:
        instance_path = split_dir / "instances" / data_class / image_path.name
        if instance_path.is_file():
            return tifffile.imread(instance_path)
    mask_path = split_dir / "masks" / data_class / image_path.name
    if not mask_path.is_file():
        raise InputError(f"no ground truth for {image_path.name}: {mask_path} is missing")
    return tifffile.imread(mask_path)


def _format_score(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"  # nan != nan


def _format_nm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} nm"


def _json_value(value: Any) -> Any:
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _print_progress(progress: Progress) -> None:
    print(f"\revaluating: {progress.done}/{progress.total} {progress.message:<40}", end="",
          file=sys.stderr, flush=True)
