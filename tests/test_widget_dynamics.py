"""The Dynamics dock: track a Labels time-lapse, show Tracks and event Points, export CSV."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari.layers import Points, Tracks
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication

from napari_organelle._widgets.dynamics import DynamicsWidget
from napari_organelle.simulation.dynamics import simulate_dynamics

pytestmark = pytest.mark.gui
RUN_TIMEOUT_MS = 30_000


def test_tracks_and_events_become_layers(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    movie = simulate_dynamics((96, 96), frames=12, seed=4)
    layer = viewer.add_labels(movie.labels, name="mito", scale=(1, 0.1, 0.1))
    widget = DynamicsWidget(viewer)
    widget.labels_combo.value = layer
    widget.controls.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    QThreadPool.globalInstance().waitForDone(RUN_TIMEOUT_MS)
    QApplication.processEvents()
    assert widget.result is not None
    kinds = [type(out) for out in widget.output_layers]
    assert Tracks in kinds
    assert (Points in kinds) == bool(widget.result.events)
    assert "tracks" in widget.summary_label.value
    widget.export_folder.value = tmp_path
    assert [p.name for p in widget.export()][0] == "tracks.csv"
