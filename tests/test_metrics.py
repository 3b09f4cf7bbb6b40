"""Tests of napari_organelle.metrics against hand-computed cases."""

from __future__ import annotations

import doctest
import math
import time

import numpy as np
import pytest

from napari_organelle import metrics
from napari_organelle.errors import InputError
from napari_organelle.metrics import (
    ClassScores,
    ConfusionCounts,
    MetricAccumulator,
    ObjectCounts,
    confusion_counts,
    match_objects,
    scores_to_dataframe,
    to_instance_labels,
)


def square(shape, top, left, size, value=1, out=None):
    image = np.zeros(shape, dtype=np.int32) if out is None else out
    image[top:top + size, left:left + size] = value
    return image


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0


# --------------------------------------------------------------------------- pixel scores


def test_dice_of_two_overlapping_squares():
    # two 10 x 10 squares shifted by 5 columns share 50 pixels
    truth = square((30, 30), 5, 5, 10)
    prediction = square((30, 30), 5, 10, 10)
    counts = confusion_counts(prediction, truth)
    assert counts == ConfusionCounts(tp=50, fp=50, fn=50, tn=900 - 150)
    assert counts.dice == pytest.approx(0.5)
    assert counts.iou == pytest.approx(1 / 3)
    assert counts.precision == pytest.approx(0.5)
    assert counts.recall == pytest.approx(0.5)
    assert counts.f1 == counts.dice


def test_prediction_inside_truth_is_precise_but_incomplete():
    truth = square((20, 20), 0, 0, 10)       # 100 pixels
    prediction = square((20, 20), 0, 0, 5)   # 25 of them
    counts = confusion_counts(prediction, truth)
    assert (counts.precision, counts.recall) == (1.0, 0.25)
    assert counts.dice == pytest.approx(2 * 25 / (25 + 100))
    assert counts.iou == pytest.approx(0.25)


def test_label_values_count_as_foreground():
    truth = square((10, 10), 0, 0, 4, value=7)
    prediction = square((10, 10), 0, 0, 4, value=3)
    assert confusion_counts(prediction, truth).dice == 1.0


def test_empty_class_is_nan_not_perfect():
    empty = np.zeros((8, 8), np.uint8)
    counts = confusion_counts(empty, empty)
    assert counts == ConfusionCounts(tn=64)
    for score in (counts.dice, counts.iou, counts.precision, counts.recall, counts.f1):
        assert math.isnan(score)
    assert not ClassScores("x", counts).present


def test_missed_class_scores_zero_and_precision_is_undefined():
    truth = square((8, 8), 0, 0, 2)
    missed = confusion_counts(np.zeros_like(truth), truth)
    assert missed.dice == 0.0 and missed.recall == 0.0 and math.isnan(missed.precision)
    hallucinated = confusion_counts(truth, np.zeros_like(truth))
    assert hallucinated.dice == 0.0 and hallucinated.precision == 0.0
    assert math.isnan(hallucinated.recall)


def test_ignore_mask_removes_pixels_from_every_count():
    truth = square((10, 10), 0, 0, 4)              # 16 pixels
    prediction = square((10, 10), 0, 0, 4)
    prediction[8:10, 8:10] = 1                     # 4 false positives...
    ignore = np.zeros((10, 10), bool)
    ignore[7:, 7:] = True                          # ...inside a 9-pixel unannotated corner
    assert confusion_counts(prediction, truth) == ConfusionCounts(tp=16, fp=4, fn=0, tn=80)
    assert confusion_counts(prediction, truth, ignore) == ConfusionCounts(tp=16, fp=0, fn=0, tn=75)


def test_counts_add_up():
    total = ConfusionCounts(1, 2, 3, 4) + ConfusionCounts(10, 20, 30, 40)
    assert total == ConfusionCounts(11, 22, 33, 44)
    assert ObjectCounts(1, 2, 3, 0.5) + ObjectCounts(1, 0, 0, 0.75) == ObjectCounts(2, 2, 3, 1.25)


# --------------------------------------------------------------------------- objects


