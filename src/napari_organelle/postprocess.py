"""Turn class probabilities into what biologists count: objects or masks.

Instance classes (mitochondria, nuclei, lipid droplets, lysosomes) become
labelled objects. Objects that touch are split along their neck with a
distance-transform watershed, run per connected component inside its bounding
box, so memory and time follow object size, not image size (a 16384 x 16384
plane never needs a full-size float distance map). Semantic classes (ER, cell
boundaries) become 0/1 masks.
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
) -> np.ndarray:
    """Label connected objects of a 2-D mask, split touching ones, drop tiny ones.

    Args:
        mask: 2-D boolean or 0/1 array.
        min_size: objects with fewer pixels are removed.
        split_touching: split objects joined by a narrow neck (watershed on
            the distance transform with h-maxima markers).
        neck_ratio: a neck narrower than this fraction of the object's
            largest inscribed radius separates two objects.

    Returns:
        Label image, uint16 when the object count allows, else uint32.

    Examples:
        Two discs that touch become two objects:

        >>> yy, xx = np.mgrid[:40, :70]
        >>> mask = ((yy - 20) ** 2 + (xx - 20) ** 2 < 15 ** 2) | ((yy - 20) ** 2 + (xx - 48) ** 2 < 15 ** 2)
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
        labels = _split_touching(labels, min_size, neck_ratio)
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


def _split_touching(labels: np.ndarray, min_size: int, neck_ratio: float) -> np.ndarray:
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    next_label = int(labels.max()) + 1
    smallest_split = max(2 * min_size, 32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # One pixel of margin so the distance transform sees the object's border.
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        component = labels[box] == index
        if component.sum() < smallest_split:
            continue
        distance = ndi.distance_transform_edt(component)
        depth = max(1.5, (1.0 - neck_ratio) * float(distance.max()))
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


def _relabel_compact(labels: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    present = present[present != 0]
    if present.size == 0:
        return labels.astype(np.uint16, copy=False)
    dtype = np.uint16 if present.size < np.iinfo(np.uint16).max else np.uint32
    if present[-1] == present.size and labels.dtype == dtype:
        return labels
    lookup = np.zeros(int(present[-1]) + 1, dtype=dtype)
    lookup[present] = np.arange(1, present.size + 1, dtype=dtype)
    return lookup[labels]
