"""Nuclei training fields: low-magnification cultures of many small, often touching nuclei."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from napari_organelle.simulation._random import draw_base_seed
from napari_organelle.simulation.cells import (
    LOW_MAGNIFICATION_PIXEL_SIZE_RANGE,
    MAX_CULTURE_CELLS,
    CellParams,
    generate_cells,
)
from napari_organelle.simulation.grid import Grid
from napari_organelle.simulation.scene import PIXEL_SIZE_RANGE, simulate_cell, training_sample

SHAPE = (256, 256)


def nucleus_sizes(labels: np.ndarray, min_area: int = 16) -> tuple[np.ndarray, float]:
    """Equivalent diameters (px) of the instances of ``labels`` and instances per megapixel."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    diameters = np.sqrt(4.0 * areas[areas >= min_area] / np.pi)
    return diameters, len(ids) / labels.size * 1e6


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different instances that share a 4-connected pixel edge."""
    pairs = set()
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[edge].tolist(), b[edge].tolist())}
    return pairs


def culture_field(seed: int, **overrides) -> tuple[float, np.ndarray]:
    """Pixel size and nuclear instance labels of one low-magnification culture."""
    rng = np.random.default_rng(seed)
    pixel_size = LOW_MAGNIFICATION_PIXEL_SIZE_RANGE.draw(rng)
    params = replace(CellParams.culture(rng, pixel_size), **overrides)
    cell = simulate_cell(seed, SHAPE, pixel_size, ["nuclei"], params={"cells": params})
    return pixel_size, cell.labels["nuclei"]


def test_only_nuclei_fields_are_drawn_at_low_magnification_and_others_draw_as_before():
    rng = np.random.default_rng(0)
    low = 0
    for _ in range(60):
        pixel_size, _, params = CellParams.training_field(rng, "nuclei", None, PIXEL_SIZE_RANGE)
        if params.culture_density_per_um2 is not None:
            low += 1
            assert 200.0 <= pixel_size <= 800.0
        else:
            assert PIXEL_SIZE_RANGE.low <= pixel_size <= PIXEL_SIZE_RANGE.high
    assert 20 <= low <= 50  # about 60 %

    # every other class: exactly the draws training_sample made before nuclei fields existed
    new, old = np.random.default_rng(1), np.random.default_rng(1)
    for shown in ("mitochondria", "er", "cell_boundary", "golgi"):
        drawn = CellParams.training_field(new, shown, None, PIXEL_SIZE_RANGE)
        assert drawn == (PIXEL_SIZE_RANGE.draw(old), draw_base_seed(old), CellParams.random(old))


def test_low_magnification_nuclei_are_real_sized_and_denser():
    low_diameters, low_density, high_density = [], [], []
    for seed in range(6):
        _, labels = culture_field(seed)
        diameters, density = nucleus_sizes(labels)
        low_diameters.append(np.median(diameters))
        low_density.append(density)
        rng = np.random.default_rng(100 + seed)
        pixel_size = PIXEL_SIZE_RANGE.draw(rng)
        high = simulate_cell(seed, SHAPE, pixel_size, ["nuclei"],
                             params={"cells": CellParams.random(rng)})
        high_density.append(nucleus_sizes(high.labels["nuclei"])[1])
    # real widefield nuclei (fluo-nuclei-stardist): 11-28 px across (median 24), 480 per MPix
    assert 14.0 <= np.median(low_diameters) <= 35.0
    assert max(low_diameters) <= 60.0
    assert np.median(low_density) >= 150.0
    assert np.median(low_density) > 3 * np.median(high_density)


def test_touching_nuclei_are_separate_instances():
    # a confluent culture whose nuclei are pressed against each other
    _, labels = culture_field(3, nucleus_margin_nm=0.0, nucleus_overlap=0.3,
                              culture_clustering=0.9, culture_density_per_um2=0.012,
                              nucleus_fraction=0.85)
    pairs = touching_pairs(labels)
    assert len(pairs) >= 5
    n_instances = len(np.unique(labels[labels > 0]))
    _, n_blobs = ndi.label(labels > 0)
    assert n_blobs < n_instances  # the binary mask merges them; the labels do not
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is not None:
            pieces, n = ndi.label(labels[box] == index)
            sizes = np.bincount(pieces.ravel())[1:]
            assert sizes.max() >= 0.95 * sizes.sum()  # one object, not scattered fragments


def test_culture_scales_with_the_field_and_is_capped():
    params = replace(CellParams.culture(np.random.default_rng(0)), culture_density_per_um2=0.004,
                     mitotic_fraction=0.0)
    counts = []
    for size in (128, 256):
        field = Grid((size, size), 400.0)
        layout = generate_cells(np.random.default_rng(0), field.padded(5), field, params)
        counts.append(layout.n_cells)
    assert 2.5 < counts[1] / counts[0] < 5.5  # four times the area
    crowded = replace(params, culture_density_per_um2=1.0)
    field = Grid(SHAPE, 400.0)
    layout = generate_cells(np.random.default_rng(0), field.padded(5), field, crowded)
    assert layout.n_cells <= MAX_CULTURE_CELLS


def test_mitotic_nuclei_are_small_and_bright():
    params = replace(CellParams.culture(np.random.default_rng(2), 400.0), mitotic_fraction=0.5)
    field = Grid(SHAPE, 400.0)
    plain = generate_cells(np.random.default_rng(0), field.padded(5), field,
                           replace(params, mitotic_fraction=0.0))
    layout = generate_cells(np.random.default_rng(0), field.padded(5), field, params)
    gains = np.asarray(layout.nucleus_gains)
    assert (gains > 1.5).any() and (gains == 1.0).any()
    mitotic = np.flatnonzero(gains > 1.0)
    for i in mitotic:
        assert layout.nucleus_shapes[i].radius_nm < 0.7 * plain.nucleus_shapes[i].radius_nm


def test_nuclei_training_samples_are_deterministic():
    for seed in range(20):
        image, targets, info = training_sample(seed, SHAPE, ["nuclei"], shown="nuclei",
                                               return_info=True)
        if info["pixel_size_nm"] >= 200.0:
            break
    else:
        raise AssertionError("no low-magnification nuclei field in 20 seeds")
    again, targets_again = training_sample(seed, SHAPE, ["nuclei"], shown="nuclei")
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(targets["nuclei"], targets_again["nuclei"])
    assert targets["nuclei"].mean() > 0.01
