"""GUI test of the Correct dock's "Annotate next" queue, in a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widget_queue.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_organelle._widgets._correct_plan import CURRENT_PLANE, SHAPES
from napari_organelle._widgets._correct_queue import REVIEWED_ROLE
from napari_organelle._widgets._layers import METADATA_KEY, PROPOSAL_KEY, pack_proposal
from napari_organelle._widgets.correct import CorrectWidget
from napari_organelle.store import TrainingStore

from ._models import make_tiny_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_bundled_models")]

TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def tiny_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    make_tiny_model(home / "models" / "tiny-em" / "0")
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(home))
    return home


def cells(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(1000, 80, shape)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    for _ in range(12):
        y, x = rng.uniform(0, shape[-2]), rng.uniform(0, shape[-1])
        image[..., (yy - y) ** 2 + (xx - x) ** 2 < rng.uniform(20, 200)] += 1500
    return image.clip(0, 65535).astype(np.uint16)


def test_the_queue_ranks_regions_goes_to_them_and_moves_on_after_save(
        make_napari_viewer, qtbot, tmp_path, messages):
    viewer = make_napari_viewer()
    image = viewer.add_image(cells((3, 192, 192)), name="em", scale=(1.0, 2.0, 2.0))
    labels = np.zeros((3, 192, 192), np.uint16)
    tag = {"source": "em", "class": "mitochondria", "kind": "instance", "run": 1,
           "model": "tiny-em@0"}
    viewer.add_labels(labels, name="mitochondria", scale=image.scale,
                      metadata={METADATA_KEY: tag, PROPOSAL_KEY: pack_proposal(labels)})
    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Correct")
    widget.store_edit.value = tmp_path / "store"
    widget.image_combo.value = image
    widget.queue_check.value = True
    queue = widget.queue_panel
    assert not queue.native.isHidden()
    assert queue.model_combo.value.full_name == "tiny-em@0"  # the model of the results
    queue.count_spin.value, queue.tile_spin.value = 3, 64

    queue.controls.run_button.native.click()
    qtbot.waitUntil(lambda: not queue.running, timeout=TIMEOUT_MS)

    assert queue.controls.last_error is None, queue.controls.last_error
    regions = queue.regions
    assert [r.rank for r in regions] == [1, 2, 3]
    assert regions[0].score == max(r.score for r in regions)
    assert all(r.source == "em" and len(r.plane) == 1 for r in regions)
    for first, second in ((a, b) for i, a in enumerate(regions) for b in regions[i + 1:]):
        same_place = abs(first.plane[0] - second.plane[0]) <= 1 and not (
            first.box[2] + 64 <= second.box[0] or second.box[2] + 64 <= first.box[0]
            or first.box[3] + 64 <= second.box[1] or second.box[3] + 64 <= first.box[1])
        assert not same_place, (first, second)  # spread out: never neighbours

    def shown_region():
        layer = queue.reviewed_layer
        (corners,) = layer.data
        return layer, int(viewer.dims.current_step[0]), corners

    best = regions[0]
    layer, plane, corners = shown_region()
    assert layer.metadata[METADATA_KEY]["role"] == REVIEWED_ROLE and layer.name == REVIEWED_ROLE
    assert plane == best.plane[0]
    y0, x0, y1, x1 = best.box
    np.testing.assert_allclose(corners[:, 1:].min(axis=0), [y0 - 0.5, x0 - 0.5])
    np.testing.assert_allclose(corners[:, 1:].max(axis=0), [y1 - 0.5, x1 - 0.5])
    np.testing.assert_array_equal(layer.scale, image.scale)
    assert widget.region_combo.value == SHAPES and widget.shapes_combo.value is layer
    assert widget.planes_combo.value == CURRENT_PLANE

    viewer.layers["mitochondria"].data[best.plane[0], y0 + 5:y0 + 15, x0 + 5:x0 + 15] = 1
    widget.save_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    assert widget.save_controls.last_error is None, widget.save_controls.last_error
    [record] = TrainingStore(tmp_path / "store").samples()
    assert record.provenance["plane"] == [best.plane[0]]
    assert record.provenance["crop"] == [y0, x0, y1, x1]  # exactly the queued region
    assert queue.queue_combo.value == regions[1]  # moved on by itself
    layer, plane, corners = shown_region()
    assert plane == regions[1].plane[0]
    np.testing.assert_allclose(corners[:, 1:].min(axis=0),
                               np.array(regions[1].box[:2]) - 0.5)
    assert "Next: 2." in widget.save_controls.status_label.value
    assert not messages.errors

    viewer.layers.remove(image)  # the queued image is closed: a message, not a traceback
    queue.go_to_selected()
    assert len(messages.errors) == 1 and "no longer open" in messages.errors[0]
