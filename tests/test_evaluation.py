"""Tests of napari_organelle.evaluation: the dataset.json reader and scoring that leaves
not-annotated pixels out (``ignore_value``), in evaluation, the CLI, training and recipe reports."""

from __future__ import annotations

import doctest
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_organelle import evaluation as evaluation_module
from napari_organelle.cli import main
from napari_organelle.errors import InputError
from napari_organelle.evaluation import evaluate_dataset, read_dataset_info, read_truth
from napari_organelle.training import IGNORE, DatasetSpec, load_dataset

MODEL_CLASSES = {"mitochondria": "instance"}
SIZE = 48
#: columns from here on are not annotated (the mask holds the ignore value there)
UNANNOTATED_FROM = 24
#: per image: true mitochondria (top, left) in the annotated half, look-alikes in the other half
SQUARES = {"a": [(4, 4), (28, 6)], "b": [(10, 10)]}
LOOK_ALIKES = {"a": [(6, 30), (30, 36)], "b": [(20, 26)]}


def make_dataset(root: Path, *, ignore_value: int | None = 255, fill: int = 255,
                 instances: bool = False) -> Path:
    """Two 48x48 images: bright 6x6 squares; the mask's right half is ``fill`` (not annotated).

    The look-alikes in the right half are as bright as mitochondria, so a predictor that
    reads the image back "finds" them where nobody annotated.
    """
    info = {"classes": ["mitochondria"], "pixel_size_nm": [10, 10], "modality": "EM (SBF-SEM)"}
    if ignore_value is not None:
        info["ignore_value"] = ignore_value
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(info))
    for sub in ("images", "masks/mitochondria", "instances/mitochondria"):
        (root / "test" / sub).mkdir(parents=True, exist_ok=True)
    for name, squares in SQUARES.items():
        image = np.full((SIZE, SIZE), 30, np.uint8)
        labels = np.zeros((SIZE, SIZE), np.uint16)
        for index, (top, left) in enumerate(squares):
            image[top:top + 6, left:left + 6] = 200
            labels[top:top + 6, left:left + 6] = 255 if index == 1 else index + 1
        for top, left in LOOK_ALIKES[name]:
            image[top:top + 6, left:left + 6] = 200
        mask = (labels > 0).astype(np.uint8)
        mask[:, UNANNOTATED_FROM:] = fill
        tifffile.imwrite(root / "test" / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "test" / "masks" / "mitochondria" / f"{name}.tif", mask)
        if instances:
            tifffile.imwrite(root / "test" / "instances" / "mitochondria" / f"{name}.tif", labels)
    return root


def read_back(image, pixel_size_nm):
    """Everything bright is mitochondria: right where annotated, look-alikes elsewhere."""
    return {"mitochondria": (image == 200).astype(np.uint8)}


def annotated_only(image, pixel_size_nm):
    prediction = read_back(image, pixel_size_nm)["mitochondria"]
    prediction[:, UNANNOTATED_FROM:] = 0
    return {"mitochondria": prediction}


def with_a_wrong_object(image, pixel_size_nm):
    prediction = read_back(image, pixel_size_nm)["mitochondria"]
    prediction[40:44, 2:6] = 1                       # annotated background: wrong
    return {"mitochondria": prediction}


def true_pixels() -> int:
    return 36 * sum(len(squares) for squares in SQUARES.values())


# --------------------------------------------------------------------------- dataset.json


def test_docstring_examples():
    result = doctest.testmod(evaluation_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


def test_dataset_info_is_read_once_for_everyone(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    info = read_dataset_info(dataset)
    assert info.classes == ("mitochondria",)
    assert info.pixel_sizes_nm == (10.0, 10.0) and info.pixel_size_nm == 10.0
    assert info.ignore_value == 255 and info.modality == "EM (SBF-SEM)"
    assert info.raw["classes"] == ["mitochondria"] and not info.anisotropic
    assert info.split_classes("test") == ["mitochondria"]
    empty = read_dataset_info(tmp_path / "nothing")
    assert empty.classes == () and empty.pixel_size_nm is None and empty.ignore_value is None
    assert empty.raw == {}
    (tmp_path / "aniso").mkdir()
    (tmp_path / "aniso" / "dataset.json").write_text(json.dumps({"pixel_size_nm": [4, 50]}))
    aniso = read_dataset_info(tmp_path / "aniso")
    assert aniso.anisotropic and aniso.pixel_size_nm == 27.0


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "cannot be read as JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"ignore_value": "255"}', "ignore_value must be a non-negative integer"),
    ('{"ignore_value": 2.5}', "ignore_value must be a non-negative integer"),
    ('{"pixel_size_nm": [5, -1]}', "pixel_size_nm must be a positive number"),
    ('{"pixel_size_nm": "five"}', "pixel_size_nm must be a positive number"),
    ('{"classes": "mitochondria"}', "classes must be a list of names"),
])
def test_malformed_dataset_json_is_refused(tmp_path, text, message):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(InputError, match=message):
        read_dataset_info(tmp_path)


