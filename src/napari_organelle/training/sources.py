"""Training data from a lab's folders: training stores and data sets in the shared layout.

Both are read straight into memory as :class:`~.datasets.TrainingImage` at the
model's pixel size, with per-class targets (0, 1, or :data:`~.datasets.IGNORE`
where nobody annotated). Each image also gets a *group*, what it was cut from,
so that validation can hold out whole images: several store samples cut from
one image plane are one group. Every file read is hashed for the training
data manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..durable import sha256_file
from ..errors import InputError, OrganelleError
from ..models import ClassSpec, ModelCard
from ..models.card import CLASS_SYNONYMS, ClassKind
from .datasets import (
    IGNORE,
    DatasetSpec,
    TrainingImage,
    _rescale,
    dataset_classes,
    load_dataset,
    normalize_percentile,
    read_dataset_info,
)

__all__ = [
    "CLASS_SYNONYMS",
    "DataClass",
    "DataSource",
    "data_classes",
    "dataset_files",
    "load_source",
    "match_classes",
    "missing_classes",
    "split_by_group",
]



@dataclass
class DataSource:
    """One folder of training data, read into memory.

    Attributes:
        path: the folder.
        kind: ``store`` (a training store) or ``dataset`` (shared layout).
        images: its images at the model's pixel size.
        groups: per image, what it was cut from (images of one group are
            never split between training and validation).
        class_map: data class -> model class actually used.
        unused: data classes the model has no channel for.
        files: ``(item, sha256)`` of everything read, for the data manifest.
        info: the source's own description (``dataset.json`` / ``store.json``).
    """

    path: Path
    kind: str
    images: list[TrainingImage]
    groups: list[str]
    class_map: dict[str, str]
    unused: list[str]
    files: list[tuple[str, str]]
    info: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def load_source(path: str | os.PathLike, card: ModelCard, class_map: Mapping[str, str],
                ) -> DataSource:
    """Read a training store or a data set (its ``train`` split) for ``card``'s classes.

    Args:
        path: the folder.
        card: the model to train (classes, pixel size, normalisation).
        class_map: data class -> model class for names that differ.

    Raises:
        InputError: not a store or data set, or no class the model has.
    """
    folder = Path(path).expanduser()
    if (folder / "store.json").exists():
        return _load_store(folder, card, class_map)
    if (folder / "train" / "images").is_dir():
        return _load_dataset(folder, card, class_map)
    raise InputError(f"{folder} is neither a training store (store.json) nor a data set "
                     "(train/images/*.tif with train/masks/<class>/*.tif)")


def match_classes(data_classes: Iterable[str], model_classes: Sequence[str],
                  class_map: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Which data class trains which model class.

    An explicit ``class_map`` entry wins, then the same name, then a
    synonym (:data:`CLASS_SYNONYMS`).

    Returns:
        ``{data class: model class}`` and the data classes left unused.
    """
    used, unused = {}, []
    for data_class in data_classes:
        target = class_map.get(data_class)
        if target is None and data_class in model_classes:
            target = data_class
        if target is None:
            target = CLASS_SYNONYMS.get(data_class)
        if target in model_classes:
            used[data_class] = target
        else:
            unused.append(data_class)
    return used, unused


@dataclass(frozen=True)
class DataClass:
    """A class the training data annotates.

    Attributes:
        name: as named in the data (a store's class, a data set's ``masks/<class>``).
        kind: ``instance`` when it is saved as objects (most of a store's samples
            of it carry object ids; a data set has ``instances/<class>``), else
            ``semantic``.
        sources: the folders that annotate it.
    """

    name: str
    kind: ClassKind
    sources: tuple[str, ...]

    def spec(self, color: str = "") -> ClassSpec:
        """A new model class for it (``color`` empty: the organelle's usual colour)."""
        return ClassSpec(self.name, self.kind, color=color)


def data_classes(paths: Iterable[str | os.PathLike]) -> list[DataClass]:
    """The classes training stores and data sets annotate, with their kind, first seen first.

    Reads only the stores' records and the data sets' folder names, so it is
    quick enough to run whenever a folder is chosen. A store class without
    any sample is left out (there is nothing to learn it from); folders that
    are neither a store nor a data set are skipped (:func:`load_source` says
    why when training starts).
    """
    instance_votes: dict[str, list[bool]] = {}
    sources: dict[str, list[str]] = {}
    for path in paths:
        folder = Path(path).expanduser()
        for name, objects in _annotated(folder):
            instance_votes.setdefault(name, []).extend(objects)
            if folder.name not in sources.setdefault(name, []):
                sources[name].append(folder.name)
    return [DataClass(name, "instance" if 2 * sum(votes) >= len(votes) else "semantic",
                      tuple(sources[name]))
            for name, votes in instance_votes.items()]


def missing_classes(card: ModelCard, paths: Iterable[str | os.PathLike],
                    class_map: Mapping[str, str] | None = None) -> list[DataClass]:
    """The data's classes that no class of ``card`` learns from (new classes to add).

    A data class is matched as in training (:func:`match_classes`: class map,
    same name, synonym), so ``membranes`` is not new to a model with
    ``cell_boundary``.
    """
    found = data_classes(paths)
    _used, unused = match_classes([item.name for item in found], card.class_names,
                                  class_map or {})
    return [item for item in found if item.name in unused]


