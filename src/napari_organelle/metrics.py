"""Segmentation scores: the one implementation behind evaluation, training validation and agreement.

Two families of scores are computed here, both for a prediction against a
reference ("truth") of one class:

Pixel scores
    From the confusion counts (true/false positives/negatives) of the
    foreground pixels: Dice, IoU (Jaccard), precision, recall and F1. Over a
    data set the counts are *summed* and the scores computed once from the sums
    (the "dataset Dice"), so a large image weighs more than a small one and an
    image in which the class is absent does not count as a perfect score.

Object scores
    Objects (connected components of a mask, or the labels of an instance label
    image) are paired one-to-one when their IoU reaches a threshold (0.5 by
    default). Paired objects are true positives, unpaired predicted objects
    false positives and unpaired true objects false negatives; object precision,
    recall and F1 follow, along with the mean IoU of the pairs and the panoptic
    quality. The average precision (:class:`AveragePrecision`) repeats the
    pairing at IoU 0.5, 0.55, ..., 0.95 and averages ``tp / (tp + fp + fn)``
    over them. Label images may be 2-D or 3-D: a volume's objects are matched
    by their 3-D IoU, with the same code.

Not annotated pixels count neither way
    Every score takes an optional ``ignore`` mask of pixels nobody annotated
    (e.g. mask value 255 outside the annotated cell; the data set's
    ``ignore_value``, applied by :mod:`napari_organelle.evaluation`). Ignored
    pixels are left out of all four pixel counts. For objects: true objects
    are built from annotated pixels only (a true mask is split into
    components after the ignored pixels are removed); predicted objects are
    taken as predicted and compared on their annotated part; a predicted
    object with no annotated pixel, or with at least half of its pixels
    ignored, is neither a true nor a false positive unless it matches a
    true object (so a model is not punished for what it finds where nobody
    looked, nor for an object that only grazes the annotated region).

Undefined scores are nan
    Every score is a ratio, and a ratio whose denominator is zero is returned
    as ``nan``, never as 0 or 1. In particular, when both prediction and truth
    are empty the class is *not present*: its Dice is ``nan``, not 1.0. A 1.0
    would reward a model for a class it was never tested on and would inflate
    any mean over classes or images; a 0.0 would punish it for a correct
    "nothing here". Because counts are summed over a data set, ``nan`` only
    appears for a class that is absent from the whole set, which is exactly
    what a table should say ("n/a"). Average per-image scores with
    :func:`numpy.nanmean` if you need them.

Examples:
    >>> import numpy as np
    >>> truth = np.zeros((10, 10), dtype=np.uint8)
    >>> truth[2:6, 2:6] = 1                # 16 pixels
    >>> prediction = np.zeros_like(truth)
    >>> prediction[2:6, 4:8] = 1           # 16 pixels, 8 of them shared
    >>> counts = confusion_counts(prediction, truth)
    >>> counts
    ConfusionCounts(tp=8, fp=8, fn=8, tn=76)
    >>> counts.dice, round(counts.iou, 4)
    (0.5, 0.3333)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "AP_THRESHOLDS",
    "OBJECT_METRICS",
    "PIXEL_METRICS",
    "AveragePrecision",
    "ClassScores",
    "ConfusionCounts",
    "MetricAccumulator",
    "ObjectCounts",
    "ObjectMatching",
    "average_precision",
    "confusion_counts",
    "match_objects",
    "match_objects_at",
    "scores_to_dataframe",
    "to_instance_labels",
]

#: names of the pixel scores, in the order tables show them
PIXEL_METRICS = ("dice", "iou", "precision", "recall", "f1")
#: names of the object scores, in the order tables show them (columns get an ``object_`` prefix)
OBJECT_METRICS = ("precision", "recall", "f1", "mean_matched_iou", "panoptic_quality")
#: IoU thresholds of the average precision: 0.5, 0.55, ..., 0.95
AP_THRESHOLDS = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or nan when the denominator is zero (see the module notes)."""
    return float(numerator) / float(denominator) if denominator else float("nan")


