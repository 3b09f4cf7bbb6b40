"""Cells for per-cell summaries, from a layer of cells, nuclei or cell boundaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ._common import as_labels, as_scale

__all__ = ["CELL_KINDS", "CellKind", "cell_regions"]

#: what the pixels of a cells image are: cells as labels, nuclei to grow into
#: cell territories, or a mask of cell boundaries (membranes) enclosing cells
CellKind = Literal["labels", "nuclei", "boundaries"]

#: the values of :data:`CellKind`
CELL_KINDS: tuple[CellKind, ...] = ("labels", "nuclei", "boundaries")


def cell_regions(
    image: ArrayLike,
    kind: CellKind = "labels",
    scale: float | Sequence[float] | None = None,
    grow_by: float = 0.0,
) -> NDArray[np.integer]:
    """A cell label image from an image of cells, nuclei or cell boundaries.

    Args:
        image: the cells image (labels or a mask).
        kind: ``"labels"``: each cell is a label already (a mask's connected
            components are the cells); ``"nuclei"``: nuclei (labels or a mask)
            grown by ``grow_by`` into cell territories, each stopping where it
            meets its neighbour's; ``"boundaries"``: a mask of cell boundaries
            (membranes), whose enclosed regions are the cells. Regions touching
            the image edge in Y or X (the outside of the cells, and cells cut
            by the edge, which are incomplete) are left out.
        scale: pixel size per axis (or one number), in the unit of
            ``grow_by``; None = pixels.
        grow_by: how far nuclei grow, in the unit of ``scale``.

    Returns:
        Cell labels (0: no cell), the shape of ``image``.

    Raises:
        InputError: for an image that is not 2-D/3-D labels, an unknown
            ``kind`` or a negative ``grow_by``.

    Examples:
        >>> import numpy as np
        >>> nuclei = np.zeros((1, 9), np.uint8); nuclei[0, 4] = 1
        >>> cell_regions(nuclei, "nuclei", scale=(0.5, 0.5), grow_by=1.0)
        array([[0, 0, 1, 1, 1, 1, 1, 0, 0]], dtype=int32)
        >>> walls = np.zeros((5, 9), np.uint8); walls[[1, 3], 1:8] = 1; walls[1:4, [1, 4, 7]] = 1
        >>> cell_regions(walls, "boundaries")[2]    # two cells between the walls
        array([0, 0, 1, 1, 0, 2, 2, 0, 0], dtype=int32)
    """
    if kind not in CELL_KINDS:
        raise InputError(f"the cells must be cell labels, nuclei or boundaries, not {kind!r}")
    labels = as_labels(image, name="the cells")
    if kind == "labels":
        return labels
    if kind == "nuclei":
        from skimage.segmentation import expand_labels

        if not grow_by >= 0:
            raise InputError(f"nuclei grow by a distance >= 0, not {grow_by}")
        if grow_by > 0:
            labels = expand_labels(labels, distance=grow_by, spacing=as_scale(scale, labels.ndim))
        return labels.astype(np.int32)
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential

    regions = label(labels == 0, connectivity=1)
    edges = np.concatenate([regions[..., 0, :].ravel(), regions[..., -1, :].ravel(),
                            regions[..., :, 0].ravel(), regions[..., :, -1].ravel()])
    regions[np.isin(regions, edges)] = 0
    return relabel_sequential(regions)[0].astype(np.int32)
