"""Synthetic EM sections of non-neural cells: cultured cells in resin and hepatocytes in tissue.

The neuropil look-alike of :mod:`.em` shows axons and dendrites; this module
draws the organelles a cell biologist segments in other cells, with known
masks: nuclei with a double envelope, heterochromatin, nuclear pores and a
nucleolus; rough ER (stacks of flat cisternae lined with ribosomes) and
smooth ER tubules; lipid droplets; Golgi stacks with vesicles at their rims;
mitochondria with a double membrane, cristae and a darker matrix; lysosomes;
vesicles; free polysomes and glycogen as unlabelled texture. The section is
then "imaged" by a randomly drawn TEM, SBF-SEM or FIB-SEM look.

Like :mod:`.em`, this is not a physical model of electron scattering but an
imitation of what heavy-metal-stained sections look like. Geometry is drawn
in nm and decided without looking at pixels, so the same seed and the same
field (``shape * pixel_size_nm``) give the same cell at any pixel size;
textures and noise differ between pixel sizes (and so, where two objects
share a pixel, which of them gets it).

Contrast conventions (``contrast``):

* ``"tem"``: bright-field transmission: heavy metal scatters electrons out of
  the objective aperture, so stained membranes are dark on bright resin.
* ``"sbfsem"`` and ``"fibsem"``: the back-scattered electron signal rises
  with the heavy-metal content, so the raw block-face image shows membranes
  bright on dark resin. Most published volumes are shown inverted to look
  like TEM; the simulator shows them inverted with probability
  :data:`INVERTED_PROBABILITY` and says which in
  :attr:`SimulatedEMCell.dark_membranes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._random import Range, SeedLike, as_rng, child_rng, draw_base_seed, smooth_noise
from .acquisition import SMOOTHING_RANGE
from .cells import StarShape, _level_on, _partition, _shape_window, label_edges
from .em import SimulatedEM
from .grid import Grid
from .organelle import CLASS_NAMES, INSTANCE_CLASSES

#: tissues :func:`simulate_em_cell` draws
TISSUES: tuple[str, ...] = ("cultured", "hepatocyte")
#: contrasts (imaging modalities) :func:`simulate_em_cell` draws
CONTRASTS: tuple[str, ...] = ("tem", "sbfsem", "fibsem")
#: label classes of :func:`simulate_em_cell`, in display order: the project's classes and vesicles
EM_CELL_CLASSES: tuple[str, ...] = (*CLASS_NAMES, "vesicles")
#: classes labelled object by object (int32); the others are uint8 0/1 masks
EM_CELL_INSTANCE_CLASSES: frozenset[str] = INSTANCE_CLASSES | {"vesicles"}
#: chance that an image was denoised or smoothed before export (then by SMOOTHING_RANGE pixels)
DENOISED_PROBABILITY = 0.3
#: chance that an SEM image is shown inverted (membranes dark, as in TEM)
INVERTED_PROBABILITY: dict[str, float] = {"sbfsem": 0.8, "fibsem": 0.7}

#: sizes (nm), amounts (per um^2 of cytoplasm or area fractions) and counts drawn per image
TISSUE_RANGES: dict[str, dict[str, Range]] = {
    "cultured": {
        "cell_radius_nm": Range(4000.0, 9000.0),
        "nucleus_radius_nm": Range(1800.0, 4000.0),
        "mitochondrion_half_width_nm": Range(80.0, 160.0),
        "mitochondrion_length_nm": Range(0.0, 2500.0),
        "mitochondria_fraction": Range(0.05, 0.12),
        "crista_spacing_nm": Range(35.0, 70.0),
        "er_stacks_per_um2": Range(0.15, 0.5),
        "er_cisternae": Range(1.0, 3.99),
        "er_length_nm": Range(400.0, 2500.0),
        "er_lumen_half_width_nm": Range(7.0, 18.0),
        "er_spacing_nm": Range(90.0, 220.0),
        "ser_tubules_per_um2": Range(0.0, 1.5),
        "droplets_per_um2": Range(0.03, 0.25),
        "droplet_radius_nm": Range(150.0, 700.0, log=True),
        "lysosomes_per_um2": Range(0.1, 0.5),
        "lysosome_radius_nm": Range(120.0, 380.0),
        "golgi_stacks_per_um2": Range(0.02, 0.1),
        "vesicles_per_um2": Range(2.0, 10.0),
        "glycogen_areas_per_um2": Range(0.0, 0.03),
        "free_ribosomes_per_um2": Range(300.0, 900.0),
    },
    "hepatocyte": {
        "cell_diameter_nm": Range(15000.0, 25000.0),
        "nucleus_radius_nm": Range(2500.0, 4500.0),
        "mitochondrion_half_width_nm": Range(150.0, 330.0),
        "mitochondrion_length_nm": Range(0.0, 900.0),
        "mitochondria_fraction": Range(0.18, 0.3),
        "crista_spacing_nm": Range(60.0, 130.0),
        "er_stacks_per_um2": Range(0.25, 0.7),
        "er_cisternae": Range(2.0, 6.99),
        "er_length_nm": Range(800.0, 4000.0),
        "er_lumen_half_width_nm": Range(9.0, 22.0),
        "er_spacing_nm": Range(80.0, 170.0),
        "ser_tubules_per_um2": Range(1.0, 5.0),
        "droplets_per_um2": Range(0.03, 0.2),
        "droplet_radius_nm": Range(150.0, 800.0, log=True),
        "lysosomes_per_um2": Range(0.05, 0.3),
        "lysosome_radius_nm": Range(150.0, 420.0),
        "golgi_stacks_per_um2": Range(0.01, 0.06),
        "vesicles_per_um2": Range(1.0, 5.0),
        "glycogen_areas_per_um2": Range(0.1, 0.3),
        "free_ribosomes_per_um2": Range(150.0, 450.0),
    },
}

#: blur (section thickness and probe, nm), electrons per pixel at full signal, read noise
CONTRAST_RANGES: dict[str, dict[str, Range]] = {
    "tem": {
        "blur_nm": Range(2.0, 6.0),
        "electrons_per_pixel": Range(30.0, 2000.0, log=True),
        "read_noise": Range(0.002, 0.02),
        "mass_thickness": Range(1.2, 2.2),
    },
    "sbfsem": {
        "blur_nm": Range(4.0, 12.0),
        "electrons_per_pixel": Range(10.0, 1000.0, log=True),
        "read_noise": Range(0.005, 0.03),
        "line_noise": Range(0.0, 0.015),
    },
    "fibsem": {
        "blur_nm": Range(2.0, 6.0),
        "electrons_per_pixel": Range(20.0, 1000.0, log=True),
        "read_noise": Range(0.005, 0.02),
        "curtaining": Range(0.01, 0.08),
    },
}

#: an arc of this radius is drawn as a straight line
_STRAIGHT_RADIUS_NM = 2.0e5
#: free space kept between neighbouring organelles, nm
_GAP_NM = 15.0
#: least cytoplasm between organelles and the plasma membrane or nuclear envelope, nm
_CLEARANCE_NM = 25.0
#: standard deviation of a ribosome or glycogen particle, nm
_PARTICLE_SIGMA_NM = 7.0
#: finite-difference step of the stencil used for distances to outlines, nm
_STEP_NM = 4.0
_STENCIL = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) * _STEP_NM
#: distances to a nucleus beyond this are not worked out (no organelle needs more room), nm
_FAR_NM = 2500.0
#: points per side of the lattice that finds the cytoplasm and measures its area
_LATTICE = 64


@dataclass
class SimulatedEMCell(SimulatedEM):
    """A synthetic EM image of non-neural cells and its labels.

    Attributes:
        image: uint8 (Y, X).
        labels: one entry per class of :data:`EM_CELL_CLASSES`: int32
            instances for :data:`EM_CELL_INSTANCE_CLASSES`, uint8 0/1 masks
            for ``"er"``, ``"golgi"`` and ``"cell_boundary"``. Classes never
            overlap.
        pixel_size_nm: pixel size.
        tissue: ``"cultured"`` or ``"hepatocyte"``.
        contrast: ``"tem"``, ``"sbfsem"`` or ``"fibsem"``.
        dark_membranes: whether stained structures are dark on a pale
            background (always for TEM; for SEM when the image is inverted).
    """

    tissue: str = "cultured"
    contrast: str = "tem"
    dark_membranes: bool = True


def simulate_em_cell(
    seed: SeedLike = 0,
    shape: tuple[int, int] = (512, 512),
    pixel_size_nm: float = 8.0,
    *,
    tissue: str | None = None,
    contrast: str | None = None,
) -> SimulatedEMCell:
    """Simulate an EM section of a cultured cell in resin or of liver tissue, with known masks.

    Args:
        seed: integer seed or generator; the same seed gives the same image.
        shape: image shape (Y, X).
        pixel_size_nm: pixel size (4-15 nm are typical). Geometry is in nm:
            the same seed and field (``shape * pixel_size_nm``) give the same
            cell at another magnification.
        tissue: ``"cultured"`` (one or two cells in pale resin) or
            ``"hepatocyte"`` (packed polygonal cells with many mitochondria,
            abundant rough ER and glycogen); ``None`` draws one.
        contrast: ``"tem"``, ``"sbfsem"`` or ``"fibsem"``; ``None`` draws one.

    Returns:
        A :class:`SimulatedEMCell` (a :class:`~.em.SimulatedEM`) with one label
        image per class of :data:`EM_CELL_CLASSES`. Every class is drawn at
        least once where the field has room (fields about 2 um across and
        smaller may lack some).

    Example:
        >>> em = simulate_em_cell(3, shape=(256, 256), pixel_size_nm=10.0,
        ...                       tissue="hepatocyte", contrast="tem")
        >>> em.image.shape, em.image.dtype.name, em.dark_membranes
        ((256, 256), 'uint8', True)
        >>> em.labels["mitochondria"].dtype.name, em.labels["er"].dtype.name
        ('int32', 'uint8')
        >>> all(em.labels[name].any() for name in ("nuclei", "mitochondria", "er"))
        True
    """
    rng = as_rng(seed)
    tissue = _choose(rng, tissue, TISSUES, "tissue")
    contrast = _choose(rng, contrast, CONTRASTS, "contrast")
    if pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm must be positive, not {pixel_size_nm}")
    base = draw_base_seed(rng)
    scene = _Scene(base, tissue, (int(shape[0]), int(shape[1])), float(pixel_size_nm))
    scene.build()
    image, dark = _acquire(child_rng(base, "acquisition"), scene.canvas.density, scene.px, contrast)
    return SimulatedEMCell(
        image=image,
        labels=scene.canvas.labels,
        pixel_size_nm=scene.px,
        tissue=tissue,
        contrast=contrast,
        dark_membranes=dark,
    )


def _choose(
    rng: np.random.Generator, value: str | None, options: tuple[str, ...], what: str
) -> str:
    """``value`` if given (checked), else one of ``options`` at random (drawn either way)."""
    drawn = options[int(rng.integers(len(options)))]
    if value is None:
        return drawn
    if value not in options:
        raise ValueError(f"{what} must be one of {options}, not {value!r}")
    return value


# --------------------------------------------------------------------------- geometry


def _membrane(distance_nm: np.ndarray, sigma_nm: float, px: float) -> np.ndarray:
    """Cross-section of a membrane at distance 0: a Gaussian at least half a pixel wide that
    keeps its integral, so thin membranes fade rather than alias at coarse pixels."""
    width = float(np.hypot(sigma_nm, 0.45 * px))
    return (sigma_nm / width) * np.exp(-0.5 * (distance_nm / width) ** 2)


def _zero_distance(values: np.ndarray) -> np.ndarray:
    """First-order signed distance ``g / |grad g|`` to the zero set of a field sampled on
    :data:`_STENCIL` (axis 0)."""
    gy = (values[1] - values[2]) / (2.0 * _STEP_NM)
    gx = (values[3] - values[4]) / (2.0 * _STEP_NM)
    return values[0] / np.maximum(np.hypot(gy, gx), 1e-12)


def _star_level(shape: StarShape, points: np.ndarray) -> np.ndarray:
    return shape.level(points[..., 0], points[..., 1]).astype(float)


def _outline(shape: StarShape, n: int = 72) -> np.ndarray:
    """Points (n, 2) on a star-shaped outline."""
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    radius = shape.radius_at(theta)
    return np.stack(
        [shape.center_nm[0] + radius * np.sin(theta), shape.center_nm[1] + radius * np.cos(theta)],
        axis=-1,
    )


def _unit(angle: float) -> np.ndarray:
    """(y, x) unit vector at ``angle`` (atan2(dy, dx) convention)."""
    return np.array([np.sin(angle), np.cos(angle)])


@dataclass(frozen=True)
class _Arc:
    """A stretch of circle: the centre line of tubules, cisternae and mitochondria.

    Its points are ``centre + radius * (sin a, cos a)`` for ``a`` from ``start`` to
    ``start + span``; a nearly straight line is an arc of a huge radius.
    """

    cy: float
    cx: float
    radius: float
    start: float
    span: float

    @classmethod
    def centred(
        cls, point: np.ndarray, tangent: float, length: float, curvature: float
    ) -> _Arc:
        """The arc of ``length`` whose midpoint is ``point`` and runs along ``tangent`` there."""
        radius = 1.0 / max(abs(curvature), 1.0 / _STRAIGHT_RADIUS_NM)
        towards = tangent + (0.5 * np.pi if curvature >= 0 else -0.5 * np.pi)
        centre = np.asarray(point, dtype=float) + radius * _unit(towards)
        span = max(float(length), 0.0) / radius
        return cls(float(centre[0]), float(centre[1]), radius, towards + np.pi - 0.5 * span, span)

    @property
    def length(self) -> float:
        return self.radius * self.span

    def parallel(self, offset: float, length: float, shift: float = 0.0) -> _Arc:
        """The concentric arc ``offset`` nm further out, ``length`` long, its middle moved
        ``shift`` nm along."""
        radius = self.radius + offset
        middle = self.start + 0.5 * self.span + shift / radius
        span = max(float(length), 0.0) / radius
        return _Arc(self.cy, self.cx, radius, middle - 0.5 * span, span)

    def point(self, t: np.ndarray | float, offset: np.ndarray | float = 0.0) -> np.ndarray:
        """Points (..., 2) at arc length ``t`` and ``offset`` nm off the centre line."""
        angle = self.start + np.asarray(t, dtype=float) / self.radius
        radius = self.radius + np.asarray(offset, dtype=float)
        return np.stack(
            [self.cy + radius * np.sin(angle), self.cx + radius * np.cos(angle)], axis=-1
        )

    def samples(self, spacing: float) -> np.ndarray:
        n = int(np.ceil(self.length / max(spacing, 1e-6))) + 1
        return self.point(np.linspace(0.0, self.length, n))

    def polar(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance from the arc's centre and direction, shared by concentric arcs."""
        dy, dx = y - self.cy, x - self.cx
        return np.hypot(dy, dx), np.arctan2(dy, dx)

    def field(
        self, rho: np.ndarray, angle: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distance to the arc, arc length along it and signed offset from it (nm).

        The arc length runs on past the ends (negative before the start), so
        patterns along an object continue over its rounded caps.
        """
        phi = np.mod(angle - self.start, 2.0 * np.pi)
        phi = np.where(phi > 0.5 * self.span + np.pi, phi - 2.0 * np.pi, phi)
        offset = rho - self.radius
        on = (phi >= 0.0) & (phi <= self.span)
        squares = rho**2 + self.radius**2
        to_start = np.sqrt(np.maximum(squares - 2.0 * rho * self.radius * np.cos(phi), 0.0))
        to_end = np.sqrt(
            np.maximum(squares - 2.0 * rho * self.radius * np.cos(phi - self.span), 0.0)
        )
        distance = np.where(on, np.abs(offset), np.minimum(to_start, to_end))
        return distance, self.radius * phi, offset

    def distance_at(self, points: np.ndarray) -> np.ndarray:
        return self.field(*self.polar(points[..., 0], points[..., 1]))[0]


@dataclass(frozen=True)
class _Wobble:
    """A smooth displacement in nm (a few plane waves): membranes in tissue are not straight."""

    wavevectors: np.ndarray  # (k, 2) rad/nm
    phases: np.ndarray  # (k, 2): of the y and of the x displacement
    amplitudes: np.ndarray  # (k, 2) nm

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, n: int = 4) -> _Wobble:
        wavelength = rng.uniform(600.0, 3000.0, n)
        direction = rng.uniform(0.0, 2.0 * np.pi, n)
        vectors = (2.0 * np.pi / wavelength)[:, None] * np.stack(
            [np.sin(direction), np.cos(direction)], axis=-1
        )
        share = rng.dirichlet(np.ones(n))[:, None] * np.ones((1, 2))
        return cls(vectors, rng.uniform(0.0, 2.0 * np.pi, (n, 2)), amplitude * share)

    @property
    def bound(self) -> float:
        """Largest displacement, nm."""
        return float(np.hypot(*np.abs(self.amplitudes).sum(axis=0)))

    def displace(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Displaced coordinates of the (H, 1) x (1, W) grid, as separable products."""
        out = [np.broadcast_to(y, (y.shape[0], x.shape[1])).copy(),
               np.broadcast_to(x, (y.shape[0], x.shape[1])).copy()]
        for (ky, kx), phase, amp in zip(self.wavevectors, self.phases, self.amplitudes):
            for axis in (0, 1):
                a, b = ky * y, kx * x + phase[axis]
                out[axis] += amp[axis] * (np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b))
        return out[0], out[1]


