"""Scores of a tracking result against a known truth (simulated or hand-marked).

* :func:`link_scores`: a *link* joins two consecutive detections of one track
  (across a closed gap too). Link accuracy is the share of true links that the
  tracker made (recall); precision the share of its links that are true.
  Detections are matched to true objects by their largest pixel overlap.
* :func:`event_scores`: fissions and fusions are matched one to one to true
  events of the same kind within ``max_frames`` frames and ``max_distance``
  pixels (the cheapest assignment), giving precision, recall and F1.

Examples:
    >>> from napari_organelle.tracking import Event
    >>> truth = [Event("fission", 5, (10.0, 10.0), (1,), (2, 3))]
    >>> found = [Event("fission", 6, (11.0, 10.0), (7,), (8, 9))]
    >>> event_scores(found, truth, max_frames=2, max_distance=5)["fission"]["f1"]
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from .core import Event, TrackingResult


def truth_of_detections(result: TrackingResult, predicted: NDArray, truth: NDArray
                        ) -> NDArray[np.int64]:
    """For each row of ``result.detections``, the true id it overlaps most (0: none)."""
    out = np.zeros(len(result.detections), np.int64)
    for t, rows in result.detections.groupby("t"):
        pred, true = np.asarray(predicted[int(t)]).ravel(), np.asarray(truth[int(t)]).ravel()
        both = (pred > 0) & (true > 0)
        pairs, counts = np.unique(np.stack([pred[both], true[both]]), axis=1,
                                  return_counts=True)
        best: dict[int, tuple[int, int]] = {}
        for (p, g), n in zip(pairs.T, counts):
            if n > best.get(int(p), (0, 0))[1]:
                best[int(p)] = (int(g), int(n))
        out[rows.index.to_numpy()] = [best.get(int(v), (0, 0))[0] for v in rows["label"]]
    return out


def _links(track_ids: NDArray, times: NDArray, objects: NDArray) -> set[tuple[int, int, int, int]]:
    """(t1, object1, t2, object2) for consecutive detections of each track."""
    order = np.lexsort((times, track_ids))
    tid, tt, ob = track_ids[order], times[order], objects[order]
    same = tid[1:] == tid[:-1]
    return {(int(a), int(b), int(c), int(d))
            for a, b, c, d in zip(tt[:-1][same], ob[:-1][same], tt[1:][same], ob[1:][same])}


def link_scores(result: TrackingResult, predicted: NDArray, truth: NDArray,
                true_tracks: NDArray) -> dict[str, float]:
    """Link accuracy (recall) and precision of ``result`` against true tracks.

    Args:
        result: tracking of the label movie ``predicted``.
        predicted: the label movie that was tracked.
        truth: the true label movie (values are true track ids).
        true_tracks: true Tracks data ``(track_id, t, y, x)`` (observed frames).
    """
    objects = truth_of_detections(result, predicted, truth)
    found = _links(result.detections["track_id"].to_numpy(), result.detections["t"].to_numpy(),
                   objects)
    true = _links(true_tracks[:, 0].astype(int), true_tracks[:, 1].astype(int),
                  true_tracks[:, 0].astype(int))
    correct = len(found & true)
    return {"true_links": len(true), "found_links": len(found), "correct_links": correct,
            "link_accuracy": correct / len(true) if true else 1.0,
            "link_precision": correct / len(found) if found else 1.0}


def match_events(found: Sequence[Any], truth: Sequence[Any], max_frames: float,
                 max_distance: float) -> list[tuple[int, int]]:
    """One-to-one matches (found index, true index) within the frame and distance tolerance.

    Items are :class:`Event` or anything with ``t`` and ``position``.
    """
    if not len(found) or not len(truth):
        return []
    cost = np.full((len(found), len(truth)), 1e9)
    for i, f in enumerate(found):
        for j, g in enumerate(truth):
            dt = abs(f.t - g.t)
            dist = float(np.linalg.norm(np.subtract(f.position, g.position)))
            if dt <= max_frames and dist <= max_distance:
                cost[i, j] = dist / max(max_distance, 1e-9) + dt / max(max_frames, 1)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 1e9]


def event_scores(found: Sequence[Event], truth: Sequence[Event], max_frames: float = 2,
                 max_distance: float = 10.0) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per event kind (``fission``, ``fusion``)."""
    scores = {}
    for kind in ("fission", "fusion"):
        f = [e for e in found if e.kind == kind]
        g = [e for e in truth if e.kind == kind]
        tp = len(match_events(f, g, max_frames, max_distance))
        precision = tp / len(f) if f else float(not g)
        recall = tp / len(g) if g else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[kind] = {"true": len(g), "found": len(f), "matched": tp,
                        "precision": precision, "recall": recall, "f1": f1}
    return scores
