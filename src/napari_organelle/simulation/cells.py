"""Cells and nuclei: the compartments every other organelle is placed in.

Cell and nuclear outlines are star-convex shapes (an ellipse with a few
random Fourier harmonics on its radius). Several cells in one field are made
by overlapping such shapes and giving each pixel to the cell it lies deepest
in, which yields touching cells with a shared membrane as in a confluent
culture. The resulting :class:`CellLayout` answers the questions generators
ask: which cell a point is in, how far it is from the plasma membrane and the
nuclear envelope, and how thick the cell is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy import ndimage as ndi

from ._random import Range, draw_base_seed, interpolate_axis, smooth_noise
from .grid import Grid

#: scale over which a spread cell thickens from its edge towards the nucleus, nm
_THICKENING_LENGTH_NM = 3000.0
#: most cells :func:`generate_cells` scatters for a culture (keeps a sample fast)
MAX_CULTURE_CELLS = 250
#: random positions tried per cell when scattering a culture
_SCATTER_TRIES = 24
#: pixel sizes of low-magnification nuclei training fields (10x-40x widefield), nm
LOW_MAGNIFICATION_PIXEL_SIZE_RANGE = Range(200.0, 800.0, log=True)
#: share of nuclei training fields that show a whole culture at low magnification
LOW_MAGNIFICATION_NUCLEI_FRACTION = 0.6


@dataclass(frozen=True)
class StarShape:
    """A star-convex outline: an ellipse whose radius is modulated by random harmonics.

    Attributes:
        center_nm: (y, x) centre.
        radius_nm: mean radius (geometric mean of the ellipse axes).
        elongation: ratio of long to short ellipse axis (>= 1).
        angle: direction of the long axis, radians.
        amplitudes: relative amplitude of harmonic k = 2, 3, ...
        phases: phase of each harmonic.
    """

    center_nm: tuple[float, float]
    radius_nm: float
    elongation: float = 1.0
    angle: float = 0.0
    amplitudes: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        center_nm: tuple[float, float],
        radius_nm: float,
        elongation: float,
        roughness: float,
        n_harmonics: int = 6,
    ) -> StarShape:
        """A random outline; ``roughness`` is the amplitude of the lowest harmonic, higher ones
        fall as 1/k."""
        k = np.arange(2, 2 + n_harmonics)
        amplitudes = roughness * rng.uniform(0.3, 1.0, n_harmonics) * 2.0 / k
        return cls(
            center_nm=(float(center_nm[0]), float(center_nm[1])),
            radius_nm=float(radius_nm),
            elongation=float(elongation),
            angle=float(rng.uniform(0, np.pi)),
            amplitudes=tuple(amplitudes.tolist()),
            phases=tuple(rng.uniform(0, 2 * np.pi, n_harmonics).tolist()),
        )

    def scaled(self, factor: float) -> StarShape:
        return StarShape(
            self.center_nm,
            self.radius_nm * factor,
            self.elongation,
            self.angle,
            self.amplitudes,
            self.phases,
        )

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        """Outline radius in direction ``theta`` (radians, atan2(dy, dx))."""
        a = np.sqrt(self.elongation)
        relative = theta - self.angle
        ellipse = 1.0 / np.sqrt((np.cos(relative) / a) ** 2 + (np.sin(relative) * a) ** 2)
        modulation = np.ones_like(theta)
        for k, (amp, phase) in enumerate(zip(self.amplitudes, self.phases), start=2):
            modulation += amp * np.cos(k * theta + phase)
        return self.radius_nm * ellipse * np.maximum(modulation, 0.3)

    def level(self, y_nm: np.ndarray, x_nm: np.ndarray) -> np.ndarray:
        """Distance from the centre divided by the outline radius: < 1 inside, 0 at the centre.

        Evaluated with powers of the unit complex direction instead of
        trigonometric functions, which makes it cheap on large grids.
        """
        dy = np.asarray(y_nm - self.center_nm[0], dtype=np.float32)
        dx = np.asarray(x_nm - self.center_nm[1], dtype=np.float32)
        distance = np.hypot(dy, dx)
        safe = np.where(distance > 0, distance, 1.0)
        direction = (dx + 1j * dy) / safe  # exp(i theta)
        rotated = direction * np.complex64(np.exp(-1j * self.angle))
        a = np.sqrt(self.elongation)
        ellipse = 1.0 / np.sqrt((rotated.real / a) ** 2 + (rotated.imag * a) ** 2)
        modulation = np.ones(direction.shape, dtype=np.float32)
        power = direction
        for amp, phase in zip(self.amplitudes, self.phases):
            power = power * direction  # exp(i k theta), k = 2, 3, ...
            modulation += amp * (power * np.complex64(np.exp(1j * phase))).real
        radius = self.radius_nm * ellipse * np.maximum(modulation, 0.3)
        return (distance / radius).astype(np.float32)

    def bounding_radius(self) -> float:
        return self.radius_nm * np.sqrt(self.elongation) * (1.0 + sum(self.amplitudes))


@dataclass(frozen=True)
class CellParams:
    """How cells and nuclei look.

    Attributes:
        n_cells: cells in and around the field; ``None`` draws 1 to 4.
        cell_radius_nm: mean cell radius (spread adherent cells: 8-25 um).
        elongation: long/short axis ratio of cells.
        roughness: amplitude of shape harmonics of the cell outline.
        nucleus_fraction: nuclear radius relative to cell radius.
        nucleus_elongation: long/short axis ratio of nuclei.
        nucleus_roughness: amplitude of shape harmonics of the nuclear outline.
        nucleus_margin_nm: least cytoplasm between nucleus and plasma membrane
            (0 lets nuclei of neighbouring cells touch, as in dense cultures).
        membrane_width_nm: width of the ``cell_boundary`` label band (at least 2 pixels).
        culture_density_per_um2: when set, cells are scattered over the whole
            field at this many per um^2 (a culture seen at low magnification; the
            count scales with the field area, at most :data:`MAX_CULTURE_CELLS`)
            instead of ``n_cells`` clustered around the field centre.
        radius_spread: relative spread of cell (and so nuclear) radii between cells.
        culture_clustering: probability that a scattered cell is placed against
            one already placed (colonies) instead of anywhere in the field.
        mitotic_fraction: probability that a nucleus is a condensed, brighter
            mitotic figure (small, often bar-shaped).
        nucleus_overlap: share of a nucleus that may reach past its cell into a
            neighbour's; that part is cut off, so nuclei pressed together in a
            crowded culture touch along a shared, flattened border.
    """

    n_cells: int | None = None
    cell_radius_nm: float = 14000.0
    elongation: float = 1.4
    roughness: float = 0.08
    nucleus_fraction: float = 0.38
    nucleus_elongation: float = 1.2
    nucleus_roughness: float = 0.03
    nucleus_margin_nm: float = 1000.0
    membrane_width_nm: float = 150.0
    culture_density_per_um2: float | None = None
    radius_spread: float = 0.25
    culture_clustering: float = 0.0
    mitotic_fraction: float = 0.0
    nucleus_overlap: float = 0.0

    #: bounds of :meth:`random` over both kinds of culture it draws
    RANGES: ClassVar[dict[str, Range]] = {
        "cell_radius_nm": Range(5000.0, 24000.0, log=True),
        "elongation": Range(1.0, 2.2),
        "roughness": Range(0.0, 0.18),
        "nucleus_fraction": Range(0.25, 0.7),
        "nucleus_elongation": Range(1.0, 1.6),
        "nucleus_roughness": Range(0.0, 0.06),
        "nucleus_margin_nm": Range(0.0, 1500.0),
    }
    #: spread cells: a few large, flat cells with small nuclei and plenty of cytoplasm
    SPREAD_RANGES: ClassVar[dict[str, Range]] = {
        "cell_radius_nm": Range(8000.0, 24000.0, log=True),
        "nucleus_fraction": Range(0.25, 0.5),
        "nucleus_margin_nm": Range(300.0, 1500.0),
    }
    #: dense cultures: many small cells whose large nuclei may touch across cell borders
    DENSE_RANGES: ClassVar[dict[str, Range]] = {
        "cell_radius_nm": Range(5000.0, 9000.0, log=True),
        "nucleus_fraction": Range(0.5, 0.7),
        "nucleus_margin_nm": Range(0.0, 300.0),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> CellParams:
        """Spread cells (80 %) or a dense culture (20 %), shapes drawn from :attr:`RANGES`."""
        dense = rng.random() < 0.2
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        ranges = cls.DENSE_RANGES if dense else cls.SPREAD_RANGES
        values.update({name: r.draw(rng) for name, r in ranges.items()})
        if dense:
            n_cells = int(rng.integers(5, 11))
        else:
            n_cells = int(rng.choice(np.arange(1, 7), p=[0.25, 0.25, 0.2, 0.12, 0.1, 0.08]))
        return cls(n_cells=n_cells, **values)

    #: bounds of :meth:`culture`
    CULTURE_RANGES: ClassVar[dict[str, Range]] = {
        "nucleus_radius_nm": Range(3000.0, 7500.0, log=True),
        "nuclear_coverage": Range(0.04, 0.6, log=True),
        "nucleus_fraction": Range(0.55, 0.85),
        "elongation": Range(1.0, 1.8),
        "roughness": Range(0.0, 0.15),
        "nucleus_elongation": Range(1.0, 1.7),
        "nucleus_roughness": Range(0.0, 0.07),
        "nucleus_margin_nm": Range(100.0, 1000.0, log=True),
        "radius_spread": Range(0.15, 0.4),
        "culture_clustering": Range(0.0, 0.9),
        "mitotic_fraction": Range(0.0, 0.08),
        "nucleus_overlap": Range(0.1, 0.35),
    }

    @classmethod
    def training_field(
        cls,
        rng: np.random.Generator,
        shown: str,
        pixel_size_nm: float | None,
        pixel_size_range: Range,
    ) -> tuple[float, int, CellParams]:
        """Pixel size, scene base seed and cells of one training field, drawn in that order.

        A nuclear stain is imaged at any magnification: in
        :data:`LOW_MAGNIFICATION_NUCLEI_FRACTION` of the fields that show
        ``"nuclei"`` the pixel size comes from
        :data:`LOW_MAGNIFICATION_PIXEL_SIZE_RANGE` and the cells are a
        :meth:`culture` covering the field. Every other field (and every
        other class, with the very same random draws as before this choice
        existed) gets a pixel size from ``pixel_size_range`` and
        :meth:`random` cells. A given ``pixel_size_nm`` replaces the drawn one.
        """
        if shown == "nuclei" and rng.random() < LOW_MAGNIFICATION_NUCLEI_FRACTION:
            pixel_size = (
                float(pixel_size_nm)
                if pixel_size_nm is not None
                else LOW_MAGNIFICATION_PIXEL_SIZE_RANGE.draw(rng)
            )
            base = draw_base_seed(rng)
            return pixel_size, base, cls.culture(rng, pixel_size)
        pixel_size = (
            float(pixel_size_nm) if pixel_size_nm is not None else pixel_size_range.draw(rng)
        )
        base = draw_base_seed(rng)
        return pixel_size, base, cls.random(rng)

    #: nuclear diameters (px) :meth:`culture` keeps to when it knows the pixel size
    CULTURE_DIAMETER_PX: ClassVar[tuple[float, float]] = (14.0, 50.0)

    @classmethod
    def culture(cls, rng: np.random.Generator, pixel_size_nm: float | None = None) -> CellParams:
        """A culture filling the whole field, as a nuclear stain shows it at 10x-40x.

        Nuclei 6-15 um across (log-uniform; with ``pixel_size_nm`` also
        14-50 px where that overlaps) cover 4-60 % of the area (log-uniform),
        so their number scales with the field; cells are little larger than
        their nuclei, and in 60 % of cultures nuclei may touch across cell
        borders (no cytoplasm margin, up to a third of a nucleus cut off by its
        neighbour). Half the cultures have a few mitotic figures.
        """
        r = {name: bound.draw(rng) for name, bound in cls.CULTURE_RANGES.items()}
        coverage = r["nuclear_coverage"]
        # cells that are scattered without much overlap cover at most about their own area
        fraction = max(r["nucleus_fraction"], float(np.sqrt(coverage / 1.1)))
        nucleus_radius = r["nucleus_radius_nm"]
        if pixel_size_nm is not None:
            # the same quantile of the physical range, within the pixel range where they overlap
            bound = cls.CULTURE_RANGES["nucleus_radius_nm"]
            low = max(bound.low, 0.5 * cls.CULTURE_DIAMETER_PX[0] * pixel_size_nm)
            high = min(bound.high, 0.5 * cls.CULTURE_DIAMETER_PX[1] * pixel_size_nm)
            if low < high:
                q = np.log(nucleus_radius / bound.low) / np.log(bound.high / bound.low)
                nucleus_radius = float(low * (high / low) ** q)
        touching = rng.random() < 0.6
        mitotic = rng.random() < 0.5
        return cls(
            n_cells=None,
            cell_radius_nm=nucleus_radius / fraction,
            elongation=r["elongation"],
            roughness=r["roughness"],
            nucleus_fraction=fraction,
            nucleus_elongation=r["nucleus_elongation"],
            nucleus_roughness=r["nucleus_roughness"],
            nucleus_margin_nm=0.0 if touching else r["nucleus_margin_nm"],
            nucleus_overlap=r["nucleus_overlap"] if touching else 0.0,
            culture_density_per_um2=coverage / (np.pi * (nucleus_radius / 1000.0) ** 2),
            radius_spread=r["radius_spread"],
            culture_clustering=r["culture_clustering"],
            mitotic_fraction=r["mitotic_fraction"] if mitotic else 0.0,
        )


@dataclass
class CellLayout:
    """Cells and nuclei rasterised on the world grid, with the distance maps generators need.

    Attributes:
        grid: the world grid (image plus margin) all maps live on.
        cell_shapes: outline of each cell; cell ``i`` has label ``i + 1``.
        nucleus_shapes: outline of each cell's nucleus, same order.
        cells: int32 cell labels (0 = medium).
        nuclei: int32 nucleus labels, equal to the label of the enclosing cell.
        membrane: bool band along every plasma membrane (the ``cell_boundary`` label).
        distance_to_membrane_nm: from each pixel inside a cell to the nearest pixel
            outside it (neighbouring cells count as outside); 0 outside cells.
        distance_to_nucleus_nm: from each pixel to the nearest nuclear pixel
            (``inf`` when no nucleus is on the grid).
        height: relative cell thickness in [0, 1] (0 outside, about 1 over the nucleus).
        nucleus_gains: DNA-stain brightness factor of each nucleus, same order
            (above 1 for condensed mitotic chromatin; empty means all 1).
    """

    grid: Grid
    cell_shapes: list[StarShape]
    nucleus_shapes: list[StarShape]
    cells: np.ndarray
    nuclei: np.ndarray
    membrane: np.ndarray
    distance_to_membrane_nm: np.ndarray
    distance_to_nucleus_nm: np.ndarray
    height: np.ndarray
    nucleus_gains: tuple[float, ...] = ()
    _clearance: np.ndarray | None = field(default=None, repr=False)
    _on_grid: dict[Grid, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def cytoplasm(self) -> np.ndarray:
        """Pixels inside a cell but outside its nucleus."""
        return (self.cells > 0) & (self.nuclei == 0)

    @property
    def clearance_nm(self) -> np.ndarray:
        """Distance to the nearest membrane or nuclear pixel, inside the cytoplasm; 0 elsewhere."""
        if self._clearance is None:
            clearance = np.minimum(self.distance_to_membrane_nm, self.distance_to_nucleus_nm)
            self._clearance = np.where(self.cytoplasm, clearance, 0.0).astype(np.float32)
        return self._clearance

    @property
    def n_cells(self) -> int:
        return len(self.cell_shapes)

    def allowed(
        self, points_nm: np.ndarray, clearance_nm: float, cell_id: int | None = None
    ) -> np.ndarray:
        """Whether points lie in the cytoplasm at least ``clearance_nm`` from membranes and nuclei.

        The clearance is read at the pixel containing the point, so callers add
        one pixel to the clearance they need at pixel precision.
        """
        points = np.asarray(points_nm, dtype=float)
        ok = self.grid.contains(points)
        index = self.grid.to_index(points)
        ok &= self.clearance_nm[index[..., 0], index[..., 1]] >= clearance_nm
        if cell_id is not None:
            ok &= self.cells[index[..., 0], index[..., 1]] == cell_id
        return ok

    def sample_points(
        self,
        rng: np.random.Generator,
        n: int,
        clearance_nm: float,
        weight: np.ndarray | None = None,
        cell_id: int | None = None,
    ) -> np.ndarray:
        """Random points (n, 2) in the allowed cytoplasm, with density proportional to ``weight``.

        Returns fewer points (possibly none) when no pixel qualifies.
        """
        region = self.clearance_nm >= clearance_nm
        if cell_id is not None:
            region &= self.cells == cell_id
        flat = np.flatnonzero(region)
        if flat.size == 0 or n <= 0:
            return np.zeros((0, 2))
        p = None
        if weight is not None:
            w = weight.ravel()[flat].astype(float)
            if w.sum() > 0:
                p = w / w.sum()
        chosen = rng.choice(flat, size=n, p=p)
        rows, cols = np.unravel_index(chosen, self.grid.shape)
        jitter = rng.uniform(0.0, 1.0, (n, 2))
        origin = np.asarray(self.grid.origin_nm)
        return origin + (np.stack([rows, cols], axis=1) + jitter) * self.grid.pixel_size_nm

    def label_cells_on(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise cells and nuclei from their outlines on another grid (e.g. the fine
        density grid).

        Results are cached per grid, as several channels need them.
        """
        if grid not in self._on_grid:
            self._on_grid[grid] = _rasterise_cells(grid, self.cell_shapes, self.nucleus_shapes)
        return self._on_grid[grid]

    def perinuclear_weight(self, length_nm: float) -> np.ndarray:
        """exp(-distance to nucleus / length): a placement weight that favours the cell centre."""
        distance = np.where(
            np.isfinite(self.distance_to_nucleus_nm), self.distance_to_nucleus_nm, 1e9
        )
        return np.exp(-distance / max(length_nm, 1.0)).astype(np.float32)


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label, on both sides of every edge (background
    included)."""
    edges = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    edges[1:, :] |= vertical
    edges[:-1, :] |= vertical
    horizontal = labels[:, 1:] != labels[:, :-1]
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges


def _level_on(shape: StarShape, y: np.ndarray, x: np.ndarray, stride: int = 4) -> np.ndarray:
    """``shape.level`` on the grid ``y`` x ``x``, evaluated every ``stride`` pixels and
    interpolated.

    The level is smooth away from the centre, so linear interpolation over a
    few pixels moves the outline by far less than a pixel.
    """
    if len(y) <= 2 * stride or len(x) <= 2 * stride:
        return shape.level(y[:, None], x[None, :])
    iy = np.unique(np.r_[np.arange(0, len(y), stride), len(y) - 1])
    ix = np.unique(np.r_[np.arange(0, len(x), stride), len(x) - 1])
    coarse = shape.level(y[iy, None], x[None, ix])
    return interpolate_axis(interpolate_axis(coarse, iy, len(y), 0), ix, len(x), 1)


def _rasterise_cells(
    grid: Grid, cell_shapes: list[StarShape], nucleus_shapes: list[StarShape]
) -> tuple[np.ndarray, np.ndarray]:
    cells = _partition(grid, cell_shapes)
    return cells, _rasterise_nuclei(grid, cells, nucleus_shapes)


def _partition(grid: Grid, cell_shapes: list[StarShape]) -> np.ndarray:
    """Each pixel goes to the cell it lies deepest in (lowest level), if it lies inside any."""
    y, x = grid.axes_nm()
    cells = np.zeros(grid.shape, dtype=np.int32)
    best = np.ones(grid.shape, dtype=np.float32)
    for i, shape in enumerate(cell_shapes, start=1):
        window = _shape_window(grid, shape)
        if window is None:
            continue
        level = _level_on(shape, y[window[0]], x[window[1]])
        deeper = level < best[window]
        cells[window][deeper] = i
        best[window] = np.minimum(best[window], level)
    return cells


def _rasterise_nuclei(grid: Grid, cells: np.ndarray, nucleus_shapes: list[StarShape]) -> np.ndarray:
    y, x = grid.axes_nm()
    nuclei = np.zeros(grid.shape, dtype=np.int32)
    for i, shape in enumerate(nucleus_shapes, start=1):
        window = _shape_window(grid, shape)
        if window is None:
            continue
        inside = _level_on(shape, y[window[0]], x[window[1]]) < 1.0
        inside &= cells[window] == i
        nuclei[window][inside] = i
    return nuclei


def _shape_window(grid: Grid, shape: StarShape) -> tuple[slice, slice] | None:
    reach = shape.bounding_radius() + grid.pixel_size_nm
    low = grid.to_pixels(np.asarray(shape.center_nm) - reach)
    high = grid.to_pixels(np.asarray(shape.center_nm) + reach)
    r0, c0 = max(int(np.floor(low[0])), 0), max(int(np.floor(low[1])), 0)
    r1 = min(int(np.ceil(high[0])) + 1, grid.shape[0])
    c1 = min(int(np.ceil(high[1])) + 1, grid.shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def generate_cells(
    rng: np.random.Generator, world: Grid, field_grid: Grid, params: CellParams
) -> CellLayout:
    """Place one main cell near the field centre and its neighbours around it, or (when
    ``params.culture_density_per_um2`` is set) a culture scattered over the whole grid.

    Args:
        rng: random source.
        world: grid to rasterise on (field plus margin).
        field_grid: the camera's field of view, used to centre the main cell.
        params: shape parameters.
    """
    if params.culture_density_per_um2 is not None:
        centers, radii = _scatter_cells(rng, world, params)
    else:
        centers, radii = _cluster_cells(rng, field_grid, params)
    cell_shapes: list[StarShape] = []
    for center, radius in zip(centers, radii):
        elongation = 1.0 + (params.elongation - 1.0) * rng.uniform(0.6, 1.4)
        cell_shapes.append(
            StarShape.random(rng, tuple(center), radius, max(elongation, 1.0), params.roughness)
        )

    cells = _partition(world, cell_shapes)
    inside = (cells > 0) & ~label_edges(cells)
    distance_to_membrane = (
        ndi.distance_transform_edt(inside) * world.pixel_size_nm
    ).astype(np.float32)

    nucleus_shapes = [
        _fit_nucleus(rng, world, shape, i, params, cells, distance_to_membrane)
        for i, shape in enumerate(cell_shapes, start=1)
    ]
    nucleus_gains: tuple[float, ...] = ()
    if params.mitotic_fraction > 0:
        nucleus_shapes, nucleus_gains = _condense_mitotic(rng, nucleus_shapes, params)
    nuclei = _rasterise_nuclei(world, cells, nucleus_shapes)
    if nuclei.any():
        distance_to_nucleus = (
            ndi.distance_transform_edt(nuclei == 0) * world.pixel_size_nm
        ).astype(np.float32)
    else:
        distance_to_nucleus = np.full(world.shape, np.inf, dtype=np.float32)

    membrane = label_edges(cells)
    extra = int(round(params.membrane_width_nm / world.pixel_size_nm / 2.0)) - 1
    if extra > 0:
        membrane = ndi.binary_dilation(membrane, iterations=extra)

    height = np.tanh(distance_to_membrane / _THICKENING_LENGTH_NM)
    height = np.where(nuclei > 0, np.maximum(height, 0.9), height).astype(np.float32)
    return CellLayout(
        grid=world,
        cell_shapes=cell_shapes,
        nucleus_shapes=nucleus_shapes,
        cells=cells,
        nuclei=nuclei,
        membrane=membrane,
        distance_to_membrane_nm=distance_to_membrane,
        distance_to_nucleus_nm=distance_to_nucleus,
        height=height,
        nucleus_gains=nucleus_gains,
    )


def _cluster_cells(
    rng: np.random.Generator, field_grid: Grid, params: CellParams
) -> tuple[list[np.ndarray], np.ndarray]:
    """Centres and radii of a main cell near the field centre and neighbours touching it."""
    n_cells = (
        params.n_cells
        if params.n_cells is not None
        else int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
    )
    low, high = field_grid.bounds_nm
    field_center = (low + high) / 2.0
    field_size = high - low
    spread = params.radius_spread
    radii = params.cell_radius_nm * rng.uniform(1.0 - spread, 1.0 + spread, n_cells)
    main_center = field_center + rng.uniform(-0.3, 0.3, 2) * field_size
    centers = [main_center]
    for radius in radii[1:]:
        # a neighbour touches (overlaps a little) one of the cells placed so far; of a few
        # random tries keep the one nearest the field centre, so the neighbours are seen
        best, best_score = None, np.inf
        for _ in range(8):
            j = int(rng.integers(len(centers)))
            angle = rng.uniform(0, 2 * np.pi)
            distance = (radii[j] + radius) * rng.uniform(0.7, 1.0)
            candidate = centers[j] + distance * np.array([np.sin(angle), np.cos(angle)])
            crowded = any(
                np.hypot(*(candidate - c)) < 0.65 * (r + radius)
                for c, r in zip(centers, radii[: len(centers)])
            )
            score = np.hypot(*(candidate - field_center)) + (1e12 if crowded else 0.0)
            if score < best_score:
                best, best_score = candidate, score
        centers.append(best)
    return centers, radii


def _scatter_cells(
    rng: np.random.Generator, world: Grid, params: CellParams
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii of a culture scattered over the whole ``world`` grid.

    The number of cells is Poisson with mean density times area (at least
    one, at most :data:`MAX_CULTURE_CELLS`). Each is placed at a random
    position (with probability ``params.culture_clustering`` one touching a
    cell placed before, so colonies form) that keeps its centre 0.65 of the
    summed radii from every cell placed so far, as in :func:`_cluster_cells`;
    a cell with no such position in a few tries is left out, which caps the
    packing of a confluent culture.
    """
    low, high = world.bounds_nm
    area_um2 = float(np.prod(high - low)) / 1e6
    n_cells = int(np.clip(rng.poisson(params.culture_density_per_um2 * area_um2), 1,
                          MAX_CULTURE_CELLS))
    spread = params.radius_spread
    radii = params.cell_radius_nm * rng.uniform(1.0 - spread, 1.0 + spread, n_cells)
    centers = np.zeros((0, 2))
    kept: list[float] = []
    for radius in radii:
        if kept and rng.random() < params.culture_clustering:
            j = rng.integers(len(kept), size=_SCATTER_TRIES)
            angle = rng.uniform(0, 2 * np.pi, _SCATTER_TRIES)
            distance = (np.asarray(kept)[j] + radius) * rng.uniform(0.65, 0.95, _SCATTER_TRIES)
            candidates = centers[j] + distance[:, None] * np.stack(
                [np.sin(angle), np.cos(angle)], axis=1
            )
        else:
            candidates = rng.uniform(low, high, (_SCATTER_TRIES, 2))
        if kept:
            distance = np.hypot(
                candidates[:, None, 0] - centers[None, :, 0],
                candidates[:, None, 1] - centers[None, :, 1],
            )
            free = (distance >= 0.65 * (radius + np.asarray(kept))[None, :]).all(axis=1)
            free &= ((candidates >= low) & (candidates <= high)).all(axis=1)
            if not free.any():
                continue
            candidates = candidates[np.argmax(free)][None]
        centers = np.vstack([centers, candidates[:1]])
        kept.append(float(radius))
    return centers, np.asarray(kept)