# --------------------------------------------------------------------------- pixel scores


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel confusion counts of one class; add two to pool images.

    Attributes:
        tp: pixels in both prediction and truth.
        fp: pixels predicted but not in the truth.
        fn: pixels in the truth but not predicted.
        tn: pixels in neither (excluding ignored pixels).

    Examples:
        >>> total = (ConfusionCounts(tp=3, fp=1, fn=0, tn=4)
        ...          + ConfusionCounts(tp=1, fp=0, fn=3, tn=4))
        >>> total
        ConfusionCounts(tp=4, fp=1, fn=3, tn=8)
        >>> total.precision, total.recall
        (0.8, 0.5714285714285714)
        >>> import math
        >>> math.isnan(ConfusionCounts(tn=100).dice)   # class not present
        True
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        return ConfusionCounts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def dice(self) -> float:
        """Sørensen–Dice coefficient ``2 tp / (2 tp + fp + fn)``; nan when absent from both."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou(self) -> float:
        """Intersection over union (Jaccard) ``tp / (tp + fp + fn)``; nan when absent from both."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``: the fraction of predicted pixels that are right.

        Nan when nothing is predicted.
        """
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``: the fraction of true pixels found; nan when the truth is empty."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; for pixels this equals :attr:`dice`."""
        return self.dice

    @property
    def n_true(self) -> int:
        """Foreground pixels in the truth."""
        return self.tp + self.fn

    @property
    def n_predicted(self) -> int:
        """Foreground pixels in the prediction."""
        return self.tp + self.fp


def confusion_counts(
    prediction: ArrayLike, truth: ArrayLike, ignore: ArrayLike | None = None
) -> ConfusionCounts:
    """Count the pixel confusion of a predicted mask against the true mask.

    Any nonzero value is foreground, so label images can be passed as they are.
    Arrays of any dimension work (a 3-D volume or a batch of 2-D images alike).

    Args:
        prediction: predicted mask or label image.
        truth: true mask or label image, same shape.
        ignore: optional boolean mask, same shape; pixels where it is True are
            left out of all four counts (e.g. unannotated regions).

    Returns:
        The :class:`ConfusionCounts`.

    Raises:
        InputError: if the shapes differ, an array is empty, or holds values
            that are not integer labels.

    Examples:
        >>> import numpy as np
        >>> truth = np.array([[0, 1, 1, 0]])
        >>> prediction = np.array([[1, 1, 0, 0]])
        >>> confusion_counts(prediction, truth)
        ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
        >>> confusion_counts(prediction, truth, ignore=np.array([[1, 0, 0, 0]], bool))
        ConfusionCounts(tp=1, fp=0, fn=1, tn=1)
    """
    predicted = _as_label_array(prediction, "prediction") > 0
    true = _as_label_array(truth, "truth") > 0
    _check_same_shape(predicted, true, "prediction", "truth")
    if ignore is not None:
        valid = ~_as_ignore_mask(ignore, true.shape)
        predicted = predicted & valid
        true = true & valid
        n_valid = int(np.count_nonzero(valid))
    else:
        n_valid = true.size
    tp = int(np.count_nonzero(predicted & true))
    n_predicted = int(np.count_nonzero(predicted))
    n_true = int(np.count_nonzero(true))
    fp = n_predicted - tp
    fn = n_true - tp
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=n_valid - tp - fp - fn)


# --------------------------------------------------------------------------- object scores


@dataclass(frozen=True)
class ObjectCounts:
    """Object matching counts of one class; add two to pool images.

    Attributes:
        tp: matched pairs (true and predicted object with IoU >= threshold).
        fp: predicted objects without a match.
        fn: true objects without a match.
        matched_iou_sum: sum of the IoU of the matched pairs (kept as a sum so
            that pooled counts give the pooled mean).

    Examples:
        >>> counts = ObjectCounts(tp=3, fp=1, fn=2, matched_iou_sum=2.4)
        >>> counts.precision, counts.recall, round(counts.f1, 4)
        (0.75, 0.6, 0.6667)
        >>> round(counts.mean_matched_iou, 4)
        0.8
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    matched_iou_sum: float = 0.0

    def __add__(self, other: ObjectCounts) -> ObjectCounts:
        if not isinstance(other, ObjectCounts):
            return NotImplemented
        return ObjectCounts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.matched_iou_sum + other.matched_iou_sum,
        )

    @property
    def precision(self) -> float:
        """Fraction of predicted objects that match a true object; nan when none were predicted."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Fraction of true objects that were found; nan when there are none."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; nan when there are no objects on either side."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def mean_matched_iou(self) -> float:
        """Mean IoU of the matched pairs (how well the found objects are outlined); nan if none."""
        return _ratio(self.matched_iou_sum, self.tp)

    @property
    def panoptic_quality(self) -> float:
        """``sum(IoU of pairs) / (tp + fp/2 + fn/2)`` (Kirillov et al. 2019).

        Equals F1 times the mean matched IoU.
        """
        return _ratio(self.matched_iou_sum, self.tp + 0.5 * self.fp + 0.5 * self.fn)


