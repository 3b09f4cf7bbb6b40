"""Scenes: cells full of organelles, imaged one fluorescence channel per organelle.

:func:`simulate_cell` is the full simulator (all channels, all labels, the
known truth). :func:`training_sample` is the fast path for training a
single-channel model: one randomly chosen organelle imaged through a randomly
drawn microscope, with the nuisances of real data (crosstalk from another
dye, unbound dye in the cytosol, uneven illumination, every noise level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from skimage.measure import label as connected_label
from skimage.segmentation import relabel_sequential

from ._random import Range, SeedLike, as_rng, child_rng, draw_base_seed
from .acquisition import AcquisitionArtifacts, apply_artifacts
from .cells import CellParams, generate_cells
from .contacts import organelle_contacts
from .geometry import default_params, generate_organelle, random_params
from .graph import NetworkGraph
from .grid import Grid
from .microscope import Microscope, MicroscopeSettings
from .organelle import CLASS_NAMES, INSTANCE_CLASSES, OrganelleGeometry

#: pixel size used when none is given, nm (a 60x/1.4 objective on a confocal)
DEFAULT_PIXEL_SIZE_NM = 80.0
#: pixel sizes :func:`training_sample` draws from, nm (SIM reconstructions to 40x widefield)
PIXEL_SIZE_RANGE = Range(35.0, 180.0, log=True)
#: specimen simulated around the field of view so nothing ends artificially at its border
_MARGIN_NM = 2000.0
#: blurred peak of an emission density scaled by ``_Scene.emission``: the exposure
#: reference for a field in which the labelled organelle is absent
_TYPICAL_OPTICAL_PEAK = 0.5


@dataclass(frozen=True)
class Dye:
    """The fluorescent label of one organelle class.

    Attributes:
        name: a typical live-cell dye or fusion protein.
        emission_nm: emission peak.
        cytosolic_fraction: brightness of unbound or mistargeted dye in the
            cytosol relative to the labelled structure.
    """

    name: str
    emission_nm: float
    cytosolic_fraction: float


#: the dye that :func:`simulate_cell` images each class with
DYES: dict[str, Dye] = {
    "nuclei": Dye("Hoechst 33342", 461.0, 0.0),
    "mitochondria": Dye("MitoTracker Deep Red", 665.0, 0.03),
    "er": Dye("mEmerald-Sec61b", 510.0, 0.04),
    "lysosomes": Dye("LysoTracker Red", 590.0, 0.02),
    "lipid_droplets": Dye("BODIPY 493/503", 515.0, 0.05),
    "golgi": Dye("mCherry-GalT", 610.0, 0.05),
    "cell_boundary": Dye("CellMask Orange", 567.0, 0.0),
}


def auto_oversample(pixel_size_nm: float) -> int:
    """Fine-grid factor for rendering: 1 up to 90 nm pixels, 2 up to 180 nm, 3 beyond.

    Density pixels then stay at or below 90 nm, finer than the smallest
    structures' blur; what a fine pixel's own area would add to the blur is
    folded into the PSF by :meth:`Microscope.optics`.
    """
    return int(np.clip(np.ceil(pixel_size_nm / 90.0 - 1e-9), 1, 3))


@dataclass
class SimulatedCell:
    """A simulated multichannel fluorescence image with its complete ground truth.

    Attributes:
        channels: uint16 image (Y, X) per organelle class, each imaged with its own dye.
        labels: ground truth per class (names from :data:`CLASS_NAMES`): int32
            instance labels for nuclei, mitochondria, lysosomes and
            lipid_droplets; uint8 0/1 masks for er, golgi and cell_boundary.
        truth: known measurements: per network class (er, mitochondria) the
            :class:`~napari_organelle.simulation.graph.NetworkStats` fields in
            nm and px; object counts and sizes; ``"contacts"`` keyed ``"A-B"``
            (see :mod:`~napari_organelle.simulation.contacts`).
        pixel_size_nm: pixel size of every array.
        graphs: centre-line graphs of the network classes, clipped to the image.
        cells: int32 whole-cell instance labels (nucleus ``i`` lies in cell ``i``).
        expected_photons: noise-free expected photons per channel (float32).
        microscopes: acquisition settings per channel.
    """

    channels: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    truth: dict[str, Any]
    pixel_size_nm: float
    graphs: dict[str, NetworkGraph] = field(default_factory=dict)
    cells: np.ndarray | None = None
    expected_photons: dict[str, np.ndarray] = field(default_factory=dict)
    microscopes: dict[str, MicroscopeSettings] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.labels.values())).shape

    def stack(self, names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Channels as one (C, Y, X) uint16 array, in ``names`` order (default: all, in class
        order)."""
        names = list(names) if names is not None else [n for n in CLASS_NAMES if n in self.channels]
        return np.stack([self.channels[n] for n in names]), names


