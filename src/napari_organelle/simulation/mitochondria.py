"""Mitochondria: branched tubular networks, unbranched tubules, and fragments/puncta.

Each mitochondrion is grown as a persistent random walk (a worm-like chain)
from a random start, segment by segment. At the end of a segment a network
mitochondrion may branch into two (a three-way junction), continue, or stop.
Whole segments are proposed at once and cut at the first point that would
leave the cytoplasm or come too close to another mitochondrion, so growth is
vectorised and mitochondria end where they meet obstacles, as in cells. A
minimum gap keeps separate mitochondria separate in the instance labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np

from ._random import Range, smooth_noise
from .cells import CellLayout
from .graph import NetworkGraph
from .grid import Grid
from .organelle import OrganelleGeometry
from .render import DenseCurves, Profile, densify, tube_field

#: distance between successive points of a growing centre line, nm
_STEP_NM = 80.0

Kind = Literal["network", "tubule", "fragment"]


@dataclass(frozen=True)
class MitochondriaParams:
    """How mitochondria look.

    Attributes:
        diameter_nm: mean tubule diameter.
        diameter_cv: spread of diameters between mitochondria (log-normal sigma).
        coverage: fraction of the cytoplasm area the mitochondria cover.
        network_fraction: probability that a new mitochondrion is a branched network.
        fragment_fraction: probability that it is a short fragment or punctum
            (the rest are unbranched tubules).
        branch_probability: chance that a network segment ends in a junction.
        segment_length_nm: mean length between junctions.
        persistence_nm: persistence length of the random walk (stiffness).
        radial_alignment: tendency of tubules to point from the nucleus to the cell edge (0 to 1).
        perinuclear_bias: how strongly starts favour the cell centre (0 = uniform).
        swelling: relative amplitude of diameter changes along a tubule.
        brightness_cv: spread of brightness between mitochondria (membrane
            potential dyes vary a lot, matrix-targeted proteins less).
        profile: "lumen" for matrix dyes, "membrane" for outer-membrane markers
            (hollow tubes when resolved).
        gap_nm: least distance between two different mitochondria's surfaces
            (never less than two pixels, so instances stay apart in the labels).
    """

    diameter_nm: float = 350.0
    diameter_cv: float = 0.12
    coverage: float = 0.15
    network_fraction: float = 0.45
    fragment_fraction: float = 0.15
    branch_probability: float = 0.45
    segment_length_nm: float = 1500.0
    persistence_nm: float = 3000.0
    radial_alignment: float = 0.4
    perinuclear_bias: float = 0.5
    swelling: float = 0.1
    brightness_cv: float = 0.2
    profile: Profile = "lumen"
    gap_nm: float = 100.0

    RANGES: ClassVar[dict[str, Range]] = {
        "diameter_nm": Range(250.0, 500.0),
        "diameter_cv": Range(0.0, 0.25),
        "coverage": Range(0.02, 0.25, log=True),
        "network_fraction": Range(0.0, 0.8),
        "fragment_fraction": Range(0.0, 0.9),
        "branch_probability": Range(0.15, 0.7),
        "segment_length_nm": Range(600.0, 3000.0, log=True),
        "persistence_nm": Range(1000.0, 8000.0, log=True),
        "radial_alignment": Range(0.0, 0.8),
        "perinuclear_bias": Range(0.0, 1.0),
        "swelling": Range(0.0, 0.25),
        "brightness_cv": Range(0.05, 0.5),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> MitochondriaParams:
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        total = values["network_fraction"] + values["fragment_fraction"]
        if total > 1.0:  # keep the three kinds' probabilities a distribution
            values["network_fraction"] /= total
            values["fragment_fraction"] /= total
        profile: Profile = "membrane" if rng.random() < 0.2 else "lumen"
        return cls(profile=profile, **values)


@dataclass
class _Mitochondrion:
    radius_nm: float
    nodes: list[np.ndarray] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    paths: list[np.ndarray] = field(default_factory=list)
    length_nm: float = 0.0


def generate_mitochondria(
    rng: np.random.Generator, layout: CellLayout, params: MitochondriaParams, fine: Grid
) -> OrganelleGeometry:
    """Mitochondria of every cell: instance labels on the world grid, density on ``fine``."""
    world = layout.grid
    px = world.pixel_size_nm
    mean_radius = params.diameter_nm / 2.0
    swell = 1.0 + params.swelling
    max_radius = mean_radius * np.exp(2.0 * params.diameter_cv) * swell
    grower = _Grower(rng, layout, params, max_radius)

    cytoplasm_area = np.count_nonzero(layout.cytoplasm) * px**2
    target_area = params.coverage * cytoplasm_area
    weight = (1.0 - params.perinuclear_bias) + params.perinuclear_bias * layout.perinuclear_weight(
        5000.0
    )
    p_fragment = params.fragment_fraction
    p_network = params.network_fraction
    kinds: tuple[Kind, ...] = ("network", "tubule", "fragment")
    probabilities = np.array([p_network, max(1.0 - p_network - p_fragment, 0.0), p_fragment])
    probabilities /= probabilities.sum()

    mitochondria: list[_Mitochondrion] = []
    area, failures = 0.0, 0
    starts = np.zeros((0, 2))
    while area < target_area and failures < 60:
        if len(starts) == 0:
            starts = layout.sample_points(rng, 256, mean_radius + px, weight=weight)
            if len(starts) == 0:
                break
        start, starts = starts[0], starts[1:]
        radius = mean_radius * np.exp(rng.normal(0.0, params.diameter_cv))
        radius = float(np.clip(radius, 0.6 * mean_radius, max_radius / swell))
        kind = kinds[int(rng.choice(3, p=probabilities))]
        grown = grower.grow(start, radius, kind)
        if grown is None:
            failures += 1
            continue
        failures = 0
        mitochondria.append(grown)
        area += grown.length_nm * 2.0 * radius + np.pi * radius**2

    paths = [p for m in mitochondria for p in m.paths]
    owner_ids = np.array(
        [i for i, m in enumerate(mitochondria, start=1) for _ in m.paths], dtype=np.int32
    )
    path_radius = np.array([m.radius_nm for m in mitochondria for _ in m.paths])
    wavelength = rng.uniform(800.0, 2000.0, len(paths))
    phase = rng.uniform(0, 2 * np.pi, len(paths))
    brightness = np.exp(rng.normal(0.0, params.brightness_cv, len(mitochondria) + 1))

    def radii(curves: DenseCurves) -> np.ndarray:
        i = curves.path_index
        return path_radius[i] * (
            1.0 + params.swelling * np.sin(2 * np.pi * curves.arc_nm / wavelength[i] + phase[i])
        )

    labels = np.zeros(world.shape, dtype=np.int32)
    density = np.zeros(fine.shape, dtype=np.float32)
    if paths:
        curves = densify(paths, fine.pixel_size_nm / 2.5)
        fine_field = tube_field(fine, curves, radii(curves), max_radius + fine.pixel_size_nm)
        if fine == world:
            label_field = fine_field
        else:
            curves = densify(paths, px / 2.5)
            label_field = tube_field(world, curves, radii(curves), max_radius)
        inside = label_field.mask(0.75 * px) & layout.cytoplasm
        labels[inside] = owner_ids[label_field.owner[inside]]

        density = fine_field.density(params.profile)
        owner = np.where(fine_field.owner >= 0, owner_ids[np.maximum(fine_field.owner, 0)], 0)
        density *= brightness[owner]
        # nucleoids and cristae make the matrix signal granular
        density *= np.clip(
            1.0 + 0.25 * smooth_noise(rng, fine.shape, 100.0 / fine.pixel_size_nm), 0.3, None
        )

    graphs = []
    for m in mitochondria:
        graphs.append(NetworkGraph(np.array(m.nodes), np.array(m.edges), m.paths).simplified())
    return OrganelleGeometry(
        name="mitochondria",
        labels=labels,
        density=density.astype(np.float32),
        graph=NetworkGraph.merged(graphs),
        truth={"radius_nm": np.array([m.radius_nm for m in mitochondria])},
    )


@lru_cache(maxsize=64)
def _disc_offsets(radius_px: int) -> np.ndarray:
    r = np.arange(-radius_px, radius_px + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = dy**2 + dx**2 <= radius_px**2
    return np.stack([dy[keep], dx[keep]], axis=1)


class _Grower:
    """Grows mitochondria one at a time into the free cytoplasm, recording what they occupy."""

    def __init__(
        self,
        rng: np.random.Generator,
        layout: CellLayout,
        params: MitochondriaParams,
        max_radius: float,
    ):
        self.rng = rng
        self.layout = layout
        self.params = params
        self.grid = layout.grid
        self.swell = 1.0 + params.swelling
        self.max_radius = max_radius
        self.gap = max(params.gap_nm, 2.0 * self.grid.pixel_size_nm)
        # occupancy is tracked on a grid of at least 100 nm, as exclusion discs are several
        # hundred nm wide; small image pixels would only make stamping them slow
        factor = max(1, int(100.0 // self.grid.pixel_size_nm))
        self.occupancy_factor = factor
        self.occupancy_grid = Grid(
            (-(-self.grid.shape[0] // factor), -(-self.grid.shape[1] // factor)),
            self.grid.pixel_size_nm * factor,
            self.grid.origin_nm,
        )
        # cells where a centre line may not go because another mitochondrion is too near
        self.occupied = np.zeros(self.occupancy_grid.shape, dtype=bool)
        # cells near the already grown segments of the mitochondrion being grown
        self.own = np.zeros(self.occupancy_grid.shape, dtype=bool)
        self.angle_sigma = np.sqrt(_STEP_NM / params.persistence_nm)

    def grow(self, start: np.ndarray, radius: float, kind: Kind) -> _Mitochondrion | None:
        rng, params = self.rng, self.params
        outer = radius * self.swell
        cell_id = int(self.grid.sample(self.layout.cells, start))
        if cell_id == 0 or not self._free(start[None], outer, cell_id, start, 0.0)[0]:
            return None
        if kind == "fragment":
            target = rng.uniform(0.0, 1500.0)
        elif kind == "tubule":
            target = float(np.clip(rng.lognormal(np.log(3000.0), 0.5), 1000.0, 15000.0))
        else:
            target = float(np.clip(rng.lognormal(np.log(9000.0), 0.5), 3000.0, 40000.0))
        heading = self._initial_heading(start)
        mito = _Mitochondrion(radius, nodes=[start.copy()])
        tips = [(start, heading, 0)]
        if kind != "fragment":
            tips.append((start, heading + np.pi, 0))
        exempt = 2.0 * outer + self.gap + self.grid.pixel_size_nm
        stamped: list[np.ndarray] = []
        while tips and mito.length_nm < target:
            point, heading, node = tips.pop(0)
            remaining = target - mito.length_nm
            if kind == "network":
                length = min(rng.exponential(params.segment_length_nm) + 2 * exempt, remaining)
            else:
                length = remaining if kind == "tubule" else max(remaining, 1.0)
            n_steps = max(1, int(np.ceil(length / _STEP_NM)))
            headings = heading + np.cumsum(rng.normal(0.0, self.angle_sigma, n_steps))
            steps = _STEP_NM * np.stack([np.sin(headings), np.cos(headings)], axis=1)
            points = point + np.cumsum(steps, axis=0)
            free = self._free(points, outer, cell_id, point, exempt)
            n_free = int(np.argmin(free)) if not free.all() else n_steps
            if n_free == 0:
                continue
            path = np.vstack([point[None], points[:n_free]])
            mito.nodes.append(points[n_free - 1].copy())
            new_node = len(mito.nodes) - 1
            mito.edges.append((node, new_node))
            mito.paths.append(path)
            mito.length_nm += n_free * _STEP_NM
            stamped.append(self._stamp(self.own, path, 2.0 * outer + self.gap))
            if n_free < n_steps or mito.length_nm >= target:
                continue  # blocked or long enough: a free end
            end, end_heading = points[n_free - 1], headings[n_free - 1]
            if kind == "network" and rng.random() < params.branch_probability:
                spread = np.deg2rad(rng.uniform(35.0, 75.0, 2))
                tips.append((end, end_heading + spread[0], new_node))
                tips.append((end, end_heading - spread[1], new_node))
            else:
                tips.append((end, end_heading + rng.normal(0.0, 0.3), new_node))
        for index in stamped:
            self.own[index[:, 0], index[:, 1]] = False
        if not mito.paths:
            return None
        self._stamp(self.occupied, np.concatenate(mito.paths), outer + self.max_radius + self.gap)
        return mito

    def _initial_heading(self, start: np.ndarray) -> float:
        """Random direction, pulled towards the radial direction away from the nucleus."""
        heading = self.rng.uniform(0, 2 * np.pi)
        shapes = self.layout.nucleus_shapes
        cell_id = int(self.grid.sample(self.layout.cells, start))
        if cell_id == 0 or self.params.radial_alignment <= 0:
            return heading
        center = np.asarray(shapes[cell_id - 1].center_nm)
        radial = np.arctan2(start[0] - center[0], start[1] - center[1])
        difference = np.angle(np.exp(1j * (radial - heading)))
        # fold so that pointing towards or away from the nucleus are both "radial"
        if abs(difference) > np.pi / 2:
            difference = np.angle(np.exp(1j * (radial + np.pi - heading)))
        return float(heading + self.params.radial_alignment * difference)

    def _free(
        self, points: np.ndarray, outer: float, cell_id: int, origin: np.ndarray, exempt: float
    ) -> np.ndarray:
        grid, layout = self.grid, self.layout
        index = grid.to_index(points)
        rows, cols = index[:, 0], index[:, 1]
        ok = grid.contains(points)
        ok &= layout.clearance_nm[rows, cols] >= outer + grid.pixel_size_nm
        ok &= layout.cells[rows, cols] == cell_id
        rows //= self.occupancy_factor
        cols //= self.occupancy_factor
        ok &= ~self.occupied[rows, cols]
        near_origin = np.hypot(*(points - origin).T) < exempt
        ok &= ~self.own[rows, cols] | near_origin
        return ok

    def _stamp(self, target: np.ndarray, path: np.ndarray, radius_nm: float) -> np.ndarray:
        """Set occupancy ``target`` True within ``radius_nm`` of the path; returns the cells set."""
        grid = self.occupancy_grid
        # one cell more than the radius absorbs the rounding of points to cell centres
        offsets = _disc_offsets(int(np.ceil(radius_nm / grid.pixel_size_nm)) + 1)
        # discs spaced by a third of their radius cover the tube to within 1 % of the radius
        spacing = max(1, int(radius_nm / 3.0 / _STEP_NM))
        centers = grid.to_index(np.vstack([path[::spacing], path[-1:]]))
        index = (centers[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
        for axis in (0, 1):
            np.maximum(index[:, axis], 0, out=index[:, axis])
            np.minimum(index[:, axis], grid.shape[axis] - 1, out=index[:, axis])
        target[index[:, 0], index[:, 1]] = True
        return index