def test_identical_objects_with_other_ids_all_match():
    truth = square((40, 40), 2, 2, 6, 1)
    square((40, 40), 20, 20, 8, 2, out=truth)
    prediction = np.where(truth == 1, 5, np.where(truth == 2, 9, 0))
    matching = match_objects(prediction, truth)
    assert matching.true_labels.tolist() == [1, 2]
    assert matching.predicted_labels.tolist() == [5, 9]
    assert matching.ious.tolist() == [1.0, 1.0]
    counts = matching.counts
    assert (counts.tp, counts.fp, counts.fn) == (2, 0, 0)
    assert counts.f1 == 1.0 and counts.mean_matched_iou == 1.0 and counts.panoptic_quality == 1.0


def test_split_object_matches_its_larger_part_only():
    truth = np.zeros((10, 20), np.int32)
    truth[0:10, 0:10] = 1                      # 100 pixels
    prediction = np.zeros_like(truth)
    prediction[0:10, 0:6] = 1                  # 60 pixels: IoU 0.6
    prediction[0:10, 6:10] = 2                 # 40 pixels: IoU 0.4
    matching = match_objects(prediction, truth)
    assert matching.predicted_labels.tolist() == [1]
    assert matching.ious == pytest.approx([0.6])
    assert matching.spurious_labels.tolist() == [2]
    counts = matching.counts
    assert (counts.tp, counts.fp, counts.fn) == (1, 1, 0)
    assert counts.f1 == pytest.approx(2 / 3)


def test_merged_objects_match_at_most_one_truth():
    truth = np.zeros((10, 20), np.int32)
    truth[:, 0:10] = 1
    truth[:, 10:20] = 2
    merged = (truth > 0).astype(np.int32) * 4        # one object over both: IoU 0.5 with each
    at_half = match_objects(merged, truth, 0.5).counts
    assert (at_half.tp, at_half.fp, at_half.fn) == (1, 0, 1)  # tie at exactly 0.5: one pair
    above = match_objects(merged, truth, 0.51).counts
    assert (above.tp, above.fp, above.fn) == (0, 1, 2)


def test_low_threshold_pairs_the_most_objects_not_greedily():
    # Along one row: truth B=[0,4) A=[4,13); prediction P=[0,10) Q=[10,16).
    # IoU(A,P)=6/13, IoU(B,P)=4/10, IoU(A,Q)=3/12. Greedy on IoU takes A-P and
    # strands B and Q; the optimal one-to-one pairing is B-P and A-Q.
    truth = np.zeros((1, 20), np.int32)
    truth[0, 0:4] = 2
    truth[0, 4:13] = 1
    prediction = np.zeros_like(truth)
    prediction[0, 0:10] = 7
    prediction[0, 10:16] = 8
    matching = match_objects(prediction, truth, iou_threshold=0.25)
    pairs = dict(zip(matching.true_labels.tolist(), matching.predicted_labels.tolist()))
    assert pairs == {1: 8, 2: 7}
    assert matching.ious == pytest.approx([3 / 12, 4 / 10])
    assert match_objects(prediction, truth, iou_threshold=0.5).counts.tp == 0


def test_masks_are_split_into_connected_components():
    truth = square((20, 20), 1, 1, 4)
    square((20, 20), 10, 10, 4, out=truth)        # a 0/1 mask with two blobs
    prediction = square((20, 20), 1, 1, 4)        # finds only the first
    counts = match_objects(prediction, truth).counts
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)
    assert to_instance_labels(truth.astype(bool)).max() == 2


def test_ignored_objects_are_not_missed():
    truth = square((20, 20), 1, 1, 4, 1)
    square((20, 20), 12, 12, 4, 2, out=truth)
    prediction = np.where(truth == 1, 1, 0)
    ignore = np.zeros(truth.shape, bool)
    ignore[10:, 10:] = True
    assert match_objects(prediction, truth).counts.fn == 1
    assert match_objects(prediction, truth, ignore=ignore).counts.fn == 0


def test_true_objects_are_built_from_annotated_pixels_only():
    truth = square((20, 20), 2, 2, 4)
    square((20, 20), 2, 10, 4, out=truth)
    truth[3, 6:10] = 1                             # a bridge joins the two squares...
    ignore = np.zeros(truth.shape, bool)
    ignore[:, 6:10] = True                         # ...but nobody annotated it
    prediction = square((20, 20), 2, 2, 4)
    square((20, 20), 2, 10, 4, out=prediction)
    assert match_objects(prediction, truth).counts.tp == 0          # one object, two halves
    counts = match_objects(prediction, truth, ignore=ignore).counts
    assert (counts.tp, counts.fp, counts.fn) == (2, 0, 0)
    assert to_instance_labels(truth, ignore=ignore).max() == 2
    assert to_instance_labels(truth).max() == 1


