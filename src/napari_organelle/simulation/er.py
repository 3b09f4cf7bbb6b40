"""Endoplasmic reticulum: a planar network of tubules with three-way junctions, plus sheets.

The tubular ER is modelled as the edges of a Voronoi diagram of random seeds:
Voronoi vertices have degree three and the polygons resemble the ER's
polygonal meshwork. Vertices closer than a few pixels are merged (the
microscope could not separate them and neither could a skeleton), some edges
are removed to create free ends, and each edge is bowed into a smooth curve.
Sheets are flat cisternae, mostly hugging the nucleus, with a few in the
periphery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import QhullError, Voronoi, cKDTree

from ._random import Range, smooth_noise
from .cells import CellLayout
from .graph import NetworkGraph
from .grid import Grid
from .organelle import OrganelleGeometry
from .render import densify, splat_lines, tube_field

#: spacing of points along drawn curves, nm (rendering resamples finer as needed)
_CURVE_SPACING_NM = 40.0

#: tells which (n, 2) points (nm) lie where a tubule may run
RegionTest = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ERParams:
    """How the ER looks.

    Attributes:
        mesh_size_nm: typical width of one polygon of the tubular network.
        tubule_diameter_nm: physical tubule diameter (below the diffraction limit).
        open_end_fraction: fraction of network edges removed, leaving free ends.
        curvature: bow of tubules, as amplitude relative to their length.
        perinuclear_density: how much denser the network is next to the nucleus
            than in the periphery (1 = uniform).
        sheets: whether to add sheets.
        sheet_coverage: fraction of the perinuclear band covered by sheets.
        sheet_band_nm: width of the band around the nucleus where sheets form.
        peripheral_sheets: mean number of small sheets per cell away from the nucleus.
        sheet_brightness: sheet brightness relative to a tubule.
        label_min_width_px: the label of a tubule is at least this wide, so
            that the mask stays connected when tubules are thinner than a pixel.
    """

    mesh_size_nm: float = 900.0
    tubule_diameter_nm: float = 80.0
    open_end_fraction: float = 0.08
    curvature: float = 0.08
    perinuclear_density: float = 2.0
    sheets: bool = True
    sheet_coverage: float = 0.3
    sheet_band_nm: float = 2500.0
    peripheral_sheets: float = 2.0
    sheet_brightness: float = 1.3
    label_min_width_px: float = 1.5

    RANGES: ClassVar[dict[str, Range]] = {
        "mesh_size_nm": Range(450.0, 1800.0, log=True),
        "tubule_diameter_nm": Range(50.0, 120.0),
        "open_end_fraction": Range(0.0, 0.3),
        "curvature": Range(0.0, 0.18),
        "perinuclear_density": Range(1.0, 4.0),
        "sheet_coverage": Range(0.05, 0.7),
        "sheet_band_nm": Range(1000.0, 4000.0),
        "peripheral_sheets": Range(0.0, 6.0),
        "sheet_brightness": Range(0.7, 2.5),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> ERParams:
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        return cls(sheets=bool(rng.random() < 0.75), **values)


def generate_er(
    rng: np.random.Generator, layout: CellLayout, params: ERParams, fine: Grid
) -> OrganelleGeometry:
    """ER of every cell in ``layout``: labels on the world grid, density on ``fine``."""
    world = layout.grid
    radius = params.tubule_diameter_nm / 2.0
    label_radius = max(radius, params.label_min_width_px * world.pixel_size_nm / 2.0)
    # centre lines keep this far from membranes so the label never leaves the cytoplasm
    clearance = label_radius + world.pixel_size_nm
    graphs = [
        _tubular_network(rng, layout, params, cell_id, clearance, label_radius)
        for cell_id in range(1, layout.n_cells + 1)
    ]
    graph = NetworkGraph.merged(graphs)

    label_field = tube_field(
        world, densify(graph.paths_nm, world.pixel_size_nm / 2.5), label_radius, label_radius
    )
    labels = label_field.mask(label_radius)
    # tubules are far thinner than any PSF: deposit their dye along the centre lines
    density = splat_lines(fine, densify(graph.paths_nm, fine.pixel_size_nm / 2.0), radius)
    # ER markers are not perfectly even along tubules (varicosities, crowding)
    density *= np.clip(
        1.0 + 0.2 * smooth_noise(rng, fine.shape, 150.0 / fine.pixel_size_nm), 0.3, None
    )

    sheets = np.zeros(world.shape, dtype=bool)
    if params.sheets:
        sheets = _sheets(rng, layout, params)
        labels |= sheets
        # sheets as bright as a tubule seen through a ~100 nm PSF, times their relative brightness
        thickness = params.sheet_brightness * np.pi * radius**2 / (np.sqrt(2 * np.pi) * 100.0)
        factor = round(world.pixel_size_nm / fine.pixel_size_nm)
        sheet_fine = sheets.astype(np.float32)
        if factor > 1:
            sheet_fine = ndi.zoom(sheet_fine, factor, order=1, grid_mode=True, mode="nearest")
        texture = np.clip(
            1.0 + 0.3 * smooth_noise(rng, fine.shape, 120.0 / fine.pixel_size_nm), 0.2, None
        )
        density = np.maximum(
            density, thickness * sheet_fine[: fine.shape[0], : fine.shape[1]] * texture
        )
    labels &= layout.cytoplasm
    return OrganelleGeometry(
        name="er",
        labels=labels.astype(np.uint8),
        density=density.astype(np.float32),
        graph=graph,
        truth={"sheets": sheets},
    )


def _tubular_network(
    rng: np.random.Generator,
    layout: CellLayout,
    params: ERParams,
    cell_id: int,
    clearance: float,
    label_radius: float,
) -> NetworkGraph:
    world = layout.grid
    region = (layout.cells == cell_id) & (layout.clearance_nm >= clearance)
    area = np.count_nonzero(region) * world.pixel_size_nm**2
    n_seeds = int(area / params.mesh_size_nm**2)
    if n_seeds < 8:
        return NetworkGraph.empty()
    weight = 1.0 + (params.perinuclear_density - 1.0) * layout.perinuclear_weight(3000.0)
    seeds = layout.sample_points(rng, n_seeds, clearance, weight=weight, cell_id=cell_id)
    try:
        voronoi = Voronoi(seeds)
    except QhullError:
        return NetworkGraph.empty()

    def inside(points: np.ndarray) -> np.ndarray:
        return layout.allowed(points, clearance, cell_id)

    # junctions closer than this would blur into one in the image and in a skeleton; capped
    # well below the mesh size, or merging would chain through the mesh into star-shaped hubs
    merge_distance = min(
        max(3.0 * world.pixel_size_nm, 4.0 * label_radius), 0.4 * params.mesh_size_nm
    )
    vertices, edges = _voronoi_edges(voronoi, params.mesh_size_nm)
    n_junctions = len(vertices)
    vertices, edges = _restrict_to_region(vertices, edges, inside, min_stub=merge_distance)
    # free ends cut at the membrane stay where they are
    mergeable = np.arange(len(vertices)) < n_junctions
    vertices, edges = _merge_close_vertices(vertices, edges, merge_distance, mergeable)
    edges = edges[_edges_inside(vertices, edges, inside)]
    if len(edges) == 0:
        return NetworkGraph.empty()
    keep = rng.random(len(edges)) >= params.open_end_fraction
    edges = edges[keep]
    paths = _bowed_paths(rng, vertices, edges, params.curvature, inside)
    graph = NetworkGraph(vertices, edges, paths)
    return graph.simplified()


def _voronoi_edges(voronoi: Voronoi, reach_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """All Voronoi ridges as segments; ridges running to infinity end ``4 * reach_nm`` out."""
    ridges = np.array(voronoi.ridge_vertices, dtype=np.intp).reshape(-1, 2)
    seeds = voronoi.points[np.asarray(voronoi.ridge_points, dtype=np.intp).reshape(-1, 2)]
    finite = np.all(ridges >= 0, axis=1)
    open_ = ~finite & np.any(ridges >= 0, axis=1)
    anchor = ridges[open_].max(axis=1)
    # an open ridge leaves along the perpendicular bisector of its two seeds, away from the centre
    tangent = seeds[open_, 1] - seeds[open_, 0]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.hypot(*normal.T), 1e-9)[:, None]
    outward = seeds[open_].mean(axis=1) - voronoi.points.mean(axis=0)
    direction = np.sign(np.einsum("ij,ij->i", outward, normal))[:, None] * normal
    far = voronoi.vertices[anchor] + 4.0 * reach_nm * direction
    far_ids = len(voronoi.vertices) + np.arange(len(far))
    vertices = np.concatenate([voronoi.vertices, far])
    edges = np.concatenate([ridges[finite], np.stack([anchor, far_ids], axis=1)])
    return vertices, edges


def _restrict_to_region(
    vertices: np.ndarray, edges: np.ndarray, inside: RegionTest, min_stub: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep edges inside the region; cut edges that leave it where they leave (a free end at
    the membrane).

    Stubs shorter than ``min_stub`` are dropped: they would be swallowed by
    their junction in the image.
    """
    vertex_ok = inside(vertices)
    a_ok, b_ok = vertex_ok[edges[:, 0]], vertex_ok[edges[:, 1]]
    both = edges[a_ok & b_ok]
    kept = both[_edges_inside(vertices, both, inside)]
    leaving = edges[a_ok ^ b_ok]
    # orient every leaving edge from its inside end
    leaving = np.where(vertex_ok[leaving[:, 0]][:, None], leaving, leaving[:, ::-1])
    start, stop = vertices[leaving[:, 0]], vertices[leaving[:, 1]]
    t = np.linspace(0.0, 1.0, 33)
    along = start[:, None, :] + t[None, :, None] * (stop - start)[:, None, :]
    ok = inside(along.reshape(-1, 2)).reshape(len(leaving), len(t))
    first_out = np.argmin(ok, axis=1)  # ok[:, 0] is True, so this is the first False
    t_cut = t[np.maximum(first_out - 1, 0)]
    ends = start + t_cut[:, None] * (stop - start)
    long_enough = t_cut * np.hypot(*(stop - start).T) >= min_stub
    new_ids = len(vertices) + np.arange(int(long_enough.sum()))
    stubs = np.stack([leaving[long_enough, 0], new_ids], axis=1)
    return (
        np.concatenate([vertices, ends[long_enough]]),
        np.concatenate([kept, stubs]).astype(np.intp),
    )


