"""The ``store`` CLI: saving corrected label TIFFs with provenance, listing, excluding and
restoring samples, one-line errors, and the whole segment -> correct -> store -> train ->
segment loop from the command line on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_organelle.cli import main
from napari_organelle.store import IGNORE_VALUE, TrainingStore, open_store

from ._datasets import disc_sample

#: pixels per micrometre written into the test images: 4 nm pixels
RESOLUTION_PER_UM = 250.0
PIXEL_SIZE_NM = 4.0


# a private home keeps models and the default training store out of the real home folder
pytestmark = pytest.mark.usefixtures("one_torch_thread", "private_home")


def write_image(path: Path, data: np.ndarray, axes: str | None = None) -> Path:
    """An ImageJ TIFF with a 4 nm pixel size, as microscopes' exports often are."""
    metadata = {"unit": "um", **({"axes": axes} if axes else {})}
    tifffile.imwrite(path, data, imagej=True, metadata=metadata,
                     resolution=(RESOLUTION_PER_UM, RESOLUTION_PER_UM))
    return path


def sample_files(tmp_path: Path, seed: int = 0) -> tuple[Path, dict[str, Path], dict]:
    """A 64x64 image and 0/1 masks of mitochondria and membranes in separate TIFFs."""
    image, masks = disc_sample(np.random.default_rng(seed), 64)
    image_path = write_image(tmp_path / "cell.tif", image)
    files = {}
    for name in ("mitochondria", "membranes"):
        files[name] = tmp_path / f"{name}-corrected.tif"
        tifffile.imwrite(files[name], masks[name])
    return image_path, files, {"image": image, **masks}


def labels_args(files: dict[str, Path]) -> list[str]:
    return ["--labels", *(f"{name}={path}" for name, path in files.items())]


# ---------------------------------------------------------------------- store add


def test_add_saves_the_files_with_provenance_and_versions_changes(tmp_path, capsys):
    image_path, files, truth = sample_files(tmp_path)
    store_path = tmp_path / "store"
    add = ["store", "add", str(image_path), *labels_args(files), "--store", str(store_path),
           "--annotator", "ana"]
    assert main(add) == 0
    out = capsys.readouterr().out
    store = TrainingStore(store_path)
    (record,) = store.samples()
    assert record.version == 1 and set(record.classes) == {"mitochondria", "membranes"}
    assert record.id in out and "version 1" in out and str(store.path) in out
    loaded = store.load(record.id)
    np.testing.assert_array_equal(loaded.image, truth["image"])
    for name in ("mitochondria", "membranes"):
        np.testing.assert_array_equal(loaded.labels[name], truth[name])
        assert not loaded.ignore_masks[name].any()  # --reviewed defaults to all
    provenance = loaded.provenance
    assert provenance["source_path"] == str(image_path.absolute())
    assert provenance["pixel_size_nm"] == pytest.approx([PIXEL_SIZE_NM, PIXEL_SIZE_NM])
    assert provenance["annotator"] == "ana"
    assert provenance["source_sha256_of"] == "file"
    assert provenance["model_name"] is None  # drawn without a model: none claimed
    assert provenance["extra"]["via"] == "cli"

    assert main(add) == 0  # the same pixels again
    out = capsys.readouterr().out
    assert "(duplicate: unchanged)" in out and record.id in out
    assert len(store.history(record.key)) == 1

    edited = tifffile.imread(files["membranes"])
    edited[0, 0] = 1 - edited[0, 0]
    tifffile.imwrite(files["membranes"], edited)
    assert main(add) == 0
    assert "version 2" in capsys.readouterr().out
    (latest,) = store.samples()
    assert latest.key == record.key and latest.version == 2
    np.testing.assert_array_equal(store.load(latest.id).labels["membranes"], edited)