@dataclass
class _Layout:
    """Cells, nuclei and extracellular spaces, answerable in nm without pixels.

    Cultured cells are star shapes sharing a border where they overlap;
    hepatocytes are a power diagram of seeds (polygons) with a smooth wobble.
    """

    cells: list[StarShape] = field(default_factory=list)
    seeds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wobble: _Wobble | None = None
    nuclei: list[tuple[int, StarShape]] = field(default_factory=list)
    #: extracellular lumina (bile canaliculi): (y, x, radius) nm
    lumens: list[tuple[float, float, float]] = field(default_factory=list)
    #: small membrane-bound profiles outside the cells (microvilli): (y, x, radius) nm
    profiles: list[tuple[float, float, float]] = field(default_factory=list)

    def locate(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell of each point (0 outside cells) and its distance to the nearest plasma
        membrane or nuclear envelope (negative inside nuclei and outside cells), nm."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        stencil = points[None, :, :] + _STENCIL[:, None, :]
        if self.cells:
            levels = np.stack([_star_level(c, stencil) for c in self.cells], axis=-1)
            own = levels[0].argmin(axis=-1)
            mine = np.take_along_axis(levels, np.broadcast_to(own[None, :, None], (5, len(own), 1)),
                                      axis=-1)[..., 0]
            cell = np.where(mine[0] < 1.0, own + 1, 0)
            clearance = _zero_distance(1.0 - mine)
            for j in range(len(self.cells)):
                border = _zero_distance(levels[..., j] - mine)
                clearance = np.where(own == j, clearance, np.minimum(clearance, border))
        else:
            delta = points[:, None, :] - self.seeds[None, :, :]
            power = (delta**2).sum(axis=-1) - self.weights[None, :]
            own = power.argmin(axis=1)
            separation = 2.0 * np.linalg.norm(self.seeds[None, :, :] - self.seeds[own][:, None, :],
                                              axis=-1)
            to_border = (power - power[np.arange(len(own)), own][:, None]) / np.where(
                separation > 0, separation, np.inf
            )
            to_border[np.arange(len(own)), own] = np.inf
            clearance = to_border.min(axis=1) - (self.wobble.bound if self.wobble else 0.0)
            cell = own + 1
            for cy, cx, radius in self.lumens:
                to_lumen = np.hypot(points[:, 0] - cy, points[:, 1] - cx) - radius
                cell = np.where(to_lumen < 0, 0, cell)
                clearance = np.minimum(clearance, to_lumen)
        for _, nucleus in self.nuclei:
            # far from a nucleus its distance is only needed as a bound
            reach = np.hypot(*(points - np.asarray(nucleus.center_nm)).T)
            far = nucleus.bounding_radius() + _FAR_NM
            if np.all(reach > far):
                clearance = np.minimum(clearance, _FAR_NM)
                continue
            clearance = np.minimum(clearance, _zero_distance(_star_level(nucleus, stencil) - 1.0))
        return cell, np.where(cell > 0, clearance, -1.0)

    def rasterise(self, grid: Grid) -> np.ndarray:
        """int32 cell labels (0 = resin or lumen; microvilli get labels of their own)."""
        y, x = grid.axes_nm()
        if self.cells:
            cells = _partition(grid, self.cells)
        else:
            wy, wx = y[:, None].astype(np.float32), x[None, :].astype(np.float32)
            if self.wobble is not None:
                wy, wx = self.wobble.displace(wy, wx)
            power = np.stack([
                (wy - sy) ** 2 + (wx - sx) ** 2 - w
                for (sy, sx), w in zip(self.seeds, self.weights)
            ]).astype(np.float32)
            cells = (power.argmin(axis=0) + 1).astype(np.int32)
        for cy, cx, radius in self.lumens:
            window = _shape_window(grid, StarShape((cy, cx), radius))
            if window is not None:
                inside = np.hypot(y[window[0], None] - cy, x[None, window[1]] - cx) < radius
                cells[window][inside] = 0
        next_label = int(cells.max()) + 1
        for cy, cx, radius in self.profiles:
            window = _shape_window(grid, StarShape((cy, cx), radius))
            if window is not None:
                inside = np.hypot(y[window[0], None] - cy, x[None, window[1]] - cx) < radius
                cells[window][inside & (cells[window] == 0)] = next_label
                next_label += 1
        return cells


def _fit_nucleus(
    rng: np.random.Generator,
    layout: _Layout,
    owner: int,
    edge: np.ndarray,
    inward: np.ndarray,
    radius: float,
    margin: float = 250.0,
) -> StarShape | None:
    """A nucleus whose outline passes through ``edge`` and lies in cell ``owner`` at least
    ``margin`` nm from its membrane; smaller nuclei are tried when a large one does not fit."""
    for attempt in range(12):
        r = radius * 0.85**attempt
        # smaller nuclei sit a little deeper, away from corners of the cell
        point = edge + inward * (1.1**attempt - 1.0) * margin
        shape = StarShape.random(rng, point + inward * r, r, rng.uniform(1.0, 1.4),
                                 rng.uniform(0.01, 0.06))
        shape = shape.scaled(float(shape.level(point[0], point[1])))
        cell, clearance = layout.locate(_outline(shape))
        if np.all(cell == owner) and np.all(clearance >= margin):
            layout.nuclei.append((owner, shape))
            return shape
    return None


def _cultured_layout(rng: np.random.Generator, extent: tuple[float, float],
                     ranges: dict[str, Range]) -> _Layout:
    """One cell (sometimes a neighbour too) whose edge and nucleus both cross the field."""
    centre = 0.5 * np.asarray(extent)
    size = min(extent)
    outward = _unit(rng.uniform(0.0, 2.0 * np.pi))
    cell_edge = centre + rng.uniform(0.12, 0.38) * size * outward
    nucleus_edge = centre - rng.uniform(0.05, 0.3) * size * outward
    radius = ranges["cell_radius_nm"].draw(rng)
    cell = StarShape.random(rng, cell_edge - radius * outward, radius, rng.uniform(1.0, 1.5),
                            rng.uniform(0.02, 0.1))
    layout = _Layout(cells=[cell.scaled(float(cell.level(*cell_edge)))])
    if rng.random() < 0.35:
        # a neighbour beside the first cell, touching it or across a little resin
        angle = np.arctan2(*outward) + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
        radius2 = ranges["cell_radius_nm"].draw(rng)
        centre2 = cell_edge + (radius2 + rng.uniform(-300.0, 600.0)) * _unit(angle)
        neighbour = StarShape.random(rng, centre2, radius2, rng.uniform(1.0, 1.5),
                                     rng.uniform(0.02, 0.1))
        trial = _Layout(cells=[*layout.cells, neighbour])
        if np.mean(trial.locate(_lattice(extent, 24))[0] == 0) > 0.05:
            layout = trial
    _fit_nucleus(rng, layout, 1, nucleus_edge, -outward, ranges["nucleus_radius_nm"].draw(rng))
    if rng.random() < 0.6:
        # microvilli and filopodia cut across, just off the free surface
        main = layout.cells[0]
        for _ in range(int(rng.integers(3, 15))):
            theta = np.arctan2(*outward) + rng.normal(0.0, 0.25)
            r = rng.uniform(30.0, 70.0) if rng.random() < 0.7 else rng.uniform(100.0, 450.0)
            reach = float(main.radius_at(np.array([theta]))[0]) + rng.uniform(40.0, 500.0) + r
            p = np.asarray(main.center_nm) + reach * _unit(theta)
            ring = p + r * 1.3 * np.stack([np.sin(np.arange(8) * np.pi / 4),
                                           np.cos(np.arange(8) * np.pi / 4)], axis=-1)
            if np.any(layout.locate(np.vstack([p, ring]))[0] > 0):
                continue
            if any(np.hypot(p[0] - qy, p[1] - qx) < r + qr + 20.0
                   for qy, qx, qr in layout.profiles):
                continue
            layout.profiles.append((float(p[0]), float(p[1]), float(r)))
    return layout


def _hepatocyte_layout(rng: np.random.Generator, extent: tuple[float, float],
                       ranges: dict[str, Range]) -> _Layout:
    """Packed polygonal cells with a border (or a corner) near the field centre, a nucleus or
    two close to it and, often, a bile canaliculus on the border."""
    centre = 0.5 * np.asarray(extent)
    size = min(extent)
    diameter = ranges["cell_diameter_nm"].draw(rng)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    e1, e2 = diameter * _unit(angle), diameter * _unit(angle + np.pi / 3)
    near = centre + rng.uniform(-0.2, 0.2, 2) * size
    corner = rng.random() < 0.4
    origin = near - ((e1 + e2) / 3.0 if corner else 0.5 * e1)
    # cells A (origin), B (origin + e1) and C (origin + e2) come first and stay put
    steps = [(0, 0), (1, 0), (0, 1)] + [
        (i, j) for i in range(-3, 4) for j in range(-3, 4) if (i, j) not in ((0, 0), (1, 0), (0, 1))
    ]
    i, j = np.array(steps, dtype=float).T
    seeds = origin + i[:, None] * e1 + j[:, None] * e2
    fixed = np.arange(len(seeds)) < 3
    seeds = seeds + np.where(fixed[:, None], 0.0, rng.normal(0.0, 0.08 * diameter, seeds.shape))
    weights = np.where(fixed, 0.0, (rng.uniform(0.0, 0.2, len(seeds)) * diameter) ** 2)
    keep = fixed | (np.linalg.norm(seeds - centre, axis=1) < 0.75 * size + 1.3 * diameter)
    layout = _Layout(seeds=seeds[keep], weights=weights[keep],
                     wobble=_Wobble.random(rng, rng.uniform(10.0, 40.0)))
    a_seed, b_seed = layout.seeds[0], layout.seeds[1]
    if rng.random() < 0.5:
        along = _unit(angle + 0.5 * np.pi)
        q = near + rng.uniform(-0.3, 0.3) * size * along
        radius = rng.uniform(200.0, 500.0)
        layout.lumens.append((float(q[0]), float(q[1]), float(radius)))
        for _ in range(int(rng.integers(3, 11))):
            r = rng.uniform(30.0, 55.0)
            p = q + rng.uniform(0.0, radius - r - 10.0) * _unit(rng.uniform(0.0, 2.0 * np.pi))
            if all(np.hypot(p[0] - py, p[1] - px) > r + pr + 10.0
                   for py, px, pr in layout.profiles):
                layout.profiles.append((float(p[0]), float(p[1]), float(r)))
    for owner, seed_nm in ((1, a_seed), (2, b_seed)):
        if owner == 2 and rng.random() > 0.35:
            break
        inward = (seed_nm - near) / max(np.linalg.norm(seed_nm - near), 1e-9)
        gap = max(400.0, rng.uniform(0.2, 0.45) * size)
        _fit_nucleus(rng, layout, owner, near + gap * inward, inward,
                     ranges["nucleus_radius_nm"].draw(rng), margin=300.0)
    return layout


def _lattice(extent: tuple[float, float], n: int) -> np.ndarray:
    """An n x n lattice of points (n*n, 2) over the field, at the centres of its cells."""
    ys = (np.arange(n) + 0.5) * extent[0] / n
    xs = (np.arange(n) + 0.5) * extent[1] / n
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)


