"""Score a model (or any prediction function) on a data set with ground truth.

This is the one implementation behind ``napari-organelle evaluate``, the test
scores in the bundled models' cards (:mod:`napari_organelle.training.report`)
and ``benchmarks/accuracy.py``. It reads a data set folder laid out as::

    <dataset>/dataset.json                           classes, pixel_size_nm, ignore_value, ...
    <dataset>/<split>/images/<name>.tif
    <dataset>/<split>/masks/<class>/<name>.tif       0/1 masks (ignore_value = not annotated)
    <dataset>/<split>/instances/<class>/<name>.tif   instance labels (optional)

:func:`read_dataset_info` is the one reader of ``dataset.json``; training
(:mod:`napari_organelle.training.datasets`) uses it too.

Scores are pooled over the split (see :mod:`napari_organelle.metrics`): pixel
Dice, IoU, precision, recall and F1 for every class, object F1 at IoU 0.5 and
the average precision over IoU 0.5-0.95 for the model's instance classes (true
objects from ``instances/`` when present, else the connected components of the
mask).

Volumes
    Some data sets' slices are consecutive sections of one volume
    (em-lucchi-pp says so in ``dataset.json``: ``"volume"`` and
    ``"z_step_nm"``). With ``volume=True`` (``evaluate --volume``) the split's
    images are stacked in name order into one ``(Z, Y, X)`` volume, the
    predictor segments it as a volume (:func:`model_predictor` with
    ``volume=True`` links objects across Z) and it is scored as one 3-D image:
    pixel scores over all voxels (the same sums as slice by slice), true
    objects are the 3-D connected components of the stacked masks, and object
    F1 and AP use the 3-D IoU. Volume mode is asked for, never automatic, so
    the slice-by-slice scores of existing reports stay what they were; a note
    says when ``dataset.json`` describes the split as a volume.

Not annotated pixels
    When ``dataset.json`` gives an ``ignore_value`` (em-hela-sbfsem-mito and
    exports of corrections use 255), mask pixels equal to it are *not
    annotated*: they count neither way. They are left out of every pixel
    count, true objects are built from annotated pixels only, and a predicted
    object that lies mostly (at least half) in them is neither a true nor a
    false positive unless it matches a true object (the rule is
    :func:`napari_organelle.metrics.match_objects`'s). Without an
    ``ignore_value`` every nonzero mask pixel is foreground.

Examples:
    A tiny data set (one image, one square mitochondrion, the right half not
    annotated) and a "model" that reads the square back from the image but
    also calls everything in the right half mitochondria; it still scores 1.0,
    because the right half counts neither way:

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> import numpy as np, tifffile
    >>> temporary = tempfile.TemporaryDirectory()
    >>> folder = Path(temporary.name)
    >>> for sub in ("test/images", "test/masks/mitochondria"):
    ...     (folder / sub).mkdir(parents=True)
    >>> _ = (folder / "dataset.json").write_text(json.dumps(
    ...     {"classes": ["mitochondria"], "pixel_size_nm": [5, 5], "ignore_value": 255}))
    >>> image = np.zeros((32, 32), np.uint8)
    >>> image[4:12, 4:12] = 200
    >>> mask = (image > 100).astype(np.uint8)
    >>> mask[:, 16:] = 255                                # not annotated
    >>> tifffile.imwrite(folder / "test/images/a.tif", image)
    >>> tifffile.imwrite(folder / "test/masks/mitochondria/a.tif", mask)
    >>> read_dataset_info(folder).ignore_value
    255
    >>> def predict(image, pixel_size_nm):
    ...     prediction = (image > 100).astype(np.uint8)
    ...     prediction[:, 20:] = 1                        # wrong, but where nobody annotated
    ...     return {"mitochondria": prediction}
    >>> evaluation = evaluate_dataset(folder, "test", predict,
    ...                               model_classes={"mitochondria": "instance"})
    >>> evaluation.table().loc["mitochondria", ["dice", "object_f1"]].tolist()
    [1.0, 1.0]
    >>> evaluation.notes
    ['mask pixels equal to 255 are not annotated: left out of every score']

    With three more slices the square becomes a cube through four slices; scored
    as one volume, the predictor gets the ``(Z, Y, X)`` stack and returns 3-D
    labels:

    >>> for z in range(3):
    ...     tifffile.imwrite(folder / f"test/images/a{z}.tif", image)
    ...     tifffile.imwrite(folder / f"test/masks/mitochondria/a{z}.tif", mask)
    >>> def predict_volume(volume, pixel_size_nm):
    ...     return {"mitochondria": (volume > 100).astype(np.uint8)}
    >>> volume = evaluate_dataset(folder, "test", predict_volume, volume=True,
    ...                           model_classes={"mitochondria": "instance"})
    >>> scores = volume.scores["mitochondria"]
    >>> scores.n_images, scores.objects.tp, scores.object_ap
    (1, 1, 1.0)
    >>> volume.per_image["image"].tolist()
    ['a.tif..a2.tif (4 slices)']
    >>> temporary.cleanup()
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .progress import Progress
from .progress import run as run_progress

if TYPE_CHECKING:  # imported where used: keeps ``napari-organelle --help`` fast
    import pandas as pd

    from .metrics import ClassScores

__all__ = [
    "DatasetEvaluation",
    "DatasetInfo",
    "PredictFn",
    "evaluate_dataset",
    "evaluate_dataset_iter",
    "format_table",
    "mask_classes",
    "model_predictor",
    "read_dataset_info",
    "read_truth",
]

#: ``predict(image, pixel_size_nm) -> {model class: label image or mask}``
PredictFn = Callable[[np.ndarray, "float | None"], Mapping[str, np.ndarray]]

_TIFF_SUFFIXES = (".tif", ".tiff")


# --------------------------------------------------------------------------- dataset.json


@dataclass(frozen=True)
class DatasetInfo:
    """What ``dataset.json`` says about a data set (all optional).

    Attributes:
        folder: the data set folder.
        classes: the annotated classes, in the file's order (empty: not listed).
        pixel_sizes_nm: pixel size per axis in nm (empty: unknown).
        ignore_value: mask value meaning "not annotated" (e.g. 255), or None
            when every nonzero mask pixel is foreground.
        modality: free text such as ``"EM (SBF-SEM)"``, or None.
        licence: the data's licence, or None.
        raw: the whole file as read (empty when there is none).
    """

    folder: Path
    classes: tuple[str, ...] = ()
    pixel_sizes_nm: tuple[float, ...] = ()
    ignore_value: int | None = None
    modality: str | None = None
    licence: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def validation_only(self) -> bool:
        """Whether the file's ``use`` marks the set for validation only (never to train or tune on).

        Example:
            >>> info = DatasetInfo(Path("."), raw={"use": "VALIDATION ONLY: one real image"})
            >>> info.validation_only
            True
        """
        return "validation only" in str(self.raw.get("use", "")).lower()

    @property
    def pixel_size_nm(self) -> float | None:
        """One pixel size in nm (the mean over the axes), or None when unknown."""
        return float(np.mean(self.pixel_sizes_nm)) if self.pixel_sizes_nm else None

    @property
    def z_step_nm(self) -> float | None:
        """The distance between consecutive slices in nm (``z_step_nm``, else
        ``section_thickness_nm``), or None when not given."""
        for key in ("z_step_nm", "section_thickness_nm"):
            value = self.raw.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    @property
    def volume(self) -> str | None:
        """What ``dataset.json`` says about the slices forming one volume, or None."""
        value = self.raw.get("volume")
        return None if value in (None, False, "") else str(value)

    @property
    def anisotropic(self) -> bool:
        """Whether the axes' pixel sizes differ by more than 1 %."""
        sizes = self.pixel_sizes_nm
        return bool(sizes) and max(sizes) > 1.01 * min(sizes)

    def split_classes(self, split: str) -> list[str]:
        """The classes of a split: those listed in ``dataset.json``, else its ``masks/`` folders.

        Raises:
            InputError: if neither names a class.
        """
        classes = list(self.classes) or mask_classes(self.folder, split)
        if not classes:
            raise InputError(f"{self.folder / split} has no masks/<class> folders and "
                             "dataset.json lists no classes")
        return classes


