"""Reviewed regions for the Correct dock: which pixels of a plane the annotator checked.

Qt-free, so they work on a :class:`napari.components.ViewerModel` as on a
viewer with a window: the pixels the canvas shows (:func:`visible_region`),
the pixels covered by areas drawn in a Shapes layer (:func:`shapes_region`),
plane lists typed by the annotator (:func:`parse_plane_list`), and the
polygon and bounding-box helpers under them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer, Shapes

__all__ = [
    "ELLIPSE_VERTICES",
    "bounding_box",
    "crop_slices",
    "ellipse_polygon",
    "parse_plane_list",
    "polygon_mask",
    "shapes_region",
    "visible_region",
]

#: Vertices used to draw an ellipse of a Shapes layer as a polygon.
ELLIPSE_VERTICES = 64


def parse_plane_list(text: str, count: int) -> list[int]:
    """Plane indices from text such as ``"0-4, 7"`` (ranges include both ends).

    Args:
        text: comma- or space-separated indices and ``a-b`` ranges.
        count: planes along the axis; indices must be below it.

    Raises:
        InputError: the text is empty, malformed, or names a plane out of range.
    """
    planes: list[int] = []
    for part in filter(None, re.split(r"[,\s]+", text.strip())):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError(f"'{part}' is not a plane number or range: write e.g. '0-4, 7'")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first:
            raise InputError(f"the range '{part}' runs backwards: write it as {last}-{first}")
        if last >= count:
            raise InputError(f"plane {last} does not exist: the planes are numbered 0 to "
                             f"{count - 1}")
        planes.extend(index for index in range(first, last + 1) if index not in planes)
    if not planes:
        raise InputError("list the reviewed planes, e.g. '0-4, 7'")
    return planes


def visible_region(viewer: napari.viewer.Viewer, layer: Layer,
                   plane_shape: tuple[int, int]) -> np.ndarray:
    """The pixels of ``layer``'s planes that the canvas shows now.

    Computed from the camera (centre and zoom) and the canvas size, then
    taken into the layer's data coordinates, so a scaled, translated or
    rotated layer is handled. A pixel counts as visible when its centre is.

    Args:
        viewer: the viewer.
        layer: the image layer.
        plane_shape: ``(height, width)`` of the layer's planes.

    Returns:
        A boolean mask of ``plane_shape``; all False when nothing is visible.

    Raises:
        InputError: the view is 3-D, in grid mode, or shows other axes than
            the layer's last two (Y and X).
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise InputError("'current view' needs the 2-D view: switch off 3-D (the cube button "
                         "under the layer list) or choose another reviewed region")
    if viewer.canvas.grid.enabled:
        raise InputError("'current view' cannot be used in grid mode: switch grid mode off")
    world_ndim = dims.ndim
    spatial_axes = {world_ndim - 2, world_ndim - 1}  # the layer's Y and X, right-aligned
    displayed = tuple(dims.displayed)
    if set(displayed) != spatial_axes:
        raise InputError(f"the view shows other axes than the Y and X of '{layer.name}': "
                         "show them with the dimension order, or choose another reviewed "
                         "region")
    height, width = viewer.canvas.size
    zoom = viewer.scene.camera.zoom
    center = viewer.scene.camera.center[-2:]  # in the order of the displayed axes
    half = (height / 2 / zoom, width / 2 / zoom)
    point = np.asarray(dims.point, dtype=float)
    corners = []
    for sign_0, sign_1 in ((-1, -1), (-1, 1), (1, 1), (1, -1)):  # around the rectangle
        corner = point.copy()
        corner[displayed[0]] = center[0] + sign_0 * half[0]
        corner[displayed[1]] = center[1] + sign_1 * half[1]
        corners.append(np.asarray(layer.world_to_data(corner))[-2:])
    return polygon_mask(np.array(corners), plane_shape)


def shapes_region(shapes: Shapes, image: Layer, plane: tuple[int, ...],
                  plane_shape: tuple[int, int]) -> np.ndarray:
    """The pixels of one plane of ``image`` covered by the areas drawn in ``shapes``.

    Rectangles, polygons and ellipses count, wherever the Shapes layer is
    placed in the world: their vertices are taken into the image's data
    coordinates. A shape drawn on a plane of a stack counts for that plane
    only; shapes of a 2-D Shapes layer count for every plane. A pixel is
    covered when its centre lies inside a shape or on its edge.

    Raises:
        InputError: a shape is a line or path (it encloses nothing), or it
            spans several planes.
    """
    mask = np.zeros(plane_shape, dtype=bool)
    # Non-spatial axes the Shapes layer has in common with the image (right-aligned,
    # as napari aligns layers): along those, each shape lies in one plane.
    shared = min(shapes.ndim, len(plane) + 2) - 2
    for number, (vertices, kind) in enumerate(zip(shapes.data, shapes.shape_type), start=1):
        if kind not in ("rectangle", "polygon", "ellipse"):
            raise InputError(f"shape {number} of '{shapes.name}' is a {kind}, which encloses "
                             "no area: mark reviewed areas with rectangles, polygons or "
                             "ellipses")
        in_image = np.array([np.asarray(image.world_to_data(shapes.data_to_world(vertex)))
                             for vertex in vertices])
        if shared > 0:
            shape_planes = np.round(in_image[:, -2 - shared:-2]).astype(int)
            if (shape_planes != shape_planes[0]).any():
                raise InputError(f"shape {number} of '{shapes.name}' is not drawn in one plane; "
                                 "draw reviewed areas in the 2-D view")
            if tuple(shape_planes[0]) != tuple(plane[-shared:]):
                continue
        corners = in_image[:, -2:]
        if kind == "ellipse":
            corners = ellipse_polygon(corners)
        mask |= polygon_mask(corners, plane_shape)
    return mask


def ellipse_polygon(corners: np.ndarray) -> np.ndarray:
    """The ellipse inscribed in a parallelogram (napari's four corners) as a polygon."""
    center = corners.mean(axis=0)
    first_half_axis = (corners[1] - corners[0]) / 2
    second_half_axis = (corners[3] - corners[0]) / 2
    angles = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return center + np.cos(angles) * first_half_axis + np.sin(angles) * second_half_axis


def polygon_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (or on its edge), in ``(row, col)`` vertices."""
    from skimage.draw import polygon2mask

    return polygon2mask(shape, vertices)


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, x0, y1, x1)`` (half-open) around the True pixels, or None if there are none.

    Examples:
        >>> region = np.zeros((5, 6), bool)
        >>> region[1:3, 2] = region[2, 4] = True
        >>> bounding_box(region), bounding_box(np.zeros((2, 2), bool))
        ((1, 2, 3, 5), None)
    """
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def crop_slices(box: tuple[int, int, int, int] | None,
                plane_shape: tuple[int, int]) -> tuple[slice, slice]:
    """The ``(rows, columns)`` slices of ``box``; the whole plane when ``box`` is None."""
    if box is None:
        return (slice(0, plane_shape[0]), slice(0, plane_shape[1]))
    y0, x0, y1, x1 = box
    return (slice(y0, y1), slice(x0, x1))