def simulate_cell(
    seed: SeedLike = None,
    shape: tuple[int, int] = (256, 256),
    pixel_size_nm: float = DEFAULT_PIXEL_SIZE_NM,
    organelles: Sequence[str] = CLASS_NAMES,
    microscope: MicroscopeSettings | None = None,
    *,
    randomize: bool = False,
    params: Mapping[str, Any] | None = None,
    oversample: int | None = None,
    contact_distance_nm: float = 100.0,
) -> SimulatedCell:
    """Simulate a field of one or more cells and image each organelle class in its own channel.

    Geometry of each class depends only on the seed and that class's
    parameters, so asking for fewer classes leaves the others unchanged.

    Args:
        seed: integer seed or generator; equal seeds give identical results.
        shape: image shape (Y, X).
        pixel_size_nm: camera pixel size in the sample plane.
        organelles: classes to generate and image (see :data:`CLASS_NAMES`).
        microscope: acquisition settings shared by all channels (each channel
            gets its dye's emission wavelength); default: a confocal with good
            signal, or random settings when ``randomize`` is set.
        randomize: draw cell, organelle and (unless given) microscope
            parameters from their wide ranges instead of typical values.
        params: parameter dataclasses that override the defaults, keyed by
            class name or ``"cells"``, e.g. ``{"er": ERParams(sheets=False)}``.
        oversample: fine-grid factor for rendering; by default chosen from the pixel size.
        contact_distance_nm: distance within which pixels of two organelles
            count as a contact in ``truth["contacts"]``.

    Returns:
        The images, labels and known truth.
    """
    names = _check_names(organelles)
    rng = as_rng(seed)
    base = draw_base_seed(rng)
    params = dict(params or {})

    def chosen(name: str) -> Any:
        if name in params:
            return params[name]
        if randomize:
            return random_params(name, child_rng(base, "params", name))
        return default_params(name)

    scene = _Scene(base, shape, pixel_size_nm, oversample, chosen("cells"))
    if microscope is None:
        microscope = (
            MicroscopeSettings.random(child_rng(base, "microscope"))
            if randomize
            else MicroscopeSettings()
        )
    # how much unbound dye enters the nucleus is one property of the sample for all channels
    nuclear_factor = float(child_rng(base, "cytosol").uniform(0.0, 1.2)) if randomize else 0.5

    channels, labels, expected, settings, graphs = {}, {}, {}, {}, {}
    truth: dict[str, Any] = {"pixel_size_nm": float(pixel_size_nm)}
    for name in names:
        geometry = scene.geometry(name, chosen(name))
        dye = DYES[name]
        cytosolic = dye.cytosolic_fraction
        if randomize:
            cytosolic *= float(np.exp(child_rng(base, "cytosol", name).normal(0.0, 0.7)))
        background = cytosolic * scene.cytosol(nuclear_factor) if cytosolic > 0 else None
        settings[name] = microscope.with_wavelength(dye.emission_nm)
        channels[name], expected[name] = scene.image(
            scene.emission(geometry), settings[name], name, background
        )
        labels[name] = scene.crop_labels(geometry)
        truth[name] = _class_truth(scene, geometry, labels[name], pixel_size_nm, graphs)

    cells = scene.layout.cells[scene.crop]
    cells, forward, _ = relabel_sequential(cells)
    if "nuclei" in labels:
        labels["nuclei"] = forward[labels["nuclei"]].astype(np.int32)
    truth["n_cells"] = int(cells.max())
    truth["contacts"] = {
        key: stats.as_dict()
        for key, stats in organelle_contacts(labels, pixel_size_nm, contact_distance_nm).items()
    }
    return SimulatedCell(
        channels=channels,
        labels=labels,
        truth=truth,
        pixel_size_nm=float(pixel_size_nm),
        graphs=graphs,
        cells=cells.astype(np.int32),
        expected_photons=expected,
        microscopes=settings,
    )