def read_dataset_info(folder: str | Path) -> DatasetInfo:
    """Read ``<folder>/dataset.json``; a folder without one gets an empty :class:`DatasetInfo`.

    Args:
        folder: the data set folder.

    Returns:
        The :class:`DatasetInfo`.

    Raises:
        InputError: if the file is not a JSON object, or its ``pixel_size_nm``,
            ``ignore_value`` or ``classes`` is malformed.

    Examples:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> temporary = tempfile.TemporaryDirectory()
        >>> folder = Path(temporary.name)
        >>> read_dataset_info(folder).ignore_value is None      # no dataset.json
        True
        >>> _ = (folder / "dataset.json").write_text(json.dumps(
        ...     {"classes": ["mitochondria"], "pixel_size_nm": [10, 10], "ignore_value": 255}))
        >>> info = read_dataset_info(folder)
        >>> info.classes, info.pixel_size_nm, info.ignore_value
        (('mitochondria',), 10.0, 255)
        >>> temporary.cleanup()
    """
    folder = Path(folder)
    path = folder / "dataset.json"
    if not path.is_file():
        return DatasetInfo(folder)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path} must hold a JSON object, not {type(raw).__name__}")
    classes = raw.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise InputError(f"{path}: classes must be a list of names, not {classes!r}")
    return DatasetInfo(
        folder=folder,
        classes=tuple(classes),
        pixel_sizes_nm=_pixel_sizes(raw.get("pixel_size_nm"), path),
        ignore_value=_ignore_value(raw.get("ignore_value"), path),
        modality=_text(raw.get("modality")),
        licence=_text(raw.get("licence")),
        raw=raw,
    )


