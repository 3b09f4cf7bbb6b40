"""Merge per-class masks (which may overlap) into one label map with an ignore label.

nnU-Net (and other softmax trainers) need exactly one label per pixel. The
store keeps one mask per class, with 0/1/ignore, and some classes overlap
(mitochondrial boundaries lie inside mitochondria). :func:`compose_label_map`
resolves overlaps with an explicit precedence and never turns "not reviewed"
into background, nor into a class that an unreviewed class would have beaten.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .layout import IGNORE_VALUE

#: pairs of class names that may share pixels
ClassPairs = Collection[frozenset[str]]


def compose_label_map(
    masks: Mapping[str, np.ndarray],
    label_values: Mapping[str, int],
    precedence: Sequence[str],
    ignore_label: int,
    shape: tuple[int, int] | None = None,
    overlapping: ClassPairs | None = None,
) -> np.ndarray:
    """Give every pixel one label: a class, background (0), or ignore.

    Rules, per pixel:

    1. It gets the first class in ``precedence`` whose mask is 1 there.
    2. It gets ``ignore_label`` instead if a class *earlier* in ``precedence``
       is unknown there (mask ``IGNORE_VALUE``, or no mask in this sample) and
       may overlap the winner: that class might be present and would win.
    3. A pixel no class marks 1 is background only if every class is known
       (0) there; otherwise it is ignore.

    Args:
        masks: per class, uint8 with 0, 1 and ``IGNORE_VALUE`` (store encoding).
            Classes of ``precedence`` missing here are unknown everywhere.
        label_values: the integer label of each class in ``precedence``.
        precedence: class names, highest priority first.
        ignore_label: label for pixels that must not be trained on.
        shape: needed only if ``masks`` is empty.
        overlapping: the pairs of classes that can share pixels; None means
            any two may (safest: rule 2 then applies to every pair).

    Returns:
        uint8 label map (uint16 if ``ignore_label`` > 255).

    Examples:
        >>> outer = np.array([[1, 1, 0, 255]], np.uint8)
        >>> inner = np.array([[1, 0, 0, 0]], np.uint8)
        >>> compose_label_map({"outer": outer, "inner": inner}, {"outer": 1, "inner": 2},
        ...                   ["inner", "outer"], ignore_label=3)
        array([[2, 1, 0, 3]], dtype=uint8)
    """
    if shape is None:
        if not masks:
            raise InputError("compose_label_map needs masks or a shape")
        shape = next(iter(masks.values())).shape
    shape = tuple(shape)
    for name, mask in masks.items():
        if mask.shape != shape:
            raise InputError(f"mask of {name!r} has shape {mask.shape}, expected {shape}")
    unknown = {
        name: masks[name] == IGNORE_VALUE if name in masks else np.ones(shape, bool)
        for name in precedence
    }
    dtype = np.uint8 if ignore_label <= np.iinfo(np.uint8).max else np.uint16
    label_map = np.zeros(shape, dtype=dtype)
    claimed = np.zeros(shape, dtype=bool)
    for rank, name in enumerate(precedence):
        if name not in masks:
            continue
        wins = (masks[name] == 1) & ~claimed
        label_map[wins] = label_values[name]
        for higher in precedence[:rank]:
            if overlapping is None or frozenset((higher, name)) in overlapping:
                label_map[wins & unknown[higher]] = ignore_label
        claimed |= wins
    if precedence:
        any_unknown = np.logical_or.reduce([unknown[name] for name in precedence])
        label_map[~claimed & any_unknown] = ignore_label
    return label_map


def observed_overlaps(overlaps: Iterable[Mapping[str, object]]) -> set[frozenset[str]]:
    """The class pairs that some sample shows overlapping (``SampleRecord.overlaps``)."""
    return {
        frozenset(o["classes"])  # type: ignore[arg-type]
        for o in overlaps
        if int(o["pixels"]) > 0  # type: ignore[call-overload]
    }


def smallest_first(pixel_counts: Mapping[str, int]) -> list[str]:
    """Order classes by foreground pixel count, smallest first (ties: by name).

    The default precedence for overlapping classes: a structure nested in or
    drawn on top of another (boundaries inside mitochondria, synapses on
    membranes) is the smaller one, and giving the larger class the overlap
    would erase it from the label map entirely.
    """
    return sorted(pixel_counts, key=lambda name: (pixel_counts[name], name))
