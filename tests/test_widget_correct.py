"""GUI tests of the Correct dock widget, in a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widget_correct.py

Labels layers made by Segment are imitated (tag and proposal in the layer's
metadata) so no model has to run; the store is a fresh temporary folder per test.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from napari.layers import Image, Labels, Shapes
from napari.utils._proxies import PublicOnlyProxy

from napari_organelle._widgets._correct_plan import (
    ALL_PLANES,
    CURRENT_VIEW,
    LISTED_PLANES,
    NOT_REVIEWED_ROLE,
    SHAPES,
)
from napari_organelle._widgets._correct_regions import parse_plane_list, shapes_region
from napari_organelle._widgets._correct_samples import SHOW_EXCLUDED
from napari_organelle._widgets._layers import METADATA_KEY, PROPOSAL_KEY, pack_proposal
from napari_organelle._widgets.correct import CorrectWidget
from napari_organelle.errors import InputError
from napari_organelle.store import IGNORE_VALUE, TrainingStore, durable, open_store

pytestmark = pytest.mark.gui

TIMEOUT_MS = 30_000


# ---------------------------------------------------------------------- fixtures and helpers
# (the messages fixture is in conftest.py)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


def cell_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Noise with bright blobs, uint16."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000, 50, shape)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    for _ in range(5):
        y, x = rng.uniform(0, shape[-2]), rng.uniform(0, shape[-1])
        image[..., (yy - y) ** 2 + (xx - x) ** 2 < 40] += 2000
    return image.clip(0, 65535).astype(np.uint16)


def blobs(shape: tuple[int, ...], seed: int = 1, objects: bool = False) -> np.ndarray:
    """A few squares: ids 1..n (objects) or a 0/1 mask."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16 if objects else np.uint8)
    for index in range(1, 6):
        y, x = rng.integers(0, shape[-2] - 8), rng.integers(0, shape[-1] - 8)
        labels[..., y:y + 8, x:x + 8] = index if objects else 1
    return labels


def add_segmented(viewer, data: np.ndarray, class_name: str, source: str, *,
                  objects: bool = False, model: str = "tiny-em@0", **options) -> Labels:
    """A Labels layer as Segment leaves it: tagged, with the proposal kept."""
    tag = {"source": source, "class": class_name,
           "kind": "instance" if objects else "semantic", "run": 1, "model": model}
    metadata = {METADATA_KEY: tag, PROPOSAL_KEY: pack_proposal(data)}
    return viewer.add_labels(data.copy(), name=class_name, metadata=metadata, **options)


def make_widget(viewer, store: Path, proxy: bool = False) -> CorrectWidget:
    """A Correct widget docked in ``viewer``, saving to ``store``."""
    widget = CorrectWidget(PublicOnlyProxy(viewer) if proxy else viewer)
    viewer.window.add_dock_widget(widget, name="Correct")
    widget.store_edit.value = store
    widget.annotator_edit.value = "ada"
    return widget


def save(qtbot, widget: CorrectWidget) -> None:
    widget.save_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def shown_in(widget) -> bool:
    """The widget is not hidden (``visible`` is False while the viewer window is not shown)."""
    return not widget.native.isHidden()


