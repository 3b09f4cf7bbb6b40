"""Training data in memory, resampled to the model's pixel size, with per-class validity.

Data sets use the layout of ``../shared/data`` (and of this package's TIFF
export): ``<set>/dataset.json``, ``<set>/<split>/images/<name>.tif``,
``<set>/<split>/masks/<class>/<name>.tif``. Sets annotate different classes:
a class a set does not annotate is *unknown* there, not background, so its
target is marked invalid and the loss ignores it. Pixels equal to the set's
``ignore_value`` (255 in exports of corrections and em-hela-sbfsem-mito) are
invalid too; a set whose ``dataset.json`` gives none still has 255 ignored
here, as before. ``dataset.json`` is read by
:func:`napari_organelle.evaluation.read_dataset_info`, the reader scoring uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..evaluation import mask_classes, read_dataset_info

__all__ = [
    "IGNORE",
    "DatasetSpec",
    "TrainingImage",
    "dataset_classes",
    "load_dataset",
    "normalize_percentile",
    "read_dataset_info",
    "split_by_image",
]

#: Target value for pixels the loss must not see.
IGNORE = 255


@dataclass
class DatasetSpec:
    """One data set to train on.

    Attributes:
        path: folder in the shared layout.
        split: sub-folder (``train``).
        class_map: data-set class name -> model class name (``membranes`` ->
            ``cell_boundary``); classes not in the map are not used.
        weight: relative sampling weight of this set.
        pixel_size_nm: overrides ``dataset.json``.
    """

    path: Path
    split: str = "train"
    class_map: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    pixel_size_nm: float | None = None


@dataclass
class TrainingImage:
    """One image at the model's pixel size, normalised, with its targets.

    Attributes:
        image: float32 ``(Y, X)`` normalised like inference does (percentiles).
        target: uint8 ``(K, Y, X)``: 0 background, 1 foreground, 255 ignore.
        name: ``<set>/<image stem>`` for reports.
        source: the data set folder.
    """

    image: np.ndarray
    target: np.ndarray
    name: str
    source: str
    weight: float = 1.0
    _annotated: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _positives: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False,
                                              compare=False)

    def annotated_pixels(self) -> np.ndarray:
        """Flat indices of pixels annotated in at least one class (a subsample, computed once).

        Crops are centred on these, so an image annotated in one cell or a few reviewed
        boxes does not spend most crops on pixels that give no loss.
        """
        if self._annotated is None:
            annotated = (self.target != IGNORE).any(axis=0).ravel()
            # Every 7th annotated pixel is plenty to draw centres from and keeps this small.
            self._annotated = np.flatnonzero(annotated)[::7].astype(np.int64)
        return self._annotated

    def class_pixels(self, index: int) -> np.ndarray:
        """Flat indices of pixels of class ``index`` (target 1; a subsample, computed once).

        Crops centred on them make a rare class (a new one, a few synapses in a
        big image) part of most batches, as nnU-Net's foreground oversampling does.
        """
        if index not in self._positives:
            found = np.flatnonzero(self.target[index].ravel() == 1)
            self._positives[index] = found[::3].astype(np.int64)
        return self._positives[index]


def dataset_classes(path: Path, split: str = "train") -> list[str]:
    """The ``<split>/masks/<class>`` folders of a data set, sorted.

    See :func:`napari_organelle.evaluation.mask_classes`.
    """
    return mask_classes(path, split)


def load_dataset(
    spec: DatasetSpec,
    class_names: Sequence[str],
    pixel_size_nm: float | None,
    normalization: tuple[float, float] = (1.0, 99.8),
    names: Sequence[str] | None = None,
) -> list[TrainingImage]:
    """Read a data set split into memory at the model's pixel size.

    Args:
        spec: which set, split and class mapping.
        class_names: the model's classes, in output order.
        pixel_size_nm: the model's pixel size (None: keep the data's).
        normalization: low/high percentiles, as in the model card.
        names: only these image stems.

    Raises:
        InputError: the folder is not a data set or has no usable class.
    """
    import tifffile

    root = Path(spec.path)
    image_dir = root / spec.split / "images"
    if not image_dir.is_dir():
        raise InputError(f"{root} has no {spec.split}/images folder; expected the layout "
                         "<set>/<split>/images/*.tif and <set>/<split>/masks/<class>/*.tif")
    info = read_dataset_info(root)
    if info.validation_only:
        raise InputError(f"{root.name} is marked for validation only in its dataset.json "
                         "(\"use\"): it may be scored, never trained or fine-tuned on")
    data_pixel = spec.pixel_size_nm or info.pixel_size_nm
    ignore_value = IGNORE if info.ignore_value is None else info.ignore_value
    class_map = spec.class_map or {name: name for name in dataset_classes(root, spec.split)
                                   if name in class_names}
    usable = {data: model for data, model in class_map.items() if model in class_names}
    if not usable:
        raise InputError(f"{root.name} annotates {', '.join(dataset_classes(root, spec.split))}; "
                         f"none maps to the model's classes ({', '.join(class_names)})")
    scale = data_pixel / pixel_size_nm if data_pixel and pixel_size_nm else 1.0
    images = []
    for image_path in sorted(image_dir.glob("*.tif*")):
        if names is not None and image_path.stem not in names:
            continue
        raw = tifffile.imread(image_path)
        if raw.ndim != 2:
            raw = raw.reshape(-1, *raw.shape[-2:])[0] if raw.ndim > 2 else raw
        target = np.full((len(class_names), *raw.shape), IGNORE, dtype=np.uint8)
        for data_class, model_class in usable.items():
            mask_path = root / spec.split / "masks" / data_class / image_path.name
            if not mask_path.exists():
                continue
            mask = tifffile.imread(mask_path)
            if mask.shape != raw.shape:
                raise InputError(f"{mask_path} is {mask.shape}, its image {raw.shape}")
            channel = target[class_names.index(model_class)]
            known = mask != ignore_value
            # Several data classes may map to one model class: foreground wins.
            channel[known & (channel == IGNORE)] = 0
            channel[known & (mask > 0)] = 1
        image = normalize_percentile(raw, *normalization)
        if abs(scale - 1.0) > 1e-3:
            image, target = _rescale(image, target, scale)
        images.append(TrainingImage(image, target, f"{root.name}/{image_path.stem}", str(root),
                                    spec.weight))
    if not images:
        raise InputError(f"{image_dir} holds no TIFF images")
    return images


def normalize_percentile(raw: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Same mapping as inference: ``(x - p_low) / (p_high - p_low)`` as float32."""
    raw = raw.astype(np.float32)
    finite = np.isfinite(raw)
    values = raw[finite] if not finite.all() else raw
    lo, hi = np.percentile(values, [low, high]) if values.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max()) + 1e-6
    out = (raw - lo) / (hi - lo)
    out[~finite] = 0.0
    return out.astype(np.float32)


