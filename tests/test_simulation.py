"""Tests of the fluorescence/EM simulator: determinism, geometry, truth, optics and noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as connected_label
from skimage.morphology import skeletonize

from napari_organelle.simulation import (
    CLASS_NAMES,
    INSTANCE_CLASSES,
    LIVE_CELL_CHANNELS,
    PARAMETER_TYPES,
    SEMANTIC_CLASSES,
    ERParams,
    Microscope,
    MicroscopeSettings,
    NetworkGraph,
    contact_stats,
    psf_sigma_nm,
    sample_em_like,
    sample_live_cell,
    simulate_cell,
    simulate_em,
    training_sample,
)
from napari_organelle.simulation._random import Range

ORGANELLES_IN_CYTOPLASM = ("mitochondria", "er", "lysosomes", "lipid_droplets", "golgi")


@pytest.fixture(scope="module")
def cell():
    """One complete scene, shared by the tests that only read it."""
    return simulate_cell(7, shape=(192, 192), pixel_size_nm=80.0)


# ---------------------------------------------------------------------------- scenes


def test_scene_has_every_class_with_the_right_types(cell):
    assert set(cell.labels) == set(CLASS_NAMES)
    assert set(cell.channels) == set(CLASS_NAMES)
    for name in CLASS_NAMES:
        assert cell.channels[name].shape == (192, 192)
        assert cell.channels[name].dtype == np.uint16
        labels = cell.labels[name]
        assert labels.shape == (192, 192)
        if name in INSTANCE_CLASSES:
            assert labels.dtype == np.int32
        else:
            assert name in SEMANTIC_CLASSES
            assert labels.dtype == np.uint8
            assert set(np.unique(labels)) <= {0, 1}
    stack, names = cell.stack()
    assert stack.shape == (len(CLASS_NAMES), 192, 192) and names == list(CLASS_NAMES)
    assert cell.cells.shape == (192, 192) and cell.cells.max() == cell.truth["n_cells"] >= 1


def test_same_seed_gives_the_same_scene_and_other_seeds_do_not():
    kwargs = dict(shape=(96, 96), pixel_size_nm=100.0, organelles=("mitochondria", "lysosomes"))
    first, again, other = (
        simulate_cell(11, **kwargs),
        simulate_cell(11, **kwargs),
        simulate_cell(12, **kwargs),
    )
    for name in kwargs["organelles"]:
        np.testing.assert_array_equal(first.channels[name], again.channels[name])
        np.testing.assert_array_equal(first.labels[name], again.labels[name])
    assert first.truth == again.truth
    assert not np.array_equal(first.channels["mitochondria"], other.channels["mitochondria"])


def test_a_class_does_not_change_when_other_classes_are_added():
    alone = simulate_cell(5, shape=(96, 96), organelles=("er",))
    together = simulate_cell(5, shape=(96, 96), organelles=("er", "mitochondria", "golgi"))
    np.testing.assert_array_equal(alone.labels["er"], together.labels["er"])


def test_organelles_stay_in_the_cytoplasm(cell):
    inside_cells = cell.cells > 0
    nuclei = cell.labels["nuclei"] > 0
    assert nuclei.any() and not (nuclei & ~inside_cells).any()
    for name in ORGANELLES_IN_CYTOPLASM:
        mask = cell.labels[name] > 0
        assert mask.any(), f"{name} missing from the test scene"
        assert not (mask & ~inside_cells).any(), f"{name} outside the cells"
        assert not (mask & nuclei).any(), f"{name} inside a nucleus"
    # each nucleus lies in the cell with the same label
    assert np.all(cell.cells[nuclei] == cell.labels["nuclei"][nuclei])


def test_each_channel_is_bright_where_its_organelle_is(cell):
    for name in CLASS_NAMES:
        image = cell.channels[name].astype(float)
        mask = cell.labels[name] > 0
        # compare with the rest of the cells, not with the empty medium
        rest = (cell.cells > 0) & ~ndi.binary_dilation(mask, iterations=3)
        assert image[mask].mean() > 1.5 * image[rest].mean(), name


def test_instances_are_single_connected_objects(cell):
    for name in ("mitochondria", "lysosomes", "lipid_droplets"):
        labels = cell.labels[name]
        ids = np.unique(labels[labels > 0])
        assert len(ids) == cell.truth[name]["count"]
        relabelled = connected_label(labels, background=0, connectivity=2)
        assert relabelled.max() == len(ids)


def test_training_sample_images_one_class():
    rng = np.random.default_rng(3)
    names = ("mitochondria", "er", "nuclei")
    for _ in range(3):
        image, targets, info = training_sample(rng, (128, 128), names, return_info=True)
        assert image.shape == (128, 128) and image.dtype == np.float32
        assert set(targets) == set(names)
        assert all(t.dtype == np.uint8 and t.shape == (128, 128) for t in targets.values())
        assert info["shown"] in names
        for name, target in targets.items():
            if name != info["shown"]:
                assert not target.any()
    first = training_sample(np.random.default_rng(9), (64, 64), shown="er")
    again = training_sample(np.random.default_rng(9), (64, 64), shown="er")
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1]["er"], again[1]["er"])
    normalised, _ = training_sample(np.random.default_rng(9), (64, 64), shown="er", normalize=True)
    assert 0.0 <= normalised.min() and normalised.max() <= 1.0


def test_unknown_class_names_are_rejected():
    with pytest.raises(ValueError, match="unknown organelle"):
        simulate_cell(0, shape=(32, 32), organelles=("chloroplast",))


# ---------------------------------------------------------------------------- network truth


def _skeleton_length_px(skeleton: np.ndarray) -> float:
    """Length of a one-pixel-wide skeleton: 1 per straight link, sqrt(2) per diagonal link.

    A diagonal link is not counted where the two pixels also connect through
    a shared straight neighbour (a corner), which would count that step twice.
    On these masks this agrees with skan's branch lengths to 1-3 %, without
    skan's multi-second JIT compilation.
    """
    s = skeleton
    straight = np.count_nonzero(s[:, :-1] & s[:, 1:]) + np.count_nonzero(s[:-1, :] & s[1:, :])
    down_right = s[:-1, :-1] & s[1:, 1:] & ~(s[:-1, 1:] | s[1:, :-1])
    down_left = s[:-1, 1:] & s[1:, :-1] & ~(s[:-1, :-1] | s[1:, 1:])
    return straight + np.sqrt(2.0) * (np.count_nonzero(down_right) + np.count_nonzero(down_left))


def _skeleton_stats(mask: np.ndarray, pixel_size_nm: float) -> dict[str, float]:
    """Skeleton length, junction clusters (degree >= 3), end points and pieces of a mask."""
    pad = 3
    # replicate the border so skeletonisation does not erode lines that run off the image
    skeleton = skeletonize(np.pad(mask > 0, pad, mode="edge"))[pad:-pad, pad:-pad]
    neighbours = ndi.convolve(skeleton.astype(int), np.ones((3, 3), int), mode="constant") - 1
    junction_pixels = skeleton & (neighbours >= 3)
    return {
        "length_nm": _skeleton_length_px(skeleton) * pixel_size_nm,
        "junctions": int(connected_label(junction_pixels, connectivity=2).max()),
        "endpoints": int(np.count_nonzero(skeleton & (neighbours == 1))),
        "components": int(connected_label(skeleton, connectivity=2).max()),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_er_skeleton_recovers_the_true_network(seed):
    pixel_size = 80.0
    cell = simulate_cell(
        seed,
        shape=(224, 224),
        pixel_size_nm=pixel_size,
        organelles=("er",),
        params={"er": ERParams(sheets=False)},
    )
    truth = cell.truth["er"]
    measured = _skeleton_stats(cell.labels["er"], pixel_size)
    assert truth["n_junctions"] > 50 and truth["total_length_nm"] > 100_000
    assert measured["length_nm"] == pytest.approx(truth["total_length_nm"], rel=0.08)
    assert measured["junctions"] == pytest.approx(truth["n_junctions"], rel=0.15)
    assert measured["endpoints"] == pytest.approx(truth["n_endpoints"], rel=0.3, abs=5)
    assert truth["total_length_px"] == pytest.approx(truth["total_length_nm"] / pixel_size)
    graph = cell.graphs["er"]
    assert graph.total_length_nm == pytest.approx(truth["total_length_nm"])
    assert int(np.count_nonzero(graph.simplified().degrees() >= 3)) == truth["n_junctions"]


def test_mitochondria_skeleton_recovers_the_true_network():
    pixel_size = 80.0
    cell = simulate_cell(
        4, shape=(224, 224), pixel_size_nm=pixel_size, organelles=("mitochondria",)
    )
    truth = cell.truth["mitochondria"]
    measured = _skeleton_stats(cell.labels["mitochondria"], pixel_size)
    # a skeleton runs into the rounded tips of a tube, past the ends of its centre line
    assert measured["length_nm"] == pytest.approx(truth["total_length_nm"], rel=0.15)
    assert measured["junctions"] == pytest.approx(
        truth["n_junctions"], abs=max(2, 0.25 * truth["n_junctions"])
    )
    assert measured["components"] == pytest.approx(truth["n_components"], rel=0.15, abs=2)


def test_graph_stats_of_a_hand_made_network():
    # a "Y" (junction at the origin) whose stem passes through a degree-2 node, plus a separate rod
    nodes = [(0, 0), (0, 1000), (700, -700), (-500, 0), (-1000, 0), (5000, 5000), (5000, 6000)]
    edges = [(0, 1), (0, 2), (0, 3), (3, 4), (5, 6)]
    graph = NetworkGraph(np.array(nodes, float), np.array(edges))
    stats = graph.stats(pixel_size_nm=100.0)
    assert stats.n_junctions == 1
    assert stats.n_endpoints == 5
    assert stats.n_components == 2
    assert stats.n_branches == 4  # the degree-2 node is merged away
    assert stats.total_length_nm == pytest.approx(1000 + np.hypot(700, 700) + 1000 + 1000)
    assert stats.total_length_px == pytest.approx(stats.total_length_nm / 100.0)
    # a closed loop of degree-2 nodes stays one component with no junctions or ends
    corners = np.array([(0, 0), (0, 10), (10, 10), (10, 0)], float)
    square = NetworkGraph(corners, np.array([(0, 1), (1, 2), (2, 3), (3, 0)]))
    loop = square.stats(1.0)
    assert (
        loop.n_components, loop.n_junctions, loop.n_endpoints, loop.total_length_nm
    ) == (1, 0, 0, 40.0)


def test_clipping_a_graph_cuts_paths_at_the_box():
    path = np.stack([np.full(11, 500.0), np.linspace(-500.0, 1500.0, 11)], axis=1)
    graph = NetworkGraph.from_paths([path])
    clipped = graph.clipped((0.0, 0.0), (1000.0, 1000.0))
    assert clipped.total_length_nm == pytest.approx(1000.0, abs=1e-6)
    assert clipped.stats(1.0).n_endpoints == 2
    assert clipped.clipped((0.0, 2000.0), (10.0, 3000.0)).n_edges == 0


# ---------------------------------------------------------------------------- contacts


def test_contact_area_is_exact_on_known_masks():
    a = np.zeros((20, 20), np.uint8)
    b = np.zeros((20, 20), np.uint8)
    a[5:10, 5:10] = 1
    b[5:10, 10:15] = 1  # touching a along one side, no overlap
    overlap = contact_stats(a, b, pixel_size_nm=50.0, max_distance_nm=0.0)
    assert overlap.area_px == 0 and overlap.n_sites == 0
    touching = contact_stats(a, b, pixel_size_nm=50.0, max_distance_nm=50.0)
    assert touching.area_px == 5 and touching.area_nm2 == 5 * 50.0**2 and touching.n_sites == 1
    assert touching.fraction == pytest.approx(5 / 25)
    two_pixels = contact_stats(a, b, pixel_size_nm=50.0, max_distance_nm=100.0)
    assert two_pixels.area_px == 10


def test_scene_contacts_match_the_labels(cell):
    reported = cell.truth["contacts"]["mitochondria-er"]
    measured = contact_stats(
        cell.labels["mitochondria"], cell.labels["er"], 80.0, reported["max_distance_nm"]
    )
    assert reported["area_px"] == measured.area_px > 0
    assert reported["area_nm2"] == pytest.approx(measured.area_px * 80.0**2)


# ---------------------------------------------------------------------------- optics and noise


def test_psf_width_orders_widefield_confocal_sim():
    for wavelength, na in ((520.0, 1.4), (650.0, 1.0)):
        widefield = psf_sigma_nm("widefield", wavelength, na)
        confocal = psf_sigma_nm("confocal", wavelength, na, pinhole_airy_units=1.0)
        sim = psf_sigma_nm("sim", wavelength, na, sim_resolution_gain=1.8)
        assert widefield > confocal > sim
        assert widefield == pytest.approx(0.21 * wavelength / na)
        # a closed pinhole approaches the ideal confocal 1/sqrt(2) narrowing
        assert psf_sigma_nm(
            "confocal", wavelength, na, pinhole_airy_units=0.0
        ) == pytest.approx(widefield / np.sqrt(2))


def _measured_sigma_nm(settings: MicroscopeSettings) -> float:
    """Width of the image of a point source (second moment, pixel integration removed)."""
    pixel, oversample = 20.0, 2
    density = np.zeros((128, 128), np.float32)
    density[64, 64] = 1.0
    image = Microscope(settings, pixel, oversample, seed=0).optics(density)
    y, x = np.indices(image.shape)
    total = image.sum()
    cy, _cx = (image * y).sum() / total, (image * x).sum() / total
    variance = (image * (y - cy) ** 2).sum() / total * pixel**2
    return float(np.sqrt(variance - pixel**2 / 12.0 - (pixel / 2) ** 2 / 12.0))


def test_imaged_point_sources_are_widest_in_widefield_and_sharpest_in_sim():
    common = dict(
        emission_wavelength_nm=600.0,
        numerical_aperture=1.3,
        out_of_focus_fraction=0.0,
        defocus_fraction=0.0,
    )
    sigmas = {}
    for modality in ("widefield", "confocal", "sim"):
        settings = MicroscopeSettings(modality=modality, **common)
        sigmas[modality] = _measured_sigma_nm(settings)
        assert sigmas[modality] == pytest.approx(settings.psf_sigma_nm, rel=0.1)
    assert sigmas["widefield"] > sigmas["confocal"] > sigmas["sim"]


def test_camera_noise_variance_grows_with_the_mean():
    settings = MicroscopeSettings(
        modality="widefield", detector="camera", gain_adu_per_electron=2.0, offset_adu=100.0,
        read_noise_electrons=3.0, bit_depth=16,
    )
    microscope = Microscope(settings, 100.0, seed=1)
    variances = []
    for mean in (5.0, 50.0, 500.0):
        counts = microscope.detect(np.full((256, 256), mean, np.float32)).astype(float)
        assert counts.mean() == pytest.approx(100.0 + 2.0 * mean, rel=0.01)
        # Poisson shot noise plus Gaussian read noise, both scaled by the gain
        assert counts.var() == pytest.approx(2.0**2 * (mean + 3.0**2), rel=0.06)
        variances.append(counts.var())
    assert variances[0] < variances[1] < variances[2]


def test_pmt_excess_noise_and_photon_counting():
    pmt = MicroscopeSettings(
        detector="pmt", gain_adu_per_electron=10.0, offset_adu=0.0, read_noise_electrons=0.0,
        excess_noise_factor=1.5, bit_depth=16,
    )
    counts = Microscope(pmt, 100.0, seed=2).detect(
        np.full((256, 256), 40.0, np.float32)
    ).astype(float)
    assert counts.mean() == pytest.approx(400.0, rel=0.02)
    assert counts.var() == pytest.approx(1.5 * 10.0**2 * 40.0, rel=0.08)
    counting = MicroscopeSettings(
        detector="photon_counting", gain_adu_per_electron=1.0, offset_adu=0.0, bit_depth=8
    )
    photons = Microscope(counting, 100.0, seed=3).detect(np.full((256, 256), 300.0, np.float32))
    assert photons.max() == 255  # saturates at the bit depth


def test_bleaching_dims_later_frames():
    settings = MicroscopeSettings(
        bleach_rate_per_frame=0.05,
        background_fraction=0.0,
        illumination_falloff=0.0,
        illumination_roughness=0.0,
    )
    microscope = Microscope(settings, 100.0, seed=4)
    optical = np.ones((32, 32), np.float32)
    first = microscope.expected_photons(optical, frame=0)
    later = microscope.expected_photons(optical, frame=10)
    np.testing.assert_allclose(later, first * np.exp(-0.5), rtol=1e-5)
    assert first.max() == pytest.approx(settings.peak_photons, rel=1e-5)
    density = np.zeros((64, 64), np.float32)
    density[16:48, 16:48] = 1.0
    series = Microscope(settings, 100.0, oversample=2, seed=5).time_series(density, n_frames=12)
    assert series.shape == (12, 32, 32) and series.dtype == np.uint16
    means = series.reshape(12, -1).mean(axis=1)
    assert means[-1] < 0.7 * means[0]


def _spans(values: np.ndarray, allowed: Range) -> bool:
    values = np.asarray(values, float)
    inside = np.all((values >= allowed.low - 1e-9) & (values <= allowed.high + 1e-9))
    scale = np.log if allowed.log else (lambda v: v)
    width = scale(allowed.high) - scale(allowed.low)
    covered = (scale(values.max()) - scale(values.min())) >= 0.85 * width
    return bool(inside and covered)


def test_random_microscope_settings_span_their_ranges():
    rng = np.random.default_rng(0)
    drawn = [MicroscopeSettings.random(rng) for _ in range(400)]
    for name, allowed in MicroscopeSettings.RANGES.items():
        assert _spans([getattr(s, name) for s in drawn], allowed), name
    for modality, ranges in MicroscopeSettings.MODALITY_RANGES.items():
        group = [s for s in drawn if s.modality == modality]
        assert len(group) > 40, modality
        for name, allowed in ranges.items():
            assert _spans([getattr(s, name) for s in group], allowed), (modality, name)
    assert {s.detector for s in drawn} == {"camera", "pmt", "photon_counting"}
    assert all(s.gain_adu_per_electron > 0 and 0 <= s.offset_adu < s.saturation_adu for s in drawn)


def test_random_organelle_parameters_span_their_ranges():
    rng = np.random.default_rng(1)
    for kind in PARAMETER_TYPES.values():
        drawn = [kind.random(rng) for _ in range(300)]
        for name, allowed in kind.RANGES.items():
            values = [getattr(p, name) for p in drawn]
            if name in ("network_fraction", "fragment_fraction", "compactness"):
                # these are reshaped after drawing (normalised / skewed), so only bounds hold
                assert min(values) >= allowed.low - 1e-9 and max(values) <= allowed.high + 1e-9
            else:
                assert _spans(values, allowed), (kind.__name__, name)


# ---------------------------------------------------------------------------- sample data


def test_live_cell_sample():
    image, names, pixel_size = sample_live_cell(seed=0)
    assert image.shape == (len(LIVE_CELL_CHANNELS), 512, 512) and image.dtype == np.uint16
    assert names == list(LIVE_CELL_CHANNELS)
    assert 40.0 <= pixel_size <= 200.0
    for channel in image:
        low, high = np.percentile(channel, [1, 99.9])
        assert high > 3 * max(low, 1)  # structures stand out of the background


def test_em_like_sample():
    image, pixel_size = sample_em_like(seed=0)
    assert image.shape == (512, 512) and image.dtype == np.uint8 and pixel_size == 5.0
    em = simulate_em(0, shape=(256, 256))
    np.testing.assert_array_equal(em.image, simulate_em(0, shape=(256, 256)).image)
    membranes = em.labels["cell_boundary"] > 0
    background = ~ndi.binary_dilation(membranes, iterations=4) & (em.labels["mitochondria"] == 0)
    assert em.image[membranes].mean() < em.image[background].mean() - 30  # dark membranes
    assert em.labels["mitochondria"].max() >= 1
