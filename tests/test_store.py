"""Training store: round trips, ignore regions, versions, duplicates, crashes, refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_organelle.errors import InputError, StoreError
from napari_organelle.store import (
    IGNORE_VALUE,
    Provenance,
    TrainingStore,
    changed_pixels,
    default_store_path,
    open_store,
    save_sample,
)
from napari_organelle.store.hashing import sha256_array

SRC = Path(__file__).resolve().parents[1] / "src"
CLASSES = ["mitochondria", "membranes"]


Sample = tuple[np.ndarray, dict[str, np.ndarray]]


def make_sample(seed: int, shape: tuple[int, int] = (48, 64)) -> Sample:
    """A reproducible uint16 image and two (non-overlapping) class masks."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 65535, shape, dtype=np.uint16)
    return image, {"mitochondria": image > 40000, "membranes": image < 10000}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (folders map to b'<dir>')."""
    return {
        str(p.relative_to(folder)): (b"<dir>" if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.name != ".lock"
    }


def manifest_lines(store: TrainingStore) -> list[str]:
    return (store.path / "manifest.jsonl").read_text().splitlines()


@pytest.fixture
def store(tmp_path: Path) -> TrainingStore:
    return open_store(tmp_path / "store", classes=CLASSES)


# -- creating and opening --------------------------------------------------------------


def test_new_store_is_readable_without_the_plugin(store: TrainingStore) -> None:
    settings = json.loads((store.path / "store.json").read_text())
    assert settings["schema_version"] == 1
    assert settings["classes"] == CLASSES
    assert settings["ignore_value"] == IGNORE_VALUE
    assert "labels/<class>.tif" in (store.path / "README.md").read_text()
    assert manifest_lines(store) == []


def test_default_store_path_is_in_the_user_data_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NAPARI_ORGANELLE_HOME", raising=False)
    path = default_store_path()
    assert path.name == "training-store" and path.parent.name == "napari-organelle"
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "training-store"  # next to the model versions


def test_open_store_refuses_foreign_or_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(StoreError, match="not a training store"):
        open_store(tmp_path / "photos")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(tmp_path / "file")
    with pytest.raises(StoreError, match="no training store"):
        open_store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["holiday.jpg"]


def test_open_store_adds_new_classes_and_keeps_order(store: TrainingStore) -> None:
    again = open_store(store.path, classes=["er", "mitochondria"])
    assert again.classes == ("mitochondria", "membranes", "er")
    with pytest.raises(InputError, match="not allowed"):
        open_store(store.path, classes=["bad/name"])
    with pytest.raises(InputError, match="reserved"):
        open_store(store.path, classes=["ignore"])


def test_newer_schema_is_refused_and_left_untouched(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    store.save(image, labels, True)
    settings = json.loads((store.path / "store.json").read_text())
    settings["schema_version"] = 2
    (store.path / "store.json").write_text(json.dumps(settings))
    before = snapshot(store.path)
    for attempt in (
        lambda: TrainingStore(store.path),
        lambda: open_store(store.path),
        lambda: save_sample(store.path, *make_sample(1), True),
    ):
        with pytest.raises(StoreError, match="newer napari-organelle"):
            attempt()
    assert snapshot(store.path) == before


# -- saving and loading ----------------------------------------------------------------


def test_round_trip_with_provenance_of_a_real_source_file(store: TrainingStore, tmp_path) -> None:
    stack = np.random.default_rng(5).integers(0, 65535, (3, 80, 90), dtype=np.uint16)
    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, stack)
    image = stack[2, 10:58, 20:84]
    _, labels = make_sample(0)
    labels = {"mitochondria": image > 40000, "membranes": image < 10000}
    result = store.save(
        image,
        labels,
        True,
        {
            "source_path": str(source),
            "image_layer": "cell",
            "label_layers": {"mitochondria": "mitochondria (corrected)"},
            "plane": (2,),
            "plane_axes": "Z",
            "crop": (10, 20, 58, 84),
            "pixel_size_nm": 4.6,
            "model_name": "em-organelles",
            "model_version": "1.2.0",
            "annotator": "ada",
            "stain": "osmium",  # not fields: kept in extra
            "gain": np.float32(2.5),
        },
    )
    assert not result.duplicate and result.sample.version == 1
    loaded_image, loaded_labels, ignore, provenance = store.load(result.sample.id)
    np.testing.assert_array_equal(loaded_image, image)
    assert loaded_image.dtype == np.uint16
    for name in CLASSES:
        np.testing.assert_array_equal(loaded_labels[name], labels[name].astype(np.uint8))
        assert not ignore[name].any()
    assert provenance["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert provenance["source_sha256_of"] == "file"
    assert provenance["crop"] == [10, 20, 58, 84] and provenance["plane"] == [2]
    assert provenance["pixel_size_nm"] == [4.6, 4.6]
    assert provenance["model_name"] == "em-organelles" and provenance["annotator"] == "ada"
    assert provenance["extra"] == {"stain": "osmium", "gain": 2.5}  # numpy scalar made plain
    assert provenance["time"].endswith("+00:00")
    # A fresh reader (another process, say) sees the same sample.
    assert [r.id for r in TrainingStore(store.path).samples()] == [result.sample.id]


def test_source_without_file_is_identified_by_its_pixels(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    result = store.save(image, labels, True, {"source_path": "/gone/cell.tif"})
    provenance = result.sample.provenance
    assert provenance["source_sha256"] == sha256_array(image)
    assert provenance["source_sha256_of"] == "pixels"


#: The provenance of a manifest line as the store has always written it (JSON).
STORED_PROVENANCE = {
    "source_path": "/data/cell.tif", "source_sha256": "ab" * 32, "source_sha256_of": "file",
    "image_layer": "cell", "label_layers": {"er": "er"}, "plane": [3], "plane_axes": "Z",
    "crop": [10, 20, 58, 84], "pixel_size_nm": [4.6, 4.6], "model_name": "em-organelles",
    "model_version": "2", "annotator": "ada", "time": "2024-05-01T10:00:00+00:00",
    "changed_pixels": {"er": 12}, "extra": {"reviewed": "whole image", "modality": "em"},
}


def test_stored_provenance_reads_back_as_the_typed_record() -> None:
    details = Provenance.from_dict(json.loads(json.dumps(STORED_PROVENANCE)))

    assert details.plane == (3,) and details.crop == (10, 20, 58, 84)
    assert details.pixel_size_nm == (4.6, 4.6) and details.changed_pixels == {"er": 12}
    assert (details.model, details.source_name) == ("em-organelles@2", "cell.tif")
    assert details.to_dict() == STORED_PROVENANCE
    # a line from before some fields existed, with a key of its own: defaults, kept in extra
    older = Provenance.from_dict({"image_layer": "cell", "plane": [], "stain": "osmium"})
    assert (older.plane, older.crop, older.model, older.source_name) == ((), None, None, "cell")
    assert older.extra == {"stain": "osmium"}
    with pytest.raises(InputError, match="invalid provenance"):
        Provenance.from_dict({"crop": [5, 5, 1, 1]})


def test_a_typed_provenance_is_stored_like_the_dict(store: TrainingStore) -> None:
    image, labels = make_sample(7)
    typed = Provenance.from_dict({**STORED_PROVENANCE, "crop": None, "source_path": None,
                                  "source_sha256": None, "source_sha256_of": None})

    record = store.save(image, labels, True, typed).sample

    assert record.provenance == {**typed.to_dict(), "source_sha256": sha256_array(image),
                                 "source_sha256_of": "pixels",
                                 "changed_pixels": {"er": 12}}
    assert Provenance.from_dict(record.provenance) == dataclasses.replace(
        typed, source_sha256=sha256_array(image), source_sha256_of="pixels")


def test_a_sample_cut_from_a_stored_one_keeps_its_origin() -> None:
    original = Provenance.from_dict(STORED_PROVENANCE)
    whole = Provenance(image_layer="sample x", plane_axes="", pixel_size_nm=None)
    part = Provenance(image_layer="sample x", crop=(2, 4, 12, 24))

    assert whole.cut_from(original).crop == (10, 20, 58, 84)
    moved = part.cut_from(original)
    assert moved.crop == (12, 24, 22, 44)
    assert (moved.source_path, moved.source_sha256, moved.plane, moved.plane_axes) == (
        "/data/cell.tif", "ab" * 32, (3,), "Z")
    assert moved.pixel_size_nm == (4.6, 4.6) and moved.image_layer == "sample x"
    # a stored sample that was the whole plane: the crop stays the new one's
    plane = Provenance.from_dict({**STORED_PROVENANCE, "crop": None})
    assert part.cut_from(plane).crop == (2, 4, 12, 24)


def test_float_images_round_trip_exactly(store: TrainingStore) -> None:
    image = np.random.default_rng(1).normal(size=(20, 30)).astype(np.float32)
    sample_id = store.save(image, {"mitochondria": image > 0}, True).sample.id
    np.testing.assert_array_equal(store.load(sample_id).image, image)


def test_unreviewed_pixels_are_stored_as_ignore(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    result = store.save(image, labels, [(0, 0, 20, 64), (30, 10, 40, 20)])
    reviewed = np.zeros(image.shape, bool)
    reviewed[0:20, :] = True
    reviewed[30:40, 10:20] = True

    # On disk, readable without the plugin: 0/1 inside, 255 outside.
    on_disk = tifffile.imread(store.path / result.sample.files["labels/mitochondria"])
    assert on_disk.dtype == np.uint8
    np.testing.assert_array_equal(on_disk[~reviewed], IGNORE_VALUE)
    np.testing.assert_array_equal(on_disk[reviewed], labels["mitochondria"][reviewed])

    _, loaded, ignore, _ = store.load(result.sample.id)
    np.testing.assert_array_equal(ignore["mitochondria"], ~reviewed)
    assert not loaded["mitochondria"][~reviewed].any()  # never foreground where unreviewed
    counts = result.sample.pixels["mitochondria"]
    assert counts["ignored"] == (~reviewed).sum()
    assert counts["foreground"] == labels["mitochondria"][reviewed].sum()
    assert counts["foreground"] + counts["background"] == reviewed.sum()


def test_reviewed_region_per_class_and_as_mask(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    mask = np.zeros(image.shape, bool)
    mask[5:15, 5:50] = True
    result = store.save(image, labels, {"mitochondria": mask, "membranes": True})
    _, _, ignore, _ = store.load(result.sample.id)
    np.testing.assert_array_equal(ignore["mitochondria"], ~mask)
    assert not ignore["membranes"].any()


def test_changed_pixels_are_counted_inside_the_reviewed_region(store: TrainingStore) -> None:
    assert changed_pixels([[0, 1], [1, 1]], [[1, 1], [0, 1]]) == 2
    assert changed_pixels([[0, 3], [0, 0]], [[0, 7], [0, 0]]) == 0  # instance ids: membership only
    image, labels = make_sample(0)
    proposal = labels["mitochondria"].copy()
    proposal[:10, :] = ~proposal[:10, :]  # the model was wrong in the top 10 rows
    proposal[40:, :] = ~proposal[40:, :]  # ... and at the bottom, which nobody reviewed
    result = store.save(image, labels, [(0, 0, 30, 64)], proposals={"mitochondria": proposal})
    assert result.sample.provenance["changed_pixels"] == {"mitochondria": 10 * 64}


def test_instances_are_kept_next_to_the_class_mask(store: TrainingStore) -> None:
    image, _ = make_sample(0)
    ids = np.zeros(image.shape, np.int32)
    ids[2:10, 2:10] = 1
    ids[20:30, 30:40] = 70000  # needs more than uint16
    result = store.save(image, {}, [(0, 0, 25, 64)], instances={"mitochondria": ids})
    assert result.sample.instance_classes == ("mitochondria",)
    _, labels, ignore, _ = store.load(result.sample.id)
    np.testing.assert_array_equal(labels["mitochondria"], (ids > 0) & ~ignore["mitochondria"])
    stored = store.load_instances(result.sample.id)["mitochondria"]
    assert stored.dtype == np.uint32
    np.testing.assert_array_equal(stored, np.where(ignore["mitochondria"], 0, ids))
    with pytest.raises(InputError, match="disagree"):
        empty = {"mitochondria": np.zeros(image.shape, bool)}
        store.save(image, empty, True, instances={"mitochondria": ids})


# -- versions, duplicates, exclusion ---------------------------------------------------


def test_second_save_is_a_new_version_and_v1_stays_byte_identical(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    where = {"source_path": "/data/cell.tif", "plane": (4,), "crop": (0, 0, 48, 64)}
    first = store.save(image, labels, True, where).sample
    v1_files = {p: (store.path / p).read_bytes() for p in first.files.values()}

    corrected = {name: mask.copy() for name, mask in labels.items()}
    corrected["mitochondria"][:10] = True
    second = store.save(image, corrected, True, where).sample
    assert (first.version, second.version) == (1, 2)
    assert first.key == second.key and first.id != second.id
    assert {p: (store.path / p).read_bytes() for p in first.files.values()} == v1_files
    original = store.load(first.id).labels["mitochondria"]
    np.testing.assert_array_equal(original, labels["mitochondria"])

    assert [r.id for r in store.samples()] == [second.id]  # the latest version per sample
    assert [r.version for r in store.history(first.key)] == [1, 2]
    assert [r.version for r in store.history(second.id)] == [1, 2]

    # Going back to the v1 pixels is a new correction (v3), not a duplicate of a superseded version.
    third = store.save(image, labels, True, where)
    assert not third.duplicate and third.sample.version == 3


def test_a_different_plane_or_crop_is_a_different_sample(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    a = store.save(image, labels, True, {"source_path": "/x.tif", "plane": (1,)}).sample
    labels["mitochondria"][0, 0] = not labels["mitochondria"][0, 0]
    b = store.save(image, labels, True, {"source_path": "/x.tif", "plane": (2,)}).sample
    assert a.key != b.key and b.version == 1
    assert len(store.samples()) == 2


def test_duplicate_save_is_detected_and_not_stored_twice(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    first = store.save(image, labels, True, {"annotator": "ada"})
    before = snapshot(store.path)
    as_uint8 = {k: v.astype(np.uint8) for k, v in labels.items()}  # same pixels, other dtype
    again = store.save(image, as_uint8, True, {"annotator": "bob"})
    assert again.duplicate and again.sample.id == first.sample.id
    assert snapshot(store.path) == before


def test_exclude_and_restore_are_append_only_events(store: TrainingStore) -> None:
    first = store.save(*make_sample(0), True).sample
    second = store.save(*make_sample(1), True).sample
    files_before = snapshot(store.path / "samples")

    assert store.exclude(first.id, reason="blurry") is True
    assert store.exclude(first.id) is False  # already excluded: nothing appended
    assert [r.id for r in store.samples()] == [second.id]
    listed = store.samples(include_excluded=True)
    assert [(r.id, r.excluded) for r in listed] == [(first.id, True), (second.id, False)]
    assert store.load(first.id).image.shape == (48, 64)  # excluded, not deleted

    assert store.restore(first.id) is True
    assert store.restore(first.id) is False
    assert [r.id for r in store.samples()] == [first.id, second.id]
    ops = [json.loads(line)["op"] for line in manifest_lines(store)]
    assert ops == ["add", "add", "exclude", "restore"]
    assert json.loads(manifest_lines(store)[2])["reason"] == "blurry"
    assert snapshot(store.path / "samples") == files_before
    with pytest.raises(InputError, match="no sample"):
        store.exclude("0123456789abcdef_v9")
    with pytest.raises(InputError, match="not a sample id"):
        store.exclude("nonsense")


def test_duplicate_of_an_excluded_sample_reports_it(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    sample_id = store.save(image, labels, True).sample.id
    store.exclude(sample_id)
    again = store.save(image, labels, True)
    assert again.duplicate and again.sample.excluded


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "reviewed", "provenance", "message"),
    [
        ({"mitochondria": np.zeros((48, 63), bool)}, True, None, "shape"),
        ({"mitochondria": np.full((48, 64), 2, np.uint8)}, True, None, r"values \[2\]"),
        ({"golgi": np.zeros((48, 64), bool)}, True, None, "not one of this store's classes"),
        ({}, True, None, "no labels"),
        ({"mitochondria": np.zeros((48, 64), bool)}, np.zeros((48, 64), bool), None, "empty"),
        ({"mitochondria": np.zeros((48, 64), bool)}, [(0, 0, 100, 10)], None, "outside the image"),
        ({"mitochondria": np.zeros((48, 64), bool)}, None, None, "missing"),
        ({"mitochondria": np.zeros((48, 64), bool)}, True, {"crop": (0, 0, 10, 10)}, "crop"),
        ({"mitochondria": np.zeros((48, 64), bool)}, True, {"plane": (-1,)}, "provenance"),
        ({"mitochondria": np.zeros((48, 64), bool)}, True, {"note": object()}, "plain values"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    store: TrainingStore, labels, reviewed, provenance, message: str
) -> None:
    image, _ = make_sample(0)
    before = snapshot(store.path)
    with pytest.raises(InputError, match=message):
        store.save(image, labels, reviewed, provenance)
    assert snapshot(store.path) == before


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((2, 48, 64)), "3 dimensions"),
        (np.full((48, 64), np.nan), "NaN"),
        (np.zeros((48, 64), complex), "complex"),
    ],
)
def test_bad_images_are_refused(store: TrainingStore, image: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        store.save(image, {"mitochondria": np.zeros((48, 64), bool)}, True)


def test_save_sample_to_a_path_creates_the_store_but_rejects_misspelt_classes(tmp_path) -> None:
    image, labels = make_sample(0)
    result = save_sample(tmp_path / "new", image, labels, True, Provenance(annotator="ada"))
    assert TrainingStore(tmp_path / "new").classes == tuple(labels)
    with pytest.raises(InputError, match="not one of this store's classes"):
        save_sample(tmp_path / "new", image, {"mitochondira": labels["mitochondria"]}, True)
    assert result.sample.provenance["annotator"] == "ada"


# -- crashes ----------------------------------------------------------------------------------

# A child process saves samples 0, 1, 2, ... (pixels from make_sample(seed)); with a
# hook, it stops inside the save of sample 3 and waits there to be killed.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from napari_organelle.store import open_store, training_store

    store_path, mode = sys.argv[1], sys.argv[2]
    store = open_store(store_path, classes=["mitochondria", "membranes"])
    real_append = training_store.append_event
    in_flight = [False]

    def hang(path, event):
        # after-files: every TIFF is written, the manifest line is not
        if in_flight[0] and mode == "after-files":
            print("HANGING", flush=True)
            time.sleep(600)
        if in_flight[0] and mode == "torn-line":  # half of the manifest line reached the disk
            line = json.dumps(event).encode()
            with open(path, "ab") as handle:
                handle.write(line[: len(line) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            print("HANGING", flush=True)
            time.sleep(600)
        real_append(path, event)

    training_store.append_event = hang
    seed = 0
    while True:
        in_flight[0] = seed == 3
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 65535, (48, 64), dtype=np.uint16)
        labels = {"mitochondria": image > 40000, "membranes": image < 10000}
        result = store.save(image, labels, True, {"plane": [seed], "seed": seed})
        print("SAVED", result.sample.id, flush=True)
        seed += 1
    """
)