def _nucleolus(
    rng: np.random.Generator, nucleus: StarShape
) -> tuple[StarShape, np.ndarray, np.ndarray] | None:
    """A nucleolus at least 200 nm inside ``nucleus``, with the centres (n, 2) and sizes (n,) of
    its fibrillar centres; ``None`` when none fits."""
    radius = rng.uniform(300.0, 1000.0) * min(1.0, nucleus.radius_nm / 3000.0)
    for _ in range(10):
        offset = rng.uniform(0.0, 0.6 * nucleus.radius_nm) * _unit(rng.uniform(0, 2 * np.pi))
        shape = StarShape.random(rng, np.asarray(nucleus.center_nm) + offset, radius,
                                 rng.uniform(1.0, 1.4), rng.uniform(0.05, 0.15))
        stencil = _outline(shape, 24)[None, :, :] + _STENCIL[:, None, :]
        if np.all(_zero_distance(1.0 - _star_level(nucleus, stencil)) > 200.0):
            n = int(rng.integers(1, 6))
            angle = rng.uniform(0.0, 2.0 * np.pi, n)
            spread = rng.uniform(0.0, 0.7, n) * shape.radius_nm
            spots = np.asarray(shape.center_nm) + spread[:, None] * np.stack(
                [np.sin(angle), np.cos(angle)], axis=-1)
            return shape, spots, rng.uniform(40.0, 110.0, n)
    return None