@dataclass(frozen=True)
class ObjectMatching:
    """The one-to-one pairing of predicted and true objects in one image.

    Attributes:
        true_labels: label of each matched true object.
        predicted_labels: label of the predicted object paired with it.
        ious: IoU of each pair (all >= ``iou_threshold``).
        missed_labels: true objects left without a match (false negatives).
        spurious_labels: predicted objects left without a match (false positives).
        iou_threshold: the IoU a pair needed.
        ignored_labels: unmatched predicted objects left out of the counts
            because they lie (at least half) in ignored pixels.
    """

    true_labels: NDArray[np.int64]
    predicted_labels: NDArray[np.int64]
    ious: NDArray[np.float64]
    missed_labels: NDArray[np.int64]
    spurious_labels: NDArray[np.int64]
    iou_threshold: float
    ignored_labels: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def counts(self) -> ObjectCounts:
        """The :class:`ObjectCounts` of this matching."""
        return ObjectCounts(
            tp=len(self.ious),
            fp=len(self.spurious_labels),
            fn=len(self.missed_labels),
            matched_iou_sum=float(np.sum(self.ious)),
        )


def to_instance_labels(image: ArrayLike, *, connectivity: int | None = None, name: str = "labels",
                       ignore: ArrayLike | None = None) -> NDArray[np.integer]:
    """Return an instance label image: masks get their connected components numbered.

    A boolean image, or an integer image whose values are only 0 and 1, is a
    mask: its connected components become objects 1..N. Any other integer image
    is taken to be a label image already and is returned unchanged. (An
    instance image whose single object is labelled 1 is therefore relabelled
    too, which only matters if that object is in several pieces.)

    Args:
        image: mask or label image, 2-D or 3-D.
        connectivity: neighbourhood of a component, as in
            :func:`skimage.measure.label` (1 = faces only; default: full,
            i.e. 8-connected in 2-D, 26-connected in 3-D).
        name: what to call the image in error messages.
        ignore: optional boolean mask of the same shape; these pixels are set
            to 0 first, so a mask's components are built from the other
            pixels only (whether the image is a mask is decided before).

    Raises:
        InputError: if the image is empty, not 2-D/3-D, or holds negative or
            non-integer values.

    Examples:
        >>> import numpy as np
        >>> mask = np.array([[1, 1, 0, 1],
        ...                  [0, 0, 0, 1]], dtype=np.uint8)
        >>> print(to_instance_labels(mask))
        [[1 1 0 2]
         [0 0 0 2]]
    """
    from scipy import ndimage

    labels = _as_label_array(image, name)
    if labels.ndim not in (2, 3):
        raise InputError(f"{name} must be a 2-D or 3-D image, not {labels.ndim}-D {labels.shape}")
    is_mask = labels.dtype == bool or labels.max(initial=0) <= 1
    if ignore is not None:
        labels = np.where(_as_ignore_mask(ignore, labels.shape), 0, labels).astype(labels.dtype)
    if is_mask:
        # As skimage.measure.label (connectivity 1 = faces, default = full), with int32
        # labels: half the memory of its int64 on a volume.
        structure = ndimage.generate_binary_structure(labels.ndim, connectivity or labels.ndim)
        components = np.empty(labels.shape, dtype=np.int32)
        ndimage.label(labels > 0, structure=structure, output=components)
        return components
    return labels