def test_object_ids_are_kept_as_instances(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)
    ids = np.zeros((48, 48), np.uint16)
    ids[5:15, 5:15], ids[20:30, 20:40], ids[40:46, 2:9] = 1, 2, 7
    write_image(tmp_path / "cell.tif", image)
    tifffile.imwrite(tmp_path / "ids.tif", ids)
    assert main(["store", "add", str(tmp_path / "cell.tif"), "--labels",
                 f"mitochondria={tmp_path / 'ids.tif'}", "--store", str(tmp_path / "s")]) == 0
    store = TrainingStore(tmp_path / "s")
    (record,) = store.samples()
    assert record.instance_classes == ("mitochondria",)
    np.testing.assert_array_equal(store.load_instances(record.id)["mitochondria"], ids)
    np.testing.assert_array_equal(store.load(record.id).labels["mitochondria"], ids > 0)


def test_reviewed_box_stores_ignore_outside_it(tmp_path):
    image_path, files, truth = sample_files(tmp_path)
    assert main(["store", "add", str(image_path), *labels_args(files), "--store",
                 str(tmp_path / "s"), "--reviewed", "0,0,32,64"]) == 0
    store = TrainingStore(tmp_path / "s")
    (record,) = store.samples()
    raw = tifffile.imread(store.path / record.files["labels/mitochondria"])
    assert (raw[32:] == IGNORE_VALUE).all()
    np.testing.assert_array_equal(raw[:32], truth["mitochondria"][:32])
    assert store.load(record.id).provenance["extra"]["reviewed"] == [[0, 0, 32, 64]]


