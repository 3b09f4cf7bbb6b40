"""Check a correction and turn it into the arrays the store writes.

All validation happens here, before anything touches the disk, so a bad input
never leaves a half-written sample behind.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from .hashing import content_sha256, sha256_array
from .layout import IGNORE_VALUE, check_class_name
from .provenance import Box, changed_pixels

#: One region: ``True`` (the whole image), a boolean mask of the image's shape
#: (a numpy array), or a list/tuple of ``(y0, x0, y1, x1)`` boxes.
Region = Union[bool, np.ndarray, Sequence[Box]]
#: The reviewed region of a sample: one :data:`Region` for every class, or a
#: dict with one per class (for corrections that covered classes differently).
ReviewedRegion = Union[Region, Mapping[str, Region]]


@dataclass(frozen=True)
class PreparedSample:
    """A validated sample, in the encoding it has on disk.

    Attributes:
        image: the 2-D image (native byte order; bool becomes uint8).
        masks: per class, uint8 with 0 background, 1 foreground,
            :data:`~napari_organelle.store.layout.IGNORE_VALUE` not reviewed.
        instances: per instance class, uint16/uint32 ids, 0 where not reviewed.
        array_sha256: hash per array, keyed ``image``, ``labels/<class>``,
            ``instances/<class>``.
        pixels: per class, counts of ``foreground``, ``background`` and
            ``ignored`` pixels.
        changed_pixels: per class with a proposal, pixels changed inside the
            reviewed region.
        overlaps: ``{"classes": [a, b], "pixels": n}`` for every pair of
            classes that are both foreground at ``n > 0`` pixels. Exports use it
            as evidence of which classes can overlap (e.g. boundaries inside
            mitochondria).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    array_sha256: dict[str, str]
    pixels: dict[str, dict[str, int]]
    changed_pixels: dict[str, int]
    overlaps: list[dict[str, object]]

    @property
    def content_sha256(self) -> str:
        """One hash of all pixels; equal for duplicate saves."""
        return content_sha256(self.array_sha256)


def prepare_sample(
    image: ArrayLike,
    labels: Mapping[str, ArrayLike],
    reviewed: ReviewedRegion,
    *,
    known_classes: Collection[str],
    instances: Mapping[str, ArrayLike] | None = None,
    proposals: Mapping[str, ArrayLike] | None = None,
) -> PreparedSample:
    """Validate a correction and encode it for storage.

    Args:
        image: 2-D image (one plane, or a crop of one).
        labels: per class, a 0/1 (or bool) mask of the image's shape.
        reviewed: where the annotator checked the labels (see
            :data:`ReviewedRegion`); outside it pixels are stored as ignore.
        known_classes: the store's classes; others are refused.
        instances: per class, instance ids (0 = none, 1..N objects). A class
            given here need not be in ``labels`` (its mask is ``ids > 0``); if
            it is, the two must agree inside the reviewed region.
        proposals: per class, the model output the annotator started from,
            to count changed pixels.

    Raises:
        InputError: with a message naming the offending class or array.
    """
    image = _check_image(image)
    shape = image.shape
    instances = dict(instances or {})
    semantic = {name: _check_mask(name, mask, shape) for name, mask in labels.items()}
    ids = {name: _check_instances(name, array, shape) for name, array in instances.items()}
    classes = list(dict.fromkeys([*semantic, *ids]))
    if not classes:
        raise InputError("no labels given: pass at least one class mask to save")
    for name in classes:
        check_class_name(name)
        if name not in known_classes:
            known = ", ".join(sorted(known_classes)) or "none yet"
            raise InputError(
                f"class {name!r} is not one of this store's classes ({known}); "
                "add it to the store first if it is a new class"
            )
    regions = _reviewed_regions(reviewed, classes, shape)
    if not any(region.any() for region in regions.values()):
        raise InputError(
            "the reviewed region is empty: nothing was marked as checked, so nothing can be saved"
        )

    for name, array in ids.items():
        derived = array > 0
        if name in semantic and np.any((semantic[name] != derived) & regions[name]):
            raise InputError(
                f"labels[{name!r}] and instances[{name!r}] disagree inside the reviewed region; "
                "pass only the instances (the mask is derived from them)"
            )
        semantic[name] = derived

    masks = {
        name: np.where(regions[name], semantic[name], IGNORE_VALUE).astype(np.uint8)
        for name in classes
    }
    stored_ids = {
        name: _compact_ids(np.where(regions[name], array, 0)) for name, array in ids.items()
    }

    changed: dict[str, int] = {}
    for name, proposal in (proposals or {}).items():
        if name not in semantic:
            raise InputError(f"a proposal was given for {name!r} but no corrected labels for it")
        proposal = np.asarray(proposal)
        if proposal.shape != shape:
            raise InputError(f"proposals[{name!r}] has shape {proposal.shape}, the image {shape}")
        changed[name] = changed_pixels(proposal, semantic[name], regions[name])

    hashes = {"image": sha256_array(image)}
    hashes.update({f"labels/{name}": sha256_array(mask) for name, mask in masks.items()})
    hashes.update({f"instances/{name}": sha256_array(array) for name, array in stored_ids.items()})
    pixels = {name: _pixel_counts(mask) for name, mask in masks.items()}
    return PreparedSample(image, masks, stored_ids, hashes, pixels, changed, _overlaps(masks))