def mask_classes(folder: str | Path, split: str) -> list[str]:
    """The ``<split>/masks/<class>`` folders of a data set, sorted (empty when there are none)."""
    masks = Path(folder) / split / "masks"
    return sorted(p.name for p in masks.iterdir() if p.is_dir()) if masks.is_dir() else []


def _pixel_sizes(value: Any, path: Path) -> tuple[float, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        sizes = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise InputError(f"{path}: pixel_size_nm must be a positive number or a list of them, "
                         f"not {value!r}")
    return sizes


def _ignore_value(value: Any, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < 0:
        raise InputError(f"{path}: ignore_value must be a non-negative integer such as 255, "
                         f"not {value!r}")
    return int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------- evaluation


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
        ignore_value: mask value left out of the scores as not annotated, or None.
        volume: the split was scored as one 3-D volume.
        z_step_nm: the distance between slices (from dataset.json), or None.
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
    ignore_value: int | None = None
    volume: bool = False
    z_step_nm: float | None = None

    def table(self) -> pd.DataFrame:
        """Pooled scores, one row per data class, with the ``model_class`` it was compared with.

        Object columns are nan for classes not scored as objects.
        """
        from .metrics import scores_to_dataframe

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
            "ignore_value": self.ignore_value,
            "volume": self.volume,
            "z_step_nm": self.z_step_nm,
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
    volume: bool = False,
) -> DatasetEvaluation:
    """Predict every image of a split and score the predictions against the masks.

    Mask pixels equal to the data set's ``ignore_value`` count neither way
    (see the module notes).

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
        volume: stack the split's images (in name order) into one volume,
            predict it in one call and score it in 3-D (see the module notes).

    Returns:
        A :class:`DatasetEvaluation`.

    Raises:
        InputError: if the folder is not a data set, a mask is missing, a
            prediction is missing or has the wrong shape, or the model shares
            no class with the data set.

    Examples:
        See the module notes for a runnable example.
    """
    work = evaluate_dataset_iter(dataset_dir, split, predict_fn, class_map,
                                 model_classes=model_classes, iou_threshold=iou_threshold,
                                 volume=volume)
    return run_progress(work, on_progress)


def evaluate_dataset_iter(
    dataset_dir: str | Path,
    split: str,
    predict_fn: PredictFn,
    class_map: Mapping[str, str] | None = None,
    *,
    model_classes: Mapping[str, str],
    iou_threshold: float = 0.5,
    volume: bool = False,
) -> Generator[Progress, None, DatasetEvaluation]:
    """:func:`evaluate_dataset` as a generator yielding a :class:`Progress` per image.

    Args:
        dataset_dir: data set folder.
        split: sub-folder to score.
        predict_fn: the prediction function (see :func:`evaluate_dataset`).
        class_map: data class -> model class for classes named differently.
        model_classes: model class name -> kind.
        iou_threshold: IoU at which objects match.
        volume: score the split as one volume (see :func:`evaluate_dataset`).

    Yields:
        A :class:`~napari_organelle.progress.Progress` after each image (in
        volume mode: after reading the slices, after predicting, after scoring).

    Returns:
        The :class:`DatasetEvaluation` (as the generator's return value).
    """
    dataset = Path(dataset_dir)
    info = read_dataset_info(dataset)
    split_dir = dataset / split
    image_dir = split_dir / "images"
    if not image_dir.is_dir():
        splits = (sorted(p.name for p in dataset.iterdir() if (p / "images").is_dir())
                  if dataset.is_dir() else [])
        raise InputError(
            f"{image_dir} does not exist; is {dataset} a data set folder? "
            f"(splits found: {', '.join(splits) or 'none'})"
        )
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES)
    if not images:
        raise InputError(f"{image_dir} holds no TIFF images")

    data_classes = info.split_classes(split)
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
    pixel_size = info.pixel_size_nm
    if pixel_size is None:
        notes.append("dataset.json gives no pixel size: images are segmented at their own scale")
    elif info.anisotropic:
        notes.append(f"anisotropic pixels {list(info.pixel_sizes_nm)} nm: the mean is used for "
                     "segmentation")
    if info.ignore_value is not None:
        notes.append(f"mask pixels equal to {info.ignore_value} are not annotated: left out of "
                     "every score")
    if info.volume and not volume:
        notes.append("dataset.json says the slices form one volume; --volume scores it in 3-D")

    import tifffile

    from .metrics import MetricAccumulator

    accumulator = MetricAccumulator(iou_threshold)
    if volume:
        yield from _score_volume(images, split_dir, predict_fn, scored, instance_classes,
                                 info, accumulator, notes)
    for index, path in enumerate(images if not volume else ()):
        image = tifffile.imread(path)
        try:
            predictions = predict_fn(image, pixel_size)
        except InputError as error:
            raise InputError(f"{path.name}: {error}") from None
        for data_class, model_class in scored.items():
            if model_class not in predictions:
                raise InputError(f"{path.name}: the prediction has no {model_class!r} class")
            truth, ignore = read_truth(split_dir, data_class, path.name,
                                       instances=data_class in instance_classes,
                                       ignore_value=info.ignore_value)
            try:
                accumulator.add(data_class, predictions[model_class], truth, ignore,
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
        ignore_value=info.ignore_value,
        volume=bool(volume),
        z_step_nm=info.z_step_nm,
    )