def test_a_stack_stores_the_chosen_plane(tmp_path):
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 255, (3, 40, 48), dtype=np.uint8)
    masks = np.zeros((3, 40, 48), np.uint8)
    for z in range(3):
        masks[z, 4 * z:4 * z + 10, 5:20] = 1  # every plane differs
    write_image(tmp_path / "stack.tif", stack, axes="ZYX")
    tifffile.imwrite(tmp_path / "mito.tif", masks, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mito-plane0.tif", masks[0])
    store_path = tmp_path / "s"
    base = ["store", "add", str(tmp_path / "stack.tif"), "--store", str(store_path)]
    # The full stack of labels: the same plane is taken from it.
    assert main([*base, "--labels", f"mitochondria={tmp_path / 'mito.tif'}",
                 "--plane", "2"]) == 0
    # A 2-D label file already is the plane.
    assert main([*base, "--labels", f"mitochondria={tmp_path / 'mito-plane0.tif'}",
                 "--plane", "0"]) == 0
    store = TrainingStore(store_path)
    by_plane = {tuple(r.provenance["plane"]): r for r in store.samples()}
    assert set(by_plane) == {(2,), (0,)}
    for z, record in ((2, by_plane[(2,)]), (0, by_plane[(0,)])):
        loaded = store.load(record.id)
        np.testing.assert_array_equal(loaded.image, stack[z])
        np.testing.assert_array_equal(loaded.labels["mitochondria"], masks[z])
        assert loaded.provenance["plane_axes"] == "Z"


def test_default_store_is_the_correct_widgets_default(tmp_path, capsys):
    image_path, files, _ = sample_files(tmp_path)
    assert main(["store", "add", str(image_path), *labels_args(files)]) == 0
    default = tmp_path / "home" / "training-store"
    assert str(default) in capsys.readouterr().out
    assert len(TrainingStore(default).samples()) == 1


def test_from_results_with_an_override_counts_changed_pixels(tmp_path):
    image_path, files, truth = sample_files(tmp_path)
    results = tmp_path / "results" / "cell"
    results.mkdir(parents=True)
    proposal = truth["mitochondria"].copy()
    proposal[:4, :4] = 1  # 16 pixels the annotator will remove (the disc is not there)
    tifffile.imwrite(results / "mitochondria.tif", proposal)
    tifffile.imwrite(results / "membranes.tif", truth["membranes"])
    (results / "summary.json").write_text(json.dumps({
        "image": str(image_path), "model": "em-organelles@3", "pixel_size_nm": 4.0,
        "classes": {"mitochondria": {"kind": "instance"}, "membranes": {"kind": "semantic"}}}))
    assert main(["store", "add", str(image_path), "--from-results", str(results),
                 "--labels", f"mitochondria={files['mitochondria']}",
                 "--store", str(tmp_path / "s")]) == 0
    store = TrainingStore(tmp_path / "s")
    (record,) = store.samples()
    assert record.instance_classes == ("mitochondria",)  # the summary's kind
    assert record.provenance["model_name"] == "em-organelles"
    assert record.provenance["model_version"] == "3"
    assert record.provenance["changed_pixels"] == {"mitochondria": 16}


# ---------------------------------------------------------------------- list, exclude, restore


def test_list_exclude_restore_round_trip(tmp_path, capsys):
    store = open_store(tmp_path / "s", classes=["mitochondria"])
    first, second = (np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
                     for seed in (0, 1))
    kept = store.save(first, {"mitochondria": first > 128}, True,
                      {"source_path": "/data/a.tif", "annotator": "ana"}).sample
    dropped = store.save(second, {"mitochondria": second > 128}, True,
                         {"source_path": "/data/b.tif", "annotator": "ben"}).sample
    listing = ["store", "list", "--store", str(tmp_path / "s")]

    assert main(listing) == 0
    out = capsys.readouterr().out
    assert kept.id in out and dropped.id in out and "a.tif" in out and "ben" in out
    assert "16x16" in out

    assert main(["store", "exclude", dropped.id, "--reason", "blurry", "--store",
                 str(tmp_path / "s")]) == 0
    assert "excluded" in capsys.readouterr().out
    assert main(listing) == 0
    out = capsys.readouterr().out
    assert kept.id in out and dropped.id not in out
    assert main([*listing, "--all"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if dropped.id in line)
    assert line.rstrip().endswith("excluded")
    assert main([*listing, "--all", "--json"]) == 0
    records = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert records[dropped.id]["excluded"] and not records[kept.id]["excluded"]

    assert main(["store", "restore", dropped.id, "--store", str(tmp_path / "s")]) == 0
    assert "restored" in capsys.readouterr().out
    assert main(listing) == 0
    assert dropped.id in capsys.readouterr().out
    assert {r.id for r in TrainingStore(tmp_path / "s").samples()} == {kept.id, dropped.id}


# ---------------------------------------------------------------------- errors


def _error_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Arguments that must fail, each with a phrase its message must hold."""
    image_path, files, _ = sample_files(tmp_path)
    store = str(tmp_path / "store")
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((10, 20), np.uint8))
    write_image(tmp_path / "stack.tif", np.zeros((3, 32, 32), np.uint8), axes="ZYX")
    tifffile.imwrite(tmp_path / "stack-mito.tif", np.zeros((3, 32, 32), np.uint8),
                     photometric="minisblack")
    no_summary = tmp_path / "no-summary"
    no_summary.mkdir()
    tifffile.imwrite(no_summary / "mitochondria.tif", np.zeros((64, 64), np.uint8))
    no_labels = tmp_path / "no-labels"
    no_labels.mkdir()
    (no_labels / "summary.json").write_text(json.dumps({"model": "tiny-em@0"}))
    mito = f"mitochondria={files['mitochondria']}"
    return {
        "missing image": (["store", "add", str(tmp_path / "gone.tif"), "--labels", mito,
                           "--store", store], "does not exist"),
        "shape": (["store", "add", str(image_path), "--labels",
                   f"mitochondria={tmp_path / 'small.tif'}", "--store", store],
                  "10 x 20 pixels but cell.tif is 64 x 64"),
        "unknown class": (["store", "add", str(image_path), "--labels",
                           f"er={files['membranes']}", "--store", store], "--add-classes er"),
        "no equals sign": (["store", "add", str(image_path), "--labels",
                            str(files["mitochondria"]), "--store", store], "CLASS=FILE"),
        "stack without plane": (["store", "add", str(tmp_path / "stack.tif"), "--labels",
                                 f"mitochondria={tmp_path / 'stack-mito.tif'}", "--store",
                                 store], "--plane"),
        "results without summary": (["store", "add", str(image_path), "--from-results",
                                     str(no_summary), "--store", store], "no summary.json"),
        "results without labels": (["store", "add", str(image_path), "--from-results",
                                    str(no_labels), "--store", store], "no label TIFFs"),
        "plane out of range": (["store", "add", str(tmp_path / "stack.tif"), "--labels",
                                f"mitochondria={tmp_path / 'stack-mito.tif'}", "--plane", "3",
                                "--store", store], "Z planes 0 to 2"),
        "bad box": (["store", "add", str(image_path), "--labels", mito, "--reviewed", "0,0,9",
                     "--store", store], "Y0,X0,Y1,X1"),
        "unknown sample": (["store", "exclude", "0123456789abcdef_v1", "--store", store],
                           "no sample '0123456789abcdef_v1'"),
    }


CASES = ["missing image", "shape", "unknown class", "no equals sign", "stack without plane",
         "results without summary", "results without labels", "plane out of range", "bad box",
         "unknown sample"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_status_1(tmp_path, capsys, case):
    # A store with mitochondria and membranes only, and one sample: refusals must not change it.
    image_path, files, _ = sample_files(tmp_path)
    assert main(["store", "add", str(image_path), *labels_args(files), "--store",
                 str(tmp_path / "store")]) == 0
    manifest = (tmp_path / "store" / "manifest.jsonl").read_bytes()
    capsys.readouterr()

    args, phrase = _error_cases(tmp_path)[case]
    assert main(args) == 1
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith("napari-organelle store: error: ") and "\n" not in error
    assert phrase in error and "Traceback" not in error
    assert (tmp_path / "store" / "manifest.jsonl").read_bytes() == manifest


def test_a_refused_add_creates_no_store(tmp_path):
    image_path, files, _ = sample_files(tmp_path)
    assert main(["store", "add", str(image_path), *labels_args(files), "--reviewed",
                 "0,0,99,99", "--store", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()


def test_add_classes_lets_an_existing_store_take_a_new_class(tmp_path):
    image_path, files, _ = sample_files(tmp_path)
    open_store(tmp_path / "s", classes=["mitochondria"])
    assert main(["store", "add", str(image_path), "--labels", f"er={files['membranes']}",
                 "--store", str(tmp_path / "s"), "--add-classes", "er"]) == 0
    assert TrainingStore(tmp_path / "s").classes == ("mitochondria", "er")


# ---------------------------------------------------------------------- the loop


def test_segment_correct_store_train_segment_loop(home, tmp_path, capsys):
    image, truth = disc_sample(np.random.default_rng(3), 96)
    image_path = write_image(tmp_path / "cell.tif", image)
    results, store = tmp_path / "results", tmp_path / "store"
    assert main(["segment", str(image_path), "--out", str(results), "--model", "tiny-em",
                 "--quiet"]) == 0

    # The annotator corrects the proposals in another tool, in place.
    folder = results / "cell"
    tifffile.imwrite(folder / "mitochondria.tif", truth["mitochondria"].astype(np.uint16))
    tifffile.imwrite(folder / "membranes.tif", truth["membranes"])
    assert main(["store", "add", str(image_path), "--from-results", str(folder),
                 "--store", str(store), "--annotator", "ana"]) == 0

    assert main(["train", "--base", "tiny-em", "--data", str(store), "--out", "lab",
                 "--iterations", "4", "--crop", "64", "--batch-size", "2",
                 "--validate-every", "2", "--threads", "1", "--quiet"]) == 0
    assert "kept lab@1" in capsys.readouterr().out

    assert main(["segment", str(image_path), "--out", str(tmp_path / "results2"), "--model",
                 "lab@1", "--quiet"]) == 0
    summary = json.loads((tmp_path / "results2" / "cell" / "summary.json").read_text())
    assert summary["model"] == "lab@1"

    (record,) = TrainingStore(store).samples()
    assert record.provenance["model_name"] == "tiny-em"
    assert record.provenance["model_version"] == "0"
    assert record.provenance["extra"]["results"] == str(folder.absolute())
    assert record.instance_classes == ("mitochondria",)