def _condense_mitotic(
    rng: np.random.Generator, nucleus_shapes: list[StarShape], params: CellParams
) -> tuple[list[StarShape], tuple[float, ...]]:
    """Turn a fraction of nuclei into mitotic figures: condensed, smaller, often bar-shaped
    (a metaphase plate seen from the side) and brighter, as their DNA fills less area."""
    shapes, gains = [], []
    for shape in nucleus_shapes:
        if rng.random() >= params.mitotic_fraction:
            shapes.append(shape)
            gains.append(1.0)
            continue
        elongation = float(rng.uniform(1.2, 2.6))
        # keep the long axis inside the interphase nucleus it replaces
        factor = min(float(rng.uniform(0.4, 0.65)),
                     0.9 * float(np.sqrt(shape.elongation / elongation)))
        shapes.append(StarShape(shape.center_nm, shape.radius_nm * factor, elongation,
                                shape.angle, tuple(0.5 * a for a in shape.amplitudes),
                                shape.phases))
        gains.append(float(min(factor**-2, 4.0) * rng.uniform(0.7, 1.0)))
    return shapes, tuple(gains)


def _fit_nucleus(
    rng: np.random.Generator,
    world: Grid,
    cell: StarShape,
    cell_id: int,
    params: CellParams,
    cells: np.ndarray,
    distance_to_membrane: np.ndarray,
) -> StarShape:
    """A nucleus that keeps ``params.nucleus_margin_nm`` of cytoplasm around it (shrunk until
    it does)."""
    margin = params.nucleus_margin_nm
    offset = rng.uniform(-0.2, 0.2, 2) * cell.radius_nm
    center = np.asarray(cell.center_nm) + offset
    elongation = 1.0 + (params.nucleus_elongation - 1.0) * rng.uniform(0.5, 1.5)
    shape = StarShape.random(
        rng,
        tuple(center),
        cell.radius_nm * params.nucleus_fraction,
        max(elongation, 1.0),
        params.nucleus_roughness,
        n_harmonics=4,
    )
    y, x = world.axes_nm()
    for _ in range(12):
        window = _shape_window(world, shape)
        if window is None:
            return shape  # entirely off the grid: nothing to check against
        inside = _level_on(shape, y[window[0]], x[window[1]]) < 1.0
        if not inside.any():
            return shape
        fits = (cells[window][inside] == cell_id) & (distance_to_membrane[window][inside] >= margin)
        if fits.all() or (params.nucleus_overlap > 0 and fits.mean() >= 1 - params.nucleus_overlap):
            return shape
        # pull towards the cell centre and shrink
        center = 0.7 * np.asarray(shape.center_nm) + 0.3 * np.asarray(cell.center_nm)
        shape = StarShape(
            tuple(center),
            shape.radius_nm * 0.88,
            shape.elongation,
            shape.angle,
            shape.amplitudes,
            shape.phases,
        )
    return shape


