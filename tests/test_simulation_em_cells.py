"""Tests of the EM simulator of non-neural cells: determinism, classes, look, pixel size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_organelle.simulation import EM_CELL_CLASSES, SimulatedEM, simulate_em_cell
from napari_organelle.simulation.em_cells import CONTRASTS, EM_CELL_INSTANCE_CLASSES, TISSUES

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def sections():
    """One TEM section of each tissue at 8 nm, shared by the tests that only read it."""
    return {tissue: simulate_em_cell(2, SHAPE, 8.0, tissue=tissue, contrast="tem")
            for tissue in TISSUES}


def labelled(em) -> np.ndarray:
    """Pixels that belong to any class."""
    return np.any([em.labels[name] > 0 for name in EM_CELL_CLASSES], axis=0)


def test_same_seed_gives_the_same_section():
    first, again = simulate_em_cell(5, (128, 128)), simulate_em_cell(5, (128, 128))
    assert (first.tissue, first.contrast) == (again.tissue, again.contrast)
    np.testing.assert_array_equal(first.image, again.image)
    for name in EM_CELL_CLASSES:
        np.testing.assert_array_equal(first.labels[name], again.labels[name])
    other = simulate_em_cell(6, (128, 128), tissue=first.tissue, contrast=first.contrast)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("tissue", TISSUES)
def test_every_class_is_present_with_its_conventions(sections, tissue):
    em = sections[tissue]
    assert isinstance(em, SimulatedEM)
    assert (em.tissue, em.contrast, em.dark_membranes, em.pixel_size_nm) == (
        tissue, "tem", True, 8.0)
    assert em.image.shape == SHAPE and em.image.dtype == np.uint8
    assert set(em.labels) == set(EM_CELL_CLASSES)
    for name, labels in em.labels.items():
        assert labels.shape == SHAPE
        assert labels.any(), name
        if name in EM_CELL_INSTANCE_CLASSES:
            assert labels.dtype == np.int32
            # instances are numbered 1..n without gaps
            np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))
        else:
            assert labels.dtype == np.uint8
            assert set(np.unique(labels)) == {0, 1}


def test_classes_never_overlap(sections):
    for em in sections.values():
        layers = np.sum([em.labels[name] > 0 for name in EM_CELL_CLASSES], axis=0)
        assert layers.max() == 1
        assert not np.any((em.labels["lipid_droplets"] > 0) & (em.labels["mitochondria"] > 0))


def test_masks_lie_on_what_the_image_shows(sections):
    for em in sections.values():
        image = ndi.gaussian_filter(em.image.astype(float), 1.5)
        anything = labelled(em)
        # lipid droplets: flat inside, unlike the textured nucleus and the cytoplasm
        droplets = ndi.binary_erosion(em.labels["lipid_droplets"] > 0, iterations=3)
        nuclei = ndi.binary_erosion(em.labels["nuclei"] > 0, iterations=3)
        unlabelled = ~ndi.binary_dilation(anything, iterations=3)
        assert droplets.sum() > 30
        assert image[droplets].std() < 0.5 * image[nuclei].std()
        assert image[droplets].std() < 0.5 * image[unlabelled].std()
        # and sharply set off from what surrounds them, light or dark
        ring = ndi.binary_dilation(em.labels["lipid_droplets"] > 0, iterations=6) & ~anything
        assert abs(image[droplets].mean() - image[ring].mean()) > 20
        # plasma membranes are dark lines in TEM
        membranes = em.labels["cell_boundary"] > 0
        beside = ndi.binary_dilation(membranes, iterations=5) & ~ndi.binary_dilation(
            membranes, iterations=2) & ~anything
        assert em.image[membranes].mean() < em.image[beside].mean() - 10


def mitochondria_contrast(em) -> float:
    """Mean brightness of mitochondria minus that of the cytoplasm just around them."""
    mitochondria = em.labels["mitochondria"] > 0
    ring = (ndi.binary_dilation(mitochondria, iterations=6)
            & ~ndi.binary_dilation(mitochondria, iterations=2) & ~labelled(em))
    inside = ndi.binary_erosion(mitochondria, iterations=2)
    return float(em.image[inside].mean() - em.image[ring].mean())


def test_mitochondria_are_darker_in_tem_and_polarity_follows_contrast(sections):
    for em in sections.values():
        assert mitochondria_contrast(em) < -15
    polarities = set()
    for seed in range(5):
        for contrast in CONTRASTS[1:]:
            em = simulate_em_cell(seed, (128, 128), 12.0, tissue=TISSUES[seed % 2],
                                  contrast=contrast)
            difference = mitochondria_contrast(em)
            assert (difference < -5) if em.dark_membranes else (difference > 5), (seed, contrast)
            polarities.add(em.dark_membranes)
    assert polarities == {True, False}  # SEM images come both inverted and raw


@pytest.mark.parametrize("tissue", TISSUES)
def test_pixel_size_changes_magnification_not_the_cell(tissue):
    """The same seed and field at 8 and 4 nm: the same cell, objects twice as wide in pixels."""
    coarse = simulate_em_cell(1, (192, 192), 8.0, tissue=tissue, contrast="tem")
    fine = simulate_em_cell(1, (384, 384), 4.0, tissue=tissue, contrast="tem")
    for name in ("nuclei", "mitochondria", "lipid_droplets", "lysosomes"):
        a, b = coarse.labels[name] > 0, fine.labels[name] > 0
        if name in ("lipid_droplets", "lysosomes") and not a.any():
            continue  # a field 1.5 um across has no room for everything
        assert a.any(), name
        assert 3.6 < b.sum() / a.sum() < 4.4, name
        width = ndi.distance_transform_edt(b).max() / ndi.distance_transform_edt(a).max()
        assert 1.7 < width < 2.3, name
        binned = b.reshape(192, 2, 192, 2).mean(axis=(1, 3)) > 0.5
        assert (a & binned).sum() / (a | binned).sum() > 0.85, name
    assert coarse.labels["mitochondria"].max() == fine.labels["mitochondria"].max()


def test_coarse_pixels_still_show_every_class():
    em = simulate_em_cell(0, SHAPE, 15.0)
    assert all(em.labels[name].any() for name in EM_CELL_CLASSES)


def test_rejects_unknown_options():
    with pytest.raises(ValueError, match="tissue"):
        simulate_em_cell(0, (64, 64), tissue="neuron")
    with pytest.raises(ValueError, match="contrast"):
        simulate_em_cell(0, (64, 64), contrast="sem")
    with pytest.raises(ValueError, match="pixel_size_nm"):
        simulate_em_cell(0, (64, 64), pixel_size_nm=0.0)