def test_predictions_where_nobody_annotated_are_not_false_positives():
    truth = square((30, 30), 2, 2, 6)
    ignore = np.zeros(truth.shape, bool)
    ignore[:, 15:] = True                          # right half not annotated
    prediction = square((30, 30), 2, 2, 6, 1)      # the true object, found
    square((30, 30), 20, 20, 5, 2, out=prediction)  # wholly in the ignored half
    square((30, 30), 12, 13, 5, 3, out=prediction)  # 2 of 5 columns annotated: mostly ignored
    square((30, 30), 20, 4, 5, 4, out=prediction)  # wholly annotated, wrong: a false positive
    matching = match_objects(prediction, truth, ignore=ignore)
    assert matching.spurious_labels.tolist() == [4]
    assert matching.ignored_labels.tolist() == [2, 3]
    assert (matching.counts.tp, matching.counts.fp, matching.counts.fn) == (1, 1, 0)
    # an object three fifths annotated counts
    prediction[prediction == 3] = 0
    square((30, 30), 12, 12, 5, 3, out=prediction)  # columns 12-16: 3 annotated, 2 ignored
    assert match_objects(prediction, truth, ignore=ignore).spurious_labels.tolist() == [3, 4]
    # without the ignore mask every wrong object is a false positive
    assert match_objects(prediction, truth).counts.fp == 3


def test_a_prediction_mostly_in_ignored_pixels_still_matches_a_true_object():
    truth = np.zeros((20, 20), np.uint8)
    truth[5:9, 7:10] = 1                           # 12 annotated true pixels
    ignore = np.zeros(truth.shape, bool)
    ignore[:, 10:] = True
    prediction = np.zeros_like(truth)
    prediction[5:9, 7:16] = 1                      # 36 pixels, 24 of them ignored
    matching = match_objects(prediction, truth, ignore=ignore)
    assert matching.ious.tolist() == [1.0] and matching.ignored_labels.size == 0
    assert match_objects(prediction, truth).counts.tp == 0          # IoU 12/36 otherwise


def test_accumulator_leaves_ignored_pixels_and_objects_out():
    truth = square((20, 20), 2, 2, 4)
    ignore = np.zeros(truth.shape, bool)
    ignore[10:, :] = True
    prediction = truth.copy()
    prediction[12:, :] = 1                         # everything wrong lies where nobody looked
    accumulator = MetricAccumulator()
    scores = accumulator.add("mito", prediction, truth, ignore, objects=True)
    assert scores.pixels == ConfusionCounts(tp=16, fp=0, fn=0, tn=200 - 16)
    assert (scores.objects.tp, scores.objects.fp, scores.objects.fn) == (1, 0, 0)
    plain = MetricAccumulator().add("mito", prediction, truth, objects=True)
    assert plain.dice < 1 and plain.objects.fp == 1


def test_no_objects_on_either_side():
    empty = np.zeros((5, 5), np.uint8)
    counts = match_objects(empty, empty).counts
    assert counts == ObjectCounts()
    assert math.isnan(counts.f1)
    only_truth = match_objects(empty, square((5, 5), 0, 0, 2)).counts
    assert only_truth.f1 == 0.0 and only_truth.fn == 1


def test_matching_thousands_of_objects_is_fast():
    rng = np.random.default_rng(0)
    truth = np.zeros((600, 600), np.int32)
    ids = np.arange(1, 3601).reshape(60, 60)
    truth[:, :] = np.kron(ids, np.ones((10, 10), np.int32))
    truth[::10, :] = 0                             # 1-pixel gaps between 3600 objects
    truth[:, ::10] = 0
    prediction = np.roll(truth, 1, axis=1)         # every object shifted by one pixel
    prediction[rng.random(prediction.shape) < 0.01] = 0
    started = time.perf_counter()
    counts = match_objects(prediction, truth).counts
    assert time.perf_counter() - started < 2.0
    assert counts.tp == 3600 and counts.fp == 0 and counts.fn == 0
    assert 0.7 < counts.mean_matched_iou < 0.8     # 9x9 squares shifted by 1: IoU 72/90