def folder_state(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content (empty if the folder does not exist)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------- saving


def test_whole_image_is_saved_with_its_provenance(make_napari_viewer, qtbot, tmp_path,
                                                  store_path, messages):
    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, cell_image((64, 80)))
    viewer = make_napari_viewer()
    [image] = viewer.open(str(source))
    image.scale, image.units = (0.008, 0.008), ("micrometer", "micrometer")  # 8 nm pixels
    mitochondria = add_segmented(viewer, blobs((64, 80), objects=True), "mitochondria",
                                 image.name, objects=True, scale=image.scale)
    membranes = add_segmented(viewer, blobs((64, 80), seed=2), "membranes", image.name,
                              scale=image.scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # napari's proxy warns on private attribute access
        widget = make_widget(viewer, store_path, proxy=True)
        assert [(row.layer.name, row.selected, row.class_edit.value, row.kind_combo.value)
                for row in widget.layer_rows] == [("membranes", True, "membranes", "mask"),
                                                  ("mitochondria", True, "mitochondria",
                                                   "objects")]
        membranes.paint((5, 5), new_label=1)  # a correction: a 5-px-wide dot
        save(qtbot, widget)

    assert widget.save_controls.last_error is None, widget.save_controls.last_error
    store = TrainingStore(store_path)
    [record] = store.samples()
    assert record.version == 1
    assert record.classes == ("membranes", "mitochondria")
    assert record.instance_classes == ("mitochondria",)
    provenance = record.provenance
    assert provenance["source_path"] == str(source)
    assert provenance["source_sha256_of"] == "file" and len(provenance["source_sha256"]) == 64
    assert provenance["image_layer"] == image.name
    assert provenance["label_layers"] == {"membranes": "membranes",
                                          "mitochondria": "mitochondria"}
    assert provenance["plane"] == [] and provenance["crop"] is None
    assert provenance["pixel_size_nm"] == pytest.approx([8.0, 8.0])
    assert (provenance["model_name"], provenance["model_version"]) == ("tiny-em", "0")
    assert provenance["annotator"] == "ada" and provenance["time"]
    assert provenance["extra"]["reviewed"] == "whole image"
    painted = int(np.count_nonzero(membranes.data != blobs((64, 80), seed=2)))
    assert painted > 0
    assert provenance["changed_pixels"] == {"membranes": painted, "mitochondria": 0}

    loaded = store.load(record.id)
    np.testing.assert_array_equal(loaded.image, image.data)
    np.testing.assert_array_equal(loaded.labels["membranes"], membranes.data)
    np.testing.assert_array_equal(loaded.labels["mitochondria"], mitochondria.data > 0)
    assert not any(mask.any() for mask in loaded.ignore_masks.values())
    np.testing.assert_array_equal(store.load_instances(record.id)["mitochondria"],
                                  mitochondria.data)
    assert widget.samples_panel.sample_ids == [record.id]
    assert widget.save_controls.status_label.value.startswith(f"Saved sample {record.id}")
    assert not messages.errors


def test_pixels_outside_the_rectangles_are_stored_as_ignore(make_napari_viewer, qtbot,
                                                            store_path, messages):
    viewer = make_napari_viewer()
    image = viewer.add_image(cell_image((64, 96)), name="em", scale=(2.0, 2.0))
    er = add_segmented(viewer, blobs((64, 96), seed=3), "er", "em", scale=(2.0, 2.0))
    # drawn in world coordinates: data rows 10-30 and 40-50
    viewer.add_shapes([[[20, 20], [60, 80]], [[80, 100], [100, 140]]],
                      shape_type="rectangle", name="reviewed")
    widget = make_widget(viewer, store_path)
    widget.region_combo.value = SHAPES
    assert shown_in(widget.shapes_combo) and widget.shapes_combo.value.name == "reviewed"

    save(qtbot, widget)

    assert not messages.errors, messages.errors
    store = TrainingStore(store_path)
    [record] = store.samples()
    # the sample is cropped to the rectangles' bounding box (edges included)
    assert record.provenance["crop"] == [10, 10, 51, 71]
    y0, x0, y1, x1 = 10, 10, 51, 71
    reviewed = np.zeros((64, 96), bool)
    reviewed[10:31, 10:41] = reviewed[40:51, 50:71] = True
    stored = tifffile.imread(store_path / record.files["labels/er"])
    expected = np.where(reviewed, er.data, IGNORE_VALUE)[y0:y1, x0:x1]
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(store.load(record.id).image, image.data[y0:y1, x0:x1])
    assert record.provenance["extra"]["reviewed"] == "areas in Shapes layer 'reviewed'"


def test_the_current_view_is_the_reviewed_region(make_napari_viewer, qtbot, store_path,
                                                 messages):
    viewer = make_napari_viewer()
    image = viewer.add_image(cell_image((128, 128)), name="em", scale=(2.0, 2.0))
    er = add_segmented(viewer, blobs((128, 128)), "er", "em", scale=(2.0, 2.0))
    widget = make_widget(viewer, store_path)
    widget.region_combo.value = CURRENT_VIEW
    height, width = viewer.canvas.size
    viewer.scene.camera.zoom = max(height, width) / 80  # 80 world units = 40 pixels across
    viewer.scene.camera.center = (100.0, 120.0)  # world; data (50, 60)

    save(qtbot, widget)

    assert not messages.errors, messages.errors
    [record] = TrainingStore(store_path).samples()
    half_rows = height / 2 / viewer.scene.camera.zoom / 2  # in pixels (scale 2)
    half_cols = width / 2 / viewer.scene.camera.zoom / 2
    y0, x0, y1, x1 = record.provenance["crop"]
    assert (y0, y1) == (int(np.ceil(50 - half_rows)), int(np.floor(50 + half_rows)) + 1)
    assert (x0, x1) == (int(np.ceil(60 - half_cols)), int(np.floor(60 + half_cols)) + 1)
    loaded = TrainingStore(store_path).load(record.id)
    np.testing.assert_array_equal(loaded.image, image.data[y0:y1, x0:x1])
    np.testing.assert_array_equal(loaded.labels["er"], er.data[y0:y1, x0:x1])
    assert record.provenance["extra"]["reviewed"] == "current view"


def test_planes_of_a_stack_are_saved_with_their_index(make_napari_viewer, qtbot, store_path,
                                                      messages):
    viewer = make_napari_viewer()
    stack = viewer.add_image(cell_image((4, 48, 64)), name="stack",
                             axis_labels=("z", "y", "x"))
    nuclei = add_segmented(viewer, blobs((4, 48, 64), objects=True), "nuclei", "stack",
                           objects=True)
    widget = make_widget(viewer, store_path)
    assert shown_in(widget.planes_combo) and not shown_in(widget.planes_edit)

    viewer.dims.set_point(0, 2)
    save(qtbot, widget)
    widget.planes_combo.value = LISTED_PLANES
    widget.planes_edit.value = "0, 3"
    save(qtbot, widget)

    assert not messages.errors, messages.errors
    store = TrainingStore(store_path)
    records = store.samples()
    assert [r.provenance["plane"] for r in records] == [[2], [0], [3]]
    assert all(r.provenance["plane_axes"] == "z" for r in records)
    for record in records:
        z = record.provenance["plane"][0]
        loaded = store.load(record.id)
        np.testing.assert_array_equal(loaded.image, stack.data[z])
        np.testing.assert_array_equal(store.load_instances(record.id)["nuclei"],
                                      nuclei.data[z])
    assert widget.save_controls.status_label.value.startswith("Saved 2 samples")


def test_rectangles_drawn_on_a_plane_review_that_plane_only(make_napari_viewer, qtbot,
                                                            store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((3, 48, 64)), name="stack")
    add_segmented(viewer, blobs((3, 48, 64)), "er", "stack")
    viewer.add_shapes([[[1, 5, 5], [1, 5, 30], [1, 20, 30], [1, 20, 5]]], shape_type="rectangle",
                      name="reviewed")  # drawn on plane 1
    widget = make_widget(viewer, store_path)
    widget.region_combo.value = SHAPES
    widget.planes_combo.value = ALL_PLANES

    save(qtbot, widget)

    assert not messages.errors, messages.errors
    [record] = TrainingStore(store_path).samples()
    assert record.provenance["plane"] == [1]
    assert record.provenance["crop"] == [5, 5, 21, 31]
    status = widget.save_controls.status_label.value
    assert "Nothing reviewed in plane(s) 0, 2: not saved" in status

    widget.planes_combo.value = "current plane"
    viewer.dims.set_point(0, 0)
    save(qtbot, widget)

    assert messages.errors == [("No shape of 'reviewed' lies on plane(s) 0: draw the reviewed "
                               "areas on the planes you save, or choose other planes")]
    assert len(TrainingStore(store_path).samples()) == 1


def test_saving_after_an_edit_adds_version_2_and_keeps_version_1(make_napari_viewer, qtbot,
                                                                 store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    er = add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    save(qtbot, widget)
    first = er.data.copy()
    er.paint((30, 30), new_label=1)
    save(qtbot, widget)

    assert not messages.errors, messages.errors
    store = TrainingStore(store_path)
    [current] = store.samples()
    assert current.version == 2
    first_version, second_version = store.history(current.key)
    assert first_version.id == f"{current.key}_v1"
    np.testing.assert_array_equal(store.load(first_version.id).labels["er"], first)
    np.testing.assert_array_equal(store.load(second_version.id).labels["er"], er.data)
    assert "(version 2)" in widget.save_controls.status_label.value


def test_a_duplicate_save_is_detected_and_writes_nothing(make_napari_viewer, qtbot,
                                                         store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    save(qtbot, widget)
    [record] = TrainingStore(store_path).samples()
    before = folder_state(store_path)

    save(qtbot, widget)

    assert messages.infos == [f"Already saved as sample {record.id}; nothing new was written."]
    assert folder_state(store_path) == before
    assert widget.last_save[0].duplicate


def test_changed_pixels_are_counted_inside_the_reviewed_area(make_napari_viewer, qtbot,
                                                             store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((64, 64)), name="em")
    mitochondria = add_segmented(viewer, blobs((64, 64), objects=True), "mitochondria", "em",
                                 objects=True)
    drawn = viewer.add_labels(np.zeros((64, 64), np.uint8), name="er")  # drawn by hand
    drawn.data[2:6, 2:6] = 1
    mitochondria.data[0:40, 0:40] = 0  # erase what lies there...
    mitochondria.data[50:60, 50:60] = 9  # ...and draw an object outside the reviewed area
    proposal = blobs((64, 64), objects=True)
    viewer.add_shapes([[[0, 0], [39, 39]]], shape_type="rectangle", name="reviewed")
    widget = make_widget(viewer, store_path)
    widget.region_combo.value = SHAPES

    save(qtbot, widget)

    assert not messages.errors, messages.errors
    [record] = TrainingStore(store_path).samples()
    erased = int(np.count_nonzero(proposal[0:40, 0:40]))
    assert erased > 0
    assert record.provenance["changed_pixels"] == {"mitochondria": erased}
    assert record.provenance["extra"]["changed_pixels_unknown"] == ["er"]
    assert record.provenance["extra"]["class_models"] == {"er": None,
                                                          "mitochondria": "tiny-em@0"}
    assert ("Changed pixels not counted for er: no model proposal is known"
            in widget.save_controls.status_label.value)


# ---------------------------------------------------------------------- the store's samples


def test_a_sample_loads_back_and_saves_again_as_a_new_version(make_napari_viewer, qtbot,
                                                              store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 64)), name="em")
    er = add_segmented(viewer, blobs((48, 64)), "er", "em")
    viewer.add_shapes([[[0, 0], [20, 30]], [[30, 40], [47, 63]]], shape_type="rectangle")
    widget = make_widget(viewer, store_path)
    widget.region_combo.value = SHAPES
    save(qtbot, widget)
    [record] = TrainingStore(store_path).samples()
    stored = TrainingStore(store_path).load(record.id)

    widget.samples_panel.select_samples([record.id])
    widget.samples_panel.load_button.native.click()

    short = f"sample {record.id}"
    image = viewer.layers[short]
    loaded_er = viewer.layers[f"er ({short})"]
    unreviewed = viewer.layers[f"not reviewed ({short})"]
    assert isinstance(image, Image) and isinstance(loaded_er, Labels)
    np.testing.assert_array_equal(image.data, stored.image)
    np.testing.assert_array_equal(loaded_er.data, stored.labels["er"])
    np.testing.assert_array_equal(unreviewed.data, stored.ignore_masks["er"])
    assert unreviewed.metadata[METADATA_KEY]["role"] == NOT_REVIEWED_ROLE
    assert widget.image_combo.value is image
    assert [row.layer.name for row in widget.layer_rows if row.selected] == [loaded_er.name]
    assert er.name in [row.layer.name for row in widget.layer_rows]

    # correct more and save again: a new version of the same sample, unreviewed pixels kept
    assert widget.region_combo.value == "whole image"
    loaded_er.paint((5, 5), new_label=1)
    save(qtbot, widget)

    assert not messages.errors, messages.errors
    store = TrainingStore(store_path)
    [current] = store.samples()
    assert (current.key, current.version) == (record.key, 2)
    assert current.provenance["crop"] == record.provenance["crop"]
    again = store.load(current.id)
    np.testing.assert_array_equal(again.ignore_masks["er"], stored.ignore_masks["er"])
    np.testing.assert_array_equal(again.labels["er"],
                                  np.where(stored.ignore_masks["er"], 0, loaded_er.data))


def test_loading_a_shown_sample_again_resets_its_layers_instead_of_copying_them(
        make_napari_viewer, qtbot, store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    save(qtbot, widget)
    [sample_id] = widget.samples_panel.sample_ids
    stored = TrainingStore(store_path).load(sample_id)

    first = widget.samples_panel.load_sample(sample_id)
    loaded_er = viewer.layers[f"er (sample {sample_id})"]
    loaded_er.paint((20, 20), new_label=1)
    painted = loaded_er.data.copy()
    assert (painted != stored.labels["er"]).any()
    layer_count = len(viewer.layers)
    again = widget.samples_panel.load_sample(sample_id)

    assert [layer.name for layer in again] == [layer.name for layer in first]
    assert len(viewer.layers) == layer_count
    np.testing.assert_array_equal(loaded_er.data, stored.labels["er"])
    loaded_er.undo()  # the annotator's edits are one Ctrl+Z away
    np.testing.assert_array_equal(loaded_er.data, painted)
    assert widget.image_combo.value.name == f"sample {sample_id}"
    assert not messages.errors


def test_samples_are_excluded_and_restored_from_the_table(make_napari_viewer, qtbot,
                                                          store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    save(qtbot, widget)
    [sample_id] = widget.samples_panel.sample_ids

    widget.samples_panel.exclude_reason_edit.value = "blurred"
    widget.samples_panel.select_samples([sample_id])
    widget.samples_panel.exclude_button.native.click()

    assert TrainingStore(store_path).samples() == []
    assert widget.samples_panel.sample_ids == []  # excluded samples are hidden by default
    widget.samples_panel.show_combo.value = SHOW_EXCLUDED
    assert widget.samples_panel.sample_ids == [sample_id]
    assert widget.samples_panel.table["excluded"] == ["yes"]
    manifest = (store_path / "manifest.jsonl").read_text().splitlines()
    assert json.loads(manifest[-1])["reason"] == "blurred"

    widget.samples_panel.select_samples([sample_id])
    widget.samples_panel.restore_button.native.click()

    assert [r.id for r in TrainingStore(store_path).samples()] == [sample_id]
    assert widget.samples_panel.table["excluded"] == ["no"]
    assert widget.samples_panel.status.value == f"Restored {sample_id}."
    assert not messages.errors


def test_the_store_is_exported_for_nnunet_and_as_tiff_pairs(make_napari_viewer, qtbot,
                                                           tmp_path, store_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    save(qtbot, widget)
    [sample_id] = widget.samples_panel.sample_ids
    out = tmp_path / "exports"

    widget.export_check.value = True
    widget.export_panel.folder_edit.value = out
    widget.export_panel.licence_edit.value = "CC-BY-4.0"
    assert shown_in(widget.export_panel.dataset_id_spin)
    widget.export_panel.button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    widget.export_panel.format_combo.value = "tiff"
    assert not shown_in(widget.export_panel.dataset_id_spin)
    widget.export_panel.button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    assert not messages.errors, messages.errors
    nnunet = out / "Dataset500_Organelles"
    assert (nnunet / "imagesTr" / f"{sample_id}_0000.tif").is_file()
    assert (nnunet / "labelsTr" / f"{sample_id}.tif").is_file()
    assert json.loads((nnunet / "dataset.json").read_text())["licence"] == "CC-BY-4.0"
    tiff = out / "Organelles"
    assert (tiff / "train" / "images" / f"{sample_id}.tif").is_file()
    assert (tiff / "train" / "masks" / "er" / f"{sample_id}.tif").is_file()
    assert (tiff / "dataset_card.md").is_file()
    assert (widget.export_panel.last_export is not None
            and widget.export_panel.last_export.path == tiff)
    assert widget.export_panel.controls.status_label.value == f"Exported 1 case(s) to {tiff}."


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda viewer: viewer.add_labels(np.zeros((32, 32), np.uint8), name="er"),
     "Layer 'er' is 32 x 32 pixels but the image 'em' is 48 x 48 pixels"),
    (lambda viewer: add_segmented(viewer, np.where(blobs((48, 48)) > 0, 2, 0).astype(np.uint8),
                                  "er", "em"),
     "Layer 'er' holds label(s) 2, but 'er' is saved as a mask"),
    (lambda viewer: viewer.add_shapes([[[0, 0], [10, 10]]], shape_type="line",
                                      name="reviewed"),
     "Shape 1 of 'reviewed' is a line, which encloses no area"),
], ids=["shape", "values", "line"])
def test_bad_input_gets_a_clear_message_and_writes_nothing(make_napari_viewer, qtbot,
                                                           store_path, messages, edit, expected):
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    edit(viewer)
    if not any(isinstance(layer, Labels) for layer in viewer.layers):
        add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)
    for row in widget.layer_rows:
        row.use_check.value = True
    if "reviewed" in viewer.layers:
        widget.region_combo.value = SHAPES

    save(qtbot, widget)

    assert len(messages.errors) == 1 and expected in messages.errors[0], messages.errors
    assert messages.errors[0][0].isupper()
    assert widget.save_controls.status_label.value == f"Error: {messages.errors[0]}"
    assert not store_path.exists()