def training_sample(
    rng: SeedLike,
    shape: tuple[int, int] = (256, 256),
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    shown: str | None = None,
    pixel_size_nm: float | None = None,
    normalize: bool = False,
    return_info: bool = False,
) -> (
    tuple[np.ndarray, dict[str, np.ndarray]]
    | tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]
):
    """One randomised single-channel training image and its targets.

    One organelle class (``shown``, by default drawn from ``class_names``) is
    imaged through a random microscope at a random pixel size, in a random
    field of one to ten cells (nuclei: also low-magnification widefield fields of up to
    250 crowded cells). About a third of samples also carry faint
    crosstalk from another organelle's dye; most carry unbound dye in the
    cytosol (with the nucleus excluded, dim, or as bright as the cytosol).

    Args:
        rng: generator or seed.
        shape: image shape (Y, X).
        class_names: classes the model predicts; every one gets a target.
        shown: class to image; random from ``class_names`` when ``None``.
        pixel_size_nm: fixed pixel size; random from :data:`PIXEL_SIZE_RANGE` when ``None``.
        normalize: scale the image to [0, 1] between its 1st and 99.8th
            percentiles; by default the raw camera values are returned, so the
            model's own normalisation sees what it will see on real data.
        return_info: also return a dict describing how the sample was made.

    Returns:
        ``(image, targets)``: float32 (Y, X) image and uint8 0/1 mask per
        class in ``class_names``, all zero except the shown class; plus
        ``info`` when asked for.
    """
    names = _check_names(class_names)
    rng = as_rng(rng)
    shown = shown if shown is not None else names[int(rng.integers(len(names)))]
    _check_names([shown])
    pixel_size, base, cell_params = CellParams.training_field(
        rng, shown, pixel_size_nm, PIXEL_SIZE_RANGE
    )
    scene = _Scene(base, shape, pixel_size, None, cell_params)
    if pixel_size >= LOW_MAGNIFICATION_NM:
        # pixels this large come from 10x-40x objectives on widefield stands
        settings = replace(MicroscopeSettings.random(rng, modality="widefield"),
                           numerical_aperture=float(rng.uniform(0.25, 0.8)))
    else:
        settings = MicroscopeSettings.random(rng)

    params = random_params(shown, rng)
    if shown == "er":
        # annotators draw a tubule as wide as it looks: a share of the PSF's width
        share = float(rng.uniform(0.5, 1.3))
        width = share * 2.355 * settings.psf_sigma_nm / scene.pixel_size_nm
        params = replace(params, label_min_width_px=max(params.label_min_width_px, width))
    geometry = scene.geometry(shown, params)
    background = np.zeros(scene.fine.shape, dtype=np.float32)
    crosstalk, crosstalk_level = None, 0.0
    if rng.random() < 0.3:
        others = [n for n in CLASS_NAMES if n != shown]
        crosstalk = others[int(rng.integers(len(others)))]
        crosstalk_level = Range(0.02, 0.15, log=True).draw(rng)
        other = scene.geometry(crosstalk, random_params(crosstalk, rng))
        background += crosstalk_level * scene.emission(other)
    cytosolic = 0.0
    # DNA and membrane dyes have no cytosolic pool worth speaking of; free dye in the
    # nucleus is at most as bright as in the cytosol, so it never mimics a DNA stain
    if shown not in ("nuclei", "cell_boundary") and rng.random() < 0.8:
        cytosolic = Range(0.005, 0.3, log=True).draw(rng)
        background += cytosolic * scene.cytosol(float(rng.uniform(0.0, 1.0)))
    signal = scene.emission(geometry)
    hidden = None
    er_look: dict[str, float] = {}
    if shown == "er":
        signal, haze, hidden, er_look = _er_look(rng, scene, signal)
        background += haze
    image, _ = scene.image(signal, settings, "training", background)
    artifacts = AcquisitionArtifacts.random(rng)
    if hidden is not None and rng.random() < 0.75:
        # an image dominated by a bright mass is exported with the display range set for
        # the tubules, so the mass clips (as in published live-cell ER images)
        artifacts = replace(artifacts, eight_bit=True,
                            saturated_fraction=_clipped_share(rng, image, scene, geometry,
                                                              hidden))
    image = apply_artifacts(image, artifacts) if artifacts.any else image.astype(np.float32)
    if normalize:
        low, high = np.percentile(image, [1.0, 99.8])
        image = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)

    instances = scene.crop_labels(geometry)
    target = (instances > 0).astype(np.uint8)
    if shown == "nuclei":
        # a one-pixel gap where two nuclei touch teaches the network to keep them apart
        target[_touching_borders(instances)] = 0
    if hidden is not None:
        # annotators leave the blurred perinuclear mass, and what it hides, unlabelled
        target[hidden] = 0
    targets = {n: (target if n == shown else np.zeros(shape, dtype=np.uint8)) for n in names}
    if not return_info:
        return image, targets
    info = {
        "shown": shown,
        "pixel_size_nm": pixel_size,
        "microscope": settings,
        "crosstalk": crosstalk,
        "crosstalk_level": crosstalk_level,
        "cytosolic_level": cytosolic,
        "artifacts": artifacts,
        **er_look,
    }
    return image, targets, info