def _annotated(folder: Path) -> list[tuple[str, list[bool]]]:
    """``(class, [saved as objects?] per sample or data set)`` of one folder."""
    if (folder / "store.json").is_file():
        from ..store import TrainingStore

        try:
            records = TrainingStore(folder).samples()
        except (OrganelleError, OSError, ValueError):  # a damaged store: training says
            return []
        votes: dict[str, list[bool]] = {}
        for record in records:
            for name in record.classes:
                votes.setdefault(name, []).append(name in record.instance_classes)
        return list(votes.items())
    if (folder / "train" / "images").is_dir():
        try:
            names = dataset_classes(folder, "train")
        except (OrganelleError, OSError):
            return []
        return [(name, [(folder / "train" / "instances" / name).is_dir()]) for name in names]
    return []


def split_by_group(groups: Sequence[str], val_fraction: float, rng: np.random.Generator
                   ) -> tuple[list[int], list[int]]:
    """Indices for training and validation, keeping each group on one side.

    A group is what images were cut from (an image plane): crops of one plane
    in validation and training would let the model be scored on pixels it
    learnt. As for data sets (:func:`~.datasets.split_by_image`), a source with
    at least three groups always gives one to validation, and one is always
    left for training.
    """
    order = list(dict.fromkeys(groups))
    if val_fraction <= 0 or len(order) < 2:
        return list(range(len(groups))), []
    n_val = round(val_fraction * len(order))
    if n_val == 0 and len(order) >= 3:
        n_val = 1
    n_val = min(n_val, len(order) - 1)
    held_out = {order[i] for i in rng.permutation(len(order))[:n_val]}
    train = [i for i, group in enumerate(groups) if group not in held_out]
    val = [i for i, group in enumerate(groups) if group in held_out]
    return train, val


def _load_dataset(folder: Path, card: ModelCard, class_map: Mapping[str, str]) -> DataSource:
    used, unused = match_classes(dataset_classes(folder, "train"), card.class_names, class_map)
    if not used:
        raise InputError(f"{folder.name} annotates {', '.join(dataset_classes(folder, 'train'))}"
                         f"; none is a class of the model ({', '.join(card.class_names)}): "
                         "map one with a class map, or add it as a new class")
    normalization = (card.normalization.low, card.normalization.high)
    images = load_dataset(DatasetSpec(folder, "train", used), card.class_names,
                          card.pixel_size_nm, normalization)
    groups = [item.name for item in images]
    return DataSource(folder, "dataset", images, groups, used, unused,
                      dataset_files(folder, "train", images, used), read_dataset_info(folder).raw)


def dataset_files(folder: Path, split: str, images: Sequence[TrainingImage],
                   used: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(path in the set, sha256)`` of each image read and of its masks."""
    stems = {item.name.split("/", 1)[1] for item in images}
    files = []
    for image in sorted((folder / split / "images").glob("*.tif*")):
        if image.stem not in stems:
            continue
        relative = [f"{split}/images/{image.name}"]
        relative += [f"{split}/masks/{data_class}/{image.name}" for data_class in used
                     if (folder / split / "masks" / data_class / image.name).exists()]
        files += [(item, sha256_file(folder / item)) for item in relative]
    return files


def _load_store(folder: Path, card: ModelCard, class_map: Mapping[str, str]) -> DataSource:
    from ..store import TrainingStore

    store = TrainingStore(folder)
    used, unused = match_classes(store.classes, card.class_names, class_map)
    if not used:
        raise InputError(f"the training store {folder} has labels for "
                         f"{', '.join(store.classes) or 'no class'}; none is a class of the "
                         f"model ({', '.join(card.class_names)})")
    records = store.samples()
    if not records:
        raise InputError(f"the training store {folder} has no samples (excluded ones are left "
                         "out)")
    low, high = card.normalization.low, card.normalization.high
    images, groups, files = [], [], []
    for record in records:
        image, labels, ignore, provenance = store.load(record.id)
        if image.ndim != 2:
            raise InputError(f"sample {record.id} in {folder} is not a 2-D grey image")
        target = np.full((len(card.class_names), *image.shape), IGNORE, dtype=np.uint8)
        for data_class, model_class in used.items():
            if data_class not in labels:
                continue  # this sample was not annotated for the class: unknown, not background
            channel = target[card.class_names.index(model_class)]
            known = ~ignore[data_class]
            channel[known & (channel == IGNORE)] = 0
            channel[known & (labels[data_class] > 0)] = 1
        if (target == IGNORE).all():
            continue
        # A crop is normalised on its own, where inference normalises its whole
        # plane; with percentiles the difference is small for crops of any size.
        normalised = normalize_percentile(image, low, high)
        scale = _scale(provenance.get("pixel_size_nm"), card.pixel_size_nm)
        if abs(scale - 1.0) > 1e-3:
            normalised, target = _rescale(normalised, target, scale)
        images.append(TrainingImage(normalised, target, f"{folder.name}/{record.id}",
                                    str(folder)))
        plane = provenance.get("plane") or ()
        groups.append(f"{provenance.get('source_sha256') or record.key}/{list(plane)}")
        files.append((record.id, record.content_sha256))
    if not images:
        raise InputError(f"no sample in {folder} has reviewed pixels of "
                         f"{', '.join(used)}")
    info = {"classes": list(store.classes), "samples": len(records)}
    return DataSource(folder, "store", images, groups, used, unused, files, info)


def _scale(data_pixel: Any, model_pixel: float | None) -> float:
    if isinstance(data_pixel, (list, tuple)):
        data_pixel = data_pixel[-1] if data_pixel else None
    if not data_pixel or not model_pixel:
        return 1.0
    return float(data_pixel) / float(model_pixel)

