"""3-D instances and 3-D scores: volume mode of the core, metrics, evaluation and the CLI.

Synthetic volumes with known objects (tubes through the planes, an oblique tube,
balls), the :class:`ThresholdNet` stand-in network of ``test_inference`` so that
the segmentation's answer is known in advance, and tiny data sets in tmp_path.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_organelle.cli import main
from napari_organelle.errors import InputError
from napari_organelle.evaluation import evaluate_dataset, model_predictor
from napari_organelle.inference import segment
from napari_organelle.metrics import (
    AP_THRESHOLDS,
    MetricAccumulator,
    average_precision,
    match_objects,
)
from napari_organelle.volume import (
    ZConsensus,
    label_volume,
    min_object_voxels,
    read_z_step_nm,
    write_volume_tiff,
    z_position,
)

from .test_inference import threshold_model

SHAPE = (12, 80, 96)


def tubes_and_blobs(shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, int]:
    """A boolean volume with three straight tubes through every plane, an oblique tube
    (one pixel further in X per plane), and two balls in different planes: 6 objects."""
    depth, height, width = shape
    zz, yy, xx = np.mgrid[:depth, :height, :width]
    volume = np.zeros(shape, bool)
    for cy, cx in ((15, 15), (15, 45), (60, 15)):
        volume |= (yy - cy) ** 2 + (xx - cx) ** 2 < 6 ** 2
    volume |= (yy - 40) ** 2 + (xx - (30 + 2 * zz)) ** 2 < 5 ** 2           # oblique
    volume |= (zz - 3) ** 2 + (yy - 62) ** 2 + (xx - 70) ** 2 < 5 ** 2      # ball low
    volume |= (zz - 8) ** 2 + (yy - 25) ** 2 + (xx - 80) ** 2 < 5 ** 2      # ball high
    return volume, 6


def as_image(volume: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint16 image of a mask: bright objects on a noisy background (for ThresholdNet)."""
    noise = np.random.default_rng(seed).integers(0, 50, volume.shape)
    return (volume * 1000 + noise).astype(np.uint16)


# --------------------------------------------------------------------------- labelling


def test_tubes_and_blobs_become_the_right_number_of_3d_objects():
    volume, expected = tubes_and_blobs()
    labels = label_volume(volume)
    assert labels.shape == volume.shape and labels.dtype == np.uint16
    assert labels.max() == expected
    np.testing.assert_array_equal(labels > 0, volume)
    # every tube keeps one id through all its planes
    for cy, cx in ((15, 15), (15, 45), (60, 15)):
        assert len(set(labels[:, cy, cx].tolist())) == 1


def test_the_core_links_objects_across_z_in_volume_mode():
    volume, expected = tubes_and_blobs()
    image = as_image(volume)
    model = threshold_model()
    plane_by_plane = segment(image, model, tile_size=64)
    in_3d = segment(image, model, tile_size=64, volume=True)
    automatic = segment(image, model, tile_size=64, axes="ZYX")
    time_lapse = segment(image, model, tile_size=64, axes="TYX")

    assert plane_by_plane.settings["volume"] is False
    assert plane_by_plane.object_counts()["mitochondria"] > 5 * expected
    assert in_3d.object_counts()["mitochondria"] == expected
    assert in_3d.settings["volume"] is True and in_3d.settings["z_anisotropy"] == 1.0
    np.testing.assert_array_equal(in_3d.labels["mitochondria"] > 0, volume)
    np.testing.assert_array_equal(in_3d.labels["er"], volume)      # the semantic class: 3-D mask
    np.testing.assert_array_equal(automatic.labels["mitochondria"], in_3d.labels["mitochondria"])
    assert time_lapse.settings["volume"] is False


def test_a_time_lapse_of_stacks_is_labelled_one_stack_at_a_time():
    volume, expected = tubes_and_blobs((6, 80, 96))
    image = np.stack([as_image(volume, seed=0), as_image(volume, seed=1)])   # T, Z, Y, X
    result = segment(image, threshold_model(), tile_size=64, axes="TZYX")
    labels = result.labels["mitochondria"]
    assert labels.shape == image.shape
    first, second = (set(np.unique(stack)) - {0} for stack in labels)
    assert len(first) == len(second) == expected
    assert not first & second                              # ids unique across time points


