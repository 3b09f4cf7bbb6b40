"""The whole human-in-the-loop cycle in one napari viewer, driven through the four docks.

Segment a stack with a model, correct the result with napari's label tools,
save the corrections to a training store with the Correct dock, fine-tune on
that store with the Train dock, make the new version the one in use, and
segment again with it from the Segment dock. Each step checks what the next one
relies on (tags, provenance, lineage, the model the second run used).

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_loop.py
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_organelle._widgets._layers import METADATA_KEY
from napari_organelle._widgets.correct import ALL_PLANES, CorrectWidget
from napari_organelle._widgets.segment import SegmentWidget
from napari_organelle._widgets.train import TrainWidget
from napari_organelle.models import load_model
from napari_organelle.models.versions import active_version
from napari_organelle.store import TrainingStore

from ._datasets import disc_sample

pytestmark = [pytest.mark.gui,
              pytest.mark.usefixtures("no_bundled_models", "one_torch_thread")]

TIMEOUT_MS = 90_000


def stack_with_truth(planes: int = 3, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A ZYX stack of bright discs and the discs' true mask."""
    rng = np.random.default_rng(7)
    samples = [disc_sample(rng, size) for _ in range(planes)]
    image = np.stack([image for image, _ in samples])
    truth = np.stack([masks["mitochondria"] for _, masks in samples])
    return image, truth


def test_segment_correct_save_finetune_and_segment_again(make_napari_viewer, qtbot, home,
                                                         tmp_path):
    viewer = make_napari_viewer()
    image, truth = stack_with_truth()
    viewer.add_image(image, name="cells", axis_labels=("z", "y", "x"))
    segment = SegmentWidget(viewer)
    correct = CorrectWidget(viewer)
    train = TrainWidget(viewer)
    for name, dock in (("Segment", segment), ("Correct", correct), ("Train", train)):
        viewer.window.add_dock_widget(dock, name=name)

    # 1. segment with the model in use
    assert segment.model_combo.value.full_name == "tiny-em@0"
    segment.run_button.native.click()
    qtbot.waitUntil(lambda: not segment.running, timeout=TIMEOUT_MS)
    assert segment.controls.last_error is None, segment.controls.last_error
    mitochondria = viewer.layers["mitochondria"]
    assert mitochondria.data.shape == image.shape
    assert mitochondria.metadata[METADATA_KEY]["model"] == "tiny-em@0"

    # 2. the annotator corrects the mitochondria: paint the true discs, erase the rest,
    # with napari's own label editing (one undoable step per plane)
    for z in range(image.shape[0]):
        yy, xx = np.nonzero(np.ones(truth.shape[1:], bool))
        mitochondria.data_setitem((np.full(yy.size, z), yy, xx), truth[z].ravel())
    np.testing.assert_array_equal(mitochondria.data > 0, truth > 0)

    # 3. save every plane as corrections, only the mitochondria layer
    correct.store_edit.value = tmp_path / "store"
    correct.annotator_edit.value = "ada"
    correct.planes_combo.value = ALL_PLANES
    for row in correct.layer_rows:
        row.use_check.value = row.layer is mitochondria
    correct.save_button.native.click()
    qtbot.waitUntil(lambda: not correct.running, timeout=TIMEOUT_MS)
    assert correct.save_controls.last_error is None, correct.save_controls.last_error
    store = TrainingStore(tmp_path / "store")
    records = store.samples()
    assert [r.provenance["plane"] for r in records] == [[0], [1], [2]]
    assert all(r.classes == ("mitochondria",) for r in records)
    assert all((r.provenance["model_name"], r.provenance["model_version"]) == ("tiny-em", "0")
               for r in records)
    assert all(r.provenance["changed_pixels"]["mitochondria"] > 0 for r in records)

    # 4. fine-tune on the store, then make the new version the one in use
    train.data_list.value = [tmp_path / "store"]
    train.name_edit.value = "lab"
    train.crop_spin.value = 64
    train.batch_spin.value = 2
    train.validate_every_spin.value = 2
    train.max_steps_spin.value = 4
    train.start()
    qtbot.waitUntil(lambda: not train.running, timeout=TIMEOUT_MS)
    assert train.controls.last_error is None, train.controls.last_error
    result = train.last_result
    assert result.version.full_name == "lab@1"
    assert len(result.validation_images) == 1  # one of the three planes held out
    lineage = load_model("lab@1").card.extra["lineage"]
    assert lineage["parent"] == "tiny-em@0" and len(lineage["data_manifest_sha256"]) == 64

    # the Segment dock learns of the new version without being reopened
    assert "lab@1" in [info.full_name for info in segment.model_combo.choices]
    assert segment.model_combo.value.full_name == "tiny-em@0"  # not chosen yet
    train.use_button.native.click()
    assert active_version("lab").version == "1"
    assert segment.model_combo.value.full_name == "lab@1"

    # 5. segment again: the result layers are updated in place by the new model
    segment.run_button.native.click()
    qtbot.waitUntil(lambda: not segment.running, timeout=TIMEOUT_MS)
    assert segment.controls.last_error is None, segment.controls.last_error
    assert viewer.layers["mitochondria"] is mitochondria
    assert mitochondria.metadata[METADATA_KEY]["model"] == "lab@1"
    assert mitochondria.data.shape == image.shape