#: how often an ER training image carries the out-of-focus perinuclear mass
PERINUCLEAR_HAZE_PROBABILITY = 0.45
#: how often its tubules dim from the nucleus to the cell edge
PERIPHERAL_DIMMING_PROBABILITY = 0.5


#: pixel size from which :func:`training_sample` images through a low-NA widefield objective
LOW_MAGNIFICATION_NM = 200.0


def _touching_borders(instances: np.ndarray) -> np.ndarray:
    """One pixel of every pair of 4-neighbours that belong to two different objects.

    Example:
        >>> import numpy as np
        >>> two = np.array([[1, 1, 2, 2]])
        >>> _touching_borders(two).astype(int).tolist()
        [[0, 1, 0, 0]]
    """
    border = np.zeros(instances.shape, dtype=bool)
    for axis in (0, 1):
        a = np.take(instances, range(instances.shape[axis] - 1), axis=axis)
        b = np.take(instances, range(1, instances.shape[axis]), axis=axis)
        meet = (a != b) & (a > 0) & (b > 0)
        lead = [slice(None)] * 2
        lead[axis] = slice(0, -1)
        border[tuple(lead)] |= meet
    return border


def _clipped_share(rng: np.random.Generator, image: np.ndarray, scene: _Scene,
                   geometry: OrganelleGeometry, hidden: np.ndarray) -> float:
    """Share of pixels above a white level set 1-4x above the visible tubules."""
    visible = (scene.crop_labels(geometry) > 0) & ~hidden
    if not visible.any():
        return 0.02
    white = float(np.percentile(image[visible], 95)) * float(rng.uniform(1.0, 4.0))
    return float(np.clip((image > white).mean(), 0.0005, 0.5))


def _er_look(
    rng: np.random.Generator, scene: _Scene, signal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, float]]:
    """What live-cell ER images show beyond the in-focus network.

    Returns the (possibly dimmed) signal, the unlabelled haze to add to the
    background (fine grid), the image pixels the haze hides (``None`` if no
    haze) and a description.
    """
    layout = scene.layout
    look: dict[str, float] = {}
    haze = np.zeros(scene.fine.shape, dtype=np.float32)
    if rng.random() < PERIPHERAL_DIMMING_PROBABILITY:
        # peripheral tubules are thin and sparse; near the nucleus the network is dense
        floor = Range(0.12, 0.8, log=True).draw(rng)
        length = Range(2000.0, 9000.0, log=True).draw(rng)
        weight = floor + (1.0 - floor) * layout.perinuclear_weight(length)
        signal = signal * scene.to_fine(weight)
        look.update(peripheral_floor=floor, peripheral_length_nm=length)
    hidden = None
    if rng.random() < PERINUCLEAR_HAZE_PROBABILITY and np.isfinite(
            layout.distance_to_nucleus_nm).any():
        from .er import perinuclear_haze

        level = Range(1.5, 40.0, log=True).draw(rng)
        mass = perinuclear_haze(rng, layout, band_nm=Range(1000.0, 5000.0).draw(rng),
                                over_nucleus=float(rng.uniform(0.3, 1.2)),
                                blur_nm=Range(300.0, 1500.0, log=True).draw(rng))
        haze = level * scene.to_fine(mass)
        # tubules peak near 0.5 once blurred: they vanish where the mass outshines them
        hidden = (level * mass)[scene.crop] > 1.0
        look.update(haze_level=level)
    return signal, haze, hidden, look


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown:
        raise ValueError(
            f"unknown organelle class(es) {unknown}; expected some of {', '.join(CLASS_NAMES)}"
        )
    if not names:
        raise ValueError("at least one organelle class is needed")
    return names