def _pixel_counts(mask: np.ndarray) -> dict[str, int]:
    foreground = int(np.count_nonzero(mask == 1))
    ignored = int(np.count_nonzero(mask == IGNORE_VALUE))
    background = mask.size - foreground - ignored
    return {"foreground": foreground, "background": background, "ignored": ignored}


def _overlaps(masks: dict[str, np.ndarray]) -> list[dict[str, object]]:
    names = list(masks)
    overlaps: list[dict[str, object]] = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            both = int(np.count_nonzero((masks[first] == 1) & (masks[second] == 1)))
            if both:
                overlaps.append({"classes": [first, second], "pixels": both})
    return overlaps


def _check_image(image: ArrayLike) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(
            f"the image to save has {image.ndim} dimensions {image.shape}; "
            "save one 2-D plane (pick the plane or time point, and one channel)"
        )
    if image.size == 0:
        raise InputError("the image to save is empty")
    if image.dtype == bool:
        return image.astype(np.uint8)
    if image.dtype.kind not in "uif":
        raise InputError(
            f"images of type {image.dtype} cannot be saved; use integer or float pixels"
        )
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError("the image has NaN or infinite pixels; replace them before saving")
    return np.ascontiguousarray(image.astype(image.dtype.newbyteorder("="), copy=False))


def _check_mask(name: str, mask: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputError(f"labels[{name!r}] has shape {mask.shape} but the image has {shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "uif":
        raise InputError(f"labels[{name!r}] has type {mask.dtype}; pass a 0/1 or boolean mask")
    valid = (mask == 0) | (mask == 1)
    if not valid.all():
        bad = np.unique(mask[~valid])[:5]
        raise InputError(
            f"labels[{name!r}] has values {bad.tolist()}, but a class mask may only hold 0 "
            "(background) and 1 (foreground); pass instance ids through `instances` instead"
        )
    return mask == 1


def _check_instances(name: str, array: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(f"instances[{name!r}] has shape {array.shape} but the image has {shape}")
    if array.dtype.kind not in "ui" or (array.size and array.min() < 0):
        raise InputError(
            f"instances[{name!r}] must hold non-negative integer ids, got {array.dtype}"
        )
    return array


def _compact_ids(array: np.ndarray) -> np.ndarray:
    # uint16 holds the ids of any realistic 2-D plane; fall back to uint32 for the rest.
    dtype = np.uint16 if array.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    if array.max(initial=0) > np.iinfo(np.uint32).max:
        raise InputError("instance ids above 4294967295 cannot be stored")
    return np.ascontiguousarray(array.astype(dtype))


def _reviewed_regions(
    reviewed: ReviewedRegion, classes: list[str], shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    if isinstance(reviewed, Mapping):
        missing = [name for name in classes if name not in reviewed]
        if missing:
            raise InputError(f"no reviewed region given for {', '.join(missing)}")
        extra = [name for name in reviewed if name not in classes]
        if extra:
            names = ", ".join(map(str, extra))
            raise InputError(f"a reviewed region was given for {names} but no labels")
        return {name: _region(reviewed[name], shape, name) for name in classes}
    region = _region(reviewed, shape, None)
    return {name: region for name in classes}


def _region(region: Region, shape: tuple[int, ...], name: str | None) -> np.ndarray:
    what = "the reviewed region" if name is None else f"the reviewed region of {name!r}"
    if region is True:
        return np.ones(shape, dtype=bool)
    if region is None or region is False:
        raise InputError(f"{what} is missing: pass True (whole image), a mask, or boxes")
    if isinstance(region, np.ndarray):
        if region.shape != shape:
            raise InputError(f"{what} is a mask of shape {region.shape}, the image is {shape}")
        if region.dtype != bool and not np.isin(region, (0, 1)).all():
            raise InputError(f"{what} must be a boolean (or 0/1) mask")
        return region.astype(bool)
    mask = np.zeros(shape, dtype=bool)
    try:
        boxes = [tuple(int(v) for v in box) for box in region]
    except (TypeError, ValueError):
        raise InputError(
            f"{what} must be True, a numpy mask, or a list of (y0, x0, y1, x1) boxes"
        ) from None
    for box in boxes:
        if len(box) != 4:
            raise InputError(f"{what}: box {box} must be (y0, x0, y1, x1)")
        y0, x0, y1, x1 = box
        if not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
            raise InputError(f"{what}: box {box} is empty or outside the image of shape {shape}")
        mask[y0:y1, x0:x1] = True
    return mask
