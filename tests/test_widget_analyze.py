"""GUI tests of the Analyze dock widget, in a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widget_analyze.py

Every image is synthetic with a known answer (disc areas, a plus-shaped
network, squares a known gap apart); the core's own accuracy is tested in
``test_analysis.py``, so these tests check what the widget does with it:
units, tables, layers, plots, files and messages.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from napari.layers import Labels, Points
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication

from napari_organelle._widgets._layers import METADATA_KEY
from napari_organelle._widgets.analyze import AnalyzeWidget, layer_length_unit
from napari_organelle.cli import main as cli_main

pytestmark = pytest.mark.gui

RUN_TIMEOUT_MS = 30_000
UM = (0.1, 0.1)  # 100 nm pixels, napari scale in µm as this plugin's layers have


# ---------------------------------------------------------------------- helpers
# (the messages and tracebacks fixtures are in conftest.py)


def make_widget(viewer, **choices) -> AnalyzeWidget:
    """An Analyze widget docked in ``viewer``, measuring what ``choices`` name (see ``choose``)."""
    widget = AnalyzeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Analyze")
    choose(widget, **choices)
    return widget


def choose(widget: AnalyzeWidget, *, morphology=(), networks=(), contacts=None, distance=0.1,
           agreement=None) -> None:
    """Tick exactly the named measurements, of the named layers, and nothing else."""
    viewer = widget.viewer
    widget.morphology_check.value = bool(morphology)
    widget.morphology_layers.value = [viewer.layers[name] for name in morphology]
    widget.network_check.value = bool(networks)
    widget.network_layers.value = [viewer.layers[name] for name in networks]
    widget.contacts_check.value = contacts is not None
    if contacts is not None:
        widget.contact_a_combo.value = viewer.layers[contacts[0]]
        widget.contact_b_combo.value = viewer.layers[contacts[1]]
        widget.distance_spin.value = distance
    widget.agreement_check.value = agreement is not None
    if agreement is not None:
        widget.proposal_combo.value = viewer.layers[agreement[0]]
        widget.corrected_combo.value = viewer.layers[agreement[1]]


def measure(qtbot, widget: AnalyzeWidget) -> None:
    """Click Measure and wait until the run is over, its worker thread included."""
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    # TaskControls ends a task on the worker's `returned`; its `finished`, emitted
    # last by the thread, must be handled before the next run starts, or it ends
    # that run (see the report on TaskControls._on_finished).
    QThreadPool.globalInstance().waitForDone(RUN_TIMEOUT_MS)
    QApplication.processEvents()


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def two_discs() -> np.ndarray:
    """Label 1: a disc of radius 10 px at (20, 20); label 2: radius 6 px at (20, 60)."""
    labels = np.zeros((40, 80), np.uint16)
    labels[disc(labels.shape, (20, 20), 10)] = 1
    labels[disc(labels.shape, (20, 60), 6)] = 2
    return labels


def plus_sign() -> np.ndarray:
    """A one-pixel-wide plus: arms of 10 pixels from the centre (20, 20)."""
    mask = np.zeros((41, 41), np.uint8)
    mask[20, 10:31] = 1
    mask[10:31, 20] = 1
    return mask


def squares(gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 10 x 10 squares side by side with ``gap`` empty pixels between them."""
    a = np.zeros((30, 50), np.uint8)
    a[10:20, 5:15] = 1
    b = np.zeros_like(a)
    b[10:20, 15 + gap:25 + gap] = 1
    return a, b


# ---------------------------------------------------------------------- morphology