def test_a_store_from_a_newer_version_is_refused(make_napari_viewer, qtbot, store_path,
                                                 messages):
    open_store(store_path, classes=["er"])
    settings = json.loads((store_path / "store.json").read_text())
    settings["schema_version"] = 99
    (store_path / "store.json").write_text(json.dumps(settings))
    before = folder_state(store_path)
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")

    widget = make_widget(viewer, store_path)
    assert "written by a newer napari-organelle" in widget.samples_panel.status.value
    save(qtbot, widget)

    assert len(messages.errors) == 1 and "newer napari-organelle" in messages.errors[0]
    assert "Update napari-organelle" in messages.errors[0]
    assert folder_state(store_path) == before


def test_a_store_folder_without_write_permission_is_refused(make_napari_viewer, qtbot,
                                                            store_path, messages, monkeypatch):
    open_store(store_path, classes=["er"])
    before = folder_state(store_path)
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((48, 48)), name="em")
    add_segmented(viewer, blobs((48, 48)), "er", "em")
    widget = make_widget(viewer, store_path)

    def refuse(*_args, **_kwargs):  # what the operating system says on a read-only folder
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durable, "_create_temporary", refuse)
    save(qtbot, widget)

    assert len(messages.errors) == 1, messages.errors
    assert "Cannot write to the training store folder" in messages.errors[0]
    assert folder_state(store_path) == before