def test_volume_mode_refuses_axes_without_z_and_notes_2d_images():
    model = threshold_model()
    image = as_image(tubes_and_blobs()[0])
    with pytest.raises(InputError, match="no Z axis"):
        segment(image, model, tile_size=64, volume=True, axes="TYX")
    with pytest.raises(InputError, match="do not fit"):
        segment(image, model, tile_size=64, axes="YX")
    with pytest.raises(InputError, match="anisotropy"):
        segment(image, model, tile_size=64, volume=True, z_anisotropy=0)
    flat = segment(image[0], model, tile_size=64, volume=True)
    assert flat.settings["volume"] is False
    assert any("2-D image" in note for note in flat.notes)


def two_balls_side_by_side(anisotropy: int, radius: float = 10, distance: float = 19
                           ) -> np.ndarray:
    """Two balls of ``radius`` px whose centres are ``distance`` px apart in X (a neck
    between them), sampled every ``anisotropy`` px in Z."""
    zs = np.arange(-radius - 2, radius + 3, anisotropy)
    ys = np.arange(-radius - 2, radius + 3)
    xs = np.arange(-radius - 2, distance + radius + 3)
    z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
    return ((z ** 2 + y ** 2 + x ** 2 < radius ** 2)
            | (z ** 2 + y ** 2 + (x - distance) ** 2 < radius ** 2))


def test_touching_objects_are_split_in_physical_units():
    # sections 4 px thick: measured in physical units the neck is narrow, and the two
    # balls are two objects; taken as cubic voxels they look flat and stay one.
    balls = two_balls_side_by_side(anisotropy=4)
    assert label_volume(balls, anisotropy=4).max() == 2
    assert label_volume(balls, anisotropy=1).max() == 1
    assert label_volume(two_balls_side_by_side(anisotropy=1), anisotropy=1).max() == 2
    assert label_volume(balls, anisotropy=4, split_touching=False).max() == 1


def test_anisotropy_sets_the_smallest_object_and_the_consensus_weights():
    assert min_object_voxels(100, anisotropy=10) == pytest.approx(min_object_voxels(100) / 10,
                                                                  abs=1)
    speck = np.zeros((5, 30, 30), bool)
    speck[2, 10:14, 10:14] = True                           # 16 voxels in one plane
    assert label_volume(speck, min_size=min_object_voxels(16)).max() == 0
    assert label_volume(speck, min_size=min_object_voxels(16, anisotropy=10)).max() == 1
    planes = [np.full((1, 2, 2), value, np.uint8) for value in (0, 255, 0)]
    for anisotropy, centre in ((1.0, 115), (10.0, 255)):
        smoother = ZConsensus(anisotropy)
        smoother.push(0, planes[0])
        smoother.push(1, planes[1])
        (z, smoothed), = smoother.push(2, planes[2])
        assert z == 1 and smoothed[0, 0, 0] == centre


def test_z_consensus_fills_a_plane_the_model_missed_on_isotropic_data_only():
    volume, expected = tubes_and_blobs()
    image = as_image(volume)
    image[5, :30, :30] = 20                                  # one tube is missing in plane 5
    model = threshold_model()
    plain = segment(image, model, tile_size=64, volume=True)
    smoothed = segment(image, model, tile_size=64, volume=True, z_consensus=True)
    thick = segment(image, model, tile_size=64, volume=True, z_consensus=True, z_anisotropy=10)

    assert plain.labels["er"][5, 15, 15] == 0
    assert smoothed.labels["er"][5, 15, 15] == 1 and smoothed.settings["z_consensus"] is True
    assert thick.labels["er"][5, 15, 15] == 0                # neighbours 10 px away: no weight
    for result in (plain, smoothed):                          # one object either way (gap closed)
        assert result.object_counts()["mitochondria"] == expected
    note = segment(image, model, tile_size=64, z_consensus=True).notes
    assert any("volume mode only" in line for line in note)


def test_gap_closing_links_objects_across_one_missing_plane_only():
    volume, expected = tubes_and_blobs()
    one_gap = volume.copy()
    one_gap[6] = False
    labels = label_volume(one_gap)
    assert labels.max() == expected                          # the tubes keep one id
    assert not labels[6].any()                               # and the gap is not painted
    assert label_volume(one_gap, close_gaps=False).max() == 2 * expected   # all cross plane 6
    two_gaps = volume.copy()
    two_gaps[5:7] = False
    assert label_volume(two_gaps).max() == 2 * expected

    # the same through the core: a blank plane in the stack
    image = as_image(volume)
    image[6] = 7
    result = segment(image, threshold_model(), tile_size=64, volume=True)
    assert result.object_counts()["mitochondria"] == expected
    assert "1 blank plane(s) were left unlabelled" in result.notes