def test_object_areas_are_in_square_micrometres(make_napari_viewer, qtbot, messages,
                                                tracebacks):
    viewer = make_napari_viewer()
    labels = two_discs()
    layer = viewer.add_labels(labels, name="lysosomes", scale=UM, translate=(5.0, 2.0))
    annotated = viewer.add_labels(labels, name="annotated", scale=UM,
                                  features={"index": [1, 2], "treated": [True, False]})
    widget = make_widget(viewer, morphology=["lysosomes", "annotated"])

    measure(qtbot, widget)

    assert messages.errors == [] and messages.warnings == []
    objects = widget.tables["objects"]
    assert objects["organelle"].tolist() == ["annotated"] * 2 + ["lysosomes"] * 2
    objects = objects[objects["organelle"] == "lysosomes"]
    pixels = np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(objects["area"], pixels * 0.01)  # 0.1 x 0.1 µm pixels
    np.testing.assert_allclose(objects["area"], [math.pi * 1.0**2, math.pi * 0.6**2], rtol=0.03)
    np.testing.assert_allclose(objects["equivalent_diameter"], [2.0, 1.2], rtol=0.02)
    # a circle's circumference, within the few percent of a digital boundary
    np.testing.assert_allclose(objects["perimeter"], math.pi * objects["equivalent_diameter"],
                               rtol=0.04)
    assert (objects["eccentricity"] < 0.2).all() and (objects["solidity"] > 0.9).all()
    summary = widget.tables["summary"]
    assert summary.index.tolist() == ["annotated", "lysosomes"]
    assert summary.loc["lysosomes", "unit"] == "µm"
    assert summary.loc["lysosomes", "n_objects"] == 2
    assert summary.loc["lysosomes", "total_area"] == pytest.approx(pixels.sum() * 0.01)

    # the dock shows the summary first, and every table on request, in full precision
    assert widget.table_combo.value == "summary"
    widget.table_combo.value = "objects"
    shown = widget.table.to_dataframe()
    np.testing.assert_allclose(shown["area"].astype(float), widget.tables["objects"]["area"])
    assert "µm²" in widget.table_note.value
    assert widget.plot_combo.choices == ("object_sizes",)
    assert widget.canvas is not None
    assert widget.status_label.value.startswith("Done in")
    assert widget.status_label.value.endswith(": 4 objects.")
    # napari shows each object's measures under the cursor
    assert layer.features["index"].tolist() == [1, 2]
    np.testing.assert_allclose(layer.features["area"], objects["area"])
    # but features the user gave a layer are kept
    assert annotated.features.columns.tolist() == ["index", "treated"]
    assert not tracebacks


