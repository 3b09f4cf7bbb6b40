"""Input checks and small geometry helpers shared by the analysis modules."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..metrics import _as_label_array, to_instance_labels

#: a per-axis pixel size (same order as the array axes), e.g. a napari layer's ``scale``
Scale = Sequence[float]


def as_labels(image: ArrayLike, name: str = "labels") -> NDArray[np.integer]:
    """A 2-D/3-D instance label image; masks (bool or 0/1) get their connected components
    labelled."""
    return to_instance_labels(image, name=name)


def as_mask(image: ArrayLike, name: str = "mask") -> NDArray[np.bool_]:
    """A 2-D/3-D foreground mask (any nonzero value), with the same checks as :func:`as_labels`."""
    array = _as_label_array(image, name)
    if array.ndim not in (2, 3):
        raise InputError(f"{name} must be a 2-D or 3-D image, not {array.ndim}-D {array.shape}")
    return array > 0


def as_scale(scale: float | Scale | None, ndim: int) -> tuple[float, ...]:
    """Per-axis pixel size as a tuple of ``ndim`` positive floats (None means 1 per axis).

    A single number applies to every axis. A longer scale (e.g. a napari layer
    with a channel or time axis in front) is refused rather than guessed at.
    """
    if scale is None:
        return (1.0,) * ndim
    if np.isscalar(scale):
        values = (float(scale),) * ndim  # type: ignore[arg-type]
    else:
        values = tuple(float(value) for value in scale)  # type: ignore[union-attr]
        if len(values) != ndim:
            raise InputError(
                f"the scale has {len(values)} value(s) {values} but the image is {ndim}-D; "
                "give one pixel size per axis"
            )
    if not all(math.isfinite(value) and value > 0 for value in values):
        raise InputError(f"pixel sizes must be positive numbers, not {values}")
    return values


def check_same_shape(first: NDArray, second: NDArray, first_name: str, second_name: str) -> None:
    if first.shape != second.shape:
        raise InputError(
            f"{first_name} and {second_name} differ in shape: {first.shape} vs {second.shape}"
        )


def size_name(ndim: int) -> str:
    """'area' for 2-D images, 'volume' for 3-D ones: the column name of an object's size."""
    return "area" if ndim == 2 else "volume"


def boundary_polygons(mask: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """Closed boundaries of a 2-D mask (outer and hole boundaries) as vertex arrays.

    The boundary is the marching-squares iso-line at 0.5, which runs between
    the centres of inside and outside pixels; each polygon is an ``(n, 2)``
    array of (row, column) pixel coordinates, the closing vertex not repeated.
    """
    from skimage.measure import find_contours

    padded = np.pad(mask, 1).astype(np.float32)  # closes boundaries that touch the image edge
    return [contour[:-1] - 1.0 for contour in find_contours(padded, 0.5) if len(contour) > 2]


def polygon_edge_lengths(vertices: NDArray[np.float64],
                         scale: Sequence[float]) -> NDArray[np.float64]:
    """Physical length of each edge ``vertices[i] -> vertices[i + 1]`` of a closed digital boundary.

    The marching-squares polygon of a digital shape zigzags along the pixel
    staircase, which makes curved boundaries about 5 % too long. One pass of a
    [1/4, 1/2, 1/4] filter over the vertices (in physical units, so anisotropic
    pixels are handled) removes the zigzag: digital discs and ellipses then
    measure within about 2 % of the true perimeter. Straight edges keep their
    length; sharp corners are rounded (a 20 x 20 pixel square measures about
    3 % short of 4 x 20).
    """
    points = vertices * np.asarray(scale, dtype=float)
    smoothed = 0.25 * np.roll(points, 1, axis=0) + 0.5 * points + 0.25 * np.roll(points, -1, axis=0)
    steps = np.roll(smoothed, -1, axis=0) - smoothed
    return np.sqrt(np.sum(steps**2, axis=1))


def contour_length(mask: NDArray[np.bool_], scale: Sequence[float]) -> float:
    """Boundary length of a 2-D mask in physical units, holes included (see
    :func:`polygon_edge_lengths`)."""
    return float(sum(polygon_edge_lengths(polygon, scale).sum()
                     for polygon in boundary_polygons(mask)))