# ------------------------------------------------------------------- accumulation and tables


def test_accumulator_pools_counts_over_images():
    accumulator = MetricAccumulator()
    truth_a = square((10, 10), 0, 0, 4)                       # 16 pixels, found exactly
    truth_b = square((10, 10), 0, 0, 8)                       # 64 pixels, a quarter found
    per_image = [
        accumulator.add("mito", truth_a, truth_a, objects=True, image="a"),
        accumulator.add("mito", square((10, 10), 0, 0, 4), truth_b, objects=True, image="b"),
    ]
    pooled = accumulator["mito"]
    assert pooled.pixels == per_image[0].pixels + per_image[1].pixels
    assert pooled.pixels == ConfusionCounts(tp=32, fp=0, fn=48, tn=120)
    assert pooled.dice == pytest.approx(64 / 112)            # dataset Dice...
    mean_dice = np.mean([score.dice for score in per_image])
    assert pooled.dice != pytest.approx(mean_dice)          # ...is not the mean of image Dice
    assert pooled.n_images == 2
    assert (pooled.objects.tp, pooled.objects.fp, pooled.objects.fn) == (1, 1, 1)  # IoU 0.25 in b
    assert accumulator.classes == ["mito"]


def test_accumulator_tables():
    accumulator = MetricAccumulator()
    truth = square((10, 10), 2, 2, 4)
    accumulator.add("mito", truth, truth, objects=True, image="one")
    accumulator.add("membranes", truth, truth, image="one")
    accumulator.add("psd", np.zeros_like(truth), np.zeros_like(truth), image="one")
    table = accumulator.to_dataframe()
    assert list(table.index) == ["mito", "membranes", "psd"]
    assert table.loc["mito", "dice"] == 1.0 and table.loc["mito", "object_f1"] == 1.0
    assert math.isnan(table.loc["membranes", "object_f1"])    # semantic: objects not scored
    assert table["object_tp"].isna().tolist() == [False, True, True]
    assert math.isnan(table.loc["psd", "dice"])               # absent class
    assert "n/a" in table.to_string(na_rep="n/a")
    per_image = accumulator.per_image_dataframe()
    assert per_image[["image", "class"]].values.tolist() == [["one", "mito"], ["one", "membranes"],
                                                             ["one", "psd"]]
    assert scores_to_dataframe([]).empty


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("prediction", "truth", "message"),
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), "differ in shape"),
        (np.full((4, 4), 0.3), np.zeros((4, 4)), "non-integer"),
        (np.full((4, 4), -1), np.zeros((4, 4), int), "negative"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "empty"),
        (np.array(["a"]), np.array(["a"]), "mask or label image"),
    ],
)
def test_bad_pixel_input_is_refused(prediction, truth, message):
    with pytest.raises(InputError, match=message):
        confusion_counts(prediction, truth)


def test_bad_object_input_is_refused():
    with pytest.raises(InputError, match="2-D or 3-D"):
        match_objects(np.zeros((2, 2, 2, 2), int), np.zeros((2, 2, 2, 2), int))
    with pytest.raises(InputError, match="threshold"):
        match_objects(np.zeros((4, 4), int), np.zeros((4, 4), int), iou_threshold=0)
    with pytest.raises(InputError, match="ignore mask"):
        confusion_counts(np.zeros((4, 4), int), np.zeros((4, 4), int),
                         ignore=np.zeros((3, 3), bool))
    # whole numbers stored as float are fine
    assert confusion_counts(np.ones((2, 2), np.float32), np.ones((2, 2))).dice == 1.0


# --------------------------------------------------------------------------- real data


@pytest.mark.data
def test_touching_nuclei_need_instance_labels(shared_data):
    import tifffile

    folder = shared_data / "fluo-nuclei-stardist" / "test"
    instances = tifffile.imread(folder / "instances" / "nuclei" / "img2d.tif")
    mask = tifffile.imread(folder / "masks" / "nuclei" / "img2d.tif")
    assert match_objects(instances, instances).counts.f1 == 1.0
    assert confusion_counts(mask, instances).dice == 1.0
    # connected components of the mask merge touching nuclei: fewer objects, lower object F1
    merged = match_objects(mask, instances).counts
    assert merged.tp + merged.fp < merged.tp + merged.fn
    assert merged.f1 < 1.0