# ------------------------------------------------------------------- scoring with ignore_value


def test_predictions_that_differ_only_where_nobody_annotated_score_one(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    evaluation = evaluate_dataset(dataset, "test", read_back, model_classes=MODEL_CLASSES)
    mito = evaluation.scores["mitochondria"]
    assert mito.dice == 1.0 and mito.object_f1 == 1.0
    assert (mito.pixels.tp, mito.pixels.fp, mito.pixels.fn) == (true_pixels(), 0, 0)
    # every counted pixel is an annotated one
    assert mito.pixels.tp + mito.pixels.tn == 2 * SIZE * UNANNOTATED_FROM
    assert (mito.objects.tp, mito.objects.fp, mito.objects.fn) == (3, 0, 0)
    assert evaluation.ignore_value == 255 and evaluation.to_dict()["ignore_value"] == 255
    assert "mask pixels equal to 255 are not annotated: left out of every score" in evaluation.notes


def test_object_scores_do_not_see_predictions_where_nobody_annotated(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    clean = evaluate_dataset(dataset, "test", annotated_only, model_classes=MODEL_CLASSES)
    noisy = evaluate_dataset(dataset, "test", read_back, model_classes=MODEL_CLASSES)
    assert noisy.scores["mitochondria"].objects == clean.scores["mitochondria"].objects
    assert noisy.scores["mitochondria"].pixels == clean.scores["mitochondria"].pixels
    assert noisy.per_image["object_fp"].tolist() == [0, 0]


def test_predictions_wrong_where_annotated_still_cost(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    evaluation = evaluate_dataset(dataset, "test", with_a_wrong_object, model_classes=MODEL_CLASSES)
    mito = evaluation.scores["mitochondria"]
    assert mito.pixels.fp == 2 * 16 and mito.pixels.fn == 0
    assert mito.dice == pytest.approx(2 * true_pixels() / (2 * true_pixels() + 32))
    assert (mito.objects.tp, mito.objects.fp, mito.objects.fn) == (3, 2, 0)
    assert mito.object_f1 == pytest.approx(6 / 8)


def test_without_ignore_value_every_nonzero_mask_pixel_is_foreground(tmp_path):
    dataset = make_dataset(tmp_path / "set", ignore_value=None)
    evaluation = evaluate_dataset(dataset, "test", read_back, model_classes=MODEL_CLASSES)
    mito = evaluation.scores["mitochondria"]
    right_half = 2 * SIZE * (SIZE - UNANNOTATED_FROM)
    look_alike_pixels = 36 * 3                       # all in the right half
    assert mito.pixels.fp == 0
    assert mito.pixels.tp == true_pixels() + look_alike_pixels
    assert mito.pixels.fn == right_half - look_alike_pixels
    assert mito.dice < 0.5
    assert evaluation.ignore_value is None
    assert not any("not annotated" in note for note in evaluation.notes)


def test_another_ignore_value_is_honoured(tmp_path):
    dataset = make_dataset(tmp_path / "set", ignore_value=7, fill=7)
    assert evaluate_dataset(dataset, "test", read_back,
                            model_classes=MODEL_CLASSES).scores["mitochondria"].dice == 1.0
    # 255 is not special when the data set says 7: it is foreground
    other = make_dataset(tmp_path / "other", ignore_value=7, fill=255)
    assert evaluate_dataset(other, "test", read_back,
                            model_classes=MODEL_CLASSES).scores["mitochondria"].dice < 0.5


def test_instance_truth_takes_its_ignored_pixels_from_the_mask(tmp_path):
    dataset = make_dataset(tmp_path / "set", instances=True)
    truth, ignore = read_truth(dataset / "test", "mitochondria", "a.tif", instances=True,
                               ignore_value=255)
    assert sorted(np.unique(truth).tolist()) == [0, 1, 255]   # 255 is an object id here
    assert ignore[:, UNANNOTATED_FROM:].all() and not ignore[:, :UNANNOTATED_FROM].any()
    evaluation = evaluate_dataset(dataset, "test", read_back, model_classes=MODEL_CLASSES)
    objects = evaluation.scores["mitochondria"].objects
    assert (objects.tp, objects.fp, objects.fn) == (3, 0, 0)
    mask, no_ignore = read_truth(dataset / "test", "mitochondria", "a.tif", instances=False)
    assert no_ignore is None and mask.max() == 255           # as read without an ignore value


def test_evaluate_command_reports_the_ignored_pixels(tmp_path, capsys, monkeypatch):
    import napari_organelle.models

    card = types.SimpleNamespace(classes=[types.SimpleNamespace(name="mitochondria",
                                                                kind="instance")],
                                 pixel_size_nm=10.0, full_name="fake-em@1")
    monkeypatch.setattr(napari_organelle.models, "load_model",
                        lambda name: types.SimpleNamespace(card=card))

    def segment(image, model, **options):
        return types.SimpleNamespace(labels=read_back(image, options["pixel_size_nm"]))

    monkeypatch.setitem(sys.modules, "napari_organelle.inference",
                        types.SimpleNamespace(segment=segment))
    dataset = make_dataset(tmp_path / "set")
    report = tmp_path / "scores.json"
    assert main(["evaluate", str(dataset), "--model", "fake", "--json", str(report),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "note: mask pixels equal to 255 are not annotated" in printed
    row = next(line.split() for line in printed.splitlines() if line.startswith("mitochondria"))
    assert row[1:] == ["1.000"] * 6
    saved = json.loads(report.read_text())
    assert saved["ignore_value"] == 255 and saved["classes"]["mitochondria"]["dice"] == 1.0


# --------------------------------------------------------------------------- training and reports


def test_training_targets_leave_the_ignore_value_out(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    [first, _] = load_dataset(DatasetSpec(dataset, "test"), ["mitochondria", "er"], None)
    mask = tifffile.imread(dataset / "test" / "masks" / "mitochondria" / "a.tif")
    assert ((first.target[0] == IGNORE) == (mask == 255)).all()
    assert (first.target[0][mask == 1] == 1).all() and (first.target[0][mask == 0] == 0).all()
    assert (first.target[1] == IGNORE).all()                   # er: not annotated in this set
    # the value comes from dataset.json: with 7, 7 is ignored and 255 is foreground
    seven = make_dataset(tmp_path / "seven", ignore_value=7, fill=7)
    [first, _] = load_dataset(DatasetSpec(seven, "test"), ["mitochondria"], None)
    assert (first.target[0][:, UNANNOTATED_FROM:] == IGNORE).all()
    other = make_dataset(tmp_path / "other", ignore_value=7, fill=255)
    [first, _] = load_dataset(DatasetSpec(other, "test"), ["mitochondria"], None)
    assert (first.target[0][:, UNANNOTATED_FROM:] == 1).all()
    # a set that names no ignore value keeps training's old default: 255 is not annotated
    plain = make_dataset(tmp_path / "plain", ignore_value=None)
    [first, _] = load_dataset(DatasetSpec(plain, "test"), ["mitochondria"], None)
    assert (first.target[0][:, UNANNOTATED_FROM:] == IGNORE).all()


def test_recipe_test_scores_leave_the_ignore_value_out(tmp_path, monkeypatch):
    from napari_organelle.training.report import evaluate_recipe

    make_dataset(tmp_path / "data" / "hela-like")
    asked = []

    def predictor(model, *, classes, device="auto", **options):
        asked.append(classes)
        return read_back

    monkeypatch.setattr(evaluation_module, "model_predictor", predictor)
    model = types.SimpleNamespace(card=types.SimpleNamespace(
        classes=[types.SimpleNamespace(name="mitochondria", kind="instance")]))
    recipe = {"evaluate": [{"path": "hela-like", "class_map": {"mitochondria": "mitochondria"}},
                           {"path": "absent"}]}
    results = evaluate_recipe(model, recipe, tmp_path / "data", device="cpu")
    assert asked == [["mitochondria"]]
    assert results["hela-like"]["mitochondria"]["dice"] == 1.0
    assert results["hela-like"]["mitochondria"]["object_f1"] == 1.0
    assert "not found" in results["absent"]["skipped"]


# --------------------------------------------------------------------------- the real data set


@pytest.mark.data
def test_hela_pixels_outside_the_annotated_cell_are_ignored(shared_data):
    dataset = shared_data / "em-hela-sbfsem-mito"
    if not dataset.is_dir():
        pytest.skip("em-hela-sbfsem-mito is not in ../shared/data")
    assert read_dataset_info(dataset).ignore_value == 255
    mask_dir = dataset / "test" / "masks" / "mitochondria"
    annotated = 0
    unannotated = 0

    def oracle(image, pixel_size_nm):
        nonlocal annotated, unannotated
        mask = tifffile.imread(mask_dir / sorted(p.name for p in mask_dir.glob("*.tif"))[
            oracle.calls])
        oracle.calls += 1
        assert mask.shape == image.shape and pixel_size_nm == 10.0
        annotated += int(np.count_nonzero(mask != 255))
        unannotated += int(np.count_nonzero(mask == 255))
        return {"mitochondria": (mask == 1).astype(np.uint8)}   # right inside the cell only

    oracle.calls = 0
    evaluation = evaluate_dataset(dataset, "test", oracle,
                                  model_classes={"mitochondria": "semantic"})
    pixels = evaluation.scores["mitochondria"].pixels
    assert unannotated > 0 and oracle.calls == 2
    assert evaluation.scores["mitochondria"].dice == 1.0
    assert pixels.tp + pixels.fp + pixels.fn + pixels.tn == annotated

    train_mask = min((dataset / "train" / "masks" / "mitochondria").glob("*.tif"))
    [item] = load_dataset(DatasetSpec(dataset, "train"), ["mitochondria"], None,
                          names=[train_mask.stem])
    mask = tifffile.imread(train_mask)
    assert (mask == 255).any()
    assert ((item.target[0] == IGNORE) == (mask == 255)).all()