def test_polygons_and_ellipses_mark_the_pixels_whose_centre_they_cover():
    image = Image(np.zeros((40, 40)), scale=(2.0, 2.0))
    shapes = Shapes([np.array([[0, 0], [0, 20], [20, 0]]),  # world: a right triangle
                     np.array([[60, 60], [20, 20]])],  # world: centre and radii of a circle
                    shape_type=["polygon", "ellipse"])

    covered = shapes_region(shapes, image, (), (40, 40))

    triangle = np.add.outer(np.arange(40), np.arange(40)) <= 10  # edges included
    yy, xx = np.mgrid[:40, :40]
    distance = np.hypot(yy - 30, xx - 30)
    assert (covered[:20, :20] == triangle[:20, :20]).all()
    # the ellipse is drawn as a 64-gon: compare away from its edge
    assert covered[distance < 9.5].all()
    assert not covered[(distance > 10.5) & (yy >= 15) & (xx >= 15)].any()


def test_plane_lists_are_parsed_or_explained():
    assert parse_plane_list("0-2, 5 7", 8) == [0, 1, 2, 5, 7]
    for text, message in (("", "list the reviewed planes"), ("3-1", "runs backwards"),
                          ("9", "plane 9 does not exist"), ("a", "'a' is not a plane")):
        with pytest.raises(InputError, match=message):
            parse_plane_list(text, 8)



