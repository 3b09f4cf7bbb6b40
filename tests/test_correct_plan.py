"""The Correct dock's save plan and layer helpers, on a ``ViewerModel``: no Qt, no window.

:func:`build_save_plan` turns the annotator's choices into the samples a save
writes; these tests drive it as the dock does, with napari's viewer model and
real layers, and check the arrays and provenance it copies out.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")  # an optional extra; no Qt is needed here

from napari.components import ViewerModel
from napari.layers import Image, Labels, Points

from napari_organelle._widgets._correct_plan import (
    ALL_PLANES,
    CURRENT_VIEW,
    LISTED_PLANES,
    NOT_REVIEWED_ROLE,
    SHAPES,
    ClassLayer,
    SaveChoices,
    build_save_plan,
    guess_class_name,
    guess_objects,
    run_save_plan,
)
from napari_organelle._widgets._layers import (
    METADATA_KEY,
    PROPOSAL_KEY,
    add_or_update_labels,
    layer_pixel_size_nm,
    layer_pixel_size_yx_nm,
    pack_proposal,
    update_or_add_layer,
)
from napari_organelle.errors import InputError
from napari_organelle.models import ClassSpec
from napari_organelle.progress import run
from napari_organelle.store import Provenance, TrainingStore

#: The store of plans that are never run (building a plan writes nothing).
NO_STORE = Path("/nonexistent/store")


def image_data(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


def squares(shape: tuple[int, ...], objects: bool = False) -> np.ndarray:
    """Three 6x6 squares: ids 1-3, or a 0/1 mask."""
    labels = np.zeros(shape, np.uint16 if objects else np.uint8)
    for number, (y, x) in enumerate(((4, 4), (20, 10), (10, 30)), start=1):
        labels[..., y:y + 6, x:x + 6] = number if objects else 1
    return labels


def segmented(viewer: ViewerModel, data: np.ndarray, class_name: str, source: str, *,
              objects: bool = False, model: str = "tiny-em@0", **options) -> Labels:
    """A Labels layer as the Segment dock leaves it: tagged, with the model's proposal."""
    tag = {"source": source, "class": class_name, "run": 1, "model": model,
           "kind": "instance" if objects else "semantic"}
    return viewer.add_labels(data.copy(), name=class_name, **options,
                             metadata={METADATA_KEY: tag, PROPOSAL_KEY: pack_proposal(data)})


def test_building_a_plan_imports_no_qt():
    code = ("import sys\n"
            "from napari_organelle._widgets import _correct_plan, _correct_regions, _layers\n"
            "qt = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', "
            "'PySide2', 'PySide6', 'superqt')]\n"
            "assert not qt, qt\n")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr


def test_a_whole_image_becomes_one_sample_with_its_provenance(tmp_path):
    viewer = ViewerModel()
    image = viewer.add_image(image_data((40, 48)), name="em", scale=(0.008, 0.008),
                             units=("micrometer", "micrometer"), metadata={"modality": "em"})
    er = segmented(viewer, squares((40, 48)), "er", "em")
    mitochondria = segmented(viewer, squares((40, 48), objects=True), "mitochondria", "em",
                             objects=True)
    drawn = viewer.add_labels(np.zeros((40, 48), np.uint8), name="nuclei")  # no proposal
    er.data[0:3, 0:3] = 1  # the annotator's correction
    choices = SaveChoices(image, [ClassLayer(er, "er", False),
                                  ClassLayer(mitochondria, "mitochondria", True),
                                  ClassLayer(drawn, " nuclei ", False)],
                          tmp_path / "store", annotator=" ada ")

    plan = build_save_plan(viewer, choices)

    assert plan.store_path == tmp_path / "store"
    assert plan.classes == ("er", "mitochondria", "nuclei")
    [sample] = plan.samples
    np.testing.assert_array_equal(sample.image, image.data)
    assert sample.reviewed is True
    np.testing.assert_array_equal(sample.labels["er"], er.data)
    np.testing.assert_array_equal(sample.instances["mitochondria"], mitochondria.data)
    np.testing.assert_array_equal(sample.proposals["er"], squares((40, 48)) > 0)
    assert set(sample.proposals) == {"er", "mitochondria"}
    provenance = sample.provenance
    assert isinstance(provenance, Provenance)
    assert (provenance.image_layer, provenance.plane, provenance.crop) == ("em", (), None)
    assert provenance.label_layers == {"er": "er", "mitochondria": "mitochondria",
                                       "nuclei": "nuclei"}
    assert provenance.pixel_size_nm == (8.0, 8.0)
    assert (provenance.model_name, provenance.model_version) == ("tiny-em", "0")
    assert provenance.annotator == "ada"
    assert provenance.extra == {
        "reviewed": "whole image", "modality": "em", "changed_pixels_unknown": ["nuclei"],
        "class_models": {"er": "tiny-em@0", "mitochondria": "tiny-em@0", "nuclei": None}}
    unknown = "changed pixels not counted for nuclei: no model proposal is known for that layer"
    assert plan.notes == (unknown,)

    # the store takes the plan as it is (no Qt here either)
    [result] = run(run_save_plan(plan))
    record = TrainingStore(tmp_path / "store").get(result.sample.id)
    assert record.provenance["changed_pixels"] == {"er": 9, "mitochondria": 0}
    assert record.provenance["pixel_size_nm"] == pytest.approx([8.0, 8.0])