def _score_volume(images: list[Path], split_dir: Path, predict_fn: PredictFn,
                  scored: dict[str, str], instance_classes: frozenset[str], info: DatasetInfo,
                  accumulator: Any, notes: list[str]) -> Generator[Progress, None, None]:
    """Stack the slices, predict the volume once, score it as one 3-D image."""
    import tifffile

    steps = 3
    stack = _stack_slices(images, tifffile.imread)
    name = (f"{images[0].name}..{images[-1].name} ({len(images)} slices)"
            if len(images) > 1 else images[0].name)
    notes.append(f"scored as one volume of {len(images)} slices in name order; true objects "
                 "are the 3-D connected components of the stacked masks")
    if info.z_step_nm is None:
        notes.append("dataset.json gives no z_step_nm: the volume is taken as isotropic")
    yield Progress(1, steps, f"read {len(images)} slices")
    try:
        predictions = predict_fn(stack, info.pixel_size_nm)
    except InputError as error:
        raise InputError(f"the volume {name}: {error}") from None
    del stack
    yield Progress(2, steps, "segmented the volume")
    for data_class, model_class in scored.items():
        if model_class not in predictions:
            raise InputError(f"the prediction has no {model_class!r} class")
        truths, ignores = [], []
        for path in images:
            truth, ignore = read_truth(split_dir, data_class, path.name, instances=False,
                                       ignore_value=info.ignore_value)
            truths.append(truth)
            ignores.append(ignore)
        truth = _stack_slices(truths, lambda array: (np.asarray(array) > 0).view(np.uint8))
        del truths
        ignore = None if ignores[0] is None else np.stack(ignores)
        del ignores
        try:
            accumulator.add(data_class, predictions[model_class], truth, ignore,
                            objects=data_class in instance_classes, image=name)
        except InputError as error:
            raise InputError(f"the volume {name}, class {data_class!r}: {error}") from None
    yield Progress(3, steps, "scored the volume")


def _stack_slices(items: list[Any], read: Callable[[Any], np.ndarray]) -> np.ndarray:
    """One ``(Z, Y, X)`` array from 2-D slices of one shape (filled in place: no list of copies)."""
    first = np.asarray(read(items[0]))
    if first.ndim != 2:
        raise InputError(f"volume mode stacks 2-D slices, but {_item_name(items[0])} has shape "
                         f"{first.shape}")
    stack = np.empty((len(items), *first.shape), dtype=first.dtype)
    stack[0] = first
    for index, item in enumerate(items[1:], start=1):
        plane = np.asarray(read(item))
        if plane.shape != first.shape:
            raise InputError(f"volume mode needs slices of one shape: {_item_name(item)} is "
                             f"{plane.shape}, {_item_name(items[0])} {first.shape}")
        stack[index] = plane
    return stack


def _item_name(item: Any) -> str:
    return item.name if isinstance(item, Path) else "a slice"