# -------------------------------------------------------------- labels painted from scratch


def test_a_labels_layer_painted_from_scratch_is_saved_as_its_class(make_napari_viewer, qtbot,
                                                                    store_path, messages):
    """The dock is open; the annotator adds an empty Labels layer, names it, paints objects."""
    viewer = make_napari_viewer()
    viewer.add_image(cell_image((64, 64)), name="cell")
    widget = make_widget(viewer, store_path)
    layer = viewer.add_labels(np.zeros((64, 64), np.uint8))  # the 'new labels layer' button
    (row,) = widget.layer_rows
    assert row.selected and row.class_edit.value == "" and row.kind_combo.value == "mask"
    layer.name = "synapses"
    (row,) = widget.layer_rows
    assert row.class_edit.value == "synapses"  # follows the name until typed in
    layer.brush_size = 7
    for label, centre in enumerate([(12, 12), (12, 50), (50, 30)], start=1):
        layer.paint(centre, label)
    save(qtbot, widget)
    assert widget.save_controls.last_error is None, widget.save_controls.last_error
    assert row.kind_combo.value == "objects"  # labels above 1: objects, as the row now says
    (record,) = TrainingStore(store_path).samples()
    assert record.classes == ("synapses",) and record.instance_classes == ("synapses",)
    ids = TrainingStore(store_path).load_instances(record.id)["synapses"]
    assert set(np.unique(ids)) == {0, 1, 2, 3}

    # A choice typed by the annotator is kept, whatever the layer holds.
    second = viewer.add_labels(np.zeros((64, 64), np.uint8), name="vesicles")
    (row,) = [row for row in widget.layer_rows if row.layer is second]
    row.class_edit.value = "small_vesicles"
    row.kind_combo.value = "objects"
    second.name = "vesicles 2"
    (row,) = [row for row in widget.layer_rows if row.layer is second]
    assert row.class_edit.value == "small_vesicles" and row.kind_combo.value == "objects"
    second.paint((30, 30), 1)
    widget.choices()
    assert row.kind_combo.value == "objects"