def match_objects(
    prediction: ArrayLike,
    truth: ArrayLike,
    iou_threshold: float = 0.5,
    *,
    ignore: ArrayLike | None = None,
    connectivity: int | None = None,
) -> ObjectMatching:
    """Pair predicted and true objects one-to-one at IoU >= ``iou_threshold``.

    The IoU of every overlapping (true, predicted) pair comes from one
    contingency table of the two label images, computed with a single sort of
    the overlapping pixels, so the cost does not grow with the number of
    objects times the number of pixels. With a threshold above 0.5 an object
    can overlap at most one partner that much, so the pairs are unique; at
    lower thresholds (or ties at exactly 0.5) the pairing is the one that
    matches the most objects, and among those the highest total IoU (optimal
    assignment with :func:`scipy.optimize.linear_sum_assignment`).

    A split object (one true object predicted as two halves) gives at most one
    match and the other half is a false positive, or no match at all when no
    half covers enough; a merge (two true objects predicted as one) likewise.

    Args:
        prediction: predicted label image, or mask (components are labelled).
        truth: true label image or mask, same shape.
        iou_threshold: IoU a pair needs, in (0, 1].
        ignore: optional boolean mask of pixels nobody annotated (see the
            module notes): true objects are built from the other pixels; a
            predicted object is measured on its annotated part, and when it
            matches nothing it is a false positive only if more than half of
            it is annotated (else it is listed in
            :attr:`~ObjectMatching.ignored_labels`).
        connectivity: connectivity used to label masks (see
            :func:`to_instance_labels`).

    Returns:
        The :class:`ObjectMatching`; its :attr:`~ObjectMatching.counts` give the scores.

    Raises:
        InputError: on mismatched shapes, non-label images or a threshold
            outside (0, 1].

    Examples:
        Two true objects; the first is found, the second is split in thirds,
        none of which covers enough of it:

        >>> import numpy as np
        >>> truth = np.zeros((8, 14), dtype=np.int32)
        >>> truth[1:5, 1:5] = 1
        >>> truth[1:5, 6:12] = 2
        >>> prediction = np.zeros_like(truth)
        >>> prediction[1:5, 1:5] = 7
        >>> prediction[1:5, 6:8] = 8
        >>> prediction[1:5, 8:10] = 9
        >>> prediction[1:5, 10:12] = 10
        >>> matching = match_objects(prediction, truth)
        >>> matching.true_labels, matching.predicted_labels, matching.ious
        (array([1]), array([7]), array([1.]))
        >>> matching.missed_labels, matching.spurious_labels
        (array([2]), array([ 8,  9, 10]))
        >>> counts = matching.counts
        >>> counts.tp, counts.fp, counts.fn, round(counts.f1, 3)
        (1, 3, 1, 0.333)
    """
    return match_objects_at(prediction, truth, (iou_threshold,), ignore=ignore,
                            connectivity=connectivity)[0]


def match_objects_at(
    prediction: ArrayLike,
    truth: ArrayLike,
    thresholds: Iterable[float],
    *,
    ignore: ArrayLike | None = None,
    connectivity: int | None = None,
) -> list[ObjectMatching]:
    """:func:`match_objects` at several IoU thresholds, from one contingency table.

    The objects and their overlaps are computed once; only the pairing is
    repeated per threshold (for :func:`average_precision`). Images may be 2-D
    or 3-D: a volume's objects are matched by their 3-D IoU.

    Args:
        prediction: predicted label image, or mask.
        truth: true label image or mask, same shape.
        thresholds: the IoU thresholds, each in (0, 1].
        ignore: not-annotated pixels (see :func:`match_objects`).
        connectivity: connectivity used to label masks.

    Returns:
        One :class:`ObjectMatching` per threshold, in order.

    Examples:
        Two 4 x 4 x 4 cubes; the predicted one is shifted by one voxel, so
        the IoU is 48 / 80 = 0.6:

        >>> import numpy as np
        >>> truth = np.zeros((6, 6, 6), np.uint8)
        >>> truth[1:5, 1:5, 1:5] = 1
        >>> prediction = np.roll(truth, 1, axis=0)
        >>> [m.counts.tp for m in match_objects_at(prediction, truth, (0.5, 0.6, 0.65))]
        [1, 1, 0]
    """
    thresholds = [float(t) for t in thresholds]
    for threshold in thresholds:
        if not 0 < threshold <= 1:
            raise InputError(f"the IoU threshold must be in (0, 1], not {threshold}")
    overlaps = _Overlaps.of(prediction, truth, ignore, connectivity)
    return [overlaps.match(threshold) for threshold in thresholds]


