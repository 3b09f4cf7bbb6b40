"""GUI tests of the Train dock widget, in a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widget_train.py

A tiny model is fine-tuned for a few steps on a tiny synthetic data set; the
tests check what a user sees: the live plot fills, the before/after table,
the new version, "Use this model", rollback, and that Cancel keeps the best
model so far.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("napari")

from napari_organelle._widgets.correct import CorrectWidget
from napari_organelle._widgets.segment import SegmentWidget
from napari_organelle._widgets.train import COLORS, TrainWidget
from napari_organelle.models import load_model
from napari_organelle.models.versions import active_version, list_versions
from napari_organelle.store import TrainingStore

from ._datasets import write_dataset
from ._models import make_tiny_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_bundled_models")]

RUN_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-em@0`` (mitochondria, membranes; random weights), built once."""
    return make_tiny_model(tmp_path_factory.mktemp("base") / "tiny-em")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_model: Path) -> Iterator[Path]:
    """A napari-organelle home holding ``tiny-em@0``; torch threads restored afterwards."""
    folder = tmp_path / "home"
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(folder))
    shutil.copytree(base_model, folder / "models" / "tiny-em" / "0")
    threads = torch.get_num_threads()
    yield folder
    torch.set_num_threads(threads)


@pytest.fixture
def widget(make_napari_viewer, tmp_path: Path) -> TrainWidget:
    """The dock in a viewer, set up for a tiny run on four 96x96 images."""
    viewer = make_napari_viewer()
    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train")
    data = write_dataset(tmp_path / "lab-set", n_images=4, classes=("mitochondria", "er"))
    dock.data_list.value = [data]
    assert list(dock.new_class_rows) == ["er"]  # the data has ER, the base has not
    assert dock.new_class_rows["er"].selected  # learnt unless unticked
    dock.name_edit.value = "lab"
    dock.val_fraction_spin.value = 0.25
    dock.crop_spin.value = 64
    dock.batch_spin.value = 2
    dock.validate_every_spin.value = 2
    dock.max_steps_spin.value = 6
    return dock


def run_to_end(widget: TrainWidget, qtbot) -> None:
    widget.start()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def test_training_plots_live_and_keeps_a_version(widget, qtbot):
    assert widget.base_combo.value.full_name == "tiny-em@0"
    run_to_end(widget, qtbot)
    assert widget.controls.last_error is None, widget.controls.last_error

    plot = widget.plot
    assert [step for step, _ in plot.loss] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in plot.dice["mitochondria"]] == [2, 4, 6]
    assert "er" in plot.dice and "mitochondria" in plot.before
    assert plot.draws >= 4

    result = widget.last_result
    assert result.version.full_name == "lab@1" and result.stopped == "finished"
    table = widget.results_table
    assert table.column_headers == ("base", "new", "change")
    rows = dict(zip(table.row_headers, table.data.to_list(), strict=True))
    assert set(rows) == {"mitochondria", "er"}
    assert rows["er"][0] == "—" and 0 <= float(rows["er"][1]) <= 1  # the base has no ER
    before, after, change = (float(value) for value in rows["mitochondria"])
    assert change == pytest.approx(after - before, abs=2e-3)
    shown = widget.results_table.native.item(0, 2).text()  # as displayed
    assert shown.startswith(("+", "-")) and len(shown.split(".")[1]) == 3
    assert "lab@1" in widget.results_label.value
    assert [info.full_name for info in list_versions("lab")] == ["lab@1"]
    assert load_model("lab").card.class_names == ["mitochondria", "membranes", "er"]


def test_use_this_model_and_rollback(widget, qtbot):
    run_to_end(widget, qtbot)
    run_to_end(widget, qtbot)
    assert widget.last_result.version.full_name == "lab@2"
    assert active_version("lab").version == "1"  # a new version waits to be chosen
    widget.use_button.clicked.emit()
    assert active_version("lab").version == "2"
    assert load_model("lab").path == widget.last_result.version.path

    labels = [widget.versions_combo.native.itemText(i)
              for i in range(widget.versions_combo.native.count())]
    assert labels[0].startswith("lab@2") and "(in use)" in labels[0]
    first = next(info for info in widget.versions_combo.choices if info.version == "1")
    widget.versions_combo.value = first
    widget.rollback_button.clicked.emit()
    assert active_version("lab").version == "1"
    assert load_model("lab").path == first.path
    assert "lab now means lab@1" in widget.controls.status_label.value


