"""Turn class probabilities into what biologists count: objects or masks.

Instance classes (mitochondria, nuclei, lipid droplets, lysosomes) become
labelled objects. Objects that touch are split along their neck with a
distance-transform watershed, run per connected component inside its bounding
box, so memory and time follow object size, not image size (a 16384 x 16384
plane never needs a full-size float distance map). Semantic classes (ER, cell
boundaries) become 0/1 masks.

The same code labels 2-D planes and 3-D volumes (:mod:`napari_organelle.volume`
calls it on a Z stack's mask with ``sampling`` set to the voxel's shape, so the
distance map is measured in physical units on anisotropic stacks).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Split a component only where its neck is narrower than this fraction of its
#: widest point; elongated mitochondria have a flat distance ridge and stay whole.
NECK_RATIO = 0.5


def probabilities_to_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """0/1 uint8 mask from 8-bit (0..255) or float (0..1) probabilities.

    Examples:
        >>> probabilities_to_mask(np.array([[0, 200], [128, 127]], dtype=np.uint8))
        array([[0, 1],
               [1, 0]], dtype=uint8)
    """
    if probability.dtype == np.uint8:
        cut = int(np.ceil(threshold * 255 - 1e-9))
        return (probability >= cut).view(np.uint8)
    return (probability >= threshold).view(np.uint8)


def label_instances(
    mask: np.ndarray,
    min_size: int = 0,
    split_touching: bool = True,
    neck_ratio: float = NECK_RATIO,
    *,
    sampling: tuple[float, ...] | None = None,
    max_split_size: int | None = None,
    max_marker_size: int | None = None,
) -> np.ndarray:
    """Label connected objects of a 2-D (or 3-D) mask, split touching ones, drop tiny ones.

    Args:
        mask: 2-D (or 3-D) boolean or 0/1 array. Objects are face-connected
            (4-connected in 2-D, 6-connected in 3-D).
        min_size: objects with fewer pixels (voxels) are removed.
        split_touching: split objects joined by a narrow neck (watershed on
            the distance transform with h-maxima markers).
        neck_ratio: a neck narrower than this fraction of the object's
            largest inscribed radius separates two objects.
        sampling: the pixel's size along each axis, for the distance
            transform (e.g. ``(10, 1, 1)`` for sections ten times thicker
            than the pixel); None: 1 for every axis.
        max_split_size: components whose bounding box holds more pixels than
            this are left whole (their float distance map would be too large);
            None: no limit.
        max_marker_size: in a larger bounding box the watershed's markers are
            looked for on a coarser grid (every n-th pixel along each axis, so
            that at most this many are sorted); None: always at full resolution.

    Returns:
        Label image, uint16 when the object count allows, else uint32.

    Examples:
        Two discs that touch become two objects:

        >>> yy, xx = np.mgrid[:40, :70]
        >>> mask = (((yy - 20) ** 2 + (xx - 20) ** 2 < 15 ** 2)
        ...         | ((yy - 20) ** 2 + (xx - 48) ** 2 < 15 ** 2))
        >>> int(label_instances(mask).max())
        2
    """
    mask = np.asarray(mask, dtype=bool)
    labels, count = _label(mask)
    if count == 0:
        return labels
    if min_size > 1:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        too_small = sizes < min_size
        too_small[0] = False
        if too_small.any():
            labels[too_small[labels]] = 0
    if split_touching:
        labels = _split_touching(labels, min_size, neck_ratio, sampling, max_split_size,
                                 max_marker_size)
    return _relabel_compact(labels)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    # uint16 output halves memory on big planes; fall back when there are too many objects.
    try:
        labels = np.empty(mask.shape, dtype=np.uint16)
        count = ndi.label(mask, output=labels)
    except RuntimeError:
        labels = np.empty(mask.shape, dtype=np.uint32)
        count = ndi.label(mask, output=labels)
    return labels, int(count)


def _split_touching(labels: np.ndarray, min_size: int, neck_ratio: float,
                    sampling: tuple[float, ...] | None = None,
                    max_split_size: int | None = None,
                    max_marker_size: int | None = None) -> np.ndarray:
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    next_label = int(labels.max()) + 1
    smallest_split = max(2 * min_size, 32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # One pixel of margin so the distance transform sees the object's border.
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        if max_split_size is not None and np.prod([s.stop - s.start for s in box]) > \
                max_split_size:
            continue
        component = labels[box] == index
        if component.sum() < smallest_split:
            continue
        distance = ndi.distance_transform_edt(component, sampling=sampling)
        depth = max(1.5, (1.0 - neck_ratio) * float(distance.max()))
        if not _may_split(distance, depth, min(sampling) if sampling else 1.0):
            continue  # the costly h-maxima (a sort of the whole box) cannot find two peaks
        if max_marker_size is not None and distance.size > max_marker_size:
            markers, n_markers = _coarse_markers(distance, depth, component, max_marker_size)
        else:
            markers, n_markers = ndi.label(h_maxima(distance, depth))
        if n_markers >= 2:
            markers, n_markers = _merge_shallow_markers(distance, markers, n_markers, depth)
        if n_markers < 2:
            continue
        pieces = watershed(-distance, markers, mask=component)
        if min_size > 1:
            sizes = np.bincount(pieces.ravel())
            if (sizes[1:] < min_size).any():
                continue  # a split that leaves crumbs is not a real split
        if next_label + n_markers >= np.iinfo(labels.dtype).max:
            labels = labels.astype(np.uint32)
        region = labels[box]
        for piece in range(2, n_markers + 1):
            region[pieces == piece] = next_label
            next_label += 1
    return labels


def _may_split(distance: np.ndarray, depth: float, smallest: float) -> bool:
    """Whether h-maxima of ``depth`` can find two markers (a cheap, exact pre-check).

    A second marker is a peak at least ``depth`` above its saddle to a higher
    peak; the saddle is inside the object (distance >= ``smallest``), so the
    peak lies in another component of {distance > depth} and reaches
    ``depth + smallest``. (Two peaks tied at the top whose saddle is exactly
    ``depth`` lie in different components too.)
    """
    cores, count = ndi.label(distance > depth)
    if count < 2:
        return False
    high = 0
    for core, box in enumerate(ndi.find_objects(cores), start=1):  # no sort, unlike ndi.maximum
        if box is not None and distance[box][cores[box] == core].max() >= depth + smallest - 1e-9:
            high += 1
            if high == 2:
                return True
    return False


def _coarse_markers(distance: np.ndarray, depth: float, component: np.ndarray,
                    max_size: int) -> tuple[np.ndarray, int]:
    """h-maxima markers of a large distance map, found on every n-th pixel and scaled back.

    The distance values stay exact (physical units); only where the peaks are
    is found at the coarser grid, which can miss a neck thinner than the step
    (fewer splits, never more).
    """
    from skimage.morphology import h_maxima

    step = int(np.ceil((distance.size / max_size) ** (1.0 / distance.ndim)))
    coarse = distance[(slice(None, None, step),) * distance.ndim]
    markers, count = ndi.label(h_maxima(coarse, depth))
    if count >= 2:
        markers, count = _merge_shallow_markers(coarse, markers, count, depth)
    if count < 2:
        return markers, count
    for axis in range(distance.ndim):
        markers = np.repeat(markers, step, axis=axis)
    markers = markers[tuple(slice(0, n) for n in distance.shape)] * component
    present = np.flatnonzero(np.bincount(markers.ravel(), minlength=count + 1)[1:]) + 1
    lookup = np.zeros(count + 1, dtype=markers.dtype)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[markers], len(present)


def _merge_shallow_markers(distance: np.ndarray, markers: np.ndarray, count: int,
                           depth: float) -> tuple[np.ndarray, int]:
    """Merge h-maxima markers that are not separated by a saddle ``depth`` below the lower peak.

    ``h_maxima`` keeps every maximum whose reconstruction residue reaches
    ``depth``; peaks of *equal* height (common in a Euclidean distance map,
    whose values are square roots of integers) all pass, however shallow the
    saddle between them. A round mitochondrion whose distance map peaks at two
    pixels of the same value was therefore cut in half. Two markers stay
    apart only if, at ``min(peak_a, peak_b) - depth``, they lie in different
    components of the distance map above that level.
    """
    peaks = np.asarray(ndi.maximum(distance, markers, np.arange(1, count + 1)), dtype=float)
    parent = list(range(count + 1))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    positions = [tuple(int(c[0]) for c in np.nonzero(markers == marker)) for marker in
                 range(1, count + 1)]
    for level in sorted(set(peaks - depth)):
        cores, _ = ndi.label(distance > level)
        for first in range(count):
            for second in range(first + 1, count):
                if min(peaks[first], peaks[second]) - depth != level:
                    continue
                if cores[positions[first]] == cores[positions[second]]:
                    parent[root(second + 1)] = root(first + 1)
    roots = sorted({root(marker) for marker in range(1, count + 1)})
    if len(roots) == count:
        return markers, count
    lookup = np.zeros(count + 1, dtype=markers.dtype)
    for marker in range(1, count + 1):
        lookup[marker] = roots.index(root(marker)) + 1
    return lookup[markers], len(roots)


def _present_labels(labels: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """The nonzero ids in ``labels``, sorted; in chunks (no sorted copy of a volume)."""
    largest = int(labels.max(initial=0))
    seen = np.zeros(largest + 1, dtype=bool)
    flat = labels.reshape(-1)
    for start in range(0, flat.size, chunk):
        seen[flat[start:start + chunk]] = True
    seen[0] = False
    return np.flatnonzero(seen)


def _relabel_compact(labels: np.ndarray) -> np.ndarray:
    present = _present_labels(labels)
    if present.size == 0:
        return labels.astype(np.uint16, copy=False)
    dtype = np.uint16 if present.size < np.iinfo(np.uint16).max else np.uint32
    if present[-1] == present.size and labels.dtype == dtype:
        return labels
    lookup = np.zeros(int(present[-1]) + 1, dtype=dtype)
    lookup[present] = np.arange(1, present.size + 1, dtype=dtype)
    return lookup[labels]
