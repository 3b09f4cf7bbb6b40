"""Rasterisation of continuous geometry (tubes, balls, shells) onto a grid.

Two outputs are made from the same geometry: *labels* (which pixel belongs to
which object, judged at the pixel centre) and *emission density* (how much dye
lies under each pixel: the object's thickness along the optical axis, so a
tube is brightest along its axis and a membrane-labelled sphere is a ring).
Density is normally rendered on a finer grid than the image and binned by the
camera model later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from .grid import Grid

#: how a dye fills an object: "lumen" fills its volume, "membrane" only its surface
Profile = Literal["lumen", "membrane"]

#: thickness of a labelled membrane (bilayer plus protein coat), nm
MEMBRANE_THICKNESS_NM = 30.0


@dataclass(frozen=True)
class DenseCurves:
    """Centre lines resampled at a fixed spacing, all paths concatenated.

    Attributes:
        points_nm: (M, 2) sample positions.
        path_index: (M,) which input path each sample belongs to.
        arc_nm: (M,) distance along its path from the path start.
        has_next: (M,) whether the next sample belongs to the same path.
    """

    points_nm: np.ndarray
    path_index: np.ndarray
    arc_nm: np.ndarray
    has_next: np.ndarray

    def __len__(self) -> int:
        return len(self.points_nm)


def densify(paths: Sequence[np.ndarray], spacing_nm: float) -> DenseCurves:
    """Resample polylines so consecutive samples are at most ``spacing_nm`` apart.

    Vectorised over all paths: their arc lengths are laid end to end on one
    axis, separated by gaps, and interpolated in a single call.
    """
    if not paths:
        empty = np.zeros(0)
        return DenseCurves(np.zeros((0, 2)), empty.astype(np.intp), empty, empty.astype(bool))
    counts = np.fromiter((len(p) for p in paths), dtype=np.intp, count=len(paths))
    points = np.concatenate(paths).astype(float)
    steps = np.hypot(*np.diff(points, axis=0).T)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    steps[starts[1:] - 1] = 0.0  # no step between one path's end and the next path's start
    along = np.concatenate(([0.0], np.cumsum(steps)))
    lengths = along[starts + counts - 1] - along[starts]
    n_samples = np.maximum(np.ceil(lengths / spacing_nm).astype(np.intp), 1) + 1
    path_index = np.repeat(np.arange(len(paths)), n_samples)
    first = np.concatenate(([0], np.cumsum(n_samples)[:-1]))
    fraction = (np.arange(path_index.size) - first[path_index]) / (n_samples[path_index] - 1)
    arc = fraction * lengths[path_index]
    # a strictly increasing global axis: path p occupies [offset_p, offset_p + length_p]
    gap = 1.0 + spacing_nm
    offsets = along[starts] + gap * np.arange(len(paths))
    global_along = along + gap * np.repeat(np.arange(len(paths)), counts)
    query = offsets[path_index] + arc
    sampled = np.stack(
        [
            np.interp(query, global_along, points[:, 0]),
            np.interp(query, global_along, points[:, 1]),
        ],
        axis=1,
    )
    has_next = np.ones(path_index.size, dtype=bool)
    has_next[first + n_samples - 1] = False
    return DenseCurves(sampled, path_index, arc, has_next)


@dataclass(frozen=True)
class TubeField:
    """Distance from every pixel to the nearest centre line, and what that nearest line is.

    Attributes:
        grid: the grid the arrays live on.
        distance_nm: distance from the pixel centre to the nearest centre line
            (``inf`` where there is none within reach).
        radius_nm: tube radius at that nearest point.
        owner: path index of that nearest point (-1 where none).
    """

    grid: Grid
    distance_nm: np.ndarray
    radius_nm: np.ndarray
    owner: np.ndarray

    def mask(self, min_radius_nm: float = 0.0) -> np.ndarray:
        """Pixels whose centre lies inside a tube (tubes thinner than ``min_radius_nm`` are
        widened)."""
        return self.distance_nm <= np.maximum(self.radius_nm, min_radius_nm)

    def density(self, profile: Profile = "lumen") -> np.ndarray:
        """Projected dye thickness (nm) per pixel.

        Tubes thinner than a pixel are drawn at sub-pixel-safe width with the
        density lowered so that dye per unit length (the cross-section) is
        conserved; the PSF then makes the two indistinguishable.
        """
        radius = self.radius_nm
        drawn = np.maximum(radius, 0.75 * self.grid.pixel_size_nm)
        with np.errstate(invalid="ignore"):
            if profile == "lumen":
                chord = 2.0 * np.sqrt(np.clip(drawn**2 - self.distance_nm**2, 0.0, None))
                thickness = chord * (radius / drawn) ** 2
            else:
                inner = np.maximum(drawn - MEMBRANE_THICKNESS_NM, 0.0)
                outer_chord = 2.0 * np.sqrt(np.clip(drawn**2 - self.distance_nm**2, 0.0, None))
                inner_chord = 2.0 * np.sqrt(np.clip(inner**2 - self.distance_nm**2, 0.0, None))
                shell_area = drawn**2 - inner**2
                true_area = radius**2 - np.maximum(radius - MEMBRANE_THICKNESS_NM, 0.0) ** 2
                thickness = (outer_chord - inner_chord) * np.where(
                    shell_area > 0, true_area / shell_area, 0.0
                )
        return np.nan_to_num(thickness, nan=0.0, posinf=0.0).astype(np.float32)


def splat_lines(grid: Grid, curves: DenseCurves, radius_nm: np.ndarray | float) -> np.ndarray:
    """Projected dye of tubes much thinner than the PSF, deposited along their centre lines.

    Each sample adds the dye volume of its stretch of tube (cross-section
    times spacing) to the four pixels around it with bilinear weights. For
    tubes narrower than the PSF this is indistinguishable after blurring from
    drawing their profile, and needs no distance transform.

    Returns:
        float32 projected thickness (nm) on ``grid``.
    """
    if len(curves) < 2:
        return np.zeros(grid.shape, dtype=np.float32)
    density = np.zeros(grid.shape[0] * grid.shape[1])
    radius = np.broadcast_to(np.asarray(radius_nm, dtype=float), (len(curves),))
    # each sample stands for half of the step before it and half of the step after it
    steps = np.hypot(*np.diff(curves.points_nm, axis=0).T) * curves.has_next[:-1]
    share = np.zeros(len(curves))
    share[:-1] += steps / 2.0
    share[1:] += steps / 2.0
    volume = np.pi * radius**2 * share
    position = grid.to_pixels(curves.points_nm)
    base = np.floor(position).astype(np.intp)
    frac = position - base
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        weight = (frac[:, 0] if dy else 1.0 - frac[:, 0]) * (frac[:, 1] if dx else 1.0 - frac[:, 1])
        rows, cols = base[:, 0] + dy, base[:, 1] + dx
        ok = (rows >= 0) & (rows < grid.shape[0]) & (cols >= 0) & (cols < grid.shape[1])
        flat = rows[ok] * grid.shape[1] + cols[ok]
        density += np.bincount(flat, weights=(volume * weight)[ok], minlength=density.size)
    return (density.reshape(grid.shape) / grid.pixel_size_nm**2).astype(np.float32)


def tube_field(
    grid: Grid, curves: DenseCurves, radius_nm: np.ndarray | float, reach_nm: float
) -> TubeField:
    """Distance map to the centre lines in ``curves`` on ``grid``.

    Samples are dropped into their pixels, a Euclidean distance transform finds
    the nearest sample for every pixel, and the distance is then measured
    exactly to the two polyline segments next to that sample.

    Args:
        grid: target grid; samples must be spaced at most about half its pixel.
        curves: the centre lines.
        radius_nm: tube radius per sample, or one radius for all.
        reach_nm: distances beyond this are not refined and read as ``inf``.
    """
    radius = np.broadcast_to(np.asarray(radius_nm, dtype=float), (len(curves),))
    shape = grid.shape
    distance = np.full(shape, np.inf, dtype=np.float32)
    radius_map = np.zeros(shape, dtype=np.float32)
    owner = np.full(shape, -1, dtype=np.int32)
    on_grid = grid.contains(curves.points_nm) if len(curves) else np.zeros(0, dtype=bool)
    if not on_grid.any():
        return TubeField(grid, distance, radius_map, owner)
    sample_ids = np.flatnonzero(on_grid)
    index = grid.to_index(curves.points_nm[sample_ids])
    seed_of_pixel = np.full(shape, -1, dtype=np.intp)
    seed_of_pixel[index[:, 0], index[:, 1]] = sample_ids
    edt, nearest_pixel = ndi.distance_transform_edt(seed_of_pixel < 0, return_indices=True)
    near = edt <= reach_nm / grid.pixel_size_nm + 1.5
    rows, cols = np.nonzero(near)
    nearest = seed_of_pixel[nearest_pixel[0][rows, cols], nearest_pixel[1][rows, cols]]
    y_axis, x_axis = grid.axes_nm()
    query = np.stack([y_axis[rows], x_axis[cols]], axis=1)
    points = curves.points_nm
    best = np.hypot(*(query - points[nearest]).T)
    previous_ok = nearest > 0
    previous_ok[previous_ok] = curves.has_next[nearest[previous_ok] - 1]
    for neighbour_ok, other in (
        (curves.has_next[nearest], np.minimum(nearest + 1, len(points) - 1)),
        (previous_ok, np.maximum(nearest - 1, 0)),
    ):
        seg = _point_segment_distance(query, points[nearest], points[other])
        best = np.where(neighbour_ok, np.minimum(best, seg), best)
    best = np.where(best <= reach_nm, best, np.inf)
    distance[rows, cols] = best
    radius_map[rows, cols] = radius[nearest]
    owner[rows, cols] = np.where(np.isfinite(best), curves.path_index[nearest], -1)
    return TubeField(grid, distance, radius_map, owner)


def _point_segment_distance(query: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    t = np.einsum("ij,ij->i", query - a, ab) / np.where(length2 > 0, length2, 1.0)
    closest = a + np.clip(t, 0.0, 1.0)[:, None] * ab
    return np.hypot(*(query - closest).T)


def paint_balls(
    grid: Grid,
    centers_nm: np.ndarray,
    radii_nm: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    density: np.ndarray | None = None,
    density_grid: Grid | None = None,
    brightness: np.ndarray | None = None,
    profile: Profile = "lumen",
) -> None:
    """Draw spheres: their discs into ``labels`` and their projected dye into ``density``, in place.

    Args:
        grid: grid of ``labels``.
        centers_nm: (n, 2) sphere centres.
        radii_nm: (n,) radii.
        labels: integer image to write ``ids`` into where the pixel centre is inside.
        ids: label value per sphere (default 1..n).
        density: float image (on ``density_grid``) to add projected thickness to.
        density_grid: grid of ``density`` (default ``grid``).
        brightness: per-sphere multiplier of the density.
        profile: filled ("lumen") or surface-labelled ("membrane") spheres.
    """
    centers = np.asarray(centers_nm, dtype=float).reshape(-1, 2)
    radii = np.asarray(radii_nm, dtype=float).reshape(-1)
    ids = np.arange(1, len(centers) + 1) if ids is None else np.asarray(ids)
    brightness = (
        np.ones(len(centers)) if brightness is None else np.asarray(brightness, dtype=float)
    )
    if labels is not None:
        for center, radius, value in zip(centers, radii, ids):
            window, dist = _window_distances(grid, center, radius)
            if window is not None:
                labels[window][dist <= radius] = value
    if density is not None:
        dgrid = density_grid or grid
        for center, radius, gain in zip(centers, radii, brightness):
            window, dist = _window_distances(dgrid, center, radius + dgrid.pixel_size_nm)
            if window is None:
                continue
            stamp = _projected_sphere(dist, max(radius, 0.75 * dgrid.pixel_size_nm), profile)
            # keep the dye content of tiny spheres exact despite coarse sampling
            if profile == "lumen":
                content = 4.0 / 3.0 * np.pi * radius**3
            else:
                content = (
                    4.0 / 3.0 * np.pi * (radius**3 - max(radius - MEMBRANE_THICKNESS_NM, 0.0) ** 3)
                )
            total = stamp.sum() * dgrid.pixel_size_nm**2
            if total > 0:
                density[window] += (gain * content / total) * stamp


def _projected_sphere(dist: np.ndarray, radius: float, profile: Profile) -> np.ndarray:
    outer = 2.0 * np.sqrt(np.clip(radius**2 - dist**2, 0.0, None))
    if profile == "lumen":
        return outer.astype(np.float32)
    inner_radius = max(radius - MEMBRANE_THICKNESS_NM, 0.0)
    inner = 2.0 * np.sqrt(np.clip(inner_radius**2 - dist**2, 0.0, None))
    return (outer - inner).astype(np.float32)


def _window_distances(
    grid: Grid, center: np.ndarray, reach_nm: float
) -> tuple[tuple[slice, slice] | None, np.ndarray]:
    """The pixel window around ``center`` within ``reach_nm`` and its pixel-centre distances."""
    low = grid.to_pixels(center - reach_nm)
    high = grid.to_pixels(center + reach_nm)
    r0, c0 = int(max(np.floor(low[0]), 0)), int(max(np.floor(low[1]), 0))
    r1 = int(min(np.ceil(high[0]) + 1, grid.shape[0]))
    c1 = int(min(np.ceil(high[1]) + 1, grid.shape[1]))
    if r0 >= r1 or c0 >= c1:
        return None, np.zeros((0, 0))
    y = grid.origin_nm[0] + (np.arange(r0, r1) + 0.5) * grid.pixel_size_nm - center[0]
    x = grid.origin_nm[1] + (np.arange(c0, c1) + 0.5) * grid.pixel_size_nm - center[1]
    return (slice(r0, r1), slice(c0, c1)), np.hypot(y[:, None], x[None, :])
