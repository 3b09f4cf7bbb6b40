"""Export of the training store: nnU-Net v2 raw data sets, TIFF pairs, dataset cards, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_organelle.cli import main
from napari_organelle.errors import Cancelled, InputError
from napari_organelle.progress import Progress, run
from napari_organelle.store import (
    IGNORE_VALUE,
    TrainingStore,
    compose_label_map,
    export_nnunet,
    export_tiff,
    open_store,
)

SHAPE = (40, 48)
CLASSES = ["mitochondria", "boundaries", "membranes"]


def disk(radius: float, center: tuple[int, int] = (20, 24)) -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.fixture
def store(tmp_path: Path) -> TrainingStore:
    """Four samples that exercise overlap, partial review, versions and exclusion.

    * ``full``: mitochondria (a disk) with boundaries (a ring inside it), all
      reviewed; membranes not labelled at all.
    * ``partial``: all three classes, only the top half reviewed; v2 replaces v1.
    * ``excluded``: excluded from training.
    """
    store = open_store(tmp_path / "store", classes=CLASSES)
    image = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE)
    mito = disk(12)
    store.save(
        image,
        {"mitochondria": mito, "boundaries": mito & ~disk(10)},
        True,
        {
            "source_path": "/data/a.tif",
            "plane": (0,),
            "annotator": "ada",
            "model_name": "em",
            "model_version": "1",
        },
        proposals={"mitochondria": disk(11)},
    )
    membranes = np.zeros(SHAPE, bool)
    membranes[:, 5] = True
    partial = {
        "mitochondria": disk(5, (10, 30)),
        "boundaries": np.zeros(SHAPE, bool),
        "membranes": membranes,
    }
    where = {"source_path": "/data/b.tif", "plane": (1,), "annotator": "bob", "pixel_size_nm": 5}
    without_membranes = {**partial, "membranes": np.zeros(SHAPE, bool)}
    store.save(image + 1, without_membranes, [(0, 0, 20, 48)], where)  # v1
    store.save(image + 1, partial, [(0, 0, 20, 48)], where)  # v2
    excluded = store.save(image + 2, {"mitochondria": disk(3)}, True, {"plane": (2,)}).sample
    store.exclude(excluded.id)
    return store


def current(store: TrainingStore) -> dict[str, str]:
    """Sample id by source file of the exported (current, not excluded) samples."""
    return {r.provenance["source_path"]: r.id for r in store.samples()}


# -- label map ----------------------------------------------------------------------------


def test_label_map_precedence_and_unknown_classes() -> None:
    outer = np.array([[1, 1, 0, 0, IGNORE_VALUE, 0]], np.uint8)
    inner = np.array([[1, 0, 0, IGNORE_VALUE, 0, 0]], np.uint8)
    values = {"outer": 1, "inner": 2}
    both = {"outer": outer, "inner": inner}
    inner_first = compose_label_map(both, values, ["inner", "outer"], 3)
    np.testing.assert_array_equal(inner_first, [[2, 1, 0, 3, 3, 0]])
    # Reversed precedence: outer wins the overlap; an unknown *lower* class does not
    # matter where a higher one is foreground.
    outer_first = compose_label_map(both, values, ["outer", "inner"], 3)
    np.testing.assert_array_equal(outer_first, [[1, 1, 0, 3, 3, 0]])
    # A class with no labels in the sample is unknown everywhere: only pixels that a
    # higher class claims keep a label, nothing becomes background.
    np.testing.assert_array_equal(
        compose_label_map({"outer": outer}, values, ["outer", "inner"], 3), [[1, 1, 3, 3, 3, 3]]
    )
    assert compose_label_map(both, values, ["inner", "outer"], 300).dtype == np.uint16


def test_label_map_trusts_foreground_only_against_classes_that_cannot_overlap() -> None:
    outer = np.array([[1, 1, 0]], np.uint8)
    values = {"outer": 1, "inner": 2}
    # "inner" outranks "outer" but has no labels here: if it can overlap "outer",
    # every "outer" pixel might really be "inner".
    for overlapping, expected in [
        (None, [[3, 3, 3]]),
        ({frozenset(("inner", "outer"))}, [[3, 3, 3]]),
        (set(), [[1, 1, 3]]),  # they never overlap: "outer" pixels are safe, background is not
    ]:
        label_map = compose_label_map(
            {"outer": outer}, values, ["inner", "outer"], 3, overlapping=overlapping
        )
        np.testing.assert_array_equal(label_map, expected)


# -- nnU-Net -----------------------------------------------------------------------------


def test_nnunet_export_layout_labels_and_precedence(store: TrainingStore, tmp_path: Path) -> None:
    reports: list[Progress] = []
    work = export_nnunet(store, tmp_path / "raw", name="Test", licence="CC-BY-4.0")
    result = run(work, reports.append)
    assert result.path == tmp_path / "raw" / "Dataset500_Test"
    assert reports[-1].done == reports[-1].total == 2
    ids = current(store)
    spec = json.loads((result.path / "dataset.json").read_text())
    assert spec["labels"] == {
        "background": 0, "mitochondria": 1, "boundaries": 2, "membranes": 3, "ignore": 4
    }
    assert spec["numTraining"] == 2 and spec["file_ending"] == ".tif"
    assert spec["channel_names"] == {"0": "microscopy"}
    assert spec["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    assert spec["licence"] == "CC-BY-4.0"
    # Default precedence: smallest class first, so the ring survives inside the disk.
    order = spec["overlap_precedence"]
    assert order.index("boundaries") < order.index("mitochondria")
    ring = disk(12) & ~disk(10)
    assert spec["overlapping_classes"] == [
        {"classes": ["mitochondria", "boundaries"], "pixels": int(ring.sum())}
    ]
    images = sorted(p.name for p in (result.path / "imagesTr").iterdir())
    assert images == sorted(f"{i}_0000.tif" for i in ids.values())

    full = tifffile.imread(result.path / "labelsTr" / f"{ids['/data/a.tif']}.tif")
    assert full.dtype == np.uint8
    np.testing.assert_array_equal(full[ring], 2)
    np.testing.assert_array_equal(full[disk(10)], 1)
    # Membranes were never labelled in this sample: outside the mitochondria nothing
    # is known to be background, so it must be ignore, not 0. (No sample shows
    # membranes overlapping mitochondria, so the mitochondria keep their label.)
    np.testing.assert_array_equal(full[~disk(12)], 4)

    partial = tifffile.imread(result.path / "labelsTr" / f"{ids['/data/b.tif']}.tif")
    np.testing.assert_array_equal(partial[20:], 4)  # unreviewed half
    assert partial[10, 30] == 1 and partial[0, 5] == 3 and partial[0, 0] == 0
    written = tifffile.imread(result.path / "imagesTr" / f"{ids['/data/b.tif']}_0000.tif")
    np.testing.assert_array_equal(written, store.load(ids["/data/b.tif"]).image)

    card = json.loads((result.path / "dataset_card.json").read_text())
    assert card["licence"] == "CC-BY-4.0" and card["cases"] == 2
    by_class = {c["name"]: c for c in card["classes"]}
    assert by_class["mitochondria"]["foreground"] == disk(12).sum() + disk(5, (10, 30)).sum()
    assert by_class["mitochondria"]["lost_to_precedence"] == ring.sum()  # went to boundaries
    assert card["label_pixels"]["ignore"] == (~disk(12)).sum() + 20 * SHAPE[1]
    assert card["provenance"]["annotators"] == {"ada": 1, "bob": 1}
    assert card["provenance"]["models_corrected"] == {"em 1": 1, "none (drawn from scratch)": 1}
    changed = int((disk(11) != disk(12)).sum())
    assert card["provenance"]["changed_pixels"] == {"mitochondria": changed}
    assert "Licence: CC-BY-4.0" in (result.path / "dataset_card.md").read_text()


def test_nnunet_export_never_labels_what_an_unreviewed_overlapping_class_could_claim(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "store", classes=["mitochondria", "boundaries"])
    image = np.zeros(SHAPE, np.uint8)
    ring = disk(12) & ~disk(10)
    store.save(image, {"mitochondria": disk(12), "boundaries": ring}, True, {"plane": (0,)})
    only_mito = store.save(image + 1, {"mitochondria": disk(12)}, True, {"plane": (1,)}).sample
    result = run(export_nnunet(store, tmp_path / "raw"))
    # Sample 0 shows boundaries inside mitochondria; sample 1 has no boundaries, so
    # any of its mitochondria pixels could be a boundary: none may be taught as
    # mitochondria, and nothing is background -> the sample is skipped, with a reason.
    assert result.cases == 1
    reason = "no pixel can be given a definite label (not labelled in this sample: boundaries)"
    assert result.skipped == ({"sample_id": only_mito.id, "reason": reason},)
    assert "Skipped samples" in (result.path / "dataset_card.md").read_text()


# ~15 s: imports nnunetv2 (torch) here and in the check's spawned worker
def test_nnunet_export_passes_nnunets_own_integrity_check(
    store: TrainingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set nnU-Net's folders so that importing it does not warn about them.
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    verify = pytest.importorskip(
        "nnunetv2.experiment_planning.verify_dataset_integrity",
        reason="nnunetv2 is not installed (pip install nnunetv2, or the 'testing' extra)",
    )
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    result = run(export_nnunet(store, tmp_path / "raw", dataset_id=7, name="Check"))
    verify.verify_dataset_integrity(str(result.path), num_processes=1)  # raises on any problem

    spec = json.loads((result.path / "dataset.json").read_text())
    labels = LabelManager(spec["labels"], regions_class_order=None)
    assert labels.has_ignore_label and labels.ignore_label == 4
    # nnU-Net reads our files back exactly: image as (c, 1, y, x), labels likewise.
    reader = determine_reader_writer_from_dataset_json(spec, verbose=False)()
    case = current(store)["/data/a.tif"]
    image, _ = reader.read_images([str(result.path / "imagesTr" / f"{case}_0000.tif")])
    seg, _ = reader.read_seg(str(result.path / "labelsTr" / f"{case}.tif"))
    assert image.shape == seg.shape == (1, 1, *SHAPE)
    ours = tifffile.imread(result.path / "labelsTr" / f"{case}.tif")
    np.testing.assert_array_equal(seg[0, 0], ours)
    np.testing.assert_array_equal(image[0, 0], store.load(case).image)


def test_nnunet_export_options_and_refusals(store: TrainingStore, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    two_classes = ["mitochondria", "boundaries"]
    first = run(export_nnunet(store, raw, precedence=["mitochondria"], classes=two_classes))
    spec = json.loads((first.path / "dataset.json").read_text())
    assert spec["labels"] == {"background": 0, "mitochondria": 1, "boundaries": 2, "ignore": 3}
    assert spec["overlap_precedence"] == ["mitochondria", "boundaries"]
    case = current(store)["/data/a.tif"]
    # Mitochondria first: the ring is swallowed by the disk, as asked.
    label_map = tifffile.imread(first.path / "labelsTr" / f"{case}.tif")
    np.testing.assert_array_equal(label_map[disk(12)], 1)
    assert run(export_nnunet(store, raw)).path.name == "Dataset501_Organelles"  # next free ID

    with pytest.raises(InputError, match="unique IDs"):
        run(export_nnunet(store, raw, dataset_id=500))
    with pytest.raises(InputError, match="golgi"):
        run(export_nnunet(store, raw, classes=["golgi"]))
    with pytest.raises(InputError, match="not exported"):
        run(export_nnunet(store, raw, classes=["mitochondria"], precedence=["membranes"]))
    with pytest.raises(InputError, match="dataset name"):
        run(export_nnunet(store, raw, name="bad name"))
    with pytest.raises(InputError, match="1 to 999"):
        run(export_nnunet(store, raw, dataset_id=1000))
    names = sorted(p.name for p in raw.iterdir())
    assert names == ["Dataset500_Organelles", "Dataset501_Organelles"]  # refusals left nothing


def test_cancelled_export_leaves_nothing_behind(store: TrainingStore, tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        run(export_nnunet(store, tmp_path / "raw"), should_stop=lambda: True)
    assert list((tmp_path / "raw").iterdir()) == []  # not even the hidden staging folder


def test_empty_store_cannot_be_exported(tmp_path: Path) -> None:
    empty = open_store(tmp_path / "empty", classes=["mitochondria"])
    with pytest.raises(InputError, match="no samples"):
        run(export_tiff(empty, tmp_path / "out"))


# -- TIFF pairs ---------------------------------------------------------------------------


def read_layout(folder: Path, split: str = "train") -> dict[str, dict[str, np.ndarray]]:
    """Read a data set in the ../shared/data layout: {name: {"image": .., <class>: mask}}."""
    spec = json.loads((folder / "dataset.json").read_text())
    cases = {}
    for image_path in sorted((folder / split / "images").glob("*.tif")):
        case = {"image": tifffile.imread(image_path)}
        for name in spec["classes"]:
            mask_path = folder / split / "masks" / name / image_path.name
            if mask_path.exists():
                case[name] = tifffile.imread(mask_path)
        cases[image_path.stem] = case
    return cases


def test_tiff_export_reads_back_in_the_shared_data_layout(store: TrainingStore, tmp_path) -> None:
    result = run(export_tiff(store, tmp_path / "pairs", licence="CC0-1.0"))
    spec = json.loads((result.path / "dataset.json").read_text())
    assert spec["ignore_value"] == 255 and spec["classes"] == CLASSES
    assert spec["images"] == 2 and spec["licence"] == "CC0-1.0"
    assert spec["pixel_size_nm"] is None  # one sample has none recorded: not claimed for all
    cases = read_layout(result.path)
    ids = current(store)
    assert set(cases) == set(ids.values())  # v1 and the excluded sample are not exported

    for case_id, case in cases.items():
        image, labels, ignore, _ = store.load(case_id)
        np.testing.assert_array_equal(case["image"], image)
        assert case["image"].dtype == image.dtype
        for name in CLASSES:
            mask = case[name]
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 255}
            if name in labels:
                np.testing.assert_array_equal(mask == 255, ignore[name])
                np.testing.assert_array_equal(mask == 1, labels[name].astype(bool))
            else:
                np.testing.assert_array_equal(mask, 255)  # never labelled: all unknown
    partial = cases[ids["/data/b.tif"]]
    np.testing.assert_array_equal(partial["mitochondria"][20:], 255)

    card = json.loads((result.path / "dataset_card.json").read_text())
    assert card["format"] == "tiff" and card["ignore"].startswith("value 255")
    samples_per_class = {c["name"]: c["samples"] for c in card["classes"]}
    assert samples_per_class == {"mitochondria": 2, "boundaries": 2, "membranes": 1}
    assert len(card["case_list"]) == 2
    assert "CC0-1.0" in (result.path / "dataset_card.md").read_text()


@pytest.mark.data
def test_tiff_export_layout_matches_the_development_data(
    shared_data: Path, store: TrainingStore, tmp_path: Path
) -> None:
    reference = shared_data / "em-isbi2012-membranes"
    result = run(export_tiff(store, tmp_path / "pairs"))
    ours = json.loads((result.path / "dataset.json").read_text())
    theirs = json.loads((reference / "dataset.json").read_text())
    assert {"classes", "images", "licence", "pixel_size_nm"} <= set(ours) & set(theirs)
    first_reference = next(iter(read_layout(reference).values()))
    assert set(first_reference) == {"image", *theirs["classes"]}
    assert all(set(case) == {"image", *CLASSES} for case in read_layout(result.path).values())


def test_tiff_export_writes_instances(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store", classes=["nuclei"])
    ids = np.zeros(SHAPE, np.uint16)
    ids[2:8, 2:8], ids[20:30, 20:30] = 1, 2
    store.save(np.ones(SHAPE, np.uint8), {}, [(0, 0, 25, 48)], instances={"nuclei": ids})
    result = run(export_tiff(store, tmp_path / "pairs"))
    (case,) = (result.path / "train" / "instances" / "nuclei").iterdir()
    written = tifffile.imread(case)
    assert written[3, 3] == 1 and written[22, 22] == 2 and written[27, 27] == 0  # not reviewed
    assert json.loads((result.path / "dataset.json").read_text())["instance_classes"] == ["nuclei"]


def test_export_refuses_a_non_empty_output_folder(store: TrainingStore, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run(export_tiff(store, out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# -- command line --------------------------------------------------------------------------


def test_cli_exports_both_formats(store: TrainingStore, tmp_path: Path, capsys) -> None:
    common = ["export", "--store", str(store.path)]
    assert main([*common, "--format", "tiff", "--out", str(tmp_path / "pairs"),
                 "--licence", "CC-BY-4.0", "--classes", "mitochondria,membranes", "--quiet"]) == 0
    spec = json.loads((tmp_path / "pairs" / "dataset.json").read_text())
    assert spec["classes"] == ["mitochondria", "membranes"] and spec["licence"] == "CC-BY-4.0"
    assert "exported 2 cases" in capsys.readouterr().out

    assert main([*common, "--format", "nnunet", "--out", str(tmp_path / "raw"),
                 "--dataset-id", "42", "--name", "Cli", "--precedence", "mitochondria"]) == 0
    spec = json.loads((tmp_path / "raw" / "Dataset042_Cli" / "dataset.json").read_text())
    assert spec["overlap_precedence"][0] == "mitochondria" and spec["numTraining"] == 2
    assert "[2/2]" in capsys.readouterr().err


def test_cli_reports_user_errors_without_traceback(tmp_path: Path, capsys) -> None:
    code = main(["export", "--store", str(tmp_path / "nowhere"), "--format", "tiff",
                 "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no training store" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "nowhere").exists()


def test_cli_help_lists_the_options(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for option in ("--store", "--format", "--out", "--dataset-id", "--name", "--licence"):
        assert option in text
    assert os.sep in text or "training-store" in text  # the default store path is shown
