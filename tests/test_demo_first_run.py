"""A newcomer's first five minutes: the demo's viewer, its defaults, and a plain Run.

Opens the sample exactly as ``napari-organelle demo`` does (the same function),
with the bundled models, and presses Run without changing anything.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Image, Labels
from qtpy.QtWidgets import QDockWidget, QTabBar

from napari_organelle._widgets._docks import DOCK_NAMES, open_demo

pytestmark = [pytest.mark.gui]


@pytest.fixture
def demo(make_napari_viewer, qtbot, private_home):
    viewer = make_napari_viewer()
    widgets = open_demo(viewer, "live_cell")
    qtbot.wait(50)  # let the docks settle into their tabs
    return viewer, widgets


def test_demo_defaults_follow_the_sample_and_a_plain_run_segments_each_channel(
        demo, qtbot, one_torch_thread):
    viewer, widgets = demo
    segment = widgets["Segment"]
    channels = [layer for layer in viewer.layers if isinstance(layer, Image)]
    assert {layer.metadata["modality"] for layer in channels} == {"fluorescence"}

    # The model follows the sample's modality, and every channel is given its organelle.
    assert segment.model_combo.value.name == "fluo-organelles"
    assert segment.fluorescence_mode
    assert segment.channel_assignments == {layer.name: layer.metadata["organelle"]
                                           for layer in channels}
    assert not segment.model_chosen_by_hand

    segment.run()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    labels = {layer.name: layer for layer in viewer.layers if isinstance(layer, Labels)}
    # One labels layer per channel, named after its organelle and the layer it came from.
    expected = {f"{c.metadata['organelle']} ({c.name})": c for c in channels}
    assert set(labels) == set(expected)
    for name, channel in expected.items():
        layer = labels[name]
        assert layer.data.shape == channel.data.shape
        np.testing.assert_allclose(layer.scale, channel.scale)
        assert layer.data.any(), f"nothing found for {layer.name}"
    # Instance organelles are separate objects; the count is plausible for a cell sample.
    assert 2 <= len(np.unique(labels["nuclei (nuclei)"].data)) - 1 <= 20
    assert "Done" in segment.status_label.value


def test_the_docks_open_as_tabs_with_segment_in_front(demo):
    viewer, widgets = demo
    assert set(widgets) == set(DOCK_NAMES)
    window = viewer.window._qt_window
    docks = [dock for dock in window.findChildren(QDockWidget)
             if any(dock.widget() is w.native or dock.widget().isAncestorOf(w.native)
                    for w in widgets.values())]
    assert len(docks) == len(DOCK_NAMES)
    tabbed = set(window.tabifiedDockWidgets(docks[0])) | {docks[0]}
    assert tabbed == set(docks), "every dock is a tab of one group"
    segment_dock = next(d for d in docks if d.widget().isAncestorOf(widgets["Segment"].native)
                        or d.widget() is widgets["Segment"].native)
    bars = [bar for bar in window.findChildren(QTabBar)
            if {bar.tabText(i) for i in range(bar.count())} == {d.windowTitle() for d in docks}]
    assert len(bars) == 1
    assert bars[0].tabText(bars[0].currentIndex()) == segment_dock.windowTitle(), \
        "Segment is the tab in front"
    # One tab group is as tall as its tallest dock, not the sum of all four.
    assert max(d.height() for d in docks) < 1500


def test_choosing_an_em_layer_switches_the_model_until_one_is_chosen_by_hand(demo, qtbot):
    viewer, widgets = demo
    segment = widgets["Segment"]
    rng = np.random.default_rng(0)
    em = viewer.add_image(rng.normal(128, 25, (256, 256)).clip(0, 255).astype(np.uint8),
                          name="em slice", metadata={"modality": "em"})
    viewer.layers.selection.active = em
    assert segment.model_combo.value.modality == "em"
    assert not segment.fluorescence_mode
    assert segment.image_combo.value is em

    # Back on a channel layer: the fluorescence model again.
    viewer.layers.selection.active = viewer.layers["nuclei"]
    assert segment.model_combo.value.name == "fluo-organelles"

    # A model picked by hand is kept whatever layer is chosen.
    em_choice = next(c for c in segment.model_combo.choices if c.modality == "em")
    segment.model_combo.value = em_choice
    assert segment.model_chosen_by_hand
    viewer.layers.selection.active = viewer.layers["mitochondria"]
    assert segment.model_combo.value is em_choice


@pytest.mark.parametrize("second", ["Correct", "Train", "Analyze"])
def test_a_dock_opened_from_the_plugins_menu_joins_the_open_one_as_a_tab(
        make_napari_viewer, qtbot, private_home, second):
    # As the Plugins menu opens them: one at a time, napari's default placement (no tabify).
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    segment_dock, _ = viewer.window.add_plugin_dock_widget("napari-organelle", "Segment")
    qtbot.wait(50)
    other_dock, _ = viewer.window.add_plugin_dock_widget("napari-organelle", second)
    qtbot.wait(50)

    assert isinstance(other_dock, QDockWidget)
    assert window.tabifiedDockWidgets(segment_dock) == [other_dock]
    assert window.dockWidgetArea(other_dock) == window.dockWidgetArea(segment_dock)