# --------------------------------------------------------------------------- memory


def traced_peak(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("volume", [False, True], ids=["plane-by-plane", "volume"])
def test_no_float_array_of_the_volume_is_made(volume):
    stack = as_image(np.repeat(tubes_and_blobs((1, 128, 128))[0], 40, axis=0))
    model = threshold_model()
    segment(stack[:2], model, tile_size=64)                  # warm up (imports, caches)
    voxels = stack.size
    outputs = 3 * voxels                                     # uint16 objects + uint8 mask
    peak = traced_peak(lambda: segment(stack, model, tile_size=64, volume=volume))
    extra = peak - outputs
    if volume:
        # the instance mask (1 byte) and labelling it (int32 labels, then uint16: about
        # 10 bytes a voxel at the peak), but no float volume per class
        assert extra < 12 * voxels, extra / voxels
    else:
        assert extra < 1 * voxels, extra / voxels            # a float32 volume is 4 bytes a voxel


# --------------------------------------------------------------------------- 3-D scores


def test_3d_scores_of_truth_against_itself_are_perfect():
    truth = label_volume(tubes_and_blobs()[0])
    matching = match_objects(truth, truth)
    assert matching.counts.tp == 6 and matching.counts.f1 == 1.0
    ap = average_precision(truth, truth)
    assert ap.thresholds == AP_THRESHOLDS and ap.value == 1.0
    scores = MetricAccumulator().add("mito", truth, truth, objects=True)
    assert scores.object_f1 == 1.0 and scores.object_ap == 1.0 and scores.dice == 1.0


def test_3d_scores_of_a_shifted_copy_have_known_values():
    truth = np.zeros((16, 16, 16), np.uint16)
    truth[2:12, 2:12, 2:12] = 1                              # a 10-voxel cube
    shifted = np.roll(truth, 1, axis=0)                      # one plane up: IoU 900 / 1100
    matching = match_objects(shifted, truth)
    assert matching.ious.tolist() == [pytest.approx(900 / 1100)]
    ap = average_precision(shifted, truth)
    # 3-D IoU 0.818: matched at 0.5 ... 0.8 (7 of the 10 thresholds)
    assert ap.per_threshold == (1.0,) * 7 + (0.0,) * 3
    assert ap.value == pytest.approx(0.7)
    # plane by plane the same shift looks perfect except for the end planes
    two_d = MetricAccumulator()
    for z in range(16):
        two_d.add("mito", shifted[z], truth[z], objects=True)
    assert two_d["mito"].objects.tp == 9
    # pooled over two volumes, per threshold
    both = MetricAccumulator()
    both.add("mito", shifted, truth, objects=True)
    both.add("mito", truth, truth, objects=True)
    # pooled per threshold: 2 of 2 matched up to 0.8, then 1 tp, 1 fp, 1 fn (1/3)
    assert both["mito"].object_ap == pytest.approx((7 * 1.0 + 3 / 3) / 10)
    assert both.to_dataframe().loc["mito", "object_ap"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- evaluate


def write_volume_dataset(root: Path, volume: np.ndarray, *, z_step_nm: float | None = 5.0
                         ) -> Path:
    """One volume as consecutive slices z00..zNN in the shared layout."""
    info = {"classes": ["mitochondria"], "pixel_size_nm": [5, 5],
            "volume": "test/images are consecutive slices of one volume"}
    if z_step_nm:
        info["z_step_nm"] = z_step_nm
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(info))
    for folder in ("test/images", "test/masks/mitochondria"):
        (root / folder).mkdir(parents=True)
    for z, plane in enumerate(volume):
        tifffile.imwrite(root / "test/images" / f"z{z:02d}.tif", as_image(plane[None], z)[0])
        tifffile.imwrite(root / "test/masks/mitochondria" / f"z{z:02d}.tif",
                         plane.astype(np.uint8))
    return root


def test_evaluate_scores_a_volume_data_set_in_3d(tmp_path):
    volume, expected = tubes_and_blobs()
    dataset = write_volume_dataset(tmp_path / "vol", volume)
    model = threshold_model()
    classes = {"mitochondria": "instance", "er": "semantic"}

    slices = evaluate_dataset(dataset, "test", model_predictor(model, classes=["mitochondria"],
                                                               tile_size=64),
                              model_classes=classes)
    in_3d = evaluate_dataset(dataset, "test",
                             model_predictor(model, classes=["mitochondria"], tile_size=64,
                                             volume=True, z_step_nm=5.0),
                             model_classes=classes, volume=True)

    flat, deep = slices.scores["mitochondria"], in_3d.scores["mitochondria"]
    assert flat.n_images == len(volume) and flat.objects.tp > 5 * expected
    assert any("--volume scores it in 3-D" in note for note in slices.notes)
    assert deep.n_images == 1 and in_3d.volume and in_3d.z_step_nm == 5.0
    assert (deep.objects.tp, deep.objects.fp, deep.objects.fn) == (expected, 0, 0)
    assert deep.object_ap == 1.0
    assert deep.pixels == flat.pixels                        # the same voxels either way
    assert in_3d.per_image["image"].tolist() == ["z00.tif..z11.tif (12 slices)"]
    report = in_3d.to_dict()
    assert report["volume"] is True and report["classes"]["mitochondria"]["object_ap"] == 1.0


def test_evaluate_volume_mode_needs_slices_of_one_shape(tmp_path):
    dataset = write_volume_dataset(tmp_path / "vol", tubes_and_blobs((3, 40, 40))[0])
    tifffile.imwrite(dataset / "test/images/z03.tif", np.zeros((20, 20), np.uint8))
    with pytest.raises(InputError, match="slices of one shape"):
        evaluate_dataset(dataset, "test", lambda image, nm: {}, volume=True,
                         model_classes={"mitochondria": "instance"})


def test_evaluate_command_volume_option(tmp_path, capsys, monkeypatch):
    import napari_organelle.models

    volume, expected = tubes_and_blobs((6, 80, 96))
    dataset = write_volume_dataset(tmp_path / "vol", volume, z_step_nm=10.0)
    model = threshold_model()
    monkeypatch.setattr(napari_organelle.models, "load_model", lambda name: model)
    report = tmp_path / "scores.json"
    assert main(["evaluate", str(dataset), "--model", "threshold", "--volume", "--quiet",
                 "--tile", "64", "--threads", "1", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "(one volume, z step 10 nm" in printed and "object AP" in printed
    saved = json.loads(report.read_text())
    assert saved["volume"] is True and saved["z_step_nm"] == 10.0
    assert saved["classes"]["mitochondria"]["object_tp"] == expected
    assert main(["evaluate", str(dataset), "--model", "threshold", "--z-consensus"]) == 1
    assert "needs --volume" in capsys.readouterr().err


# --------------------------------------------------------------------------- files and CLI


def test_z_position_and_volume_tiffs(tmp_path):
    assert z_position("ZCYX", 1) == 0 and z_position("TZYX", 2) == 1
    assert z_position("YXS", 0) is None and z_position(None, 0) is None
    labels = np.zeros((3, 16, 16), np.uint32)
    labels[1, 2:5, 2:5] = 70_000                             # uint32: written as OME-TIFF
    path = write_volume_tiff(tmp_path / "big.tif", labels, pixel_size_nm=4.0, z_step_nm=45.0)
    assert read_z_step_nm(path) == 45.0
    np.testing.assert_array_equal(tifffile.imread(path), labels)
    assert read_z_step_nm(tmp_path / "none.png") is None


def test_segment_command_writes_3d_labels_with_the_z_step(tmp_path, tiny_em_model, capsys):
    stack = as_image(tubes_and_blobs((4, 64, 64))[0])
    image = tmp_path / "stack.tif"
    tifffile.imwrite(image, stack, imagej=True, resolution=(1 / 0.008, 1 / 0.008),
                     metadata={"axes": "ZYX", "spacing": 0.04, "unit": "um"})
    out = tmp_path / "out"
    assert main(["segment", str(image), "--model", str(tiny_em_model), "--out", str(out),
                 "--tile", "64", "--threads", "1", "--quiet"]) == 0    # 3-D by default for Z
    summary = json.loads((out / "stack" / "summary.json").read_text())
    assert summary["settings"]["volume"] is True and summary["z_step_nm"] == 40.0
    assert summary["settings"]["z_anisotropy"] == pytest.approx(5.0)
    mitochondria = out / "stack" / "mitochondria.tif"
    assert tifffile.imread(mitochondria).shape == stack.shape
    assert read_z_step_nm(mitochondria) == 40.0
    assert main(["segment", str(image), "--model", str(tiny_em_model), "--out", str(out),
                 "--tile", "64", "--no-3d", "--quiet"]) == 0
    summary = json.loads((out / "stack" / "summary.json").read_text())
    assert summary["settings"]["volume"] is False and "z_step_nm" not in summary
    capsys.readouterr()