def test_areas_of_a_shapes_layer_crop_the_sample_and_ignore_the_rest():
    viewer = ViewerModel()
    image = viewer.add_image(image_data((40, 48)), name="em", scale=(2.0, 2.0))
    er = segmented(viewer, squares((40, 48)), "er", "em", scale=(2.0, 2.0))
    # world coordinates: data rows 5-15, columns 10-20, and rows 20-25, columns 30-35
    shapes = viewer.add_shapes([[[10, 20], [30, 40]], [[40, 60], [50, 70]]],
                               shape_type="rectangle", name="reviewed")

    plan = build_save_plan(viewer, SaveChoices(image, [ClassLayer(er, "er", False)],
                                               NO_STORE, region=SHAPES, shapes=shapes))

    [sample] = plan.samples
    assert sample.provenance.crop == (5, 10, 26, 36)
    assert sample.provenance.extra["reviewed"] == "areas in Shapes layer 'reviewed'"
    expected = np.zeros((40, 48), bool)
    expected[5:16, 10:21] = expected[20:26, 30:36] = True
    np.testing.assert_array_equal(sample.reviewed, expected[5:26, 10:36])
    np.testing.assert_array_equal(sample.image, image.data[5:26, 10:36])
    # outside the reviewed areas the labels are zeroed (the store writes ignore there)
    np.testing.assert_array_equal(sample.labels["er"],
                                  np.where(expected, er.data, 0)[5:26, 10:36])


def test_the_current_view_is_read_from_the_camera():
    viewer = ViewerModel()
    image = viewer.add_image(image_data((100, 100)), name="em")
    er = segmented(viewer, squares((100, 100)), "er", "em")
    viewer.canvas.size = (40, 60)  # height, width in screen pixels
    viewer.scene.camera.zoom = 2.0  # 20 x 30 data pixels shown
    viewer.scene.camera.center = (50.0, 40.0)

    plan = build_save_plan(viewer, SaveChoices(image, [ClassLayer(er, "er", False)],
                                               NO_STORE, region=CURRENT_VIEW))

    [sample] = plan.samples
    assert sample.provenance.crop == (40, 25, 61, 56)  # pixel centres in [40, 60] x [25, 55]
    assert sample.reviewed.all()  # the crop is exactly the visible rectangle
    np.testing.assert_array_equal(sample.labels["er"], er.data[40:61, 25:56])


def test_planes_of_a_stack_follow_the_choice_and_empty_planes_are_noted():
    viewer = ViewerModel()
    stack = viewer.add_image(image_data((4, 32, 40)), name="stack", axis_labels=("z", "y", "x"))
    nuclei = segmented(viewer, squares((4, 32, 40), objects=True), "nuclei", "stack",
                       objects=True)
    layers = [ClassLayer(nuclei, "nuclei", True)]
    viewer.dims.set_point(0, 2)

    current = build_save_plan(viewer, SaveChoices(stack, layers, NO_STORE))
    listed = build_save_plan(viewer, SaveChoices(stack, layers, NO_STORE,
                                                 planes=LISTED_PLANES, plane_list="0, 3"))
    shapes = viewer.add_shapes([[[1, 0, 0], [1, 0, 10], [1, 10, 10], [1, 10, 0]]],
                               shape_type="rectangle")  # drawn on plane 1
    on_one = build_save_plan(viewer, SaveChoices(stack, layers, NO_STORE, region=SHAPES,
                                                 shapes=shapes, planes=ALL_PLANES))

    assert [s.provenance.plane for s in current.samples] == [(2,)]
    assert [s.provenance.plane for s in listed.samples] == [(0,), (3,)]
    assert all(s.provenance.plane_axes == "z" for s in listed.samples)
    np.testing.assert_array_equal(listed.samples[1].instances["nuclei"], nuclei.data[3])
    [sample] = on_one.samples
    assert (sample.provenance.plane, sample.provenance.crop) == ((1,), (0, 0, 11, 11))
    assert on_one.notes == ("nothing reviewed in plane(s) 0, 2, 3: not saved",)