def _rescale(image: np.ndarray, target: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage.transform import resize

    shape = (max(32, round(image.shape[0] * scale)), max(32, round(image.shape[1] * scale)))
    image = resize(image, shape, order=1, anti_aliasing=scale < 1, preserve_range=True)
    resized = np.empty((target.shape[0], *shape), dtype=np.uint8)
    for channel, values in enumerate(target):
        valid = resize((values != IGNORE).astype(np.float32), shape, order=1) > 0.5
        foreground = resize((values == 1).astype(np.float32), shape, order=1) > 0.5
        resized[channel] = np.where(valid, foreground, IGNORE)
    return image.astype(np.float32), resized


def split_by_image(images: list[TrainingImage], val_fraction: float, seed: int = 0
                   ) -> tuple[list[TrainingImage], list[TrainingImage]]:
    """Hold out whole images (never tiles of a training image) for validation, per data set.

    Every set with at least three images gives at least one validation image,
    so each domain is validated.
    """
    if val_fraction <= 0:
        return images, []
    rng = np.random.default_rng(seed)
    train, val = [], []
    by_source: dict[str, list[TrainingImage]] = {}
    for item in images:
        by_source.setdefault(item.source, []).append(item)
    for items in by_source.values():
        order = rng.permutation(len(items))
        n_val = round(val_fraction * len(items))
        if n_val == 0 and len(items) >= 3:
            n_val = 1
        n_val = min(n_val, len(items) - 1)
        val.extend(items[i] for i in order[:n_val])
        train.extend(items[i] for i in order[n_val:])
    return train, val