@dataclass(frozen=True)
class _Overlaps:
    """The objects of a prediction and a truth, and the IoU of every overlapping pair."""

    true_ids: NDArray[np.integer]
    predicted_ids: NDArray[np.integer]
    predicted_sizes: NDArray[np.integer]
    pair_true: NDArray[np.int64]
    pair_predicted: NDArray[np.int64]
    pair_ious: NDArray[np.float64]
    whole_ids: NDArray[np.integer] | None
    whole_sizes: NDArray[np.integer] | None

    @classmethod
    def of(cls, prediction: ArrayLike, truth: ArrayLike, ignore: ArrayLike | None,
           connectivity: int | None) -> _Overlaps:
        predicted = to_instance_labels(prediction, connectivity=connectivity, name="prediction")
        _check_same_shape(predicted, _as_label_array(truth, "truth"), "prediction", "truth")
        true = to_instance_labels(truth, connectivity=connectivity, name="truth", ignore=ignore)
        whole_ids = whole_sizes = None
        if ignore is not None:
            # Predicted objects keep the shape the model gave them; only their
            # annotated part is compared (objects wholly in ignored pixels vanish).
            whole = predicted.ravel()
            whole_ids, whole_sizes = np.unique(whole[whole > 0], return_counts=True)
            predicted = np.where(_as_ignore_mask(ignore, true.shape), 0, predicted)

        true_flat = true.ravel()
        predicted_flat = predicted.ravel()
        true_ids, true_sizes = np.unique(true_flat[true_flat > 0], return_counts=True)
        predicted_ids, predicted_sizes = np.unique(predicted_flat[predicted_flat > 0],
                                                   return_counts=True)

        # Contingency table of the overlapping pixels: encode each (true, predicted)
        # pair of compact indices as one integer so that one np.unique counts them.
        overlap = (true_flat > 0) & (predicted_flat > 0)
        true_index = np.searchsorted(true_ids, true_flat[overlap])
        predicted_index = np.searchsorted(predicted_ids, predicted_flat[overlap])
        pair_codes, intersections = np.unique(
            true_index.astype(np.int64) * len(predicted_ids) + predicted_index,
            return_counts=True
        )
        pair_true, pair_predicted = np.divmod(pair_codes, max(len(predicted_ids), 1))
        unions = true_sizes[pair_true] + predicted_sizes[pair_predicted] - intersections
        return cls(true_ids, predicted_ids, predicted_sizes, pair_true, pair_predicted,
                   intersections / unions, whole_ids, whole_sizes)

    def match(self, iou_threshold: float) -> ObjectMatching:
        """The one-to-one pairing at one threshold (see :func:`match_objects`)."""
        true_ids, predicted_ids = self.true_ids, self.predicted_ids
        candidate = self.pair_ious >= iou_threshold
        rows, cols, ious = (self.pair_true[candidate], self.pair_predicted[candidate],
                            self.pair_ious[candidate])
        rows, cols, ious = _one_to_one(rows, cols, ious, len(true_ids), len(predicted_ids))

        matched_true = np.zeros(len(true_ids), dtype=bool)
        matched_true[rows] = True
        matched_predicted = np.zeros(len(predicted_ids), dtype=bool)
        matched_predicted[cols] = True
        spurious = predicted_ids[~matched_predicted]
        ignored = np.zeros(0, dtype=np.int64)
        if self.whole_ids is not None:
            # Unmatched objects mostly (or wholly) in ignored pixels count neither way.
            whole_ids = self.whole_ids
            visible = np.zeros(len(whole_ids), dtype=np.int64)
            visible[np.searchsorted(whole_ids, predicted_ids)] = self.predicted_sizes
            left_out = 2 * visible <= self.whole_sizes
            left_out[np.searchsorted(whole_ids, predicted_ids[matched_predicted])] = False
            ignored = whole_ids[left_out]
            spurious = spurious[~np.isin(spurious, ignored)]
        order = np.argsort(true_ids[rows], kind="stable")
        return ObjectMatching(
            true_labels=true_ids[rows][order].astype(np.int64),
            predicted_labels=predicted_ids[cols][order].astype(np.int64),
            ious=ious[order].astype(np.float64),
            missed_labels=true_ids[~matched_true].astype(np.int64),
            spurious_labels=spurious.astype(np.int64),
            iou_threshold=float(iou_threshold),
            ignored_labels=ignored.astype(np.int64),
        )


@dataclass(frozen=True)
class AveragePrecision:
    """Object counts at each IoU threshold of the average precision; add two to pool images.

    At one threshold the score is ``tp / (tp + fp + fn)`` (the "average
    precision" of the 2018 Data Science Bowl, StarDist and Cellpose: label
    images have no confidence per object to rank, so there is no
    precision-recall curve to integrate); :attr:`value` is its mean over the
    thresholds (0.5, 0.55, ..., 0.95 by default). A threshold at which there
    are no objects on either side is left out of the mean; nan when all are.

    Attributes:
        thresholds: the IoU thresholds.
        counts: the :class:`ObjectCounts` at each.

    Examples:
        >>> ap = AveragePrecision((0.5, 0.75), (ObjectCounts(tp=2, fp=1, fn=1),
        ...                                     ObjectCounts(tp=1, fp=2, fn=2)))
        >>> ap.per_threshold, ap.value
        ((0.5, 0.2), 0.35)
    """

    thresholds: tuple[float, ...] = AP_THRESHOLDS
    counts: tuple[ObjectCounts, ...] = ()

    def __add__(self, other: AveragePrecision) -> AveragePrecision:
        if not isinstance(other, AveragePrecision):
            return NotImplemented
        if not self.counts:
            return other
        if not other.counts:
            return self
        if self.thresholds != other.thresholds:
            raise ValueError("cannot pool average precisions over different IoU thresholds")
        return AveragePrecision(self.thresholds,
                                tuple(a + b for a, b in zip(self.counts, other.counts)))

    @property
    def per_threshold(self) -> tuple[float, ...]:
        """``tp / (tp + fp + fn)`` at each threshold (nan where there are no objects)."""
        return tuple(_ratio(c.tp, c.tp + c.fp + c.fn) for c in self.counts)

    @property
    def value(self) -> float:
        """The mean over the thresholds; nan when no threshold has objects."""
        scores = [score for score in self.per_threshold if score == score]
        return float(np.mean(scores)) if scores else float("nan")