def test_a_loaded_sample_is_saved_back_into_its_source_plane_and_crop():
    """A sample loaded from the store keeps its origin, and its unreviewed pixels stay out."""
    viewer = ViewerModel()
    original = Provenance(source_path="/data/cell.tif", source_sha256="ab" * 32,
                          source_sha256_of="file", plane=(3,), plane_axes="Z",
                          crop=(10, 20, 42, 60), pixel_size_nm=(4.0, 4.0))
    image = viewer.add_image(image_data((32, 40)), name="sample abc_v1", metadata={
        METADATA_KEY: {"sample": "abc_v1", "provenance": original.to_dict()}})
    er = viewer.add_labels(squares((32, 40)), name="er (sample abc_v1)", metadata={
        METADATA_KEY: {"source": image.name, "class": "er", "kind": "semantic",
                       "sample": "abc_v1"}})
    not_reviewed = np.zeros((32, 40), np.uint8)
    not_reviewed[:, :8] = 1
    viewer.add_labels(not_reviewed, name="not reviewed", metadata={
        METADATA_KEY: {"source": image.name, "sample": "abc_v1", "role": NOT_REVIEWED_ROLE}})

    plan = build_save_plan(viewer, SaveChoices(image, [ClassLayer(er, "er", False)],
                                               NO_STORE))

    [sample] = plan.samples
    details = sample.provenance
    assert (details.source_path, details.source_sha256, details.plane, details.plane_axes) == (
        "/data/cell.tif", "ab" * 32, (3,), "Z")
    assert details.crop == (10, 28, 42, 60)  # columns 8-39 of the loaded crop
    assert details.pixel_size_nm == (4.0, 4.0)
    assert details.image_layer == "sample abc_v1"
    np.testing.assert_array_equal(sample.image, image.data[:, 8:])