class _Scene:
    """One specimen: the grids, the cell layout and each class's geometry, made on demand."""

    def __init__(
        self,
        base_seed: int,
        shape: tuple[int, int],
        pixel_size_nm: float,
        oversample: int | None,
        cell_params: CellParams,
    ) -> None:
        if pixel_size_nm <= 0:
            raise ValueError(f"pixel_size_nm must be positive, not {pixel_size_nm}")
        self.base = base_seed
        self.pixel_size_nm = float(pixel_size_nm)
        self.image_grid = Grid((int(shape[0]), int(shape[1])), self.pixel_size_nm)
        self.world = self.image_grid.padded(int(np.ceil(_MARGIN_NM / self.pixel_size_nm)))
        self.oversample = oversample or auto_oversample(self.pixel_size_nm)
        self.fine = self.world.refined(self.oversample)
        self.crop = self.world.crop_slices(self.image_grid)
        self.layout = generate_cells(
            child_rng(base_seed, "cells"), self.world, self.image_grid, cell_params
        )
        self._geometries: dict[str, OrganelleGeometry] = {}

    def geometry(self, name: str, params: Any) -> OrganelleGeometry:
        if name not in self._geometries:
            rng = child_rng(self.base, "organelle", name)
            self._geometries[name] = generate_organelle(name, rng, self.layout, self.fine, params)
        return self._geometries[name]

    def emission(self, geometry: OrganelleGeometry) -> np.ndarray:
        """Density scaled so that the bright end of its structures is about 1."""
        values = geometry.density[geometry.density > 0]
        if values.size == 0:
            return geometry.density
        stride = max(1, values.size // 50_000)
        return geometry.density / np.float32(np.percentile(values[::stride], 99.5))

    def to_fine(self, world: np.ndarray) -> np.ndarray:
        """A world-grid map repeated onto the fine (oversampled) grid."""
        f = self.oversample
        world = np.asarray(world, dtype=np.float32)
        return np.repeat(np.repeat(world, f, axis=0), f, axis=1) if f > 1 else world

    def cytosol(self, nuclear_factor: float) -> np.ndarray:
        """Diffuse dye in the cytosol (proportional to cell thickness), and in the nucleus by
        ``nuclear_factor``."""
        layout = self.layout
        inside = (layout.cells > 0).astype(np.float32)
        inside[layout.nuclei > 0] = nuclear_factor
        return self.to_fine(layout.height * inside)

    def image(
        self,
        signal: np.ndarray,
        settings: MicroscopeSettings,
        key: str,
        background: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Camera image and expected photons of a labelled structure plus unlabelled background.

        Exposure is set on ``signal`` alone (its brightest pixel gets the
        microscope's ``peak_photons``), so crosstalk and unbound dye stay
        faint even in a field where the labelled organelle is absent.
        """
        microscope = Microscope(
            settings, self.pixel_size_nm, self.oversample, child_rng(self.base, "camera", key)
        )
        optical = microscope.optics(signal)[self.crop]
        peak = float(optical.max())
        reference = peak if peak > 0 else _TYPICAL_OPTICAL_PEAK
        if background is not None:
            optical = optical + microscope.optics(background)[self.crop]
        expected = microscope.expected_photons(optical, reference=reference)
        return microscope.detect(expected), expected

    def crop_labels(self, geometry: OrganelleGeometry) -> np.ndarray:
        cropped = geometry.labels[self.crop]
        if geometry.name in INSTANCE_CLASSES and geometry.name != "nuclei":
            # an object cut by the image border into pieces becomes one instance per piece
            return connected_label(cropped, background=0, connectivity=2).astype(np.int32)
        if geometry.name == "nuclei":
            return cropped.astype(np.int32)
        return (cropped > 0).astype(np.uint8)


def _class_truth(
    scene: _Scene,
    geometry: OrganelleGeometry,
    labels: np.ndarray,
    pixel_size_nm: float,
    graphs: dict[str, NetworkGraph],
) -> dict[str, Any]:
    """Known numbers for one class, measured on the image area."""
    px2 = pixel_size_nm**2
    area = int(np.count_nonzero(labels))
    truth: dict[str, Any] = {"area_px": area, "area_nm2": float(area * px2)}
    if geometry.name in INSTANCE_CLASSES:
        truth["count"] = int(len(np.unique(labels[labels > 0])))
    if geometry.graph is not None:
        low, high = scene.image_grid.bounds_nm
        graph = geometry.graph.clipped(low, high)
        graphs[geometry.name] = graph
        truth.update(graph.stats(pixel_size_nm).as_dict())
    if geometry.name == "er" and "sheets" in geometry.truth:
        sheet_px = int(np.count_nonzero(geometry.truth["sheets"][scene.crop]))
        truth.update(sheet_area_px=sheet_px, sheet_area_nm2=float(sheet_px * px2))
    if "diameters_nm" in geometry.truth:
        centers = geometry.truth["centers_nm"]
        visible = scene.image_grid.contains(centers) if len(centers) else np.zeros(0, dtype=bool)
        diameters = geometry.truth["diameters_nm"][visible]
        truth["mean_diameter_nm"] = float(diameters.mean()) if diameters.size else 0.0
    return truth