def average_precision(
    prediction: ArrayLike,
    truth: ArrayLike,
    thresholds: Iterable[float] = AP_THRESHOLDS,
    *,
    ignore: ArrayLike | None = None,
    connectivity: int | None = None,
) -> AveragePrecision:
    """The average precision of predicted objects over IoU thresholds (2-D or 3-D).

    Args:
        prediction: predicted label image, or mask.
        truth: true label image or mask, same shape.
        thresholds: the IoU thresholds (default 0.5, 0.55, ..., 0.95).
        ignore: not-annotated pixels (see :func:`match_objects`).
        connectivity: connectivity used to label masks.

    Returns:
        The :class:`AveragePrecision`; its :attr:`~AveragePrecision.value` is the score.

    Examples:
        A cube shifted by one voxel of four (IoU 0.6) matches at 0.5, 0.55
        and 0.6 only:

        >>> import numpy as np
        >>> truth = np.zeros((6, 6, 6), np.uint8)
        >>> truth[1:5, 1:5, 1:5] = 1
        >>> average_precision(np.roll(truth, 1, axis=0), truth).value
        0.3
        >>> average_precision(truth, truth).value
        1.0
    """
    thresholds = tuple(float(t) for t in thresholds)
    matchings = match_objects_at(prediction, truth, thresholds, ignore=ignore,
                                 connectivity=connectivity)
    return AveragePrecision(thresholds, tuple(m.counts for m in matchings))