def _rim_vesicles(rng: np.random.Generator, arcs: list[_Arc], reach: float) -> np.ndarray:
    """Vesicles (n, 3: y, x, radius) budding at the rims and off the trans face of a Golgi
    stack whose cisternae are ``arcs`` (cis first), clear of them and of one another."""
    n = int(rng.integers(10, 36))
    radius = rng.uniform(18.0, 32.0, n)
    at_rim = rng.random(n) < 0.7
    which = np.where(at_rim, rng.integers(len(arcs), size=n), len(arcs) - 1)
    lengths = np.array([arcs[i].length for i in which])
    beyond = rng.uniform(40.0, 160.0, n)
    t = np.where(at_rim, np.where(rng.random(n) < 0.5, -beyond, lengths + beyond),
                 rng.uniform(0.0, 1.0, n) * lengths)
    offset = np.where(at_rim, rng.normal(0.0, 30.0, n), rng.uniform(30.0, 45.0, n) + radius)
    centres = np.array([arcs[i].point(ti, oi) for i, ti, oi in zip(which, t, offset)])
    clear = np.min([a.distance_at(centres) for a in arcs], axis=0) >= radius + reach + 8.0
    kept: list[int] = []
    for i in np.flatnonzero(clear):
        if all(np.hypot(*(centres[i] - centres[j])) >= radius[i] + radius[j] + 6.0 for j in kept):
            kept.append(i)
    return np.column_stack([centres[kept], radius[kept]]).reshape(-1, 3)


# --------------------------------------------------------------------------- staining


@dataclass(frozen=True)
class _Stain:
    """Electron density (0 = unstained, about 1 = black) of each compartment in one sample."""

    resin: float
    cytoplasm: float
    membrane: float
    matrix: float
    crista: float
    nucleoplasm: float
    heterochromatin: float
    nucleolus: float
    droplet: float
    droplet_dark: bool
    lysosome: float
    er_lumen: float
    golgi_cis: float
    golgi_trans: float
    vesicle: float
    ribosome: float
    glycogen: float

    @classmethod
    def random(cls, rng: np.random.Generator, tissue: str) -> _Stain:
        hepatocyte = tissue == "hepatocyte"
        cytoplasm = rng.uniform(0.13, 0.24) if hepatocyte else rng.uniform(0.1, 0.2)
        dark_lipid = bool(rng.random() < 0.5)
        return cls(
            resin=rng.uniform(0.0, 0.04),
            cytoplasm=cytoplasm,
            membrane=rng.uniform(0.45, 0.8),
            matrix=cytoplasm + (rng.uniform(0.2, 0.35) if hepatocyte else rng.uniform(0.15, 0.3)),
            crista=rng.uniform(0.35, 0.6),
            nucleoplasm=cytoplasm + rng.uniform(-0.03, 0.06),
            heterochromatin=rng.uniform(0.25, 0.45),
            nucleolus=rng.uniform(0.45, 0.65),
            droplet=rng.uniform(0.55, 0.9) if dark_lipid else rng.uniform(0.02, 0.08),
            droplet_dark=dark_lipid,
            lysosome=rng.uniform(0.45, 0.7),
            er_lumen=cytoplasm * rng.uniform(0.4, 1.3),
            golgi_cis=rng.uniform(0.04, 0.1),
            golgi_trans=rng.uniform(0.15, 0.35),
            vesicle=rng.uniform(0.03, 0.1),
            ribosome=rng.uniform(0.25, 0.45),
            glycogen=rng.uniform(0.45, 0.8),
        )


# --------------------------------------------------------------------------- drawing