def read_truth(split_dir: str | Path, data_class: str, image_name: str, *, instances: bool,
               ignore_value: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The true labels of one image and class, and its not-annotated pixels.

    Args:
        split_dir: the split folder (``<dataset>/<split>``).
        data_class: the class.
        image_name: the image's file name (``a.tif``).
        instances: use ``instances/<class>/<image_name>`` when it exists.
        ignore_value: mask value meaning "not annotated", or None.

    Returns:
        ``(truth, ignore)``: the instance label image, or the mask as 0/1
        (as read when there is no ``ignore_value``); and a boolean mask of
        the pixels whose mask value is ``ignore_value`` (None without an
        ``ignore_value``). The ignored pixels come from the mask even when
        the truth is an instance image, whose ids may be any value.

    Raises:
        InputError: if the mask (needed without an instance image) is missing,
            or the instance image and the mask differ in shape.
    """
    import tifffile

    split_dir = Path(split_dir)
    mask_path = split_dir / "masks" / data_class / image_name
    instance_path = split_dir / "instances" / data_class / image_name
    truth = tifffile.imread(instance_path) if instances and instance_path.is_file() else None
    if truth is not None and (ignore_value is None or not mask_path.is_file()):
        return truth, None
    if not mask_path.is_file():
        raise InputError(f"no ground truth for {image_name}: {mask_path} is missing")
    mask = tifffile.imread(mask_path)
    if ignore_value is None:
        return mask, None
    ignore = mask == ignore_value
    if truth is None:
        return ((mask > 0) & ~ignore).astype(np.uint8), ignore
    if truth.shape != mask.shape:
        raise InputError(f"{instance_path} is {truth.shape} but its mask {mask.shape}")
    return truth, ignore


def model_predictor(model: Any, *, classes: list[str] | None, device: str = "auto",
                    tile_size: int | None = None, tta: bool = False, volume: bool = False,
                    z_step_nm: float | None = None, z_consensus: bool = False,
                    on_progress: Callable[[Progress], None] | None = None) -> PredictFn:
    """A :data:`PredictFn` that segments with ``model`` through the inference core.

    Args:
        model: a loaded :class:`~napari_organelle.models.Model`.
        classes: the model classes to predict (None: all).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        tile_size: tile edge in pixels (None: the model's).
        tta: average over flips.
        volume: the image is a ``(Z, Y, X)`` volume: link objects across Z
            (see :mod:`napari_organelle.volume`).
        z_step_nm: the distance between slices, for the anisotropy (with the
            pixel size the predictor is given); None: isotropic.
        z_consensus: in volume mode, smooth the probabilities along Z.
        on_progress: called with the segmentation's progress.

    Returns:
        ``predict(image, pixel_size_nm) -> {model class: labels}``.
    """
    from .inference import segment

    def predict(image: np.ndarray, pixel_size_nm: float | None) -> Mapping[str, np.ndarray]:
        options: dict[str, Any] = {}
        if volume:
            options.update(volume=True, z_consensus=z_consensus,
                           z_anisotropy=(z_step_nm / pixel_size_nm
                                         if z_step_nm and pixel_size_nm else None))
        if on_progress is not None:
            options["progress"] = on_progress
        result = segment(image, model, pixel_size_nm=pixel_size_nm, device=device,
                         tile_size=tile_size, tta=tta, classes=classes, **options)
        return result.labels

    return predict


def format_table(evaluation: DatasetEvaluation) -> str:
    """The printed table: one row per class, pixel scores and object F1 ("-" for semantic classes).

    In volume mode also the object AP over IoU 0.5-0.95.

    Args:
        evaluation: the scores.

    Returns:
        The table as text.
    """
    import pandas as pd

    table = evaluation.table()
    threshold = f"{evaluation.iou_threshold:g}"
    rows = []
    for name, record in table.iterrows():
        model_class = record["model_class"]
        row = {"class": name if model_class == name else f"{name} -> {model_class}"}
        for column, title in (("dice", "Dice"), ("iou", "IoU"), ("precision", "precision"),
                              ("recall", "recall"), ("f1", "F1")):
            row[title] = _format_score(record[column])
        row[f"object F1@{threshold}"] = (
            _format_score(record["object_f1"]) if name in evaluation.instance_classes else "-"
        )
        if evaluation.volume:  # 2-D tables keep their columns; the JSON has object_ap always
            row["object AP"] = (
                _format_score(record["object_ap"]) if name in evaluation.instance_classes
                else "-"
            )
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def _format_score(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _json_value(value: Any) -> Any:
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value