@pytest.mark.parametrize(("edit", "message"), [
    (lambda viewer, er: [], "tick at least one corrected Labels layer"),
    (lambda viewer, er: [ClassLayer(er, "", False)], "give layer 'er' a class name"),
    (lambda viewer, er: [ClassLayer(er, "Er!", False)], "layer 'er': "),
    (lambda viewer, er: [ClassLayer(er, "er", False),
                         ClassLayer(viewer.add_labels(np.zeros((32, 32), np.uint8), name="b"),
                                    "er", False)],
     "layers 'er' and 'b' are both class 'er'"),
    (lambda viewer, er: [ClassLayer(viewer.add_labels(np.zeros((8, 8), np.uint8), name="s"),
                                    "er", False)],
     "layer 's' is 8 x 8 pixels but the image 'em' is 32 x 32 pixels"),
    (lambda viewer, er: [ClassLayer(viewer.add_labels(np.full((32, 32), 2, np.uint8),
                                                      name="two"), "er", False)],
     "layer 'two' holds label(s) 2, but 'er' is saved as a mask"),
], ids=["none", "no-name", "bad-name", "same-class", "shape", "values"])
def test_bad_choices_are_explained_before_anything_is_written(tmp_path, edit, message):
    viewer = ViewerModel()
    image = viewer.add_image(image_data((32, 32)), name="em")
    er = segmented(viewer, squares((32, 32)), "er", "em")

    with pytest.raises(InputError, match=re.escape(message)):
        build_save_plan(viewer, SaveChoices(image, edit(viewer, er), tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_reviewed_regions_that_cover_nothing_are_explained():
    viewer = ViewerModel()
    image = viewer.add_image(image_data((32, 32)), name="em")
    er = segmented(viewer, squares((32, 32)), "er", "em")
    layers = [ClassLayer(er, "er", False)]
    outside = viewer.add_shapes([[[100, 100], [120, 120]]], shape_type="rectangle", name="far")
    line = viewer.add_shapes([[[0, 0], [10, 10]]], shape_type="line", name="line")

    for choices, message in (
            (SaveChoices(image, layers, NO_STORE, region=SHAPES), "add a Shapes layer"),
            (SaveChoices(image, layers, NO_STORE, region=SHAPES, shapes=outside),
             "no shape of 'far' covers the image"),
            (SaveChoices(image, layers, NO_STORE, region=SHAPES, shapes=line),
             "shape 1 of 'line' is a line"),
            (SaveChoices(None, layers, NO_STORE), "choose the image layer"),
            (SaveChoices(image, layers, NO_STORE, region="everything"),
             "unknown reviewed region 'everything'")):
        with pytest.raises(InputError, match=message):
            build_save_plan(viewer, choices)


def test_the_defaults_offered_for_a_labels_layer():
    viewer = ViewerModel()
    tagged = segmented(viewer, squares((40, 48)), "golgi", "em")
    by_name = viewer.add_labels(squares((40, 48), objects=True), name="Mitochondria corrected")
    assert (guess_class_name(tagged), guess_objects(tagged)) == ("golgi", False)
    assert (guess_class_name(by_name), guess_objects(by_name)) == ("mitochondria", True)
    assert guess_class_name(viewer.add_labels(np.zeros((2, 2), np.uint8), name="Labels")) == ""


# ---------------------------------------------------------------------- layer helpers


def test_the_one_pixel_size_reader():
    def image(**options):
        return Image(np.zeros((4, 4)), **options)

    assert layer_pixel_size_yx_nm(image(metadata={"pixel_size_nm": [5, 4]})) == (5.0, 4.0)
    assert layer_pixel_size_nm(image(metadata={"pixel_size_nm": [5, 4]})) == 4.0
    assert layer_pixel_size_yx_nm(image(metadata={"pixel_size_nm": np.float32(2.5)})) == (
        2.5, 2.5)
    # exact: 0.008 um is 8 nm, not 7.999999999999999
    assert layer_pixel_size_yx_nm(image(scale=(0.008, 0.001), units="micrometer")) == (8.0, 1.0)
    # declared values win over units; nonsense is ignored
    assert layer_pixel_size_yx_nm(image(metadata={"pixel_size_nm": 7}, scale=(1, 1),
                                        units="micrometer")) == (7.0, 7.0)
    for nonsense in (True, -1, float("nan"), "4 nm", [1, 2, 3]):
        assert layer_pixel_size_yx_nm(image(metadata={"pixel_size_nm": nonsense})) is None
    assert layer_pixel_size_nm(image(scale=(3, 3))) is None  # pixels say nothing
    # what the Segment dock recorded in a result layer's tag
    labels = Labels(np.zeros((4, 4), np.uint8), metadata={METADATA_KEY: {"pixel_size_nm": 6}})
    assert layer_pixel_size_yx_nm(labels) == (6.0, 6.0)


def test_tagged_layers_are_updated_not_piled_up():
    viewer = ViewerModel()
    tag = {"source": "er", "measurement": "junctions"}
    first = update_or_add_layer(viewer, Points, np.array([[1.0, 2.0]]), tag=tag,
                                name="er junctions", face_color="red")
    first.name = "renamed by the user"
    second = update_or_add_layer(viewer, Points, np.array([[3.0, 4.0], [5.0, 6.0]]), tag=tag,
                                 name="er junctions", transform={"scale": (2.0, 2.0)},
                                 face_color="red")
    other = update_or_add_layer(viewer, Points, np.zeros((0, 2)), name="er end points",
                                tag={"source": "er", "measurement": "end_points"})

    assert second is first and len(viewer.layers) == 2 and other is not first
    assert first.name == "renamed by the user"
    np.testing.assert_array_equal(first.data, [[3.0, 4.0], [5.0, 6.0]])
    assert tuple(first.scale) == (2.0, 2.0)
    assert first.metadata[METADATA_KEY] == tag


def test_labels_of_a_class_are_updated_with_an_undo_step_or_numbered():
    viewer = ViewerModel()
    spec = ClassSpec("mitochondria", "instance")
    first = add_or_update_labels(viewer, squares((16, 16), objects=True), spec=spec,
                                 source="em", transform={"scale": (1.0, 1.0)})
    again = add_or_update_labels(viewer, np.zeros((16, 16), np.uint16), spec=spec,
                                 source="em", transform={"scale": (2.0, 2.0)},
                                 provenance={"model": "tiny-em@0"})
    kept = add_or_update_labels(viewer, squares((16, 16), objects=True), spec=spec,
                                source="em", transform={}, keep_previous=True)

    assert again is first and first.name == "mitochondria" and tuple(first.scale) == (2, 2)
    assert first.metadata[METADATA_KEY]["run"] == 2
    assert first.metadata[METADATA_KEY]["model"] == "tiny-em@0"
    assert not first.metadata[PROPOSAL_KEY].any()  # the new proposal: nothing
    first.undo()  # the update was one undoable step
    np.testing.assert_array_equal(first.data, squares((16, 16), objects=True))
    assert kept is not first and kept.name == "mitochondria [run 3]"