class _Canvas:
    """The density image, its labels and which pixels an object already owns."""

    def __init__(self, shape: tuple[int, int], px: float) -> None:
        self.grid = Grid(shape, px)
        self.px = px
        self.y, self.x = self.grid.axes_nm()
        self.density = np.zeros(shape, dtype=np.float32)
        self.claimed = np.zeros(shape, dtype=bool)
        self.labels = {
            name: np.zeros(shape, dtype=np.int32 if name in EM_CELL_INSTANCE_CLASSES else np.uint8)
            for name in EM_CELL_CLASSES
        }
        self.counts = dict.fromkeys(EM_CELL_CLASSES, 0)

    def window(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice] | None:
        """Pixels whose centres may lie in the box ``low``-``high`` (nm), or ``None``."""
        shape = self.grid.shape
        r0 = max(int(np.floor(low[0] / self.px - 0.5)), 0)
        c0 = max(int(np.floor(low[1] / self.px - 0.5)), 0)
        r1 = min(int(np.ceil(high[0] / self.px - 0.5)) + 1, shape[0])
        c1 = min(int(np.ceil(high[1] / self.px - 0.5)) + 1, shape[1])
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def around(self, points: np.ndarray, reach: float) -> tuple[slice, slice] | None:
        points = np.atleast_2d(points)
        return self.window(points.min(axis=0) - reach, points.max(axis=0) + reach)

    def coords(self, window: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        return self.y[window[0], None], self.x[None, window[1]]

    def claim(self, name: str, window: tuple[slice, slice], mask: np.ndarray) -> np.ndarray:
        """Give the unclaimed pixels of ``mask`` to a new object of class ``name``."""
        free = mask & ~self.claimed[window]
        if free.any():
            self.counts[name] += 1
            value = self.counts[name] if name in EM_CELL_INSTANCE_CLASSES else 1
            self.labels[name][window][free] = value
            self.claimed[window] |= free
        return free


class _Occupancy:
    """Discs (nm) covering the organelles placed so far, filed in square buckets so that a
    query only meets its neighbours."""

    def __init__(self, bucket_nm: float = 600.0) -> None:
        self.bucket = bucket_nm
        self.centres = np.zeros((64, 2))
        self.radii = np.zeros(64)
        self.count = 0
        self.buckets: dict[tuple[int, int], list[int]] = {}

    def _keys(self, low: np.ndarray, high: np.ndarray) -> list[tuple[int, int]]:
        (i0, j0), (i1, j1) = np.floor(low / self.bucket), np.floor(high / self.bucket)
        return [(i, j) for i in range(int(i0), int(i1) + 1) for j in range(int(j0), int(j1) + 1)]

    def free(self, centres: np.ndarray, radii: np.ndarray) -> bool:
        keys = self._keys((centres - radii[:, None]).min(axis=0),
                          (centres + radii[:, None]).max(axis=0))
        near: set[int] = set()
        for key in keys:
            near.update(self.buckets.get(key, ()))
        if not near:
            return True
        index = np.fromiter(near, dtype=np.intp, count=len(near))
        others, reach = self.centres[index], self.radii[index]
        d = np.hypot(centres[:, None, 0] - others[None, :, 0],
                     centres[:, None, 1] - others[None, :, 1])
        return bool(np.all(d >= radii[:, None] + reach[None, :]))

    def add(self, centres: np.ndarray, radii: np.ndarray) -> None:
        while self.count + len(radii) > len(self.radii):
            self.centres = np.vstack([self.centres, np.zeros_like(self.centres)])
            self.radii = np.concatenate([self.radii, np.zeros_like(self.radii)])
        for centre, radius in zip(centres, radii):
            self.centres[self.count], self.radii[self.count] = centre, radius
            for key in self._keys(centre - radius, centre + radius):
                self.buckets.setdefault(key, []).append(self.count)
            self.count += 1


def _chain(arc: _Arc, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Discs of ``radius`` along an arc that cover the tube of that half-width around it."""
    centres = arc.samples(0.8 * radius)
    return centres, np.full(len(centres), radius * 1.1)


@dataclass
class _Candidate:
    """An organelle drawn but not yet placed: discs for collisions, size, drawing data."""

    centres: np.ndarray
    radii: np.ndarray
    size: float
    data: dict[str, Any]


class _Scene:
    """Everything one image is drawn from; :meth:`build` fills the canvas."""

    def __init__(self, base: int, tissue: str, shape: tuple[int, int], px: float) -> None:
        self.base = base
        self.tissue = tissue
        self.px = px
        self.canvas = _Canvas(shape, px)
        self.extent = self.canvas.grid.extent_nm
        self.ranges = TISSUE_RANGES[tissue]
        self.texture = child_rng(base, "texture")
        self.stain = _Stain.random(child_rng(base, "stain"), tissue)
        self.occupancy = _Occupancy()
        self.dots: list[tuple[np.ndarray, np.ndarray, bool]] = []
        self.glycogen_areas: list[tuple[float, float, float]] = []

    # -- the order of drawing
    def build(self) -> None:
        make = _cultured_layout if self.tissue == "cultured" else _hepatocyte_layout
        self.layout = make(child_rng(self.base, "layout"), self.extent, self.ranges)
        lattice = _lattice(self.extent, _LATTICE)
        _, clearance = self.layout.locate(lattice)
        self.spots = lattice[clearance > _CLEARANCE_NM]
        self.area_um2 = len(self.spots) / len(lattice) * self.extent[0] * self.extent[1] * 1e-6
        self.cells = self.layout.rasterise(self.canvas.grid)
        self._ground()
        for owner, nucleus in self.layout.nuclei:
            self._nucleus(child_rng(self.base, "nucleus", owner), owner, nucleus)
        if not len(self.spots):
            self._render_dots()
            return
        r = self.ranges
        rng = child_rng(self.base, "amounts")
        amount = {
            name: max(1, int(rng.poisson(r[key].draw(rng) * self.area_um2)))
            for name, key in (("golgi", "golgi_stacks_per_um2"),
                              ("lipid_droplets", "droplets_per_um2"),
                              ("er", "er_stacks_per_um2"),
                              ("lysosomes", "lysosomes_per_um2"),
                              ("ser", "ser_tubules_per_um2"),
                              ("vesicles", "vesicles_per_um2"))
        }
        mito_area = r["mitochondria_fraction"].draw(rng) * self.area_um2 * 1e6
        self._glycogen(child_rng(self.base, "glycogen"))
        self._populate("golgi", amount["golgi"], self._golgi_candidate, self._draw_golgi)
        self._populate("lipid_droplets", amount["lipid_droplets"], self._droplet_candidate,
                       self._draw_droplet)
        self._populate("er", amount["er"], self._er_candidate, self._draw_cisternae)
        self._populate("mitochondria", mito_area, self._mitochondrion_candidate,
                       self._draw_mitochondrion, tries=3000)
        self._populate("lysosomes", amount["lysosomes"], self._lysosome_candidate,
                       self._draw_lysosome)
        self._populate("ser", amount["ser"], self._tubule_candidate, self._draw_cisternae)
        self._populate("vesicles", amount["vesicles"], self._vesicle_candidate,
                       self._draw_vesicle)
        self._ribosomes(child_rng(self.base, "ribosomes"))
        self._render_dots()

    def _populate(
        self,
        name: str,
        target: float,
        make: Callable[[np.random.Generator, float], _Candidate | None],
        draw: Callable[[np.random.Generator, _Candidate], None],
        tries: int | None = None,
    ) -> None:
        """Place organelles until their summed size reaches ``target``; the first one gets
        many tries, each a little smaller than the last."""
        rng = child_rng(self.base, name)
        budget = tries if tries is not None else 12 * int(np.ceil(target)) + 200
        placed, failures, misses = 0.0, 0, 0
        while placed < target and budget > 0:
            budget -= 1
            scale = 1.0 if placed else max(0.4, 0.99**failures)
            candidate = make(rng, scale)
            if candidate is None or not self._fits(candidate):
                failures += 1
                misses += 1
                if misses > (80 if placed else 300):
                    break
                continue
            misses = 0
            self.occupancy.add(candidate.centres, candidate.radii)
            draw(rng, candidate)
            placed += candidate.size

    def _fits(self, candidate: _Candidate) -> bool:
        if not self.occupancy.free(candidate.centres, candidate.radii + _GAP_NM):
            return False
        cell, clearance = self.layout.locate(candidate.centres)
        if cell[0] == 0 or np.any(cell != cell[0]):
            return False
        return bool(np.all(clearance >= candidate.radii + _CLEARANCE_NM))

    def _spot(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """A random point (2,) of the cytoplasm in the field, or ``n`` of them (n, 2)."""
        step = np.asarray(self.extent) / _LATTICE
        size = None if n is None else (n, 2)
        chosen = self.spots[rng.integers(len(self.spots), size=None if n is None else n)]
        return chosen + rng.uniform(-0.5, 0.5, size or 2) * step

    def _arc_window(self, arcs: list[_Arc], reach: float) -> tuple[slice, slice] | None:
        points = np.concatenate([a.point(np.linspace(0.0, a.length, 9)) for a in arcs])
        return self.canvas.around(points, reach + 5.0)

    def _noise(self, shape: tuple[int, ...], correlation_nm: float) -> np.ndarray:
        if min(shape) < 2:
            return np.zeros(shape, dtype=np.float32)
        return smooth_noise(self.texture, shape, correlation_nm / self.px)

    def line(self, distance: np.ndarray, sigma: float = 2.5) -> np.ndarray:
        return _membrane(distance, sigma, self.px)

    # -- cells, membranes and nuclei
    def _ground(self) -> None:
        """Cytoplasm, resin and plasma membranes (a double line where two cells touch)."""
        canvas, p, shape = self.canvas, self.stain, self.cells.shape
        inside = self.cells > 0
        grain = self._noise(shape, 6.0)
        cloud = self._noise(shape, 150.0)
        canvas.density[:] = np.where(inside, p.cytoplasm + 0.035 * grain + 0.025 * cloud,
                                     p.resin + 0.01 * cloud)
        edges = label_edges(self.cells)
        if not edges.any():
            return
        distance = (ndi.distance_transform_edt(~edges) + 0.5) * self.px
        gap = child_rng(self.base, "membranes").uniform(14.0, 24.0)
        canvas.density += (inside * p.membrane * self.line(distance - 0.5 * gap, 3.0)).astype(
            np.float32
        )
        if self.tissue == "cultured":
            # cortical actin: a faint dense layer under the free surface
            canvas.density += (inside * 0.05 * np.exp(-distance / 120.0)).astype(np.float32)
        band = inside & ((distance <= 0.5 * gap + 6.0) | edges)
        canvas.claim("cell_boundary", (slice(None), slice(None)), band)

    def _nucleus(self, rng: np.random.Generator, owner: int, shape: StarShape) -> None:
        """Double envelope with pores, heterochromatin along it and in clumps, nucleoli."""
        canvas, p = self.canvas, self.stain
        # geometric draws first, so that they do not depend on the pixels
        perinuclear = rng.uniform(15.0, 40.0)
        harmonics = rng.normal(0.0, 1.0, (2, 12)) / np.arange(1, 13)
        rim = rng.uniform(40.0, 150.0) * (1.4 if self.tissue == "cultured" else 1.0)
        coverage = rng.uniform(0.2, 0.9)
        pore_spacing = rng.uniform(150.0, 350.0)
        pore_on = rng.random(512) < 0.6
        pore_shift = rng.uniform(-0.3, 0.3, 512) * pore_spacing
        planned = [_nucleolus(rng, shape) for _ in range(int(rng.integers(1, 3)))]
        nucleoli = [n for n in planned if n is not None]
        centre = np.asarray(shape.center_nm)
        # ribosomes on the outer membrane
        n_ribosomes = int(2 * np.pi * shape.radius_nm / rng.uniform(40, 90))
        theta = rng.uniform(0.0, 2.0 * np.pi, n_ribosomes)
        reach = shape.radius_at(theta) + 13.0
        self.dots.append((centre + reach[:, None] * np.stack([np.sin(theta), np.cos(theta)], -1),
                          np.full(len(theta), p.ribosome), True))
        window = _shape_window(canvas.grid, shape)
        if window is None:
            return
        ys, xs = canvas.y[window[0]], canvas.x[window[1]]
        level = _level_on(shape, ys, xs)
        mask = canvas.claim("nuclei", window, (level < 1.0) & (self.cells[window] == owner))
        if not mask.any():
            return
        if min(level.shape) >= 2:
            gy, gx = np.gradient(level, self.px)
            depth = (1.0 - level) / np.maximum(np.hypot(gy, gx), 1e-9)
        else:
            depth = (1.0 - level) * shape.radius_nm
        # rim thickness and nuclear pores round the envelope, tabulated over the angle
        table = np.linspace(-np.pi, np.pi, 4097)
        k = np.arange(1, 13)[:, None]
        wave = (harmonics[0, :, None] * np.cos(k * table)
                + harmonics[1, :, None] * np.sin(k * table)).sum(axis=0)
        s = (table + np.pi) * shape.radius_nm
        slot = np.floor(s / pore_spacing).astype(int)
        phase = s - (slot + 0.5) * pore_spacing - pore_shift[slot % 512]
        theta_px = np.arctan2(ys[:, None] - centre[0], xs[None, :] - centre[1])
        thickness = rim * np.interp(theta_px, table, np.clip(1.0 + 0.5 * wave, 0.2, None))
        pore = np.interp(theta_px, table, pore_on[slot % 512] * np.exp(-0.5 * (phase / 30.0) ** 2))
        outer, inner = 4.0, 4.0 + perinuclear + 7.0
        # heterochromatin: irregular patches against the inner membrane, cleared at the pores,
        # and clumps further in
        blobs = self._noise(level.shape, 60.0)
        patches = np.clip(2.5 * (blobs + coverage - (depth - inner) / thickness), 0.0, 1.0)
        clumps = np.clip(1.5 * (self._noise(level.shape, 90.0) - 1.0), 0.0, 1.0)
        content = (p.nucleoplasm + 0.05 * self._noise(level.shape, 8.0)
                   + p.heterochromatin * (0.7 * clumps + patches * (depth > inner)
                                          * (1.0 - pore * (depth < inner + 80.0))))
        space = (depth > outer) & (depth < inner)
        content = np.where(space, p.cytoplasm * 0.8 + 0.3 * pore, content)
        for nucleolus, spots, sizes in nucleoli:
            self._nucleolus_into(content, window, nucleolus, spots, sizes)
        d = canvas.density[window]
        d[mask] = content[mask]
        envelope = (self.line(depth - outer) + self.line(depth - inner)) * (1.0 - 0.6 * pore)
        d += (p.membrane * envelope).astype(np.float32)

    def _nucleolus_into(self, content: np.ndarray, window: tuple[slice, slice],
                        nucleolus: StarShape, spots: np.ndarray, sizes: np.ndarray) -> None:
        """Paint a granular nucleolus with pale fibrillar centres into a nucleus's content."""
        inner_window = _shape_window(self.canvas.grid, nucleolus)
        if inner_window is None:
            return
        local = tuple(
            slice(max(a.start, b.start) - b.start, max(min(a.stop, b.stop) - b.start, 0))
            for a, b in zip(inner_window, window)
        )
        ny, nx = self.canvas.y[window[0]][local[0]], self.canvas.x[window[1]][local[1]]
        if not len(ny) or not len(nx):
            return
        lv = _level_on(nucleolus, ny, nx)
        body = np.clip((1.0 - lv) * nucleolus.radius_nm / 15.0, 0.0, 1.0)
        granular = self.stain.nucleolus + 0.12 * self._noise(lv.shape, 10.0)
        fibrillar = np.zeros_like(body)
        for (sy, sx), size in zip(spots, sizes):
            distance = np.hypot(ny[:, None] - sy, nx[None, :] - sx) / size
            fibrillar = np.maximum(fibrillar, np.exp(-0.5 * distance**4))
        content[local] = content[local] * (1 - body) + body * granular * (1 - 0.7 * fibrillar)

    # -- organelles
    def _mitochondrion_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        r = self.ranges
        half = r["mitochondrion_half_width_nm"].draw(rng) * scale
        length = r["mitochondrion_length_nm"].draw(rng) * scale
        length = min(length, 0.8 * min(self.extent))
        curvature = rng.choice([-1.0, 1.0]) / rng.uniform(max(2.0 * half, 300.0), 5000.0)
        if length * abs(curvature) > 2.5:
            curvature = np.sign(curvature) * 2.5 / length
        arc = _Arc.centred(self._spot(rng), rng.uniform(0, 2 * np.pi), length, curvature)
        centres, radii = _chain(arc, half)
        return _Candidate(centres, radii, 2 * half * length + np.pi * half**2,
                          {"arc": arc, "half": half})

    def _draw_mitochondrion(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        """Double membrane, pale intermembrane space, cristae, dense matrix and granules."""
        arc, half = candidate.data["arc"], candidate.data["half"]
        canvas, p = self.canvas, self.stain
        hepatocyte = self.tissue == "hepatocyte"
        spacing = self.ranges["crista_spacing_nm"].draw(rng)
        tilt = np.tan(rng.normal(0.0, 0.35 if hepatocyte else 0.15))
        kept = rng.random(64) < (0.6 if hepatocyte else 0.9)
        reach_fraction = rng.uniform(0.3, 0.8 if hepatocyte else 1.0, 64)
        attached = rng.choice([-1.0, 0.0, 1.0], 64)
        ripple = (rng.uniform(0.0, 10.0), rng.uniform(80.0, 250.0), rng.uniform(0, 2 * np.pi))
        start = rng.uniform(0.0, spacing)
        between = rng.uniform(7.0, 12.0)
        n_granules = int(rng.poisson(4.0 if hepatocyte else 1.0))
        granules = arc.point(rng.uniform(0.0, arc.length, n_granules),
                             rng.uniform(-0.5, 0.5, n_granules) * half)
        window = self._arc_window([arc], half + 10.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        distance, t, offset = arc.field(*arc.polar(y, x))
        depth = half - distance
        mask = canvas.claim("mitochondria", window, depth > 0)
        if not mask.any():
            return
        outer, inner = 3.5, 3.5 + between + 4.0
        core = half - inner - 2.0
        along = (t + tilt * offset + ripple[0] * np.sin(2 * np.pi * offset / ripple[1] + ripple[2])
                 + start)
        which = np.floor(along / spacing)
        slot = which.astype(np.int64) % 64
        across = along - (which + 0.5) * spacing
        span = reach_fraction[slot] * core
        middle = attached[slot] * (core - span)
        crista = kept[slot] & (np.abs(offset - middle) < span) & (depth > inner + 1.0)
        content = p.matrix + 0.04 * self._noise(mask.shape, 8.0)
        for gy, gx in granules:
            content = content + 0.35 * np.exp(-0.5 * ((y - gy) ** 2 + (x - gx) ** 2)
                                              / max(15.0, 0.5 * self.px) ** 2)
        content = np.where((depth > outer) & (depth < inner), p.cytoplasm * 0.8, content)
        d = canvas.density[window]
        d[mask] = content[mask]
        lines = p.membrane * (self.line(depth - outer) + self.line(depth - inner))
        lines = lines + p.crista * crista * self.line(np.abs(across) - 4.0)
        d += lines.astype(np.float32)

    def _er_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        """A stack of rough ER cisternae: concentric arcs, each its own length."""
        r = self.ranges
        n = int(r["er_cisternae"].draw(rng))
        spacing = r["er_spacing_nm"].draw(rng)
        lumen = r["er_lumen_half_width_nm"].draw(rng)
        length = min(r["er_length_nm"].draw(rng) * scale, 0.9 * min(self.extent))
        curvature = rng.choice([-1.0, 1.0]) / rng.uniform(1500.0, 15000.0)
        middle = _Arc.centred(self._spot(rng), rng.uniform(0, 2 * np.pi), length, curvature)
        offsets = (np.arange(n) - 0.5 * (n - 1)) * spacing
        arcs = [middle.parallel(o, length * rng.uniform(0.55, 1.0),
                                rng.uniform(-0.15, 0.15) * length) for o in offsets]
        band = 0.5 * (n - 1) * spacing + lumen + 30.0
        centres, radii = _chain(middle.parallel(0.0, 1.3 * length), band)
        return _Candidate(centres, radii, 1.0, {"arcs": arcs, "lumen": lumen, "rough": True})

    def _tubule_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate | None:
        """A smooth ER tubule cut across or along, in a cluster (in hepatocytes, in glycogen)."""
        areas = self.glycogen_areas
        if areas and rng.random() < 0.8:
            cy, cx, radius = areas[int(rng.integers(len(areas)))]
            point = np.array([cy, cx]) + rng.uniform(0.0, radius) * _unit(rng.uniform(0, 2 * np.pi))
        else:
            point = self._spot(rng)
        lumen = rng.uniform(10.0, 22.0)
        length = rng.uniform(0.0, 350.0) * scale if rng.random() < 0.6 else 0.0
        curvature = rng.choice([-1.0, 1.0]) / rng.uniform(150.0, 2000.0)
        arc = _Arc.centred(point, rng.uniform(0, 2 * np.pi), length, curvature)
        centres, radii = _chain(arc, lumen + 8.0)
        return _Candidate(centres, radii, 1.0, {"arcs": [arc], "lumen": lumen, "rough": False})

    def _draw_cisternae(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        """ER cisternae (one concentric family): pale or dense lumen between two membranes,
        ribosomes on the cytoplasmic faces of rough ER."""
        arcs, lumen = candidate.data["arcs"], candidate.data["lumen"]
        canvas, p = self.canvas, self.stain
        if candidate.data["rough"]:
            coverage = rng.uniform(0.5, 0.9)
            for arc in arcs:
                for side in (-1.0, 1.0):
                    t = np.cumsum(rng.uniform(24.0, 42.0, int(arc.length / 24.0) + 1))
                    t = t[(t < arc.length) & (rng.random(len(t)) < coverage)]
                    self.dots.append((arc.point(t, side * (lumen + 17.0)),
                                      np.full(len(t), p.ribosome), True))
        window = self._arc_window(arcs, lumen + 12.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        rho, angle = arcs[0].polar(y, x)
        mask = np.zeros(rho.shape, dtype=bool)
        hollow = np.zeros(rho.shape, dtype=bool)
        lines = np.zeros(rho.shape)
        for arc in arcs:
            distance = arc.field(rho, angle)[0]
            mask |= distance < lumen + 6.0
            hollow |= distance < lumen
            lines += self.line(distance - lumen - 3.0)
        free = canvas.claim("er", window, mask)
        d = canvas.density[window]
        d[free & hollow] = p.er_lumen
        d += (p.membrane * np.minimum(lines, 1.0) * (free | ~self.canvas.claimed[window])).astype(
            np.float32
        )

    def _golgi_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        """A Golgi stack: 4-7 curved cisternae, the middle ones longest, vesicles at the rims."""
        n = max(3, int(round(int(rng.integers(4, 8)) * scale)))
        spacing = rng.uniform(28.0, 45.0)
        lumen = rng.uniform(5.0, 11.0)
        rim = rng.uniform(8.0, 25.0)
        length = rng.uniform(450.0, 1100.0) * scale
        band = 0.5 * (n - 1) * spacing + lumen + rim + 90.0
        curvature = rng.choice([-1.0, 1.0]) / rng.uniform(band + 150.0, 1500.0)
        point, tangent = self._spot(rng), rng.uniform(0.0, 2.0 * np.pi)
        nuclei = self.layout.nuclei
        if nuclei and rng.random() < 0.7:
            # curved round the nucleus, as a Golgi ribbon often is
            nucleus = nuclei[int(rng.integers(len(nuclei)))][1]
            tangent = np.arctan2(*(point - np.asarray(nucleus.center_nm))) + 0.5 * np.pi
            curvature = abs(curvature)
        middle = _Arc.centred(point, tangent, length, curvature)
        k = np.arange(n)
        taper = 1.0 - 0.35 * np.abs(k - 0.5 * (n - 1)) / (0.5 * n)
        lengths = length * taper * rng.uniform(0.85, 1.05, n)
        arcs = [middle.parallel((i - 0.5 * (n - 1)) * spacing, lengths[i]) for i in k]
        gaps = [(rng.uniform(0.2, 0.8) * a.length, rng.uniform(30.0, 80.0))
                if rng.random() < 0.3 else (0.0, 0.0) for a in arcs]
        centres, radii = _chain(middle.parallel(0.0, length + 400.0), band)
        return _Candidate(centres, radii, 1.0, {"arcs": arcs, "lumen": lumen, "rim": rim,
                                                "gaps": gaps})

    def _draw_golgi(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        data = candidate.data
        arcs, lumen, rim = data["arcs"], data["lumen"], data["rim"]
        canvas, p = self.canvas, self.stain
        vesicles = _rim_vesicles(rng, arcs, lumen + rim)
        points = [vesicles[:, :2]] if len(vesicles) else []
        window = self.canvas.around(
            np.concatenate(points + [a.point(np.linspace(0, a.length, 9)) for a in arcs]),
            lumen + rim + 50.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        rho, angle = arcs[0].polar(y, x)
        mask = np.zeros(rho.shape, dtype=bool)
        fill = np.full(rho.shape, np.nan)
        lines = np.zeros(rho.shape)
        n = len(arcs)
        for i, (arc, (gap_at, gap_width)) in enumerate(zip(arcs, data["gaps"])):
            distance, t, _ = arc.field(rho, angle)
            if gap_width:
                distance = np.where(np.abs(t - gap_at) < 0.5 * gap_width, np.inf, distance)
            # dilated rims
            width = lumen + rim * (np.exp(-((t / 60.0) ** 2))
                                   + np.exp(-(((arc.length - t) / 60.0) ** 2)))
            mask |= distance < width + 5.0
            value = p.golgi_cis + (p.golgi_trans - p.golgi_cis) * i / max(n - 1, 1)
            fill = np.where(distance < width, value, fill)
            lines += self.line(distance - width - 2.5)
        for vy, vx, vr in vesicles:
            distance = np.hypot(y - vy, x - vx)
            mask |= distance < vr + 4.0
            fill = np.where(distance < vr, p.vesicle + 0.5 * (p.golgi_trans - p.vesicle), fill)
            lines += self.line(distance - vr)
        free = canvas.claim("golgi", window, mask)
        d = canvas.density[window]
        lumen_pixels = free & np.isfinite(fill)
        d[lumen_pixels] = fill[lumen_pixels]
        d += (p.membrane * np.minimum(lines, 1.0)).astype(np.float32)

    def _droplet_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        radius = min(self.ranges["droplet_radius_nm"].draw(rng) * scale, 0.16 * min(self.extent))
        centre = self._spot(rng)
        return _Candidate(centre[None], np.array([radius]), 1.0,
                          {"centre": centre, "radius": radius, "tone": rng.normal(0.0, 0.02)})

    def _draw_droplet(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        """Homogeneous, round, sharp-edged; pale or dark with the staining, no bilayer."""
        (cy, cx), radius = candidate.data["centre"], candidate.data["radius"]
        canvas, p = self.canvas, self.stain
        window = canvas.around(np.array([cy, cx]), radius + 10.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        distance = np.hypot(y - cy, x - cx)
        mask = canvas.claim("lipid_droplets", window, distance < radius)
        d = canvas.density[window]
        d[mask] = p.droplet + candidate.data["tone"]
        if not p.droplet_dark:
            d += (0.25 * self.line(distance - radius + 2.0, 2.0)).astype(np.float32)

    def _lysosome_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        half = self.ranges["lysosome_radius_nm"].draw(rng) * scale
        arc = _Arc.centred(self._spot(rng), rng.uniform(0, 2 * np.pi),
                           rng.uniform(0.0, 0.6) * half, 0.0)
        centres, radii = _chain(arc, half)
        return _Candidate(centres, radii, 1.0, {"arc": arc, "half": half})

    def _draw_lysosome(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        """Single membrane round dense, heterogeneous content: granules, pale inclusions,
        sometimes membrane whorls or a lucent halo."""
        arc, half = candidate.data["arc"], candidate.data["half"]
        canvas, p = self.canvas, self.stain
        halo = rng.uniform(8.0, 30.0) if rng.random() < 0.5 else 0.0
        whorl = rng.uniform(15.0, 30.0) if rng.random() < 0.3 else 0.0
        n_granules, n_pale = int(rng.integers(3, 13)), int(rng.integers(0, 4))
        where = arc.point(rng.uniform(0.0, arc.length, n_granules + n_pale),
                          rng.uniform(-0.6, 0.6, n_granules + n_pale) * half)
        sizes = np.concatenate([rng.uniform(12.0, 35.0, n_granules),
                                rng.uniform(25.0, 0.35 * half + 25.0, n_pale)])
        tone = p.lysosome * rng.uniform(0.85, 1.15)
        window = self._arc_window([arc], half + 10.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        distance = arc.field(*arc.polar(y, x))[0]
        depth = half - distance
        mask = canvas.claim("lysosomes", window, depth > 0)
        content = tone + 0.15 * self._noise(mask.shape, 25.0)
        for i, ((gy, gx), size) in enumerate(zip(where, sizes)):
            blob = np.exp(-0.5 * ((y - gy) ** 2 + (x - gx) ** 2) / max(size, 0.5 * self.px) ** 2)
            content = content + 0.35 * blob if i < n_granules else content * (1 - 0.7 * blob)
        if whorl:
            content = content + 0.15 * np.cos(np.pi * depth / whorl) ** 2
        if halo:
            content = np.where(depth < 3.0 + halo, p.cytoplasm * 0.7, content)
        d = canvas.density[window]
        d[mask] = content[mask]
        d += (p.membrane * self.line(depth - 3.0)).astype(np.float32)

    def _vesicle_candidate(self, rng: np.random.Generator, scale: float) -> _Candidate:
        large = rng.random() < 0.15
        radius = (rng.uniform(50.0, 120.0) if large else rng.uniform(18.0, 45.0)) * scale
        centre = self._spot(rng)
        kind = rng.choice(["clear", "clear", "clear", "coated", "dense"])
        return _Candidate(centre[None], np.array([radius + 10.0]), 1.0,
                          {"centre": centre, "radius": radius, "kind": kind})

    def _draw_vesicle(self, rng: np.random.Generator, candidate: _Candidate) -> None:
        (cy, cx), radius = candidate.data["centre"], candidate.data["radius"]
        canvas, p = self.canvas, self.stain
        window = canvas.around(np.array([cy, cx]), radius + 20.0)
        if window is None:
            return
        y, x = canvas.coords(window)
        distance = np.hypot(y - cy, x - cx)
        mask = canvas.claim("vesicles", window, distance < radius + 3.0)
        d = canvas.density[window]
        lumen = np.full(mask.shape, p.vesicle)
        if candidate.data["kind"] == "dense":
            lumen[distance < 0.55 * radius] = 0.55
        d[mask] = lumen[mask]
        lines = self.line(distance - radius)
        if candidate.data["kind"] == "coated":
            lines = lines + 0.5 * self.line(distance - radius - 9.0, 4.0)
        d += (p.membrane * lines).astype(np.float32)

    # -- particles
    def _glycogen(self, rng: np.random.Generator) -> None:
        """Glycogen fields: alpha rosettes of beta particles (dark dots, unlabelled)."""
        n_areas = int(rng.poisson(self.ranges["glycogen_areas_per_um2"].draw(rng) * self.area_um2))
        if self.tissue == "hepatocyte":
            n_areas = max(n_areas, 1)
        tone = self.stain.glycogen
        for _ in range(n_areas):
            centre = self._spot(rng)
            radius = rng.uniform(300.0, 1400.0)
            self.glycogen_areas.append((float(centre[0]), float(centre[1]), radius))
            n_rosettes = int(rng.poisson(rng.uniform(40.0, 140.0) * np.pi * (radius / 1000.0) ** 2))
            spread = np.sqrt(rng.uniform(0.0, 1.0, n_rosettes)) * radius
            direction = rng.uniform(0.0, 2.0 * np.pi, n_rosettes)
            parents = centre + spread[:, None] * np.stack(
                [np.sin(direction), np.cos(direction)], axis=-1)
            children = rng.integers(1, 9, n_rosettes)
            particles = np.repeat(parents, children, axis=0)
            particles = particles + rng.normal(0.0, 16.0, particles.shape)
            self.dots.append((particles, tone * rng.uniform(0.8, 1.2, len(particles)), False))

    def _ribosomes(self, rng: np.random.Generator) -> None:
        """Free ribosomes, many strung into polysomes."""
        n = int(rng.poisson(self.ranges["free_ribosomes_per_um2"].draw(rng) * self.area_um2))
        if n == 0:
            return
        chains = max(1, n // 3)
        heads = self._spot(rng, chains)
        lengths = rng.integers(1, 6, chains)
        angles = np.repeat(rng.uniform(0, 2 * np.pi, chains), lengths)
        turn = rng.normal(0.0, 0.5, len(angles))
        heading = angles + np.cumsum(turn)
        step = rng.uniform(32.0, 40.0) * np.stack([np.sin(heading), np.cos(heading)], axis=-1)
        owner = np.repeat(np.arange(chains), lengths)
        walked = np.cumsum(step, axis=0)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        walked -= np.repeat(walked[first], lengths, axis=0)
        points = heads[owner] + walked
        self.dots.append((points, np.full(len(points), self.stain.ribosome), False))

    def _render_dots(self) -> None:
        """Splat every particle (bilinear) and blur them to their size; free particles stay
        out of organelles and resin, bound ones (on ER and the nuclear envelope) out of all
        but the ER."""
        if not self.dots:
            return
        canvas = self.canvas
        grid = canvas.grid
        points = np.concatenate([d[0] for d in self.dots]).reshape(-1, 2)
        peaks = np.concatenate([d[1] for d in self.dots])
        bound = np.concatenate([np.full(len(d[1]), d[2]) for d in self.dots])
        inside = grid.contains(points)
        points, peaks, bound = points[inside], peaks[inside], bound[inside]
        index = grid.to_index(points)
        outside = self.cells == 0
        free_block = canvas.claimed | outside
        bound_block = (canvas.claimed & (canvas.labels["er"] == 0)) | outside
        blocked = np.where(bound, bound_block[index[:, 0], index[:, 1]],
                           free_block[index[:, 0], index[:, 1]])
        points, peaks = points[~blocked], peaks[~blocked]
        if not len(peaks):
            return
        mass = peaks * 2.0 * np.pi * _PARTICLE_SIGMA_NM**2 / self.px**2
        pix = grid.to_pixels(points)
        low = np.floor(pix).astype(int)
        frac = pix - low
        h, w = grid.shape
        splat = np.zeros(h * w)
        for dy in (0, 1):
            for dx in (0, 1):
                r, c = low[:, 0] + dy, low[:, 1] + dx
                weight = mass * np.abs(1 - dy - frac[:, 0]) * np.abs(1 - dx - frac[:, 1])
                ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                splat += np.bincount(r[ok] * w + c[ok], weight[ok], minlength=h * w)
        sigma = _PARTICLE_SIGMA_NM / self.px
        canvas.density += ndi.gaussian_filter(splat.reshape(h, w), sigma).astype(np.float32)


# --------------------------------------------------------------------------- imaging


def _acquire(
    rng: np.random.Generator, density: np.ndarray, px: float, contrast: str
) -> tuple[np.ndarray, bool]:
    """Blur, signal, Poisson-Gaussian noise, modality artefacts and display; returns the uint8
    image and whether stained structures are shown dark.

    Every setting is drawn before the noise, so that it does not depend on the image shape.
    """
    r = CONTRAST_RANGES[contrast]
    blur = r["blur_nm"].draw(rng) / px
    stretch = rng.uniform(1.0, 1.4) if rng.random() < 0.3 else 1.0
    sigma = (blur * stretch, blur) if rng.random() < 0.5 else (blur, blur * stretch)
    unevenness = rng.uniform(0.0, 0.1)
    electrons = r["electrons_per_pixel"].draw(rng)
    read_noise = r["read_noise"].draw(rng)
    if contrast == "tem":
        dark, mass_thickness = True, r["mass_thickness"].draw(rng)
    else:
        dark = bool(rng.random() < INVERTED_PROBABILITY[contrast])
        floor, gain = rng.uniform(0.03, 0.12), rng.uniform(0.6, 1.0)
    stripes = r["line_noise" if contrast == "sbfsem" else "curtaining"].draw(rng) if (
        contrast != "tem") else 0.0
    streak_width = rng.uniform(1.0, 6.0)
    smoothing = SMOOTHING_RANGE.draw(rng) if rng.random() < DENOISED_PROBABILITY else 0.0
    black, white = rng.uniform(0.05, 1.0), rng.uniform(99.0, 99.95)
    # display range: from full-range stretches to the flat, grey look of many exports
    gamma, span = rng.uniform(0.8, 1.25), rng.uniform(100.0, 245.0)
    offset = rng.uniform(5.0, 250.0 - span)

    shape = density.shape
    blurred = ndi.gaussian_filter(density, sigma)
    if contrast == "tem":
        signal = np.exp(-mass_thickness * blurred)
    else:
        signal = floor + gain * blurred
    signal *= 1.0 + unevenness * smooth_noise(rng, shape, 0.35 * max(shape))
    counts = rng.poisson(np.clip(signal, 0.0, None) * electrons).astype(np.float32) / electrons
    counts += read_noise * rng.standard_normal(shape).astype(np.float32)
    if contrast == "sbfsem":
        # scan lines: each row's offset drifts a little
        counts += stripes * rng.standard_normal((shape[0], 1)).astype(np.float32)
    elif contrast == "fibsem":
        # curtaining: streaks along the milling direction (down the image), fading in and out
        streaks = ndi.gaussian_filter1d(rng.standard_normal(shape[1]), streak_width)
        fade = ndi.gaussian_filter1d(rng.standard_normal(shape[0]), shape[0] / 8.0, mode="wrap")
        fade = 1.0 + 0.3 * fade / max(float(fade.std()), 1e-9)
        streaks = streaks / max(float(streaks.std()), 1e-9)
        counts += (stripes * fade[:, None] * streaks[None, :]).astype(np.float32)
    if smoothing:
        counts = ndi.gaussian_filter(counts, smoothing)
    shown = -counts if contrast != "tem" and dark else counts
    low, high = np.percentile(shown, [black, white])
    scaled = np.clip((shown - low) / max(high - low, 1e-6), 0.0, 1.0) ** gamma
    return np.clip(offset + scaled * span, 0, 255).astype(np.uint8), dark