def _one_to_one(
    rows: NDArray[np.int64], cols: NDArray[np.int64], ious: NDArray[np.float64], n_rows: int,
    n_cols: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Reduce candidate pairs to a one-to-one matching (most pairs, then highest total IoU)."""
    if len(rows) == 0:
        return rows, cols, ious
    row_uses = np.bincount(rows, minlength=n_rows)
    col_uses = np.bincount(cols, minlength=n_cols)
    unique = (row_uses[rows] == 1) & (col_uses[cols] == 1)
    if unique.all():  # always the case for thresholds above 0.5
        return rows, cols, ious
    from scipy import sparse
    from scipy.optimize import linear_sum_assignment  # slow to import; rarely needed

    # Only candidates that share an object with another candidate need solving;
    # gather the objects involved and solve that (small) assignment problem.
    conflict_rows = np.unique(rows[~unique])
    conflict_cols = np.unique(cols[~unique])
    local_row = np.searchsorted(conflict_rows, rows[~unique])
    local_col = np.searchsorted(conflict_cols, cols[~unique])
    # Weight = bonus + IoU with a bonus larger than any total IoU difference, so
    # that the assignment maximises the number of pairs first.
    bonus = float(min(len(conflict_rows), len(conflict_cols)) + 1)
    weights = sparse.coo_matrix(
        (bonus + ious[~unique], (local_row, local_col)),
        shape=(len(conflict_rows), len(conflict_cols)),
    ).toarray()
    chosen_rows, chosen_cols = linear_sum_assignment(weights, maximize=True)
    keep = weights[chosen_rows, chosen_cols] > 0  # drop pairs that were not candidates
    chosen_rows, chosen_cols = chosen_rows[keep], chosen_cols[keep]
    return (
        np.concatenate([rows[unique], conflict_rows[chosen_rows]]),
        np.concatenate([cols[unique], conflict_cols[chosen_cols]]),
        np.concatenate([ious[unique], weights[chosen_rows, chosen_cols] - bonus]),
    )


# ------------------------------------------------------------------- per class, over a data set


@dataclass(frozen=True)
class ClassScores:
    """Pixel (and optionally object) scores of one class, over one image or a whole data set.

    Attributes:
        name: the class.
        pixels: summed pixel confusion counts.
        objects: summed object counts, or None when objects were not scored
            (semantic classes such as membranes).
        n_images: how many images were pooled.
        ap: summed object counts at the IoU thresholds of the average
            precision, or None when not scored.

    Examples:
        >>> scores = ClassScores("mito", ConfusionCounts(tp=8, fp=2, fn=0, tn=90))
        >>> round(scores.dice, 4), scores.object_f1
        (0.8889, nan)
    """

    name: str
    pixels: ConfusionCounts = field(default_factory=ConfusionCounts)
    objects: ObjectCounts | None = None
    n_images: int = 0
    ap: AveragePrecision | None = None

    def __add__(self, other: ClassScores) -> ClassScores:
        if not isinstance(other, ClassScores):
            return NotImplemented
        if self.objects is None and other.objects is None:
            objects = None
        else:
            objects = (self.objects or ObjectCounts()) + (other.objects or ObjectCounts())
        if self.ap is None and other.ap is None:
            ap = None
        else:
            ap = (self.ap or AveragePrecision()) + (other.ap or AveragePrecision())
        return ClassScores(self.name, self.pixels + other.pixels, objects,
                           self.n_images + other.n_images, ap)

    @property
    def present(self) -> bool:
        """Whether the class occurs in the truth or the prediction at all."""
        return self.pixels.tp + self.pixels.fp + self.pixels.fn > 0

    dice = property(lambda self: self.pixels.dice, doc="Pixel Dice (see :class:`ConfusionCounts`).")
    iou = property(lambda self: self.pixels.iou, doc="Pixel IoU.")
    precision = property(lambda self: self.pixels.precision, doc="Pixel precision.")
    recall = property(lambda self: self.pixels.recall, doc="Pixel recall.")
    f1 = property(lambda self: self.pixels.f1, doc="Pixel F1 (equals Dice).")

    @property
    def object_f1(self) -> float:
        """Object F1 at the matching threshold; nan when objects were not scored."""
        return self.objects.f1 if self.objects is not None else float("nan")

    @property
    def object_ap(self) -> float:
        """Object average precision over IoU 0.5-0.95; nan when not scored."""
        return self.ap.value if self.ap is not None else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Flat record of scores and counts (one table row); object columns nan when not scored."""
        record: dict[str, Any] = {"class": self.name}
        record.update({metric: getattr(self.pixels, metric) for metric in PIXEL_METRICS})
        objects = self.objects
        for metric in OBJECT_METRICS:
            record[f"object_{metric}"] = getattr(objects, metric) if objects else float("nan")
        record["object_ap"] = self.object_ap
        record.update(
            tp=self.pixels.tp, fp=self.pixels.fp, fn=self.pixels.fn, tn=self.pixels.tn,
            object_tp=objects.tp if objects else pd.NA,
            object_fp=objects.fp if objects else pd.NA,
            object_fn=objects.fn if objects else pd.NA,
            n_images=self.n_images,
        )
        return record


def scores_to_dataframe(scores: Iterable[ClassScores] | Mapping[str, ClassScores]) -> pd.DataFrame:
    """One row per class: pixel scores, object scores (``object_*``) and the counts behind them.

    Args:
        scores: :class:`ClassScores`, or a mapping whose values are.

    Returns:
        DataFrame indexed by class name; undefined scores are nan (show them
        as "n/a", e.g. ``df.to_string(na_rep="n/a")``).

    Examples:
        >>> counts = ConfusionCounts(tp=1, fp=1, fn=0, tn=2)
        >>> table = scores_to_dataframe([ClassScores("er", counts)])
        >>> table.loc["er", ["dice", "precision", "recall"]].tolist()
        [0.6666666666666666, 0.5, 1.0]
    """
    if isinstance(scores, Mapping):
        scores = scores.values()
    records = [score.as_dict() for score in scores]
    columns = list(ClassScores("").as_dict())
    table = pd.DataFrame.from_records(records, columns=columns).set_index("class")
    for count in ("object_tp", "object_fp", "object_fn"):
        table[count] = table[count].astype("Int64")  # integer counts that may be missing
    return table


class MetricAccumulator:
    """Pool pixel and object counts per class over many (prediction, truth) pairs.

    Feed it one image and class at a time with :meth:`add`; read pooled
    ("dataset") scores with :meth:`scores` or :meth:`to_dataframe` and the
    per-image scores with :meth:`per_image_dataframe`.

    Args:
        iou_threshold: IoU at which objects match.
        connectivity: connectivity for labelling masks into objects.

    Examples:
        >>> import numpy as np
        >>> accumulator = MetricAccumulator()
        >>> truth = np.zeros((6, 6), np.uint8); truth[1:3, 1:3] = 1
        >>> _ = accumulator.add("mito", truth, truth, objects=True, image="a")
        >>> _ = accumulator.add("mito", np.zeros_like(truth), truth, objects=True, image="b")
        >>> scores = accumulator.scores()["mito"]
        >>> scores.pixels, scores.dice
        (ConfusionCounts(tp=4, fp=0, fn=4, tn=64), 0.6666666666666666)
        >>> scores.objects.tp, scores.objects.fn, round(scores.object_f1, 4)
        (1, 1, 0.6667)
    """

    def __init__(self, iou_threshold: float = 0.5, connectivity: int | None = None) -> None:
        if not 0 < iou_threshold <= 1:
            raise InputError(f"the IoU threshold must be in (0, 1], not {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.connectivity = connectivity
        self._totals: dict[str, ClassScores] = {}
        self._per_image: list[tuple[str | None, ClassScores]] = []

    def add(
        self,
        name: str,
        prediction: ArrayLike,
        truth: ArrayLike,
        ignore: ArrayLike | None = None,
        *,
        objects: bool = False,
        image: str | None = None,
    ) -> ClassScores:
        """Score one prediction of class ``name`` and add it to the class totals.

        Args:
            name: class name.
            prediction: predicted mask or label image.
            truth: true mask or label image, same shape.
            ignore: optional boolean mask of pixels nobody annotated; they
                count neither way (see the module notes).
            objects: also match objects (for instance classes): object scores at the
                accumulator's IoU threshold and the average precision over 0.5-0.95.
            image: optional image name for the per-image table.

        Returns:
            The scores of this image alone.
        """
        prediction = np.asarray(prediction)
        truth = np.asarray(truth)
        pixels = confusion_counts(prediction, truth, ignore)
        object_counts = ap = None
        if objects:
            # One contingency table for the threshold and the average precision's ten.
            matchings = match_objects_at(prediction, truth, (self.iou_threshold, *AP_THRESHOLDS),
                                         ignore=ignore, connectivity=self.connectivity)
            object_counts = matchings[0].counts
            ap = AveragePrecision(AP_THRESHOLDS, tuple(m.counts for m in matchings[1:]))
        scores = ClassScores(name, pixels, object_counts, n_images=1, ap=ap)
        self._totals[name] = self._totals[name] + scores if name in self._totals else scores
        self._per_image.append((image, scores))
        return scores

    @property
    def classes(self) -> list[str]:
        """Class names in the order they were first added."""
        return list(self._totals)

    def scores(self) -> dict[str, ClassScores]:
        """Pooled scores per class."""
        return dict(self._totals)

    def __getitem__(self, name: str) -> ClassScores:
        return self._totals[name]

    def __len__(self) -> int:
        return len(self._totals)

    def to_dataframe(self) -> pd.DataFrame:
        """Pooled scores, one row per class (see :func:`scores_to_dataframe`)."""
        return scores_to_dataframe(self._totals)

    def per_image_dataframe(self) -> pd.DataFrame:
        """Scores of each added pair, one row per (image, class)."""
        table = scores_to_dataframe([scores for _, scores in self._per_image]).reset_index()
        table.insert(0, "image", [image for image, _ in self._per_image])
        return table


# --------------------------------------------------------------------------- input checks


def _as_label_array(image: ArrayLike, name: str) -> NDArray:
    """Return ``image`` as a bool or integer array; raise InputError for anything but labels."""
    array = np.asarray(image)
    if array.size == 0:
        raise InputError(f"{name} is empty (shape {array.shape})")
    if array.ndim == 0:
        raise InputError(f"{name} must be an image, not a single value")
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.signedinteger) and array.min() < 0:
            raise InputError(f"{name} has negative values; labels must be 0 (background) "
                             "or positive")
        return array
    if np.issubdtype(array.dtype, np.floating):
        # Labels sometimes arrive as float (e.g. from a float TIFF); accept
        # whole numbers, refuse probabilities, which need a threshold first.
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError(
                f"{name} holds non-integer values ({array.dtype}); pass a mask or label image, "
                "not probabilities (threshold them first)"
            )
        if array.min() < 0:
            raise InputError(f"{name} has negative values; labels must be 0 (background) "
                             "or positive")
        return array.astype(np.int64)
    raise InputError(f"{name} must be a mask or label image, not {array.dtype}")


def _as_ignore_mask(ignore: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    mask = np.asarray(ignore)
    if mask.shape != shape:
        raise InputError(f"the ignore mask has shape {mask.shape} but the images have shape "
                         f"{shape}")
    return mask.astype(bool, copy=False)


def _check_same_shape(first: NDArray, second: NDArray, first_name: str, second_name: str) -> None:
    if first.shape != second.shape:
        raise InputError(
            f"{first_name} and {second_name} differ in shape: {first.shape} vs {second.shape}"
        )