def _run_and_kill(store_path: Path, mode: str, saved_before_kill: int = 3) -> list[str]:
    """Start the child, SIGKILL it at the chosen point, return the ids it reported saved."""
    python_path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store_path), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    saved: list[str] = []
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            if line.startswith("SAVED"):
                saved.append(line.split()[1])
            if line.startswith("HANGING") or (mode == "loop" and len(saved) >= saved_before_kill):
                break
        else:
            pytest.fail(f"child ended early: {child.stderr.read()}")  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    return saved


def _assert_intact(store: TrainingStore, expected_ids: list[str]) -> None:
    listed = store.samples()
    assert [r.id for r in listed][: len(expected_ids)] == expected_ids
    for record in listed:
        image, labels, ignore, provenance = store.load(record.id)  # hash-verified
        rng = np.random.default_rng(provenance["extra"]["seed"])
        expected = rng.integers(0, 65535, (48, 64), dtype=np.uint16)
        np.testing.assert_array_equal(image, expected)
        np.testing.assert_array_equal(labels["mitochondria"], expected > 40000)
        assert not ignore["membranes"].any()


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_after_files_before_manifest_line(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    saved = _run_and_kill(store_path, "after-files")
    store = TrainingStore(store_path)
    assert [r.id for r in store.samples()] == saved and len(saved) == 3
    _assert_intact(store, saved)
    assert store.damaged_lines == []
    # The in-flight sample's files exist but no manifest line names them: not a sample.
    version_dirs = {p.parent.name + "_" + p.name for p in (store_path / "samples").glob("*/v*")}
    orphans = version_dirs - set(saved)
    assert len(orphans) == 1
    removed = store.clean()
    assert {p.parent.name + "_" + p.name for p in removed if p.name.startswith("v")} == orphans
    # The store keeps working: the same content can be saved again, as version 1.
    image = np.random.default_rng(3).integers(0, 65535, (48, 64), dtype=np.uint16)
    labels = {"mitochondria": image > 40000, "membranes": image < 10000}
    result = store.save(image, labels, True, {"plane": [3], "seed": 3})
    assert result.sample.id in orphans and not result.duplicate
    _assert_intact(store, [*saved, result.sample.id])


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_while_the_manifest_line_is_half_written(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    saved = _run_and_kill(store_path, "torn-line")
    assert not (store_path / "manifest.jsonl").read_bytes().endswith(b"\n")
    store = TrainingStore(store_path)
    assert [r.id for r in store.samples()] == saved
    assert store.damaged_lines == [4]
    _assert_intact(store, saved)
    # The next save starts on a fresh line; the torn fragment stays skipped.
    image = np.random.default_rng(9).integers(0, 65535, (48, 64), dtype=np.uint16)
    labels = {"mitochondria": image > 40000, "membranes": image < 10000}
    new = store.save(image, labels, True, {"seed": 9})
    reopened = TrainingStore(store_path)
    assert [r.id for r in reopened.samples()] == [*saved, new.sample.id]
    assert reopened.damaged_lines == [4]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_at_an_arbitrary_moment_in_a_save_loop(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    saved = _run_and_kill(store_path, "loop", saved_before_kill=5)
    store = TrainingStore(store_path)
    # Every reported save survives; the one in flight may or may not have committed.
    assert len(store.samples()) in (len(saved), len(saved) + 1)
    _assert_intact(store, saved)


def test_truncated_manifest_line_is_tolerated(store: TrainingStore) -> None:
    first = store.save(*make_sample(0), True).sample
    with open(store.path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"op": "add", "key": "0123456789abcdef", "vers')
    reopened = TrainingStore(store.path)
    assert [r.id for r in reopened.samples()] == [first.id]
    assert reopened.damaged_lines == [2]


def test_clean_removes_temporary_left_overs_only(store: TrainingStore) -> None:
    sample = store.save(*make_sample(0), True).sample
    folder = store.path / sample.files["image"]
    (folder.parent / ".tmp-image.tif-deadbeef").write_bytes(b"partial")
    (store.path / ".tmp-store.json-cafe").write_bytes(b"{")
    removed = store.clean()
    assert {p.name for p in removed} == {".tmp-image.tif-deadbeef", ".tmp-store.json-cafe"}
    store.load(sample.id)


def test_concurrent_saves_get_distinct_versions(store: TrainingStore) -> None:
    image, labels = make_sample(0)
    errors: list[BaseException] = []

    def save_variants(offset: int) -> None:
        try:
            for i in range(3):
                variant = {name: mask.copy() for name, mask in labels.items()}
                variant["mitochondria"][0, offset * 3 + i] ^= True
                TrainingStore(store.path).save(image, variant, True, {"source_path": "/same.tif"})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=save_variants, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    history = store.history(store.samples()[0].key)
    assert [r.version for r in history] == list(range(1, 13))


# -- permissions ---------------------------------------------------------------------------


def _attempt_writes(path: Path) -> dict[str, object]:
    """Try every kind of write on a store; report what each raised."""
    outcome: dict[str, object] = {}
    store = TrainingStore(path)
    outcome["readable"] = len(store.samples())
    image = np.zeros((8, 8), np.uint8)
    attempts = {
        "save": lambda: store.save(image, {"mitochondria": image == 0}, True),
        "exclude": lambda: store.exclude(store.samples()[0].id),
        "create": lambda: open_store(path / "nested"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            outcome[name] = "written"
        except StoreError as error:
            outcome[name] = str(error)
    return outcome


def _as_unprivileged_user(function, *args) -> dict[str, object]:
    """Run ``function(*args)`` in a forked child that has dropped root to 'nobody'.

    Root ignores file permissions, so chmod alone proves nothing when the tests
    run as root (as in our containers). Forking keeps the already imported
    modules, so the child needs no access to the interpreter's files.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps(function(*args))
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            payload, status = json.dumps({"child_error": repr(error)}), 1
        os.write(write_end, payload.encode())
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        payload = reader.read()
    os.waitpid(pid, 0)
    return json.loads(payload)


@pytest.mark.skipif(os.name != "posix", reason="permission model differs on Windows")
def test_folder_without_write_permission_is_refused_before_writing() -> None:
    # Not under pytest's tmp_path (mode 0o700): 'nobody' must be able to enter it.
    base = Path(tempfile.mkdtemp(prefix="store-perm-"))
    try:
        base.chmod(0o755)
        store = open_store(base / "store", classes=["mitochondria"])
        image, labels = make_sample(0)
        store.save(image, {"mitochondria": labels["mitochondria"]}, True)
        before = snapshot(base / "store")
        if os.geteuid() == 0:
            # A real denial by the kernel, not a mocked os.access.
            outcome = _as_unprivileged_user(_attempt_writes, base / "store")
        else:
            (base / "store").chmod(0o555)
            outcome = _attempt_writes(base / "store")
        assert "child_error" not in outcome, outcome
        assert outcome["readable"] == 1  # a read-only store can still be read
        for name in ("save", "exclude", "create"):
            assert "cannot write" in str(outcome[name]), outcome
        assert snapshot(base / "store") == before
        assert not (base / "store" / "nested").exists()
    finally:
        (base / "store").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