def test_objects_are_summarized_per_cell(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    labels = np.zeros((40, 80), np.uint16)
    for index, centre in enumerate([(10, 10), (30, 20), (20, 60)], start=1):
        labels[disc(labels.shape, centre, 3)] = index
    cells = np.zeros_like(labels)
    cells[:, :40], cells[:, 40:] = 1, 2
    nuclei = np.zeros_like(labels)
    nuclei[disc(labels.shape, (20, 20), 4)] = 1  # grown 2 µm = 20 px: reaches all of cell 1
    nuclei[disc(labels.shape, (20, 60), 4)] = 2
    viewer.add_labels(labels, name="mitochondria", scale=UM)
    viewer.add_labels(cells, name="cells", scale=UM)
    viewer.add_labels(nuclei, name="nuclei", scale=UM)
    widget = make_widget(viewer, morphology=["mitochondria"])

    widget.cells_combo.value = viewer.layers["cells"]
    assert widget.cells_kind_combo.value == "labels"
    measure(qtbot, widget)
    per_cell = widget.tables["per_cell"]
    assert per_cell["cell"].tolist() == [1, 2]
    assert per_cell["n_objects"].tolist() == [2, 1]
    assert widget.tables["objects"]["cell"].tolist() == [1, 1, 2]
    np.testing.assert_allclose(per_cell["cell_area"], [40 * 40 * 0.01] * 2)

    widget.cells_combo.value = viewer.layers["nuclei"]
    assert widget.cells_kind_combo.value == "nuclei"  # guessed from the layer's name
    widget.grow_spin.value = 2.0
    assert widget.grow_spin.label == "Grow nuclei by (µm)"
    measure(qtbot, widget)
    assert widget.tables["per_cell"]["n_objects"].tolist() == [2, 1]
    assert messages.errors == []


def test_three_d_labels_get_volumes_in_cubic_micrometres(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    zz, yy, xx = np.mgrid[:20, :30, :30]
    ball = ((zz - 10) ** 2 + (yy - 15) ** 2 + (xx - 15) ** 2 <= 8**2).astype(np.uint8)
    tube = np.zeros((20, 30, 30), np.uint8)
    tube[10, 15, 3:27] = 1
    viewer.add_labels(ball, name="nuclei", scale=(0.2, 0.2, 0.2))
    viewer.add_labels(tube, name="er", scale=(0.2, 0.2, 0.2))
    widget = make_widget(viewer, morphology=["nuclei"], networks=["er"])

    measure(qtbot, widget)

    assert messages.errors == []
    objects = widget.tables["objects"]
    assert "volume" in objects and "perimeter" not in objects
    assert objects.loc[0, "volume"] == pytest.approx(ball.sum() * 0.008)
    assert objects.loc[0, "volume"] == pytest.approx(4 / 3 * math.pi * 1.6**3, rel=0.03)
    assert widget.tables["networks"].loc["er", "total_length"] == pytest.approx(23 * 0.2)
    skeleton = viewer.layers["er skeleton"]
    assert skeleton.data.shape == (20, 30, 30)
    assert viewer.layers["er end points"].data.shape == (2, 3)
    assert "µm³" in widget.table_note.value


# ---------------------------------------------------------------------- networks


def test_a_plus_shaped_network_has_one_junction_and_four_end_points(make_napari_viewer, qtbot,
                                                                    messages, tracebacks):
    viewer = make_napari_viewer()
    er = viewer.add_labels(plus_sign(), name="er", scale=UM, translate=(3.0, -1.0))
    widget = make_widget(viewer, networks=["er"])

    measure(qtbot, widget)

    assert messages.errors == []
    networks = widget.tables["networks"]
    row = networks.loc["er"]
    assert (row["n_junctions"], row["n_end_points"], row["n_branches"]) == (1, 4, 4)
    assert row["n_networks"] == 1 and row["unit"] == "µm"
    assert row["total_length"] == pytest.approx(4.0)  # 4 arms of 10 pixels of 0.1 µm
    assert row["mean_branch_length"] == pytest.approx(1.0)
    assert len(widget.tables["branches"]) == 4
    assert widget.table_combo.value == "networks"
    assert widget.plot_combo.choices == ("networks",)

    skeleton = viewer.layers["er skeleton"]
    junctions, end_points = viewer.layers["er junctions"], viewer.layers["er end points"]
    assert isinstance(skeleton, Labels) and isinstance(junctions, Points)
    assert np.count_nonzero(skeleton.data) == 41
    for layer in (skeleton, junctions, end_points):
        np.testing.assert_array_equal(layer.scale, er.scale)
        np.testing.assert_array_equal(layer.translate, er.translate)
    np.testing.assert_allclose(junctions.data, [[20, 20]])
    assert sorted(map(tuple, end_points.data.tolist())) == [(10, 20), (20, 10), (20, 30), (30, 20)]
    assert skeleton.metadata[METADATA_KEY] == {"source": "er", "measurement": "skeleton"}
    # result layers are not offered for measuring
    assert widget.morphology_layers.choices == (er,)

    # measuring again updates the same layers instead of adding copies
    er.data = np.pad(plus_sign()[:, :30], ((0, 0), (0, 11)))  # one arm shorter
    measure(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == [
        "er", "er skeleton", "er junctions", "er end points"]
    assert viewer.layers["er skeleton"] is skeleton
    assert widget.tables["networks"].loc["er", "total_length"] == pytest.approx(3.9)
    assert not tracebacks


# ---------------------------------------------------------------------- contacts


def test_contacts_are_found_within_the_distance(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    a, b = squares(gap=2)  # facing pixels are 3 pixels, 0.3 µm, apart
    viewer.add_labels(a, name="er", scale=UM)
    viewer.add_labels(b, name="mitochondria", scale=UM)
    widget = make_widget(viewer, contacts=("er", "mitochondria"))
    assert widget.distance_spin.label == "Contact distance (µm)"

    for distance, sites in ((0.2, 0), (0.3, 1)):
        widget.distance_spin.value = distance
        measure(qtbot, widget)

        assert messages.errors == []
        row = widget.tables["contacts"].iloc[0]
        assert (row["a"], row["b"], row["unit"]) == ("er", "mitochondria", "µm")
        assert row["distance"] == distance
        assert row["n_sites"] == sites
        assert row["contact_area"] == pytest.approx(0.1 * sites)  # one column of 10 pixels
        assert row["a_contact_fraction"] == pytest.approx(0.1 * sites)
        assert row["b_object_fraction"] == pytest.approx(sites)
        assert viewer.layers["er-mitochondria contact sites"].data.max() == sites
        assert len(widget.tables["contact_sites"]) == sites
        assert widget.tables["contact_objects"]["organelle"].tolist() == ["er", "mitochondria"]
    assert len(viewer.layers) == 3  # the contact sites layer was updated, not added again


def test_the_unit_is_the_layers():
    assert layer_length_unit(Labels(np.zeros((8, 8), np.uint8), scale=(5.0, 5.0),
                                    units=("nm", "nm"))) == "nm"
    # this plugin's layers are scaled in µm without saying so; unscaled layers are in pixels
    assert layer_length_unit(Labels(np.zeros((8, 8), np.uint8), scale=UM)) == "µm"
    assert layer_length_unit(Labels(np.zeros((8, 8), np.uint8))) == "px"


# ---------------------------------------------------------------------- agreement


def test_agreement_of_two_layers_or_two_folders(make_napari_viewer, qtbot, messages,
                                                 tmp_path):
    import tifffile

    viewer = make_napari_viewer()
    labels = two_discs()
    viewer.add_labels(labels, name="proposal", scale=UM)
    corrected = viewer.add_labels(labels.copy(), name="corrected", scale=UM)
    corrected.metadata = {METADATA_KEY: {"class": "lysosomes"}}  # as Segment tags its layers
    widget = make_widget(viewer, agreement=("proposal", "corrected"))

    measure(qtbot, widget)

    assert messages.errors == []
    table = widget.tables["agreement"]
    assert table.index.tolist() == ["lysosomes"]
    for column in ("dice", "iou", "precision", "recall", "f1", "object_f1"):
        assert table.loc["lysosomes", column] == 1.0
    assert widget.plot_combo.value == "agreement"
    texts = [text.get_text() for text in widget.figure("agreement").axes[0].texts]
    assert texts == ["1.00"] * 5
    assert "Dice 1.000" in widget.status_label.value

    # folders of TIFFs, paired by name; no layer is needed
    edited = labels.copy()
    edited[edited == 2] = 0  # the corrector deleted one object
    for folder, mito in (("proposal", labels), ("corrected", edited)):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "mitochondria.tif", mito)
    viewer.layers.clear()
    widget.agreement_source_combo.value = "folders"
    widget.proposal_folder.value = tmp_path / "proposal"
    widget.corrected_folder.value = tmp_path / "corrected"

    measure(qtbot, widget)

    assert messages.errors == []
    row = widget.tables["agreement"].loc["mitochondria"]
    assert row["recall"] == 1.0 and row["precision"] < 1.0
    assert row["object_precision"] == 0.5 and row["object_recall"] == 1.0
    assert widget.tables["agreement_per_image"]["image"].tolist() == ["mitochondria.tif"]
    assert widget.table_combo.choices == ("agreement", "agreement_per_image")


# ---------------------------------------------------------------------- export


def test_export_writes_every_table_and_plot(make_napari_viewer, qtbot, messages, tmp_path):
    viewer = make_napari_viewer()
    a, b = squares(gap=0)
    viewer.add_labels(a, name="er", scale=UM)
    viewer.add_labels(b * 7, name="mitochondria", scale=UM)
    widget = make_widget(viewer, morphology=["er", "mitochondria"], networks=["er"],
                         contacts=("er", "mitochondria"))
    assert not widget.results_box.visible  # nothing to show or export before a run
    widget.export_button.native.click()
    assert messages.errors == ["Nothing to export yet: measure first"]
    measure(qtbot, widget)
    widget.export_button.native.click()
    assert messages.errors[-1] == "Choose the folder to export to under 'Export to'"

    widget.export_folder.value = tmp_path / "results"
    widget.export_button.native.click()

    written = sorted(path.name for path in (tmp_path / "results").iterdir())
    assert written == sorted([
        "objects.csv", "summary.csv", "networks.csv", "network_components.csv", "branches.csv",
        "contacts.csv", "contact_sites.csv", "contact_objects.csv", "object_sizes.png",
        "networks.png"])
    objects = pd.read_csv(tmp_path / "results" / "objects.csv")
    assert objects.columns[:4].tolist() == ["organelle", "label", "centroid_0", "centroid_1"]
    assert {"area", "perimeter", "equivalent_diameter", "eccentricity", "solidity"} <= set(
        objects.columns)
    assert dict(zip(objects["organelle"], objects["label"])) == {"er": 1, "mitochondria": 7}
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert summary.columns[:3].tolist() == ["organelle", "unit", "n_objects"]
    networks = pd.read_csv(tmp_path / "results" / "networks.csv")
    assert {"organelle", "unit", "total_length", "n_branches", "n_junctions", "n_end_points",
            "mean_branch_length", "n_networks"} <= set(networks.columns)
    contacts = pd.read_csv(tmp_path / "results" / "contacts.csv")
    assert contacts.columns[:5].tolist() == ["a", "b", "unit", "distance", "n_sites"]
    assert widget.status_label.value.startswith("Wrote 10 files to")
    assert len(messages.errors) == 2


# ---------------------------------------------------------------------- same as the CLI


def cell_images() -> dict[str, np.ndarray]:
    """Mitochondria (instance), an ER network (mask) and two nuclei, on one 60 x 80 grid."""
    mito = np.zeros((60, 80), np.uint16)
    mito[8:16, 8:16] = 1
    mito[40:50, 50:58] = 2
    mito[24:27, 60:75] = 3
    er = np.zeros((60, 80), np.uint8)
    er[20, 2:78] = 1
    er[2:58, 35] = 1
    er[45, 35:48] = 1
    nuclei = np.zeros((60, 80), np.uint8)
    nuclei[disc((60, 80), (12, 12), 3)] = 1
    nuclei[disc((60, 80), (45, 54), 3)] = 1
    return {"mitochondria": mito, "er": er, "nuclei": nuclei}


def test_the_dock_and_the_command_line_write_the_same_files(make_napari_viewer, qtbot, messages,
                                                             tmp_path, capsys):
    import tifffile

    images = cell_images()
    for name, image in images.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
    assert cli_main([
        # the dock lists layers top first, as napari does: the ER, then mitochondria
        "measure", *(str(tmp_path / f"{name}.tif") for name in ("er", "mitochondria")),
        "--pixel-size", "10", "--network", "er", "--merge-junctions", "20", "--contacts",
        "er:mitochondria", "mitochondria:er", "--distance", "40", "--cells",
        str(tmp_path / "nuclei.tif"), "--cells-kind", "nuclei", "--grow-nuclei", "150",
        "--out", str(tmp_path / "cli")]) == 0

    # the same images as layers of 10 nm pixels, and the same choices in the dock (the dock
    # measures one contact pair at a time: the second is a second run)
    viewer = make_napari_viewer()
    for name, image in images.items():
        viewer.add_labels(image, name=name, scale=(10.0, 10.0), units=("nm", "nm"))
    widget = make_widget(viewer, morphology=["mitochondria", "er"], networks=["er"],
                         contacts=("er", "mitochondria"), distance=40.0)
    widget.cells_combo.value = viewer.layers["nuclei"]
    assert widget.cells_kind_combo.value == "nuclei"
    widget.grow_spin.value = 150.0
    widget.merge_junctions_spin.value = 20.0
    assert widget.grow_spin.label == "Grow nuclei by (nm)"
    measure(qtbot, widget)
    widget.export_folder.value = tmp_path / "dock"
    widget.export_button.native.click()
    choose(widget, contacts=("mitochondria", "er"), distance=40.0)
    measure(qtbot, widget)
    widget.export_folder.value = tmp_path / "dock-reversed"
    widget.export_button.native.click()
    assert messages.errors == []

    cli = {path.name: path for path in (tmp_path / "cli").iterdir()}
    dock = {path.name: path for path in (tmp_path / "dock").iterdir()}
    assert sorted(dock) == sorted(cli) == sorted([
        "summary.csv", "objects.csv", "per_cell.csv", "networks.csv", "network_components.csv",
        "branches.csv", "contacts.csv", "contact_sites.csv", "contact_objects.csv",
        "object_sizes.png", "networks.png"])
    contact_tables = ("contacts.csv", "contact_sites.csv", "contact_objects.csv")
    for name in sorted(cli):
        if not name.endswith(".csv"):
            continue
        expected = pd.read_csv(cli[name])
        if name in contact_tables:
            # the CLI's two pairs are the dock's two runs, one after the other
            ran = [pd.read_csv(tmp_path / folder / name) for folder in ("dock", "dock-reversed")]
            pd.testing.assert_frame_equal(pd.concat(ran, ignore_index=True), expected,
                                          check_exact=True)
        else:
            # same columns, same numbers, same text: one writer, one pipeline
            pd.testing.assert_frame_equal(pd.read_csv(dock[name]), expected, check_exact=True)
            assert dock[name].read_bytes() == cli[name].read_bytes(), name
    # what the tables say, so that the comparison is of real measurements
    per_cell = pd.read_csv(cli["per_cell.csv"])
    assert per_cell.query("organelle == 'mitochondria'")["n_objects"].tolist() == [1, 1]
    contacts = pd.read_csv(cli["contacts.csv"])
    assert contacts[["a", "b", "unit"]].values.tolist() == [["er", "mitochondria", "nm"],
                                                           ["mitochondria", "er", "nm"]]
    assert (contacts["n_sites"] > 0).all()
    networks = pd.read_csv(cli["networks.csv"], index_col="organelle")
    assert networks.loc["er", "n_junctions"] == 2


def test_the_dock_and_the_command_line_compare_folders_alike(make_napari_viewer, qtbot,
                                                             messages, tmp_path, capsys):
    import tifffile

    labels = two_discs()
    edited = labels.copy()
    edited[edited == 2] = 0
    for folder, images in (("proposal", (labels, labels)), ("corrected", (labels, edited))):
        for sub, image in zip(("mito", "lyso"), images):
            (tmp_path / folder / sub).mkdir(parents=True)
            tifffile.imwrite(tmp_path / folder / sub / "cell1.tif", image)
    assert cli_main(["measure", "--compare", str(tmp_path / "proposal"),
                     str(tmp_path / "corrected"), "--out", str(tmp_path / "cli")]) == 0
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.agreement_check.value = True
    widget.agreement_source_combo.value = "folders"
    widget.proposal_folder.value = tmp_path / "proposal"
    widget.corrected_folder.value = tmp_path / "corrected"
    measure(qtbot, widget)
    widget.export_folder.value = tmp_path / "dock"
    widget.export_button.native.click()
    assert messages.errors == []

    names = ["agreement.csv", "agreement.png", "agreement_per_image.csv"]
    assert sorted(path.name for path in (tmp_path / "dock").iterdir()) == names
    assert sorted(path.name for path in (tmp_path / "cli").iterdir()) == names
    for name in ("agreement.csv", "agreement_per_image.csv"):
        assert (tmp_path / "dock" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    table = pd.read_csv(tmp_path / "cli" / "agreement.csv", index_col="class")
    assert table.loc["lyso", "object_precision"] == 0.5 and table.loc["mito", "dice"] == 1.0


# ---------------------------------------------------------------------- bad input


def only_an_image(viewer) -> None:
    viewer.add_image(np.zeros((16, 16)), name="raw")


def mismatched_contacts(viewer) -> None:
    viewer.add_labels(np.ones((16, 16), np.uint8), name="er")
    viewer.add_labels(np.ones((16, 20), np.uint8), name="mitochondria")


def mismatched_agreement(viewer) -> None:
    viewer.add_labels(np.ones((16, 16), np.uint8), name="proposal", scale=UM)
    viewer.add_labels(np.ones((16, 16), np.uint8), name="corrected", scale=(0.2, 0.2))


def four_d(viewer) -> None:
    viewer.add_labels(np.ones((2, 2, 8, 8), np.uint8), name="movie")


BAD_INPUT = [
    (only_an_image, [
        ({}, "There are no Labels layers to measure ('raw' is not a Labels layer)"),
    ]),
    (mismatched_contacts, [
        ({"contacts": ("er", "mitochondria")},
         ("Organelle A ('er') and organelle B ('mitochondria') differ in shape (16 x 16 vs "
          "16 x 20): layers compared pixel by pixel must have the same shape")),
        ({"contacts": ("er", "er")},
         "Choose two different layers under Contacts: 'er' is chosen twice"),
        ({"morphology": ["er"], "networks": []}, "Choose the layers to analyse under Networks"),
        ({}, "Nothing to measure: tick Morphology, Networks, Contacts or Agreement"),
    ]),
    (mismatched_agreement, [
        ({"agreement": ("proposal", "corrected")},
         ("The proposal ('proposal') and the corrected layer ('corrected') differ in pixel size "
          "(0.1 x 0.1 µm vs 0.2 x 0.2 µm)")),
    ]),
    (four_d, [
        ({"morphology": ["movie"]}, "Layer 'movie' is 4-D (2, 2, 8, 8)"),
    ]),
]


def test_bad_input_gets_a_clear_message(make_napari_viewer, qtbot, messages, tracebacks):
    # one viewer for every case: making a viewer takes longer than running a case
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    for make_layers, cases in BAD_INPUT:
        viewer.layers.clear()
        make_layers(viewer)
        layers_before = len(viewer.layers)
        for choices, expected in cases:
            choose(widget, **choices)
            if choices.get("networks") == []:
                widget.network_check.value = True  # ticked, with no layer chosen
            messages.errors.clear()

            measure(qtbot, widget)

            assert len(messages.errors) == 1 and expected in messages.errors[0], messages.errors
            assert messages.errors[0][0].isupper()
            assert widget.status_label.value == f"Error: {messages.errors[0]}"
            assert widget.results is None and widget.run_button.enabled
            assert len(viewer.layers) == layers_before  # nothing was added

    # empty labels are no error (nothing found is an answer), but the user is told
    viewer.layers.clear()
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="Labels", scale=UM)
    choose(widget, morphology=["Labels"], networks=["Labels"])
    messages.errors.clear()

    measure(qtbot, widget)

    assert messages.errors == []
    assert messages.warnings == [
        "Layer 'Labels' is empty (no labelled pixels): its measures are zero or n/a."]
    assert widget.tables["summary"].loc["Labels", "n_objects"] == 0
    assert widget.tables["networks"].loc["Labels", "n_junctions"] == 0
    assert not tracebacks