def nucleus_density(
    rng: np.random.Generator, layout: CellLayout, grid: Grid, nuclei_on_grid: np.ndarray
) -> np.ndarray:
    """DNA-stain emission: nuclear thickness times chromatin texture, with dim nucleoli.

    Args:
        rng: random source.
        layout: the cells.
        grid: grid to render on (usually the fine grid).
        nuclei_on_grid: nucleus labels on ``grid`` (from :meth:`CellLayout.label_cells_on`).

    Returns:
        float32 projected dye thickness (nm) on ``grid``.
    """
    density = np.zeros(grid.shape, dtype=np.float32)
    if not nuclei_on_grid.any():
        return density
    y, x = grid.axes_nm()
    texture = 1.0 + rng.uniform(0.15, 0.35) * smooth_noise(
        rng, grid.shape, 250.0 / grid.pixel_size_nm
    )
    texture += rng.uniform(0.0, 0.25) * smooth_noise(rng, grid.shape, 80.0 / grid.pixel_size_nm)
    for i, shape in enumerate(layout.nucleus_shapes, start=1):
        window = _shape_window(grid, shape)
        if window is None:
            continue
        level = _level_on(shape, y[window[0]], x[window[1]])
        inside = nuclei_on_grid[window] == i
        # a flattened ellipsoid about 5 um thick, brighter towards its middle
        thickness = 5000.0 * np.sqrt(np.clip(1.0 - level**2, 0.0, None)) ** 0.5
        # DNA content and compaction differ between nuclei (G1/G2, condensing chromatin)
        brightness = float(np.exp(rng.normal(0.0, 0.25)))
        if layout.nucleus_gains:
            brightness *= layout.nucleus_gains[i - 1]
        nucleoli = _nucleoli(rng, shape, y[window[0], None], x[None, window[1]])
        density[window] += np.where(
            inside, brightness * thickness * nucleoli, 0.0
        ).astype(np.float32)
    density *= np.clip(texture, 0.2, None)
    return density