def test_cancel_mid_run_keeps_the_best_model(widget, qtbot):
    widget.max_steps_spin.value = 10_000
    widget.start()
    qtbot.waitUntil(lambda: "mitochondria" in widget.plot.dice, timeout=RUN_TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    result = widget.last_result
    assert result is not None and result.stopped == "cancelled"
    assert result.version.full_name == "lab@1"
    kept = load_model("lab@1").card.extra["lineage"]["time"]
    assert kept["stopped"] == "cancelled" and kept["kept_step"] >= 2
    assert widget.use_button.enabled
    assert widget.results_table.row_headers  # the table is filled after a cancel too


def test_start_without_data_says_what_is_missing(widget, qtbot):
    widget.data_list.value = []
    widget.start()
    assert not widget.running
    assert "No training data" in widget.controls.status_label.value


def test_save_as_follows_the_base_model_until_edited(widget):
    assert widget.name_edit.value == "lab"  # typed by the user (the fixture): kept
    fresh = TrainWidget(widget.viewer)
    assert not fresh.base_combo.value.bundled
    assert fresh.name_edit.value == "tiny-em"  # a lab's own model gets new versions of itself


# ---------------------------------------------------------------- a class painted from scratch


def test_a_class_painted_from_scratch_becomes_a_new_class_of_the_model(
        make_napari_viewer, qtbot, tmp_path):
    """Paint -> Correct (save) -> Train (new-class row) -> new version -> Segment offers it."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 50, (128, 128))
    centres = [(30, 30), (30, 90), (90, 40), (95, 95)]
    yy, xx = np.mgrid[:128, :128]
    for y, x in centres:
        image[(yy - y) ** 2 + (xx - x) ** 2 < 36] += 2000
    viewer.add_image(image.astype(np.uint16), name="cell")
    # A new Labels layer, painted by hand: one disc per synapse, each its own label.
    painted = viewer.add_labels(np.zeros((128, 128), np.uint8), name="synapses")
    painted.brush_size = 11
    for label, centre in enumerate(centres, start=1):
        painted.paint(centre, label)
    assert set(np.unique(painted.data)) == {0, 1, 2, 3, 4}

    # -- Correct: the layer's row is ticked, named after the layer, objects (labels above 1)
    correct = CorrectWidget(viewer)
    viewer.window.add_dock_widget(correct, name="Correct")
    store = tmp_path / "synapse-store"
    correct.store_edit.value = store
    (row,) = [row for row in correct.layer_rows if row.layer is painted]
    assert row.selected and row.class_edit.value == "synapses"
    assert row.kind_combo.value == "objects"
    correct.save_button.native.click()
    qtbot.waitUntil(lambda: not correct.running, timeout=RUN_TIMEOUT_MS)
    assert correct.save_controls.last_error is None, correct.save_controls.last_error
    (record,) = TrainingStore(store).samples()
    assert record.classes == ("synapses",) and record.instance_classes == ("synapses",)

    # -- Train: the store's class the base lacks is a row, objects by default; pick a colour
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    assert train.base_combo.value.full_name == "tiny-em@0"
    train.data_list.value = [store]
    assert list(train.new_class_rows) == ["synapses"]
    new_row = train.new_class_rows["synapses"]
    assert new_row.selected and new_row.kind_combo.value == "instance"
    assert new_row.kind_combo.native.currentText() == "objects"
    brown = dict(COLORS)["brown"]
    new_row.color_combo.value = brown
    assert new_row.color_combo.native.currentText() == "brown"
    train.name_edit.value = "lab"
    train.crop_spin.value = 64
    train.batch_spin.value = 2
    train.validate_every_spin.value = 2
    train.max_steps_spin.value = 4
    run_to_end(train, qtbot)
    assert train.controls.last_error is None, train.controls.last_error
    assert train.last_result.version.full_name == "lab@1"
    card = load_model("lab@1").card
    assert card.class_names == ["mitochondria", "membranes", "synapses"]
    spec = card.class_spec("synapses")
    assert spec.kind == "instance" and spec.color == brown

    # -- Segment: the new version offers the new class
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.model_combo.value = next(info for info in segment.model_combo.choices
                                     if info.full_name == "lab@1")
    assert list(segment.class_checkboxes) == ["mitochondria", "membranes", "synapses"]
    box = segment.class_checkboxes["synapses"]
    assert box.text == "synapses" and "not tested on a held-out test set" in box.tooltip


def test_new_class_rows_follow_the_data_and_keep_the_choices(widget, tmp_path):
    row = widget.new_class_rows["er"]
    row.kind_combo.value = "instance"
    row.use_check.value = False
    more = write_dataset(tmp_path / "golgi-set", n_images=1, classes=("membranes", "er"))
    widget.data_list.value = [*widget.data_list.value, more]
    assert list(widget.new_class_rows) == ["er"]  # membranes: the base has them
    again = widget.new_class_rows["er"]
    assert again.kind_combo.value == "instance" and not again.selected
    assert widget.chosen_new_classes() == []
    again.use_check.value = True
    assert [spec.name for spec in widget.chosen_new_classes()] == ["er"]
    assert widget.chosen_new_classes()[0].color == "#2ca02c"  # ER's usual colour
    widget.data_list.value = []
    assert widget.new_class_rows == {}
