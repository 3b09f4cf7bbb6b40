"""Tests of evaluate_dataset and the ``evaluate`` / ``measure`` sub-commands, end to end on
tiny TIFFs."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_organelle.cli import main
from napari_organelle.errors import InputError
from napari_organelle.evaluation import evaluate_dataset, format_table

# --------------------------------------------------------------------------- a tiny data set
#
# Two 40 x 40 images. "mitochondria" are bright squares (intensity 200), the
# "membranes" a dimmer line (intensity 100); a predictor can read the truth
# back from the image, or perturb it.


def make_dataset(root: Path, *, pixel_size=(5, 5), with_instances=False) -> Path:
    info = {"classes": ["mitochondria", "membranes"], "modality": "EM"}
    if pixel_size is not None:
        info["pixel_size_nm"] = list(pixel_size)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(info))
    for name, squares in (("a", [(5, 5), (20, 20)]), ("b", [(8, 25)])):
        mito = np.zeros((40, 40), np.uint8)
        instances = np.zeros((40, 40), np.uint16)
        for index, (top, left) in enumerate(squares, start=1):
            mito[top:top + 8, left:left + 8] = 1
            instances[top:top + 8, left:left + 8] = index
        membranes = np.zeros((40, 40), np.uint8)
        membranes[35, :] = 1
        image = (mito * 200 + membranes * 100).astype(np.uint8)
        for folder, data in (("images", image), ("masks/mitochondria", mito),
                             ("masks/membranes", membranes)):
            (root / "test" / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "test" / folder / f"{name}.tif", data)
        if with_instances:
            (root / "test" / "instances" / "mitochondria").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "test" / "instances" / "mitochondria" / f"{name}.tif",
                             instances)
    return root


def perfect(image, pixel_size_nm):
    return {"mitochondria": (image == 200).astype(np.uint8),
            "cell_boundary": (image == 100).astype(np.uint8)}


MODEL_CLASSES = {"mitochondria": "instance", "cell_boundary": "semantic"}


def test_perfect_predictions_score_one(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    seen_sizes = []

    def predict(image, pixel_size_nm):
        seen_sizes.append(pixel_size_nm)
        return perfect(image, pixel_size_nm)

    evaluation = evaluate_dataset(dataset, "test", predict, {"membranes": "cell_boundary"},
                                  model_classes=MODEL_CLASSES)
    table = evaluation.table()
    assert seen_sizes == [5.0, 5.0]                          # from dataset.json
    assert table.index.tolist() == ["mitochondria", "membranes"]
    assert table.loc["membranes", "model_class"] == "cell_boundary"
    assert table[["dice", "iou", "precision", "recall", "f1"]].eq(1.0).all().all()
    assert table.loc["mitochondria", "object_f1"] == 1.0
    assert table.loc["mitochondria", "object_tp"] == 3
    assert math.isnan(table.loc["membranes", "object_f1"])   # semantic: no object score
    assert evaluation.notes == []
    assert len(evaluation.per_image) == 4
    text = format_table(evaluation)
    assert "membranes -> cell_boundary" in text and "object F1@0.5" in text
    assert text.splitlines()[2].rstrip().endswith("-")       # semantic row shows "-"


def test_perturbed_predictions_have_known_scores(tmp_path):
    dataset = make_dataset(tmp_path / "set")

    def drop_one_object(image, pixel_size_nm):
        prediction = perfect(image, pixel_size_nm)
        mito = prediction["mitochondria"]
        mito[20:28, 20:28] = 0                               # misses the second square of "a"
        prediction["cell_boundary"][:, 20:] = 0              # half of every membrane line
        return prediction

    evaluation = evaluate_dataset(dataset, "test", drop_one_object, {"membranes": "cell_boundary"},
                                  model_classes=MODEL_CLASSES)
    mito = evaluation.scores["mitochondria"]
    assert (mito.pixels.tp, mito.pixels.fp, mito.pixels.fn) == (128, 0, 64)
    assert mito.dice == pytest.approx(256 / 320)
    assert (mito.objects.tp, mito.objects.fp, mito.objects.fn) == (2, 0, 1)
    assert mito.object_f1 == pytest.approx(0.8)
    membranes = evaluation.scores["membranes"]
    assert (membranes.precision, membranes.recall) == (1.0, 0.5)


def test_missing_classes_are_skipped_with_a_note(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    evaluation = evaluate_dataset(dataset, "test", perfect, model_classes=MODEL_CLASSES)
    assert list(evaluation.scores) == ["mitochondria"]
    assert evaluation.notes == ["class 'membranes' skipped: the model has no such class"]


def test_instance_ground_truth_is_used_for_objects(tmp_path):
    dataset = make_dataset(tmp_path / "set", with_instances=True, pixel_size=None)
    # touching squares: the mask has one component, the instance image two
    for name in ("a.tif", "b.tif"):
        instances = tifffile.imread(dataset / "test" / "instances" / "mitochondria" / name)
        instances[28:30, 0:10] = 7                           # 20 pixels...
        instances[30:34, 0:10] = 8                           # ...touching 40 pixels
        tifffile.imwrite(dataset / "test" / "instances" / "mitochondria" / name, instances)
        mask = tifffile.imread(dataset / "test" / "masks" / "mitochondria" / name)
        mask[28:34, 0:10] = 1                                # in the mask: one component
        tifffile.imwrite(dataset / "test" / "masks" / "mitochondria" / name, mask)

    def merged(image, pixel_size_nm):
        assert pixel_size_nm is None
        prediction = perfect(image, pixel_size_nm)
        prediction["mitochondria"][28:34, 0:10] = 1          # the two touching objects as one
        return prediction

    evaluation = evaluate_dataset(dataset, "test", merged, model_classes=MODEL_CLASSES)
    objects = evaluation.scores["mitochondria"].objects
    assert evaluation.scores["mitochondria"].dice == 1.0
    # 3 squares match; in each image the merged blob matches the larger half (IoU 40/60)
    # and the smaller half (IoU 20/60) is missed
    assert (objects.tp, objects.fp, objects.fn) == (3 + 2, 0, 2)
    assert any("no pixel size" in note for note in evaluation.notes)


def remove_a_mask(root: Path) -> None:
    (root / "test" / "masks" / "mitochondria" / "b.tif").unlink()


def remove_the_images(root: Path) -> None:
    for path in (root / "test" / "images").iterdir():
        path.unlink()


def failing_predictor(image, pixel_size_nm):
    raise InputError("the image is blank")


@pytest.mark.parametrize(
    ("change", "predict", "message"),
    [
        (remove_a_mask, perfect, "no ground truth for b.tif"),
        (remove_the_images, perfect, "no TIFF images"),
        (None, failing_predictor, "a.tif: the image is blank"),
    ],
)
def test_broken_data_sets_get_clear_messages(tmp_path, change, predict, message):
    dataset = make_dataset(tmp_path / "set")
    if change:
        change(dataset)
    with pytest.raises(InputError, match=message):
        evaluate_dataset(dataset, "test", predict, model_classes=MODEL_CLASSES)


def test_bad_evaluation_requests(tmp_path):
    dataset = make_dataset(tmp_path / "set")
    with pytest.raises(InputError, match="splits found: test"):
        evaluate_dataset(dataset, "train", perfect, model_classes=MODEL_CLASSES)
    with pytest.raises(InputError, match="none in common"):
        evaluate_dataset(dataset, "test", perfect, model_classes={"er": "semantic"})
    with pytest.raises(InputError, match="class map names 'golgi'"):
        evaluate_dataset(dataset, "test", perfect, {"golgi": "er"}, model_classes=MODEL_CLASSES)
    with pytest.raises(InputError, match="a.tif: the prediction has no 'mitochondria'"):
        evaluate_dataset(dataset, "test", lambda image, size: {}, model_classes=MODEL_CLASSES)
    with pytest.raises(InputError, match="a.tif, class 'mitochondria': .*differ in shape"):
        evaluate_dataset(dataset, "test", lambda image, size: {"mitochondria": image[:10]},
                         model_classes=MODEL_CLASSES)


# --------------------------------------------------------------------------- evaluate command


@pytest.fixture
def fake_model(monkeypatch):
    """Stand-ins for napari_organelle.models / .inference with the documented API; records calls."""
    calls = []
    card = types.SimpleNamespace(
        classes=[types.SimpleNamespace(name="mitochondria", kind="instance"),
                 types.SimpleNamespace(name="cell_boundary", kind="semantic")],
        pixel_size_nm=5.0, full_name="fake-em@1")
    model = types.SimpleNamespace(card=card)

    def load_model(name_or_path):
        calls.append(("load", name_or_path))
        return model

    def segment(image, model_, **options):
        calls.append(("segment", options))
        labels = perfect(image, options["pixel_size_nm"])
        return types.SimpleNamespace(labels={name: labels[name] for name in options["classes"]})

    import napari_organelle.models

    # the real models package stays (building the parser reads its registry); only loading is faked
    monkeypatch.setattr(napari_organelle.models, "load_model", load_model)
    monkeypatch.setitem(sys.modules, "napari_organelle.inference",
                        types.SimpleNamespace(segment=segment))
    return calls


def test_evaluate_command_prints_a_table_and_writes_json(tmp_path, capsys, fake_model):
    dataset = make_dataset(tmp_path / "set")
    report = tmp_path / "out" / "scores.json"
    status = main(["evaluate", str(dataset), "--model", "fake-em",
                   "--class-map", "membranes=cell_boundary",
                   "--json", str(report), "--device", "cpu", "--tile", "64", "--tta", "--quiet"])
    assert status == 0
    assert fake_model[0] == ("load", "fake-em")
    options = fake_model[1][1]
    assert options == {"pixel_size_nm": 5.0, "device": "cpu", "tile_size": 64, "tta": True,
                       "classes": ["cell_boundary", "mitochondria"]}
    printed = capsys.readouterr().out
    assert "fake-em@1 on set/test (2 images, pixel size 5 nm, model 5 nm)" in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines()[2:4]}
    assert rows["mitochondria"][1:] == ["1.000"] * 6
    assert rows["membranes"][-1] == "-"
    saved = json.loads(report.read_text())
    assert saved["model"] == "fake-em@1" and saved["pixel_size_nm"] == 5.0
    assert saved["classes"]["mitochondria"]["object_f1"] == 1.0
    assert saved["classes"]["membranes"]["object_f1"] is None
    assert saved["classes"]["membranes"]["kind"] == "semantic"
    assert len(saved["per_image"]) == 4


def test_evaluate_command_reports_user_errors(tmp_path, capsys, fake_model):
    dataset = make_dataset(tmp_path / "set")
    assert main(["evaluate", str(dataset), "--model", "fake", "--class-map", "membranes",
                 "--quiet"]) == 1
    assert "DATA=MODEL" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing"), "--model", "fake", "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_command_with_a_real_tiny_model(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("segmentation_models_pytorch")
    from ._models import make_tiny_model

    folder = make_tiny_model(tmp_path / "model")               # untrained: scores are arbitrary
    dataset = make_dataset(tmp_path / "set")
    report = tmp_path / "scores.json"
    status = main(["evaluate", str(dataset), "--model", str(folder), "--device", "cpu", "--json",
                   str(report), "--quiet"])
    assert status == 0
    saved = json.loads(report.read_text())
    assert set(saved["classes"]) == {"mitochondria", "membranes"}
    for scores in saved["classes"].values():
        assert scores["dice"] is None or 0.0 <= scores["dice"] <= 1.0
    assert "mitochondria" in capsys.readouterr().out


@pytest.mark.data
def test_evaluate_dataset_on_real_data_with_an_oracle(shared_data):
    dataset = shared_data / "em-isbi2012-membranes"
    masks = iter(sorted((dataset / "test" / "masks" / "membranes").glob("*.tif")))

    def oracle(image, pixel_size_nm):
        truth = tifffile.imread(next(masks))
        assert truth.shape == image.shape and pixel_size_nm == 4.0
        return {"membranes": truth}

    evaluation = evaluate_dataset(dataset, "test", oracle, model_classes={"membranes": "semantic"})
    assert evaluation.scores["membranes"].dice == 1.0
    assert evaluation.scores["membranes"].n_images == 5


# --------------------------------------------------------------------------- measure command


def write_cell(folder: Path) -> dict[str, Path]:
    """Mitochondria (3 squares), an ER cross, two cells; returns the TIFF paths."""
    folder.mkdir(parents=True, exist_ok=True)
    mito = np.zeros((60, 60), np.uint16)
    mito[5:15, 5:15] = 1
    mito[40:50, 40:50] = 2
    mito[5:9, 40:56] = 3
    er = np.zeros((60, 60), np.uint8)
    er[20, 2:58] = 1
    er[2:58, 30] = 1
    cells = np.zeros((60, 60), np.uint16)
    cells[:, :30] = 1
    cells[:, 30:] = 2
    paths = {"mito": folder / "mito_labels.tif", "er": folder / "er_mask.tif",
             "cells": folder / "cells.tif"}
    for name, data in (("mito", mito), ("er", er), ("cells", cells)):
        tifffile.imwrite(paths[name], data)
    return paths


def test_measure_command_writes_tables_and_plots(tmp_path, capsys):
    paths = write_cell(tmp_path / "in")
    out = tmp_path / "out"
    status = main(["measure", str(paths["mito"]), str(paths["er"]), "--names", "mitochondria", "er",
                   "--pixel-size", "10", "--network", "er", "--contacts", "er:mitochondria",
                   "--distance", "60", "--cells", str(paths["cells"]), "--out", str(out)])
    assert status == 0
    written = ["summary.csv", "objects.csv", "per_cell.csv", "networks.csv",
               "network_components.csv", "branches.csv", "contacts.csv", "contact_sites.csv",
               "contact_objects.csv", "object_sizes.png", "networks.png"]
    assert sorted(path.name for path in out.iterdir()) == sorted(written)
    for name in written:
        assert (out / name).stat().st_size > 0, name
    objects = pd.read_csv(out / "objects.csv")
    mito = objects[objects["organelle"] == "mitochondria"].set_index("label")
    assert mito.loc[1, "area"] == 100 * 10.0**2               # nm²
    assert mito["cell"].tolist() == [1, 2, 2]
    summary = pd.read_csv(out / "summary.csv", index_col="organelle")
    assert summary.loc["mitochondria", "n_objects"] == 3 and summary.loc["er", "unit"] == "nm"
    networks = pd.read_csv(out / "networks.csv", index_col="organelle")
    assert networks.loc["er", "n_junctions"] == 1 and networks.loc["er", "n_end_points"] == 4
    assert networks.loc["er", "total_length"] == pytest.approx((55 + 55) * 10.0)
    contacts = pd.read_csv(out / "contacts.csv")
    assert contacts.loc[0, ["a", "b"]].tolist() == ["er", "mitochondria"]
    # the ER row 20 is 6 pixels (60 nm) from the first square's bottom row 14
    assert contacts.loc[0, "n_sites"] == 1
    sites = pd.read_csv(out / "contact_sites.csv")
    assert sites[["a", "b", "site"]].values.tolist() == [["er", "mitochondria", 1]]
    sides = pd.read_csv(out / "contact_objects.csv")
    assert sides.groupby("organelle")["in_contact"].sum().to_dict() == {"er": 1, "mitochondria": 1}
    printed = capsys.readouterr().out
    assert "mitochondria: 3 objects, total area 2.64e+04 nm²" in printed
    assert "er network: length 1100 nm, 4 branches, 1 junction" in printed
    assert "contacts er-mitochondria within 60 nm: 1 site" in printed
    assert f"wrote {', '.join(written)} to {out}" in printed


def test_measure_command_grows_nuclei_into_cells(tmp_path, capsys):
    paths = write_cell(tmp_path / "in")
    nuclei = np.zeros((60, 60), np.uint8)
    nuclei[10, 10] = nuclei[45, 45] = 1  # a mask: two nuclei
    tifffile.imwrite(tmp_path / "in" / "nuclei.tif", nuclei)
    out = tmp_path / "out"
    # grown by 100 nm (10 px), each nucleus takes in the square around it; square 3 is left out
    status = main(["measure", str(paths["mito"]), str(paths["er"]), "--names", "mitochondria", "er",
                   "--morphology", "mitochondria", "--pixel-size", "10",
                   "--cells", str(tmp_path / "in" / "nuclei.tif"), "--cells-kind", "nuclei",
                   "--grow-nuclei", "100", "--out", str(out)])
    assert status == 0
    objects = pd.read_csv(out / "objects.csv")
    assert objects["organelle"].unique().tolist() == ["mitochondria"]  # not the ER
    assert objects["cell"].tolist() == [1, 2, 0]
    per_cell = pd.read_csv(out / "per_cell.csv")
    assert per_cell["n_objects"].tolist() == [1, 1]
    # boundaries that enclose nothing: no per-cell table, and a note says so
    assert main(["measure", str(paths["mito"]), "--cells", str(paths["er"]), "--cells-kind",
                 "boundaries", "--out", str(tmp_path / "out2")]) == 0
    assert not (tmp_path / "out2" / "per_cell.csv").exists()
    assert "note: The cell boundaries in 'er_mask.tif' enclose no cell" in capsys.readouterr().out


def test_measure_command_reads_pixel_size_from_the_file(tmp_path, capsys):
    from napari_organelle.io import write_tiff

    labels = np.zeros((20, 20), np.uint8)
    labels[5:10, 5:10] = 1
    path = write_tiff(tmp_path / "mito.tif", labels, pixel_size_nm=4.0)
    assert main(["measure", str(path), "--out", str(tmp_path / "out")]) == 0
    objects = pd.read_csv(tmp_path / "out" / "objects.csv")
    assert objects.loc[0, "area"] == pytest.approx(25 * 16.0)
    assert objects.loc[0, "organelle"] == "mito"
    assert main(["measure", str(path), "--pixel-size", "1", "--out", str(tmp_path / "out2")]) == 0
    assert pd.read_csv(tmp_path / "out2" / "objects.csv").loc[0, "area"] == 25.0


def test_measure_command_compares_folders(tmp_path, capsys):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:10, 2:10] = 1
    for folder in ("proposal", "corrected"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "mito.tif", mask)
    corrected = mask.copy()
    corrected[12:16, 12:16] = 1                               # an object added by hand
    tifffile.imwrite(tmp_path / "corrected" / "mito.tif", corrected)
    out = tmp_path / "agreement"
    assert main(["measure", "--compare", str(tmp_path / "proposal"), str(tmp_path / "corrected"),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "agreement.csv", index_col="class")
    assert table.loc["mito", "precision"] == 1.0
    assert table.loc["mito", "recall"] == pytest.approx(64 / 80)
    assert table.loc["mito", "object_recall"] == 0.5
    assert (out / "agreement.png").stat().st_size > 1000
    assert (out / "agreement_per_image.csv").is_file()
    assert sorted(path.name for path in out.iterdir()) == [
        "agreement.csv", "agreement.png", "agreement_per_image.csv"]
    assert "mito" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--contacts", "er_mask:mito_labels"], "distance"),
        (["--names", "one"], "--names gives 1 name(s) for 2 file(s)"),
        (["--network", "golgi"], "'golgi' not among the layers"),
        (["--contacts", "mito_labels"], "A:B pairs"),
        (["--pixel-size", "1", "2", "3"], "1 or 2 values"),
    ],
)
def test_measure_command_reports_user_errors(tmp_path, capsys, arguments, message):
    paths = write_cell(tmp_path / "in")
    status = main(["measure", str(paths["mito"]), str(paths["er"]), *arguments,
                   "--out", str(tmp_path / "o")])
    assert status == 1
    assert message in capsys.readouterr().err


def test_measure_command_needs_input(tmp_path, capsys):
    assert main(["measure", "--out", str(tmp_path)]) == 1
    assert "give label TIFFs" in capsys.readouterr().err
    assert main(["measure", str(tmp_path / "missing.tif")]) == 1
    assert "does not exist" in capsys.readouterr().err