def _edges_inside(vertices: np.ndarray, edges: np.ndarray, inside: RegionTest) -> np.ndarray:
    """Whether straight edges lie inside the allowed region (both ends and three interior
    points)."""
    if len(edges) == 0:
        return np.zeros(0, dtype=bool)
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    ok = np.ones(len(edges), dtype=bool)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        ok &= inside(a + t * (b - a))
    return ok


def _merge_close_vertices(
    vertices: np.ndarray, edges: np.ndarray, distance: float, mergeable: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse mergeable vertices closer than ``distance`` (transitively); drop loops and
    duplicate edges."""
    used = np.unique(edges)
    if used.size == 0:
        return np.zeros((0, 2)), np.zeros((0, 2), dtype=np.intp)
    points = vertices[used]
    pairs = cKDTree(points).query_pairs(distance, output_type="ndarray")
    if len(pairs):
        pairs = pairs[mergeable[used][pairs[:, 0]] & mergeable[used][pairs[:, 1]]]
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    counts = np.bincount(group, minlength=n_groups)
    merged = np.stack(
        [np.bincount(group, points[:, 0], n_groups), np.bincount(group, points[:, 1], n_groups)],
        axis=1,
    ) / counts[:, None]
    remap = np.full(len(vertices), -1, dtype=np.intp)
    remap[used] = group
    new_edges = np.sort(remap[edges], axis=1)
    new_edges = new_edges[new_edges[:, 0] != new_edges[:, 1]]
    new_edges = np.unique(new_edges, axis=0)
    return merged, new_edges


def _bowed_paths(
    rng: np.random.Generator,
    vertices: np.ndarray,
    edges: np.ndarray,
    curvature: float,
    inside: RegionTest,
) -> list[np.ndarray]:
    """Bend each straight edge into a smooth curve with fixed ends.

    Edges whose curve would leave the region stay straight.
    """
    if len(edges) == 0:
        return []
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    chord = b - a
    length = np.hypot(*chord.T)
    normal = np.stack([-chord[:, 1], chord[:, 0]], axis=1) / np.maximum(length, 1e-9)[:, None]
    n_points = np.clip(np.ceil(length / _CURVE_SPACING_NM).astype(np.intp) + 1, 3, 200)
    first = np.concatenate(([0], np.cumsum(n_points)[:-1]))
    edge_of = np.repeat(np.arange(len(edges)), n_points)
    t = (np.arange(edge_of.size) - first[edge_of]) / (n_points[edge_of] - 1)
    amp1 = rng.normal(0.0, curvature, len(edges)) * length
    amp2 = rng.normal(0.0, curvature / 2.0, len(edges)) * length
    bow = amp1[edge_of] * np.sin(np.pi * t) + amp2[edge_of] * np.sin(2 * np.pi * t)
    straight = a[edge_of] + t[:, None] * chord[edge_of]
    curved = straight + bow[:, None] * normal[edge_of]
    ok = inside(curved)
    edge_ok = np.logical_and.reduceat(ok, first)
    points = np.where(edge_ok[edge_of][:, None], curved, straight)
    paths = np.split(points, first[1:])
    for path, start, end in zip(paths, a, b):
        path[0], path[-1] = start, end  # exact node positions, so ends are shared bit for bit
    return paths


def _sheets(rng: np.random.Generator, layout: CellLayout, params: ERParams) -> np.ndarray:
    """Sheet mask on the world grid: a perinuclear band of cisternae plus small peripheral ones."""
    world = layout.grid
    px = world.pixel_size_nm
    region = layout.clearance_nm >= px
    sheets = np.zeros(world.shape, dtype=bool)
    band = region & (layout.distance_to_nucleus_nm < params.sheet_band_nm)
    if band.any():
        noise = smooth_noise(rng, world.shape, rng.uniform(300.0, 700.0) / px)
        # sheets hug the nuclear envelope: penalise distance from it
        score = noise - 2.0 * layout.distance_to_nucleus_nm / params.sheet_band_nm
        threshold = np.quantile(score[band], 1.0 - params.sheet_coverage)
        sheets |= band & (score >= threshold)
    n_peripheral = rng.poisson(params.peripheral_sheets * layout.n_cells)
    if n_peripheral:
        y, x = world.axes_nm()
        for center in layout.sample_points(rng, n_peripheral, 1000.0):
            semi = rng.uniform(200.0, 800.0, 2)
            angle = rng.uniform(0, np.pi)
            rows = slice(*np.clip(
                np.searchsorted(y, [center[0] - semi.max(), center[0] + semi.max()]), 0, len(y)
            ))
            cols = slice(*np.clip(
                np.searchsorted(x, [center[1] - semi.max(), center[1] + semi.max()]), 0, len(x)
            ))
            dy, dx = y[rows, None] - center[0], x[None, cols] - center[1]
            u = dy * np.cos(angle) + dx * np.sin(angle)
            v = -dy * np.sin(angle) + dx * np.cos(angle)
            sheets[rows, cols] |= region[rows, cols] & (
                (u / semi[0]) ** 2 + (v / semi[1]) ** 2 <= 1.0
            )
    return sheets


def perinuclear_haze(
    rng: np.random.Generator,
    layout: CellLayout,
    band_nm: float,
    over_nucleus: float,
    blur_nm: float,
) -> np.ndarray:
    """The dense perinuclear ER seen out of focus: a bright, blurred mass around each nucleus.

    Live-cell ER images of spread cells (COS-7, HeLa, U2OS) are dominated by
    this mass: the stacked sheets and nuclear envelope above and below the
    focal plane. It is often many times brighter than a peripheral tubule and
    clips in exported images. Annotators do not label it (only in-focus
    tubules and sheets are ER), so it goes into the unlabelled background.

    Args:
        rng: random source.
        layout: the cells.
        band_nm: how far from the nucleus the mass reaches (1/e).
        over_nucleus: its brightness over the nucleus relative to the band
            around it (the envelope above and below the nucleus).
        blur_nm: defocus blur of the mass.

    Returns:
        float32 world-grid density, about 1 at its bright end (0 without nuclei).
    """
    grid = layout.grid
    distance = np.where(np.isfinite(layout.distance_to_nucleus_nm),
                        layout.distance_to_nucleus_nm, np.inf)
    mass = np.exp(-(distance / max(band_nm, 1.0)) ** 2).astype(np.float32)
    mass[layout.nuclei > 0] = over_nucleus
    # each cell's ER mass is its own: some cells barely have one
    per_cell = rng.uniform(0.15, 1.0, layout.n_cells + 1).astype(np.float32)
    per_cell[0] = 0.0
    mass *= per_cell[layout.cells]
    mass *= np.clip(1.0 + 0.35 * smooth_noise(rng, grid.shape, 600.0 / grid.pixel_size_nm),
                    0.2, None)
    mass = ndi.gaussian_filter(mass, max(blur_nm / grid.pixel_size_nm, 0.5))
    peak = float(mass.max())
    return (mass / peak if peak > 0 else mass).astype(np.float32)