def _nucleoli(
    rng: np.random.Generator, shape: StarShape, y: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Multiplier that dims 1-4 round nucleoli (DNA-poor) inside a nucleus."""
    factor = np.ones(np.broadcast_shapes(y.shape, x.shape))
    for _ in range(int(rng.integers(1, 5))):
        radius = shape.radius_nm * rng.uniform(0.1, 0.22)
        angle, r = rng.uniform(0, 2 * np.pi), shape.radius_nm * rng.uniform(0.0, 0.55)
        cy, cx = shape.center_nm[0] + r * np.sin(angle), shape.center_nm[1] + r * np.cos(angle)
        d = np.hypot(y - cy, x - cx) / radius
        factor *= 1.0 - rng.uniform(0.4, 0.75) * np.exp(-(d**4))
    return factor


def membrane_density(
    rng: np.random.Generator, grid: Grid, cells_on_grid: np.ndarray
) -> np.ndarray:
    """Plasma-membrane dye emission: bright where the membrane is seen edge-on, dim over the cell.

    At the cell edge the membrane runs along the optical axis over the cell's
    height, so a whole strip of it projects onto a line; over the cell body
    only the flat dorsal and ventral membranes contribute. A few dim
    endocytic puncta are scattered inside, as membrane dyes are internalised.

    Args:
        rng: random source.
        grid: grid to render on.
        cells_on_grid: cell labels on ``grid``.

    Returns:
        float32 projected dye thickness (nm).
    """
    edge = label_edges(cells_on_grid).astype(np.float32)
    # an edge-on membrane strip (10 nm thick, as tall as the cell margin: flat lamellae to
    # rounded cells) projects onto the two-pixel-wide edge band
    edge_height = rng.uniform(500.0, 3000.0)
    edge_density = edge_height * 10.0 / (2.0 * grid.pixel_size_nm)
    texture = np.clip(
        1.0 + 0.3 * smooth_noise(rng, grid.shape, 400.0 / grid.pixel_size_nm), 0.2, None
    )
    density = edge_density * edge * texture
    inside = cells_on_grid > 0
    # the flat dorsal and ventral membranes over the cell body
    density += np.where(inside, 2.0 * 10.0 * rng.uniform(0.3, 1.0), 0.0).astype(np.float32)
    n_puncta = rng.poisson(1e-4 * np.count_nonzero(inside) * (grid.pixel_size_nm / 50.0) ** 2)
    if n_puncta:
        flat = rng.choice(np.flatnonzero(inside), n_puncta)
        density.ravel()[flat] += edge_density * rng.uniform(0.2, 1.0, n_puncta)
    return density.astype(np.float32)
