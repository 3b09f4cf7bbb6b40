"""Contacts between two organelles (e.g. ER-mitochondria contact sites) within a distance.

A pixel of organelle A is *in contact* with B when the distance from its centre
to the centre of the nearest pixel of B is at most ``distance`` (physical
units, measured with an exact Euclidean distance transform that honours
anisotropic pixels). Distances are between pixel centres: pixels that touch
are one pixel size apart, so a gap of ``g`` empty pixels between A and B is a
distance of ``(g + 1)`` pixel sizes, and ``distance=0`` means overlap only.

The measures are asymmetric (A's side of the contact); swap the arguments for
B's side. :func:`measure_contacts` reports:

* contact area (volume in 3-D): how much of A lies within the distance of B;
* contact length (2-D only): the length of A's boundary (smoothed marching
  squares, like the perimeter) that borders contact pixels; each end of a
  contact adds at most one corner cut (about 0.7 pixel for square pixels);
* contact sites: connected components of the A-side contact region;
* the fraction of A's (and of B's) objects and area that are in contact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import InputError
from ._common import (
    Scale,
    as_labels,
    as_scale,
    boundary_polygons,
    check_same_shape,
    polygon_edge_lengths,
    size_name,
)

__all__ = ["ContactAnalysis", "distance_to", "measure_contacts"]


@dataclass(frozen=True)
class ContactAnalysis:
    """Result of :func:`measure_contacts` (``<size>`` is ``area`` in 2-D, ``volume`` in 3-D).

    Attributes:
        sites: label image of the contact sites (A pixels within the distance
            of B, one label per connected site); show it as a Labels layer.
        site_table: one row per site (index ``site``): ``<size>``,
            ``objects_a`` (how many A objects it touches) and ``centroid_*``.
        objects_a: one row per A object: ``label``, ``<size>``,
            ``contact_<size>``, ``contact_fraction``, ``contact_length`` (2-D)
            and ``in_contact``.
        objects_b: the same for B, with B's pixels within the distance of A.
        summary: ``distance``, ``n_sites``, ``contact_<size>`` (A side),
            ``contact_length`` (2-D), ``a_<size>``, ``a_contact_fraction``
            (of A's size), ``a_objects``, ``a_objects_in_contact``,
            ``a_object_fraction``, and the same ``b_*`` for B's side.
    """

    sites: NDArray[np.int32]
    site_table: pd.DataFrame
    objects_a: pd.DataFrame
    objects_b: pd.DataFrame
    summary: dict[str, float] = field(default_factory=dict)

    def summary_frame(self) -> pd.DataFrame:
        """:attr:`summary` as a one-row DataFrame."""
        return pd.DataFrame([self.summary])


def distance_to(mask: ArrayLike, scale: float | Scale | None = None) -> NDArray[np.float64]:
    """Distance from every pixel centre to the nearest foreground pixel centre of ``mask``.

    0 inside the mask, ``inf`` everywhere when the mask is empty.

    Examples:
        >>> import numpy as np
        >>> mask = np.zeros((1, 5), bool); mask[0, 0] = True
        >>> distance_to(mask, scale=(1.0, 2.0))
        array([[0., 2., 4., 6., 8.]])
    """
    foreground = np.asarray(mask) > 0
    spacing = as_scale(scale, foreground.ndim)
    if not foreground.any():
        return np.full(foreground.shape, np.inf)
    return ndimage.distance_transform_edt(~foreground, sampling=spacing)


def measure_contacts(
    labels_a: ArrayLike,
    labels_b: ArrayLike,
    distance: float,
    scale: float | Scale | None = None,
) -> ContactAnalysis:
    """Measure where organelle A comes within ``distance`` of organelle B.

    Args:
        labels_a: 2-D or 3-D label image or mask of organelle A.
        labels_b: label image or mask of organelle B, same shape.
        distance: contact distance between pixel centres, in the units of
            ``scale`` (see the module notes), >= 0.
        scale: pixel size per axis (or one number for all); None = pixels.

    Returns:
        A :class:`ContactAnalysis`.

    Raises:
        InputError: on mismatched shapes, non-label images, a wrong scale or a
            negative distance.

    Examples:
        Two 10 x 10 squares with a gap of 2 empty pixels of 5 nm: their facing
        pixels are 15 nm apart.

        >>> import numpy as np
        >>> a = np.zeros((20, 40), np.uint8); a[5:15, 5:15] = 1
        >>> b = np.zeros_like(a); b[5:15, 17:27] = 1
        >>> measure_contacts(a, b, distance=10.0, scale=5.0).summary["n_sites"]
        0
        >>> result = measure_contacts(a, b, distance=15.0, scale=5.0)
        >>> result.summary["n_sites"], result.summary["contact_area"]   # one column of 10 pixels
        (1, 250.0)
        >>> result.summary["a_object_fraction"], result.summary["b_contact_fraction"]
        (1.0, 0.1)
    """
    a = as_labels(labels_a, name="organelle A")
    b = as_labels(labels_b, name="organelle B")
    check_same_shape(a, b, "organelle A", "organelle B")
    if not (math.isfinite(distance) and distance >= 0):
        raise InputError(f"the contact distance must be a number >= 0, not {distance}")
    ndim = a.ndim
    spacing = as_scale(scale, ndim)
    size = size_name(ndim)
    pixel_size = math.prod(spacing)

    # A tiny tolerance so that a distance equal to a whole number of pixels
    # counts despite floating-point error in the distance transform.
    reach = distance * (1 + 1e-9) + 1e-12
    a_in_contact = (a > 0) & (distance_to(b, spacing) <= reach)
    b_in_contact = (b > 0) & (distance_to(a, spacing) <= reach)

    objects_a = _object_contacts(a, a_in_contact, pixel_size, size)
    objects_b = _object_contacts(b, b_in_contact, pixel_size, size)
    if ndim == 2:
        objects_a["contact_length"] = _contact_lengths(a, a_in_contact,
                                                       objects_a["label"].to_numpy(), spacing)

    from skimage.measure import label as label_components

    sites = label_components(a_in_contact, connectivity=ndim).astype(np.int32)
    site_table = _site_table(sites, a, spacing, size)

    summary: dict[str, float] = {"distance": float(distance), "n_sites": int(sites.max(initial=0))}
    summary[f"contact_{size}"] = float(objects_a[f"contact_{size}"].sum())
    if ndim == 2:
        summary["contact_length"] = float(objects_a["contact_length"].sum())
    for prefix, table in (("a", objects_a), ("b", objects_b)):
        total = float(table[size].sum())
        touching = int(table["in_contact"].sum())
        summary[f"{prefix}_{size}"] = total
        summary[f"{prefix}_contact_{size}"] = float(table[f"contact_{size}"].sum())
        summary[f"{prefix}_contact_fraction"] = (
            summary[f"{prefix}_contact_{size}"] / total if total else math.nan
        )
        summary[f"{prefix}_objects"] = len(table)
        summary[f"{prefix}_objects_in_contact"] = touching
        summary[f"{prefix}_object_fraction"] = touching / len(table) if len(table) else math.nan
    return ContactAnalysis(sites, site_table, objects_a, objects_b, summary)


def _object_contacts(
    labels: NDArray[np.integer], in_contact: NDArray[np.bool_], pixel_size: float, size: str
) -> pd.DataFrame:
    """Per object: size, size in contact, fraction, and whether it is in contact at all."""
    inside = labels > 0
    ids, index, pixels = np.unique(labels[inside], return_inverse=True, return_counts=True)
    contact_pixels = np.bincount(index, weights=in_contact[inside], minlength=len(ids))
    table = pd.DataFrame({"label": ids.astype(np.int64)})
    table[size] = pixels * pixel_size
    table[f"contact_{size}"] = contact_pixels * pixel_size
    table["contact_fraction"] = contact_pixels / pixels if len(ids) else np.zeros(0)
    table["in_contact"] = contact_pixels > 0
    return table


def _contact_lengths(
    labels: NDArray[np.integer],
    in_contact: NDArray[np.bool_],
    object_ids: NDArray[np.int64],
    scale: tuple[float, ...],
) -> NDArray[np.float64]:
    """Length of each 2-D object's boundary that runs along its contact pixels.

    Each vertex of the marching-squares boundary lies on the edge between an
    inside and an outside pixel; it is in contact when that inside pixel is.
    An edge of the boundary counts when both its vertices are in contact.
    """
    lengths = np.zeros(len(object_ids))
    slices = ndimage.find_objects(labels)
    for row, label in enumerate(object_ids):
        region = slices[label - 1]
        if region is None:
            continue
        mask = labels[region] == label
        contact = in_contact[region] & mask
        if not contact.any():
            continue
        for polygon in boundary_polygons(mask):
            inside_pixel = _inside_pixel_of_vertices(polygon, mask)
            vertex_in_contact = contact[tuple(inside_pixel.T)]
            edge_in_contact = vertex_in_contact & np.roll(vertex_in_contact, -1)
            lengths[row] += float(polygon_edge_lengths(polygon, scale)[edge_in_contact].sum())
    return lengths


def _inside_pixel_of_vertices(polygon: NDArray[np.float64],
                              mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """For each boundary vertex (on a pixel edge), the adjacent pixel that belongs to the mask."""
    low = np.floor(polygon).astype(np.int64)
    high = np.ceil(polygon).astype(np.int64)
    upper = np.asarray(mask.shape) - 1
    low_clipped = np.clip(low, 0, upper)
    high_clipped = np.clip(high, 0, upper)
    low_inside = (low == low_clipped).all(axis=1) & mask[tuple(low_clipped.T)]
    return np.where(low_inside[:, None], low_clipped, high_clipped)


def _site_table(
    sites: NDArray[np.int32], labels: NDArray[np.integer], scale: tuple[float, ...], size: str
) -> pd.DataFrame:
    n_sites = int(sites.max(initial=0))
    index = pd.Index(np.arange(1, n_sites + 1), name="site")
    table = pd.DataFrame(index=index)
    inside = sites > 0
    site_of_pixel = sites[inside]
    table[size] = np.bincount(site_of_pixel, minlength=n_sites + 1)[1:] * math.prod(scale)
    pairs = pd.DataFrame({"site": site_of_pixel, "label": labels[inside]}).drop_duplicates()
    table["objects_a"] = pairs.groupby("site").size().reindex(index, fill_value=0).to_numpy()
    coordinates = np.nonzero(inside)
    counts = np.bincount(site_of_pixel, minlength=n_sites + 1)[1:]
    for axis, coordinate in enumerate(coordinates):
        sums = np.bincount(site_of_pixel, weights=coordinate, minlength=n_sites + 1)[1:]
        table[f"centroid_{axis}"] = sums / np.maximum(counts, 1) * scale[axis]
    return table
