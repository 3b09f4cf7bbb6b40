"""Tests of napari_organelle.analysis on synthetic shapes with known geometry."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pandas as pd
import pytest

from napari_organelle.analysis import (
    TABLES,
    agreement_heatmap,
    analyze_network,
    cell_regions,
    compare_folders,
    compare_labels,
    distance_to,
    measure,
    measure_contacts,
    measure_iter,
    measure_morphology,
    network_summary_figure,
    object_properties,
    size_histogram_figure,
    summarize_by_cell,
    write_measurements,
)
from napari_organelle.errors import InputError
from napari_organelle.progress import Progress


@pytest.mark.parametrize(
    "module", ["analysis", "analysis.agreement", "analysis.cells", "analysis.contacts",
               "analysis.measurements", "analysis.morphology", "analysis.networks",
               "analysis.plots", "analysis.results"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"napari_organelle.{module}"),
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def disc_image(shape, centre, radius, scale=(1.0, 1.0)):
    """Pixels whose centre lies within ``radius`` (physical units) of ``centre`` (pixels)."""
    rows, cols = np.indices(shape)
    distance = np.hypot((rows - centre[0]) * scale[0], (cols - centre[1]) * scale[1])
    return (distance < radius).astype(np.int32)


# --------------------------------------------------------------------------- morphology


def test_disc_in_physical_units():
    radius_px, pixel = 20, 0.1                               # a 2 um radius disc of 100 nm pixels
    labels = disc_image((50, 50), (25, 25), radius_px)
    row = object_properties(labels, scale=(pixel, pixel)).iloc[0]
    radius = radius_px * pixel
    assert row["area"] == pytest.approx(math.pi * radius**2, rel=0.01)
    assert row["perimeter"] == pytest.approx(2 * math.pi * radius, rel=0.02)
    assert row["equivalent_diameter"] == pytest.approx(2 * radius, rel=0.01)
    assert row["major_axis_length"] == pytest.approx(2 * radius, rel=0.02)
    assert row["eccentricity"] < 0.05
    assert row["solidity"] > 0.97
    assert (row["centroid_0"], row["centroid_1"]) == pytest.approx((2.5, 2.5))


def test_square_area_is_exact_and_perimeter_close():
    labels = np.zeros((30, 30), np.uint8)
    labels[5:25, 5:25] = 1                                    # 20 x 20 pixels of 0.5
    row = object_properties(labels, scale=0.5).iloc[0]
    assert row["area"] == 100.0
    assert row["equivalent_diameter"] == pytest.approx(math.sqrt(4 * 100 / math.pi))
    assert 0.96 * 40 < row["perimeter"] < 40                  # corners are rounded a little
    assert row["solidity"] == 1.0


def test_anisotropic_pixels_make_an_ellipse_a_disc():
    scale = (2.0, 1.0)                                        # rows twice as tall as columns
    labels = disc_image((50, 100), (25, 50), 40.0, scale)     # an ellipse in pixels
    row = object_properties(labels, scale=scale).iloc[0]
    assert row["area"] == pytest.approx(math.pi * 40**2, rel=0.015)
    assert row["perimeter"] == pytest.approx(2 * math.pi * 40, rel=0.025)
    assert row["eccentricity"] < 0.1
    isotropic = object_properties(labels).iloc[0]             # in pixels it is elongated
    assert isotropic["eccentricity"] > 0.8


def test_elongated_object_and_several_objects():
    labels = np.zeros((40, 60), np.int32)
    labels[5:9, 5:55] = 3                                     # 4 x 50 rod
    labels[20:30, 20:30] = 7
    table = object_properties(labels)
    assert table["label"].tolist() == [3, 7]
    rod = table.iloc[0]
    assert rod["eccentricity"] > 0.99
    # axes of the ellipse with the same second moments: 4 standard deviations
    assert rod["major_axis_length"] == pytest.approx(4 * math.sqrt((50**2 - 1) / 12))
    assert rod["minor_axis_length"] == pytest.approx(4 * math.sqrt((4**2 - 1) / 12))


def test_sphere_in_anisotropic_3d():
    scale = (2.0, 1.0, 1.0)                                   # 2 um sections, 1 um pixels
    z, y, x = np.indices((14, 30, 30))
    labels = ((((z - 7) * 2.0) ** 2 + (y - 15) ** 2 + (x - 15) ** 2) < 10**2).astype(np.uint8)
    row = object_properties(labels, scale=scale).iloc[0]
    assert row["volume"] == pytest.approx(4 / 3 * math.pi * 10**3, rel=0.05)  # only 10 sections
    assert row["equivalent_diameter"] == pytest.approx(20, rel=0.02)
    # marching cubes on voxels overestimates a smooth surface by some percent
    assert 1.0 < row["surface_area"] / (4 * math.pi * 10**2) < 1.15
    assert "perimeter" not in row and "eccentricity" not in row
    assert "surface_area" not in object_properties(labels, scale=scale, surface_area=False)


def test_summary_of_an_image():
    labels = np.zeros((20, 20), np.int32)
    labels[0:2, 0:5] = 1                                      # 10 px
    labels[10:15, 10:16] = 2                                  # 30 px
    result = measure_morphology(labels, scale=2.0)
    summary = result.summary.iloc[0]
    assert summary["n_objects"] == 2
    assert summary["total_area"] == 160.0                     # 40 px of 4
    assert summary["area_fraction"] == pytest.approx(40 / 400)
    assert summary["mean_area"] == 80.0 and summary["median_area"] == 80.0
    assert result.per_cell is None
    empty = measure_morphology(np.zeros((5, 5), np.uint8))
    assert empty.objects.empty and empty.summary.loc[0, "n_objects"] == 0
    assert math.isnan(empty.summary.loc[0, "mean_area"])


def test_objects_are_assigned_to_cells_by_overlap_or_centroid():
    cells = np.ones((40, 40), np.int32)
    cells[16:24, 16:24] = 2                                   # cell 2 sits in the hole of a ring
    cells[:, 35:] = 3                                         # cell 3 has no organelle
    rows, cols = np.indices(cells.shape)
    radius = np.hypot(rows - 19.5, cols - 19.5)
    labels = ((radius > 7) & (radius < 10)).astype(np.int32)  # a ring around cell 2, inside cell 1
    labels[2:6, 30:34] = 2                                    # half in cell 1, ...
    labels[2:6, 34:36] = 2                                    # ... and 2 of 6 columns in cell 3
    by_overlap = object_properties(labels, cells=cells)
    assert by_overlap["cell"].tolist() == [1, 1]
    by_centroid = object_properties(labels, cells=cells, cell_assignment="centroid")
    assert by_centroid["cell"].tolist() == [2, 1]             # the ring's centroid is in its hole

    per_cell = measure_morphology(labels, cells=cells).per_cell
    assert per_cell.index.tolist() == [1, 2, 3]
    assert per_cell["n_objects"].tolist() == [2, 0, 0]
    ring_and_part = labels[cells == 1].astype(bool).sum()
    assert per_cell.loc[1, "area_fraction"] == pytest.approx(ring_and_part / (cells == 1).sum())
    assert per_cell.loc[3, "area_fraction"] > 0               # coverage counts pixels, not objects
    with pytest.raises(InputError, match="overlap"):
        object_properties(labels, cells=cells, cell_assignment="nearest")
    with pytest.raises(InputError, match="cell"):
        summarize_by_cell(object_properties(labels), labels, cells)


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.zeros((2, 3, 4, 5), int), {}, "2-D or 3-D"),
        (np.zeros(5, int), {}, "2-D or 3-D"),
        (np.full((4, 4), 0.5), {}, "non-integer"),
        (np.zeros((4, 4), int), {"scale": (1.0, 1.0, 1.0)}, "one pixel size per axis"),
        (np.zeros((4, 4), int), {"scale": (1.0, -1.0)}, "positive"),
        (np.zeros((4, 4), int), {"cells": np.zeros((4, 5), int)}, "differ in shape"),
    ],
)
def test_bad_morphology_input(labels, kwargs, message):
    with pytest.raises(InputError, match=message):
        measure_morphology(labels, **kwargs)


# --------------------------------------------------------------------------- networks


def test_plus_sign_has_one_junction_four_ends():
    plus = np.zeros((21, 21), bool)
    plus[10, 2:19] = True                                     # arms of 8 pixels
    plus[2:19, 10] = True
    result = analyze_network(plus, scale=0.5)
    summary = result.summary
    assert (summary["n_junctions"], summary["n_end_points"], summary["n_branches"]) == (1, 4, 4)
    assert summary["total_length"] == pytest.approx(4 * 8 * 0.5)
    assert summary["mean_branch_length"] == pytest.approx(4.0)
    assert summary["mean_junction_degree"] == 4
    assert result.junctions.tolist() == [[10.0, 10.0]]
    assert sorted(map(tuple, result.end_points.tolist())) == [(2, 10), (10, 2), (10, 18), (18, 10)]
    assert set(result.branches["kind"]) == {"end-junction"}
    np.testing.assert_array_equal(result.skeleton > 0, plus)


def test_grid_network():
    # a '#': two rows and two columns crossing at 4 junctions, 8 ends
    grid = np.zeros((31, 31), bool)
    for line in (10, 20):
        grid[line, 2:29] = True
        grid[2:29, line] = True
    result = analyze_network(grid)
    summary = result.summary
    assert (summary["n_junctions"], summary["n_end_points"], summary["n_branches"]) == (4, 8, 12)
    assert summary["total_length"] == pytest.approx(4 * 26)
    assert summary["n_networks"] == 1
    assert result.branches["kind"].value_counts().to_dict() == {"end-junction": 8,
                                                                "junction-junction": 4}
    inner = result.branches["kind"] == "junction-junction"
    assert result.branches.loc[inner, "length"].tolist() == [10.0] * 4


def test_adjacent_junction_pixels_are_one_junction():
    # Two side branches leave the main line from neighbouring pixels: skan sees
    # two junction pixels, the network has one junction of degree 4.
    from skan.csr import skeleton_to_csgraph

    shape = np.zeros((13, 13), bool)
    shape[6, 1:12] = True
    shape[1:6, 5] = True
    shape[7:12, 6] = True
    pixel_graph, _ = skeleton_to_csgraph(shape)
    assert np.count_nonzero(np.diff(pixel_graph.indptr) >= 3) == 2
    summary = analyze_network(shape).summary
    assert (summary["n_junctions"], summary["n_end_points"], summary["n_branches"]) == (1, 4, 4)
    assert summary["mean_junction_degree"] == 4
    assert summary["total_length"] == pytest.approx(10 + 5 + 5)


def test_anisotropic_lengths_and_3d():
    lines = np.zeros((20, 20), bool)
    lines[2, 2:12] = True                                     # 9 pixels along columns
    lines[8:18, 15] = True                                    # 9 pixels along rows
    result = analyze_network(lines, scale=(3.0, 1.0))
    assert result.networks["length"].tolist() == pytest.approx([27.0, 9.0])  # longest first
    assert result.summary["n_networks"] == 2 and result.summary["n_branches"] == 2
    assert result.summary["largest_network_fraction"] == pytest.approx(27 / 36)
    assert set(np.unique(result.skeleton)) == {0, 1, 2}
    assert np.all(result.skeleton[8:18, 15] == 1)             # network 1 is the longest

    volume = np.zeros((20, 20, 20), bool)
    volume[10, 10, 3:18] = True
    volume[10, 3:18, 10] = True
    volume[3:18, 10, 10] = True
    summary = analyze_network(volume, scale=(2.0, 1.0, 1.0)).summary
    assert (summary["n_junctions"], summary["n_end_points"], summary["n_branches"]) == (1, 6, 6)
    assert summary["total_length"] == pytest.approx(14 * 2 + 14 + 14)


def test_thick_tube_is_skeletonized():
    tube = np.zeros((20, 80), bool)
    tube[8:13, 5:75] = True                                    # 5 pixels thick, 70 long
    result = analyze_network(tube, scale=0.1)
    summary = result.summary
    assert (summary["n_junctions"], summary["n_end_points"], summary["n_branches"]) == (0, 2, 1)
    assert summary["total_length"] == pytest.approx(7.0, rel=0.1)


def test_loops_puncta_and_empty_masks():
    ring = np.zeros((30, 30), bool)
    ring[5, 5:25] = ring[24, 5:25] = ring[5:25, 5] = ring[5:25, 24] = True
    result = analyze_network(ring)
    assert result.summary["n_junctions"] == 0 and result.summary["n_end_points"] == 0
    assert result.branches["kind"].tolist() == ["loop"]
    # the corners are cut
    assert result.summary["total_length"] == pytest.approx(4 * 19 - 4 * (2 - math.sqrt(2)))

    dots = np.zeros((10, 10), bool)
    dots[2, 2] = dots[7, 7] = True
    summary = analyze_network(dots).summary
    assert (summary["n_networks"], summary["n_puncta"], summary["total_length"]) == (2, 2, 0.0)

    empty = analyze_network(np.zeros((10, 10), np.uint8))
    assert empty.summary["n_networks"] == 0 and empty.branches.empty and empty.networks.empty
    assert math.isnan(empty.summary["mean_branch_length"])
    assert not empty.skeleton.any()


def test_short_spurs_can_be_pruned():
    line = np.zeros((15, 30), bool)
    line[7, 2:28] = True
    line[4:7, 14] = True                                      # a 3-pixel side spur
    assert analyze_network(line).summary["n_junctions"] == 1
    pruned = analyze_network(line, min_spur_length=4).summary
    assert (pruned["n_junctions"], pruned["n_end_points"], pruned["n_branches"]) == (0, 2, 1)
    assert pruned["total_length"] == pytest.approx(25)


# --------------------------------------------------------------------------- contacts


def two_squares(gap, shape=(30, 50)):
    a = np.zeros(shape, np.uint8)
    a[10:20, 5:15] = 1
    b = np.zeros(shape, np.uint8)
    b[10:20, 15 + gap:25 + gap] = 1
    return a, b


def test_contact_between_squares_at_a_known_gap():
    a, b = two_squares(gap=3)                                 # facing pixels 4 pixels apart
    pixel = 5.0
    assert measure_contacts(a, b, distance=3.9 * pixel, scale=pixel).summary["n_sites"] == 0
    result = measure_contacts(a, b, distance=4 * pixel, scale=pixel)
    summary = result.summary
    assert summary["n_sites"] == 1
    assert summary["contact_area"] == 10 * pixel**2           # one column of A
    assert summary["contact_length"] == pytest.approx(10 * pixel, rel=0.1)
    assert summary["a_contact_fraction"] == pytest.approx(0.1)
    assert summary["a_object_fraction"] == 1.0 and summary["b_object_fraction"] == 1.0
    assert summary["b_contact_area"] == 10 * pixel**2
    assert np.array_equal(np.nonzero(result.sites)[1], np.full(10, 14))
    assert result.site_table.loc[1, "objects_a"] == 1

    deeper = measure_contacts(a, b, distance=5 * pixel, scale=pixel).summary   # two columns
    assert deeper["contact_area"] == 20 * pixel**2
    # the boundary within reach now also includes a pixel of the top and bottom edges
    assert deeper["contact_length"] == pytest.approx(12 * pixel, rel=0.1)


def test_contacts_with_anisotropic_pixels_and_several_objects():
    a = np.zeros((30, 40), np.int32)
    a[2:6, 2:6] = 1                                           # far from B
    a[10:14, 2:6] = 2                                         # 3 empty rows above B
    b = np.zeros_like(a)
    b[17:21, 2:6] = 1
    near = measure_contacts(a, b, distance=4 * 4.0, scale=(4.0, 1.0))   # rows 4 units apart
    assert near.summary["a_objects_in_contact"] == 1
    assert near.summary["a_object_fraction"] == 0.5
    assert near.objects_a.set_index("label")["in_contact"].to_dict() == {1: False, 2: True}
    assert near.summary["contact_area"] == 4 * 4.0           # one row of 4 pixels of 4 x 1
    # the facing side (4 columns of 1) plus at most a corner cut (half a 4-unit row) at each end
    assert 4.0 <= near.summary["contact_length"] <= 4.0 + 2 * math.hypot(2.0, 0.5)
    assert measure_contacts(a, b, distance=4 * 4.0 - 0.1, scale=(4.0, 1.0)).summary["n_sites"] == 0


def test_overlap_distance_zero_and_empty_partner():
    a = np.zeros((10, 10), np.uint8)
    a[2:6, 2:6] = 1
    b = np.zeros_like(a)
    b[4:8, 4:8] = 1
    overlap = measure_contacts(a, b, distance=0).summary
    assert overlap["contact_area"] == 4 and overlap["n_sites"] == 1
    nothing = measure_contacts(a, np.zeros_like(a), distance=100).summary
    assert nothing["n_sites"] == 0 and nothing["a_object_fraction"] == 0.0
    assert math.isnan(nothing["b_object_fraction"])
    assert np.isinf(distance_to(np.zeros((3, 3)))).all()


def test_contacts_in_3d():
    a = np.zeros((10, 20, 20), np.uint8)
    a[2:8, 5:10, 5:10] = 1
    b = np.zeros_like(a)
    b[2:8, 12:17, 5:10] = 1                                   # 2 empty pixels between
    summary = measure_contacts(a, b, distance=3.0).summary
    assert summary["contact_volume"] == 6 * 5                 # one face layer of A
    assert "contact_length" not in summary


def test_bad_contact_input():
    a, b = two_squares(2)
    with pytest.raises(InputError, match="differ in shape"):
        measure_contacts(a, b[:, :-1], distance=1)
    with pytest.raises(InputError, match=">= 0"):
        measure_contacts(a, b, distance=-1)


# --------------------------------------------------------------------------- agreement


def test_compare_labels_and_heatmap(tmp_path):
    proposal = {"mito": np.zeros((20, 20), np.uint8), "er": np.zeros((20, 20), np.uint8),
                "golgi": np.ones((20, 20), np.uint8)}
    proposal["mito"][2:6, 2:6] = 1
    proposal["mito"][10:14, 10:14] = 1                        # a false object, deleted by hand
    proposal["er"][5, :] = 1
    corrected = {"mito": proposal["mito"].copy(), "er": proposal["er"].copy()}
    corrected["mito"][10:14, 10:14] = 0
    agreement = compare_labels(proposal, corrected)
    table = agreement.table
    assert table.loc["mito", "precision"] == 0.5 and table.loc["mito", "recall"] == 1.0
    assert table.loc["mito", "object_precision"] == 0.5
    assert table.loc["mito", "object_f1"] == pytest.approx(2 / 3)
    assert table.loc["er", "dice"] == 1.0
    assert agreement.notes == ["class 'golgi' is only in the proposal; skipped"]
    figure = agreement_heatmap(table)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert texts[:5] == ["0.67", "0.50", "0.50", "1.00", "0.67"]
    figure.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000
    with pytest.raises(InputError, match="no class in common"):
        compare_labels({"a": proposal["er"]}, {"b": proposal["er"]})


def test_compare_folders_pairs_files_by_path(tmp_path):
    import tifffile

    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    half = mask.copy()
    half[4:8, 6:8] = 0
    for folder, image in (("proposal", half), ("corrected", mask)):
        (tmp_path / folder / "mito").mkdir(parents=True)
        tifffile.imwrite(tmp_path / folder / "mito" / "cell1.tif", image)
        tifffile.imwrite(tmp_path / folder / "mito" / "cell2.tif", mask)
        tifffile.imwrite(tmp_path / folder / "er.tif", mask)
    tifffile.imwrite(tmp_path / "corrected" / "extra.tif", mask)
    agreement = compare_folders(tmp_path / "proposal", tmp_path / "corrected")
    assert agreement.table.index.tolist() == ["er", "mito"]
    assert agreement.table.loc["mito", "recall"] == pytest.approx(24 / 32)
    assert agreement.table.loc["mito", "n_images"] == 2
    assert agreement.per_image["image"].tolist() == ["er.tif", "mito/cell1.tif", "mito/cell2.tif"]
    assert agreement.notes == ["file 'extra.tif' is only in the corrected set; skipped"]
    with pytest.raises(InputError, match="not a folder"):
        compare_folders(tmp_path / "nowhere", tmp_path / "corrected")


# --------------------------------------------------------------------------- several layers


def test_measure_iter_reports_progress_and_gathers_tables():
    mito = np.zeros((40, 40), np.uint8)
    mito[5:10, 5:20] = 1
    mito[30:35, 30:35] = 1
    er = np.zeros_like(mito)
    er[12, 2:38] = 1
    er[2:38, 25] = 1
    cells = np.zeros_like(mito, dtype=np.int32)
    cells[:, :20] = 1
    cells[:, 20:] = 2
    work = measure_iter({"mito": mito, "er": er}, (10.0, 10.0), networks=["er", "mito"],
                        contacts=[("er", "mito"), ("mito", "er")], distance=30.0, cells=cells,
                        unit="nm")
    reports = []
    try:
        while True:
            reports.append(next(work))
    except StopIteration as finished:
        result = finished.value
    assert all(isinstance(report, Progress) for report in reports)
    assert [report.done for report in reports] == [1, 2, 3, 4, 5, 6]
    assert {report.total for report in reports} == {6}
    assert result.objects["organelle"].value_counts().to_dict() == {"mito": 2, "er": 1}
    assert result.summary.loc["mito", "n_objects"] == 2
    assert result.summary.loc["mito", "unit"] == "nm"
    assert result.networks.loc["er", "n_junctions"] == 1
    assert result.networks.loc["er", "total_length"] == pytest.approx((35 + 35) * 10.0)
    assert result.contacts[["a", "b"]].values.tolist() == [["er", "mito"], ["mito", "er"]]
    assert set(result.skeletons) == {"er", "mito"}
    assert set(result.contact_analyses) == {("er", "mito"), ("mito", "er")}
    assert result.contact_analyses[("er", "mito")].sites.max() == 1
    assert set(result.per_cell["organelle"]) == {"mito", "er"}
    assert {"organelle", "network", "length"} <= set(result.branches.columns)
    # every pair's sites and both sides' objects, named by the pair
    assert result.contact_sites[["a", "b", "site"]].values.tolist() == [["er", "mito", 1],
                                                                       ["mito", "er", 1]]
    sides = result.contact_objects[["a", "b", "organelle"]].values.tolist()
    assert sides == [["er", "mito", "er"], ["er", "mito", "mito"], ["er", "mito", "mito"],
                     ["mito", "er", "mito"], ["mito", "er", "mito"], ["mito", "er", "er"]]
    assert result.contact_objects["in_contact"].tolist() == [True, True, False,
                                                             True, False, True]
    assert list(result.tables()) == [key for key in TABLES if not key.startswith("agreement")]
    assert result.unit == "nm" and result.notes == () and result.seconds > 0


def test_measure_rejects_unknown_names_and_missing_distance():
    layers = {"mito": np.zeros((5, 5), np.uint8)}
    with pytest.raises(InputError, match="'er' not among the layers"):
        measure(layers, networks=["er"])
    with pytest.raises(InputError, match="distance"):
        measure({**layers, "er": np.zeros((5, 5), np.uint8)}, contacts=[("er", "mito")])
    with pytest.raises(InputError, match="'er' and 'mito' differ in shape"):
        measure({**layers, "er": np.zeros((5, 6), np.uint8)}, contacts=[("er", "mito")],
                distance=1.0)
    with pytest.raises(InputError, match="morphology organelle.*'golgi'"):
        measure(layers, morphology=["golgi"])
    with pytest.raises(InputError, match="nothing to measure"):
        measure({})
    with pytest.raises(InputError, match="nothing to measure"):
        measure(layers, morphology=())
    with pytest.raises(InputError, match="not both"):
        measure({**layers, "b": layers["mito"]}, agreement=("mito", "b"),
                agreement_folders=("p", "c"))


def test_cells_come_from_nuclei_or_boundaries():
    boundaries = np.zeros((12, 20), np.uint8)
    boundaries[2, 2:18] = boundaries[9, 2:18] = 1
    boundaries[2:10, 2] = boundaries[2:10, 10] = boundaries[2:10, 17] = 1
    cells = cell_regions(boundaries, "boundaries", scale=(1.0, 1.0))
    # two enclosed cells; the outside touches the image edge and is no cell
    assert np.unique(cells).tolist() == [0, 1, 2]
    assert cells[5, 5] == 1 and cells[5, 13] == 2 and cells[0, 0] == 0

    nuclei = np.zeros((1, 30), np.uint8)
    nuclei[0, 5] = nuclei[0, 15] = 1  # a mask: each component is a nucleus
    grown = cell_regions(nuclei, "nuclei", scale=(0.5, 0.5), grow_by=2.0)
    assert grown[0].tolist() == [0] + [1] * 9 + [0] + [2] * 9 + [0] * 10  # 4 px each way
    labelled = np.zeros((4, 4), np.uint16)
    labelled[:, 2:] = 7
    np.testing.assert_array_equal(cell_regions(labelled, "labels"), labelled)
    with pytest.raises(InputError, match="cell labels, nuclei or boundaries"):
        cell_regions(labelled, "cytoplasm")


def test_the_pipeline_summarizes_per_cell_from_nuclei_or_boundaries():
    mito = np.zeros((20, 40), np.uint16)
    mito[8:11, 9:12] = 1
    mito[8:11, 18:21] = 2
    mito[8:11, 29:32] = 3
    nuclei = np.zeros_like(mito)
    nuclei[9, 10] = 1
    nuclei[9, 30] = 2
    # nuclei grown by 10 nm (5 px) take in objects 1 and 3; object 2 is 8 px from either
    result = measure({"mito": mito}, 2.0, cells=nuclei, cells_kind="nuclei", grow_nuclei_by=10.0,
                     cells_name="nuclei", unit="nm")
    assert result.objects["cell"].tolist() == [1, 0, 2]
    assert result.per_cell[["organelle", "cell", "n_objects"]].values.tolist() == [
        ["mito", 1, 1], ["mito", 2, 1]]
    assert result.per_cell["cell_area"].tolist() == [81 * 4.0] * 2  # discs of radius 5 px
    ungrown = measure({"mito": mito}, 2.0, cells=nuclei, cells_kind="nuclei")
    assert ungrown.objects["cell"].tolist() == [0, 0, 0]  # one pixel of nine in each nucleus

    walls = np.zeros_like(mito)
    walls[[2, 17], 1:39] = 1
    walls[2:18, [1, 20, 38]] = 1
    result = measure({"mito": mito}, cells=walls, cells_kind="boundaries")
    assert result.objects["cell"].tolist() == [1, 1, 2]
    assert result.per_cell["n_objects"].tolist() == [2, 1]

    # boundaries that enclose nothing: no per-cell table, and a note says why
    open_walls = np.zeros_like(mito)
    open_walls[:, 20] = 1
    result = measure({"mito": mito}, cells=open_walls, cells_kind="boundaries",
                     cells_name="membranes")
    assert result.per_cell is None and "per_cell" not in result.tables()
    note = ("The cell boundaries in 'membranes' enclose no cell away from the image edge; the "
            "per-cell table is left out.")
    assert result.notes == (note,)
    with pytest.raises(InputError, match=r"'mito' and the cells \('nuclei'\) differ in shape"):
        measure({"mito": mito}, cells=nuclei[:, :30], cells_name="nuclei")


def test_the_pipeline_measures_chosen_layers_each_at_its_own_pixel_size():
    lysosomes = np.zeros((10, 10), np.uint8)
    lysosomes[2:4, 2:4] = 1
    er = np.zeros((30, 30), np.uint8)
    er[15, 5:25] = 1
    empty = np.zeros((10, 10), np.uint8)
    steps = []
    work = measure_iter({"lysosomes": lysosomes, "er": er, "empty": empty},
                        {"lysosomes": (0.5, 0.5), "er": (2.0, 2.0), "empty": (1.0, 1.0)},
                        unit={"lysosomes": "µm", "er": "nm", "empty": "px"},
                        morphology=["lysosomes", "empty"], networks=["er"])
    try:
        while True:
            steps.append(next(work).message)
    except StopIteration as finished:
        result = finished.value
    assert steps == ["morphology of lysosomes", "morphology of empty", "network of er"]
    assert result.summary.index.tolist() == ["lysosomes", "empty"]  # the ER is not measured
    assert result.summary.loc["lysosomes", "total_area"] == 4 * 0.25
    assert result.summary["unit"].tolist() == ["µm", "px"]
    assert result.networks.loc["er", "total_length"] == pytest.approx(19 * 2.0)
    assert result.networks.loc["er", "unit"] == "nm"
    assert result.unit == "µm"  # the first layer's, for the plots
    note = "Layer 'empty' is empty (no labelled pixels): its measures are zero or n/a."
    assert result.notes == (note,)
    with pytest.raises(InputError, match="differ in pixel size"):
        measure({"a": lysosomes, "b": lysosomes}, {"a": 1.0, "b": 2.0}, morphology=(),
                contacts=[("a", "b")], distance=1.0)
    with pytest.raises(InputError, match="no pixel size is given for 'b'"):
        measure({"a": lysosomes, "b": lysosomes}, {"a": 1.0})


def test_the_pipeline_compares_two_layers_or_two_folders(tmp_path):
    import tifffile

    proposal = np.zeros((20, 20), np.uint8)
    proposal[2:10, 2:10] = 1
    corrected = proposal.copy()
    corrected[12:16, 12:16] = 1
    result = measure({"proposal": proposal, "corrected": corrected}, morphology=(),
                     agreement=("proposal", "corrected"), agreement_class="mito")
    assert result.agreement.index.tolist() == ["mito"]
    assert result.agreement.loc["mito", "recall"] == pytest.approx(64 / 80)
    assert result.agreement_per_image is None and result.compared == ("proposal", "corrected")
    assert list(result.tables()) == ["agreement"]

    for name, image in (("a", proposal), ("b", corrected)):
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / "mito.tif", image)
    folders = measure({}, agreement_folders=(tmp_path / "a", tmp_path / "b"))
    pd.testing.assert_frame_equal(folders.agreement, result.agreement)
    assert folders.agreement_per_image["image"].tolist() == ["mito.tif"]
    assert folders.compared == ("a", "b")


def test_write_measurements_writes_every_table_and_plot(tmp_path):
    mito = np.zeros((30, 30), np.uint8)
    mito[5:10, 5:20] = 1
    er = np.zeros_like(mito)
    er[12, 2:28] = 1
    result = measure({"mito": mito, "er": er}, 10.0, networks=["er"], contacts=[("er", "mito")],
                     distance=30.0, unit="nm")
    written = write_measurements(result, tmp_path / "out")
    assert [path.name for path in written] == [
        "summary.csv", "objects.csv", "networks.csv", "network_components.csv", "branches.csv",
        "contacts.csv", "contact_sites.csv", "contact_objects.csv", "object_sizes.png",
        "networks.png"]
    assert all(path.stat().st_size > 0 for path in written)
    # named indexes are written as the first column, the others not at all
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", index_col="organelle")
    pd.testing.assert_frame_equal(summary, result.summary, check_dtype=False)
    objects = pd.read_csv(tmp_path / "out" / "objects.csv")
    assert objects.columns[0] == "organelle"
    pd.testing.assert_frame_equal(objects, result.objects, check_dtype=False)
    contact_objects = pd.read_csv(tmp_path / "out" / "contact_objects.csv")
    assert contact_objects.columns[:3].tolist() == ["a", "b", "organelle"]
    # written again: replaced, not added to
    assert write_measurements(result, tmp_path / "out", plots=False) == written[:8]
    assert len(list((tmp_path / "out").iterdir())) == 10


def test_plots_render(tmp_path):
    objects = pd.DataFrame({"organelle": ["mito"] * 4 + ["er"], "area": [1.0, 5.0, 50.0, 7.0, 3.0]})
    size_histogram_figure(objects, unit="nm").savefig(tmp_path / "sizes.png")
    networks = pd.DataFrame({"total_length": [10.0], "n_branches": [3], "n_junctions": [1],
                             "n_end_points": [3], "mean_branch_length": [3.3]}, index=["er"])
    network_summary_figure(networks).savefig(tmp_path / "networks.png")
    assert (tmp_path / "sizes.png").stat().st_size > 1000
    assert (tmp_path / "networks.png").stat().st_size > 1000
    with pytest.raises(InputError):
        size_histogram_figure(pd.DataFrame({"x": [1]}))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0, 1.0)])
def test_branches_equal_skan_skeleton_paths(spacing):
    # Our sparse decomposition must give skan's paths, less the links inside junction clusters.
    from scipy import ndimage
    from skan import Skeleton
    from skimage.morphology import skeletonize

    rng = np.random.default_rng(len(spacing))
    shape = (200, 200) if len(spacing) == 2 else (30, 60, 60)
    noise = ndimage.gaussian_filter(rng.random(shape), 3 if len(spacing) == 2 else 2)
    skeleton = skeletonize(noise > np.quantile(noise, 0.6))
    ours = analyze_network(skeleton, spacing)
    skan_skeleton = Skeleton(skeleton, spacing=spacing)
    degrees = skan_skeleton.degrees
    lengths = skan_skeleton.path_lengths()
    kept = [lengths[i] for i in range(skan_skeleton.n_paths)
            if not (degrees[skan_skeleton.path(i)] >= 3).all()]
    np.testing.assert_allclose(np.sort(ours.branches["length"]), np.sort(kept))
    assert ours.summary["total_length"] == pytest.approx(lengths.sum())
    assert ours.summary["n_end_points"] == np.count_nonzero(degrees == 1)


def test_close_junctions_can_be_merged():
    # an 'H' with a 3-pixel bar: two junctions, or one of degree 4 when merged
    shape = np.zeros((21, 14), bool)
    shape[2:19, 5] = shape[2:19, 8] = True
    shape[10, 5:9] = True
    apart = analyze_network(shape).summary
    assert (apart["n_junctions"], apart["n_branches"], apart["mean_junction_degree"]) == (2, 5, 3)
    merged = analyze_network(shape, merge_junctions_within=3.0)
    summary = merged.summary
    assert (summary["n_junctions"], summary["n_branches"], summary["n_end_points"]) == (1, 4, 4)
    assert summary["mean_junction_degree"] == 4
    assert summary["total_length"] == apart["total_length"] == pytest.approx(4 * 8 + 3)
    assert merged.junctions.tolist() == [[10.0, 6.5]]
    assert analyze_network(shape, merge_junctions_within=2.9).summary["n_junctions"] == 2


# ------------------------------------------------------------------ known truth from the simulator


@pytest.fixture(scope="module")
def simulated_cell():
    scene = pytest.importorskip("napari_organelle.simulation.scene")
    from napari_organelle.simulation.er import ERParams

    # tubular ER only: sheets have no centre line to compare with
    return scene.simulate_cell(0, shape=(256, 256), organelles=["mitochondria", "er"],
                               params={"er": ERParams(sheets=False)})


def test_morphology_and_contacts_match_the_simulated_truth(simulated_cell):
    cell = simulated_cell
    pixel = cell.pixel_size_nm
    mito = measure_morphology(cell.labels["mitochondria"], pixel).summary.iloc[0]
    assert mito["n_objects"] == cell.truth["mitochondria"]["count"]
    assert mito["total_area"] == pytest.approx(cell.truth["mitochondria"]["area_nm2"])
    # the simulator counts contacts with the same definition: exact agreement
    for key, truth in cell.truth["contacts"].items():
        a, b = key.split("-")
        summary = measure_contacts(cell.labels[a], cell.labels[b], truth["max_distance_nm"],
                                   pixel).summary
        assert summary["contact_area"] == pytest.approx(truth["area_nm2"]), key
        assert summary["n_sites"] == truth["n_sites"], key
        assert summary["a_contact_fraction"] == pytest.approx(truth["fraction"]), key


def test_networks_match_the_simulated_centre_lines(simulated_cell):
    cell = simulated_cell
    pixel = cell.pixel_size_nm
    er_truth = cell.truth["er"]
    er = analyze_network(cell.labels["er"], pixel, merge_junctions_within=3.5 * pixel).summary
    # skeleton length of thin tubules: within 3 % of the drawn centre lines
    assert er["total_length"] == pytest.approx(er_truth["total_length_nm"], rel=0.03)
    # thinning splits junctions a tube-width apart; merged, within 10 %
    assert er["n_junctions"] == pytest.approx(er_truth["n_junctions"], rel=0.10)
    assert er["n_end_points"] == pytest.approx(er_truth["n_endpoints"], rel=0.20)
    assert (analyze_network(cell.labels["er"], pixel).summary["n_junctions"]
            > 1.15 * er_truth["n_junctions"])

    mito_truth = cell.truth["mitochondria"]
    mito = analyze_network(cell.labels["mitochondria"], pixel).summary
    # 8-connected skeletons of thick tubes zigzag: a few percent longer than smooth centre lines
    assert mito["total_length"] == pytest.approx(mito_truth["total_length_nm"], rel=0.10)
    assert mito["n_networks"] == pytest.approx(mito_truth["n_components"], rel=0.10)
    assert mito["n_end_points"] == pytest.approx(mito_truth["n_endpoints"], rel=0.15)
    assert abs(mito["n_junctions"] - mito_truth["n_junctions"]) <= 2
