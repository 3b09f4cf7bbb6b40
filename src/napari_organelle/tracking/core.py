"""Link instance labels frame to frame, close gaps, and find fission and fusion.

Why an overlap-based assignment of our own, not laptrack's ``OverLapTrack``:
both solve the same linear assignment problem (Jaqaman et al. 2008: link,
no-link alternatives, gap closing, splitting and merging) on label overlaps,
but ``OverLapTrack`` evaluates its cost with a Python callable over *every*
pair of objects in consecutive frames (``scipy.spatial.distance.cdist`` with a
callable), which is quadratic in the number of objects in Python calls. Here
the overlaps come from one ``np.unique`` over the pixels of two frames (only
pairs that touch exist), the centroid-distance candidates from a k-d tree, and
the assignment from ``scipy.optimize.linear_sum_assignment`` on the augmented
(link / no-link) matrix, so a 512 x 512 x 100-frame movie with ~150 objects
per frame is tracked in seconds (``benchmarks/dynamics.py``). Fission and
fusion are read from the overlaps that the one-to-one links leave: an object
that appears (no link from the previous frame) and lies mostly on an object
that continues is its sibling (fission); an object that ends and lies mostly on
an object of the next frame has fused into it. Positions of events are the
midpoint of the closest pixels of the two daughters (fission: the cut) or the
two parents (fusion: the contact), which is where a biologist marks the site.

Conventions (those of napari's Tracks layer): a track is an unbranched
segment; at a fission the parent track ends and each daughter starts a new
track, at a fusion the parent tracks end and the fused object starts a new
one; ``graph`` maps each child track to its parent tracks.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ..errors import InputError
from ..progress import Progress, run

#: cost of leaving an object without a link (overlap links cost 0-1, distance links 1-2)
NO_LINK_COST = 1.05


@dataclass(frozen=True)
class Event:
    """A fission or fusion.

    Attributes:
        kind: ``"fission"`` (one object becomes several) or ``"fusion"``.
        t: the first frame after the event (the daughters', or the fused object's).
        position: where it happened, in pixels: ``(y, x)`` or ``(z, y, x)``.
        parents: track ids before the event.
        children: track ids after it.
    """

    kind: str
    t: int
    position: tuple[float, ...]
    parents: tuple[int, ...]
    children: tuple[int, ...]


@dataclass
class TrackingResult:
    """Tracks, events and tables of one time-lapse.

    Attributes:
        tracks: napari Tracks layer data, ``(track_id, t, [z,] y, x)`` in pixels.
        graph: napari Tracks graph, child track id -> parent track ids.
        events: the fissions and fusions, in time order.
        detections: one row per object and frame: ``t, label, track_id``, the
            centroid in pixels, ``area`` and ``length`` (major axis) in ``unit``
            (the pieces of an undone transient cut are two rows of one track;
            ``tracks`` and ``track_table`` merge them).
        track_table: one row per track: start, end, lifetime, path length,
            net displacement, mean speed, mean area and length, parents, children.
        event_table: one row per event: kind, t, position, parents, children.
        scale: size of a pixel along each spatial axis, in ``unit``.
        unit: unit of lengths (``"px"`` when no scale was given).
        frame_interval: time between frames, in ``time_unit``.
        time_unit: ``"frame"`` when no frame interval was given.
        notes: remarks for the user (e.g. masks labelled per frame).
    """

    tracks: NDArray[np.float64]
    graph: dict[int, list[int]]
    events: list[Event]
    detections: pd.DataFrame
    track_table: pd.DataFrame
    event_table: pd.DataFrame
    scale: tuple[float, ...]
    unit: str = "px"
    frame_interval: float = 1.0
    time_unit: str = "frame"
    notes: list[str] = field(default_factory=list)

    @property
    def event_points(self) -> NDArray[np.float64]:
        """napari Points layer data of the events: ``(t, [z,] y, x)`` in pixels."""
        ndim = self.tracks.shape[1] - 2 if len(self.tracks) else len(self.scale)
        if not self.events:
            return np.zeros((0, 1 + ndim))
        return np.array([(event.t, *event.position) for event in self.events], float)

    @property
    def event_kinds(self) -> list[str]:
        """The kind of each event, in the order of :attr:`event_points`."""
        return [event.kind for event in self.events]


@dataclass
class _Frame:
    """The objects of one frame: label values, sizes, centroids, pixel index."""

    ids: NDArray[np.int64]
    area_px: NDArray[np.float64]  # pixels (voxels)
    centroid: NDArray[np.float64]  # pixels
    length: NDArray[np.float64]  # in the physical unit
    index: NDArray[np.int32]  # flat: object index of each pixel, -1 for background
    shape: tuple[int, ...]


def track(labels: Any, **options: Any) -> TrackingResult:
    """Track a label time-lapse; the options are those of :func:`track_iter`.

    Examples:
        >>> movie = np.zeros((4, 10, 10), np.uint8)
        >>> for t in range(4):
        ...     movie[t, 2:5, 1 + t:4 + t] = 7 + t   # one object moving right
        >>> result = track(movie)
        >>> result.tracks[:, :2].tolist()
        [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0]]
        >>> float(result.track_table["displacement"][0])
        3.0
    """
    return run(track_iter(labels, **options))


def track_iter(
    labels: Any,
    *,
    max_distance: float = 10.0,
    max_gap: int = 2,
    min_overlap: float = 0.2,
    transient: int = 2,
    min_event_area: float = 0.0,
    min_child_frames: int = 2,
    scale: float | Sequence[float] | None = None,
    unit: str | None = None,
    frame_interval: float | None = None,
    time_unit: str = "s",
) -> Generator[Progress, None, TrackingResult]:
    """Link the objects of a label time-lapse, yielding progress; returns the result.

    Args:
        labels: integer labels ``(T, Y, X)`` or ``(T, Z, Y, X)`` (0 is background;
            ids need not agree between frames). Boolean masks are labelled per frame.
        max_distance: objects that do not overlap are linked when their centroids
            are at most this far apart (pixels along Y/X; Z is scaled by the
            anisotropy of ``scale``). Gap closing allows ``max_distance *
            sqrt(frames)``.
        max_gap: frames an object may be missing (0: no gap closing).
        min_overlap: an appearing (ending) object is a daughter (has fused) when
            it shares at least this part of the smaller of itself and a
            continuing object of the previous (next) frame.
        transient: a fission whose two daughters fuse back together within this
            many frames is taken for a segmentation cut and undone (the pieces
            stay one track; both events are dropped). 0 keeps every event.
        min_event_area: events in which an object smaller than this many pixels
            (voxels) takes part are dropped (segmentation fragments): the
            largest daughter continues the parent's track (fission), the fused
            object continues the largest parent's (fusion).
        min_child_frames: likewise for events whose new tracks last fewer frames
            than this (unless they reach the last frame).
        scale: pixel size per spatial axis (one value for all) for the tables.
        unit: unit of ``scale`` (default ``"um"`` with a scale, else ``"px"``).
        frame_interval: time between frames, for lifetimes and speeds.
        time_unit: unit of ``frame_interval``.

    Raises:
        InputError: not 3-D/4-D, float or negative labels, fewer than two frames,
            or no object in any frame.
    """
    movie, notes = _check_labels(labels)
    n_frames, spatial = movie.shape[0], movie.shape[1:]
    pixel = _spatial_scale(scale, len(spatial))
    iso = np.asarray(pixel) / pixel[-1]  # distances in Y/X pixels, Z scaled
    frames: list[_Frame] = []
    track_of: list[NDArray[np.int64]] = []
    graph: dict[int, list[int]] = {}
    events: list[Event] = []
    next_id = 1
    previous: _Frame | None = None
    for t in range(n_frames):
        current = _measure_frame(np.asarray(movie[t]), pixel)
        ids = np.zeros(len(current.ids), np.int64)
        if previous is None or not len(previous.ids):
            ids[:] = np.arange(next_id, next_id + len(ids))
            next_id += len(ids)
        else:
            next_id = _link_step(previous, current, track_of[-1], ids, next_id, graph, events,
                                 t, max_distance, min_overlap, iso)
        frames.append(_slim(current))
        track_of.append(ids)
        previous = current
        yield Progress(t + 1, n_frames + 1, f"linked frame {t + 1} of {n_frames}")
    if not any(len(frame.ids) for frame in frames):
        raise InputError("the movie has no objects in any frame: nothing to track")
    detections = _detections(frames, track_of, len(spatial), pixel)
    if max_gap > 0:
        detections, graph, events = _close_gaps(detections, graph, events, max_gap,
                                                max_distance, iso)
    if transient > 0:
        detections, graph, events = _undo_transient_cuts(detections, graph, events, transient)
    if min_event_area > 0 or min_child_frames > 1:
        detections, graph, events = _drop_weak_events(
            detections, graph, events, min_event_area * float(np.prod(pixel)), min_child_frames,
            n_frames - 1)
    yield Progress(n_frames + 1, n_frames + 1, "tables")
    merged = _collapse(detections, len(spatial))
    length_unit = unit or ("um" if scale is not None else "px")
    interval = float(frame_interval) if frame_interval else 1.0
    tunit = time_unit if frame_interval else "frame"
    return TrackingResult(
        tracks=_tracks_data(merged, len(spatial)),
        graph=graph,
        events=events,
        detections=detections,
        track_table=_track_table(merged, graph, events, pixel, interval),
        event_table=_event_table(events, pixel),
        scale=pixel,
        unit=length_unit,
        frame_interval=interval,
        time_unit=tunit,
        notes=notes,
    )


def relabel_by_track(labels: Any, result: TrackingResult) -> NDArray[np.int64]:
    """The label movie with each object's value replaced by its track id.

    Examples:
        >>> movie = np.zeros((2, 4, 4), np.uint8)
        >>> movie[0, :2, :2] = 3; movie[1, :2, :2] = 8
        >>> relabel_by_track(movie, track(movie))[:, 0, 0].tolist()
        [1, 1]
    """
    movie, _ = _check_labels(labels)
    out = np.zeros(movie.shape, np.int64)
    for t, rows in result.detections.groupby("t"):
        frame = np.asarray(movie[int(t)]).astype(np.int64)
        lookup = np.zeros(int(frame.max()) + 1, np.int64)
        lookup[rows["label"].to_numpy()] = rows["track_id"].to_numpy()
        out[int(t)] = lookup[frame]
    return out


# --- input -------------------------------------------------------------------------------


def _check_labels(labels: Any) -> tuple[NDArray, list[str]]:
    """The movie as an integer array, or an InputError that says what is wrong."""
    movie = np.asarray(labels)
    notes: list[str] = []
    if movie.ndim not in (3, 4):
        raise InputError(f"tracking takes a time-lapse of label images (T, Y, X) or "
                         f"(T, Z, Y, X); this one is {movie.ndim}-D {movie.shape}")
    if movie.size == 0:
        raise InputError(f"the movie is empty (shape {movie.shape}): nothing to track")
    if movie.shape[0] < 2:
        raise InputError(f"tracking needs at least 2 frames; this movie has {movie.shape[0]}")
    if movie.dtype == bool:
        from scipy import ndimage

        movie = np.stack([ndimage.label(frame)[0] for frame in movie])
        notes.append("the masks were split into connected objects frame by frame")
    elif not np.issubdtype(movie.dtype, np.integer):
        raise InputError(f"labels must be integers, not {movie.dtype}: give an instance label "
                         "movie (e.g. from napari-organelle segment), or the images with "
                         "--model to segment them first")
    elif np.issubdtype(movie.dtype, np.signedinteger) and movie.min() < 0:
        raise InputError("labels must not be negative (0 is background)")
    return movie, notes


def _spatial_scale(scale: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if scale is None:
        return (1.0,) * ndim
    values = (float(scale),) * ndim if np.isscalar(scale) else tuple(float(v) for v in scale)
    if len(values) != ndim or min(values) <= 0:
        raise InputError(f"scale needs 1 or {ndim} positive values, not {scale}")
    return values


# --- one frame ---------------------------------------------------------------------------


def _measure_frame(frame: NDArray, pixel: tuple[float, ...]) -> _Frame:
    """Label values, areas, centroids, major-axis lengths and pixel index of a frame."""
    flat = frame.ravel()
    nonzero = np.flatnonzero(flat)
    ids, inverse = np.unique(flat[nonzero], return_inverse=True)
    n, ndim = len(ids), frame.ndim
    index = np.full(flat.size, -1, np.int32)
    index[nonzero] = inverse
    if not n:
        empty = np.zeros(0)
        return _Frame(ids.astype(np.int64), empty, np.zeros((0, ndim)), empty, index,
                      frame.shape)
    area = np.bincount(inverse, minlength=n).astype(float)
    coords = [c.astype(float) for c in np.unravel_index(nonzero, frame.shape)]
    centroid = np.stack([np.bincount(inverse, c, n) / area for c in coords], axis=1)
    physical = [c * s for c, s in zip(coords, pixel)]
    mean = centroid * np.asarray(pixel)
    cov = np.empty((n, ndim, ndim))
    for i in range(ndim):
        for j in range(i, ndim):
            moment = np.bincount(inverse, physical[i] * physical[j], n) / area
            cov[:, i, j] = cov[:, j, i] = moment - mean[:, i] * mean[:, j]
    length = 4 * np.sqrt(np.clip(np.linalg.eigvalsh(cov)[:, -1], 0, None))
    return _Frame(ids.astype(np.int64), area, centroid, length, index, frame.shape)


def _slim(frame: _Frame) -> _Frame:
    """The frame without its pixel index (kept for all frames, so small)."""
    return _Frame(frame.ids, frame.area_px, frame.centroid, frame.length,
                  np.zeros(0, np.int32), frame.shape)


def _overlaps(previous: _Frame, current: _Frame) -> tuple[NDArray, NDArray, NDArray]:
    """Pairs (object in previous, object in current) that share pixels, and how many."""
    both = (previous.index >= 0) & (current.index >= 0)
    m = len(current.ids)
    key = previous.index[both].astype(np.int64) * m + current.index[both]
    keys, counts = np.unique(key, return_counts=True)
    return keys // m, keys % m, counts.astype(float)


# --- linking -----------------------------------------------------------------------------


def _assign(cost: NDArray[np.float64]) -> list[tuple[int, int]]:
    """Links (row, col) of the cheapest assignment where each may also stay unlinked."""
    n, m = cost.shape
    if not n or not m:
        return []
    big = np.full((n + m, m + n), np.inf)
    big[:n, :m] = cost
    big[np.arange(n), m + np.arange(n)] = NO_LINK_COST
    big[n + np.arange(m), np.arange(m)] = NO_LINK_COST
    big[n:, m:] = np.where(np.isfinite(cost.T), 0.0, np.inf)
    rows, cols = linear_sum_assignment(big)
    return [(r, c) for r, c in zip(rows, cols) if r < n and c < m and np.isfinite(cost[r, c])]


def _link_step(previous: _Frame, current: _Frame, previous_tracks: NDArray[np.int64],
               ids: NDArray[np.int64], next_id: int, graph: dict[int, list[int]],
               events: list[Event], t: int, max_distance: float, min_overlap: float,
               iso: NDArray[np.float64]) -> int:
    """Give the objects of ``current`` track ids (in ``ids``); record events. Returns next id."""
    n, m = len(previous.ids), len(current.ids)
    a, b, shared = _overlaps(previous, current)
    cost = np.full((n, m), np.inf)
    if m and max_distance > 0:
        pairs = cKDTree(previous.centroid * iso).sparse_distance_matrix(
            cKDTree(current.centroid * iso), max_distance, output_type="ndarray")
        cost[pairs["i"], pairs["j"]] = 1.0 + pairs["v"] / max_distance
    cost[a, b] = 1.0 - shared / (previous.area_px[a] + current.area_px[b] - shared)
    links = _assign(cost)
    forward = np.full(n, -1)
    backward = np.full(m, -1)
    for r, c in links:
        forward[r], backward[c] = c, r
    children: dict[int, set[int]] = {r: {c} for r, c in links}
    parents: dict[int, set[int]] = {c: {r} for r, c in links}
    share = shared / np.minimum(previous.area_px[a], current.area_px[b])
    for c in np.flatnonzero(backward < 0):  # appearing: a daughter of a continuing object?
        mine = np.flatnonzero((b == c) & (forward[a] >= 0))
        if len(mine) and share[mine].max() >= min_overlap:
            children[int(a[mine[np.argmax(share[mine])]])].add(int(c))
    for r in np.flatnonzero(forward < 0):  # ending: fused into a continuing object?
        mine = np.flatnonzero((a == r) & (backward[b] >= 0))
        if len(mine) and share[mine].max() >= min_overlap:
            parents[int(b[mine[np.argmax(share[mine])]])].add(int(r))
    fissions = {r: sorted(cs) for r, cs in children.items() if len(cs) > 1}
    fusions = {c: sorted(rs) for c, rs in parents.items() if len(rs) > 1}
    new_parents: dict[int, set[int]] = {}
    for r, cs in fissions.items():
        for c in cs:
            new_parents.setdefault(c, set()).add(int(previous_tracks[r]))
    for c, rs in fusions.items():
        new_parents.setdefault(c, set()).update(int(previous_tracks[r]) for r in rs)
    for c in range(m):
        if c in new_parents or backward[c] < 0:
            ids[c] = next_id
            next_id += 1
            if c in new_parents:
                graph[int(ids[c])] = sorted(new_parents[c])
        else:
            ids[c] = previous_tracks[backward[c]]
    for r, cs in fissions.items():
        site = _closest_midpoint(current, cs[:2] if len(cs) == 2 else _largest(current, cs), iso)
        events.append(Event("fission", t, site, (int(previous_tracks[r]),),
                            tuple(int(ids[c]) for c in cs)))
    for c, rs in fusions.items():
        site = _closest_midpoint(previous, rs[:2] if len(rs) == 2 else _largest(previous, rs), iso)
        events.append(Event("fusion", t, site, tuple(int(previous_tracks[r]) for r in rs),
                            (int(ids[c]),)))
    return next_id


def _largest(frame: _Frame, members: list[int]) -> list[int]:
    return sorted(members, key=lambda k: -frame.area_px[k])[:2]


def _closest_midpoint(frame: _Frame, pair: list[int], iso: NDArray[np.float64]
                      ) -> tuple[float, ...]:
    """Midpoint (pixels) of the closest pixels of two objects of a frame."""
    first = np.stack(np.unravel_index(np.flatnonzero(frame.index == pair[0]), frame.shape), 1)
    second = np.stack(np.unravel_index(np.flatnonzero(frame.index == pair[1]), frame.shape), 1)
    distance, nearest = cKDTree(second * iso).query(first * iso)
    k = int(np.argmin(distance))
    return tuple(float(v) for v in (first[k] + second[nearest[k]]) / 2)


# --- whole movie -------------------------------------------------------------------------


def axis_names(ndim: int) -> list[str]:
    """Spatial column names: ``["y", "x"]`` or ``["z", "y", "x"]``."""
    return ["z", "y", "x"][-ndim:]


def _detections(frames: list[_Frame], track_of: list[NDArray[np.int64]], ndim: int,
                pixel: tuple[float, ...]) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "t": np.concatenate([np.full(len(f.ids), t) for t, f in enumerate(frames)]),
        "label": np.concatenate([f.ids for f in frames]),
        "track_id": np.concatenate(track_of),
    }
    centroids = np.concatenate([f.centroid for f in frames])
    for i, name in enumerate(axis_names(ndim)):
        columns[name] = centroids[:, i]
    columns["area"] = np.concatenate([f.area_px for f in frames]) * float(np.prod(pixel))
    columns["length"] = np.concatenate([f.length for f in frames])
    return pd.DataFrame(columns)


def _close_gaps(detections: pd.DataFrame, graph: dict[int, list[int]], events: list[Event],
                max_gap: int, max_distance: float, iso: NDArray[np.float64]
                ) -> tuple[pd.DataFrame, dict[int, list[int]], list[Event]]:
    """Join tracks that end to tracks that start 2..max_gap+1 frames later nearby."""
    names = axis_names(len(iso))
    in_events = {p for ps in graph.values() for p in ps}
    ends = detections.drop_duplicates("track_id", keep="last")
    ends = ends[~ends["track_id"].isin(in_events)]
    starts = detections.drop_duplicates("track_id", keep="first")
    starts = starts[~starts["track_id"].isin(set(graph))]
    if ends.empty or starts.empty or max_distance <= 0:
        return detections, graph, events
    end_xyz = ends[names].to_numpy() * iso
    start_xyz = starts[names].to_numpy() * iso
    limit = max_distance * np.sqrt(max_gap + 1)
    pairs = cKDTree(end_xyz).sparse_distance_matrix(cKDTree(start_xyz), limit,
                                                    output_type="ndarray")
    gap = starts["t"].to_numpy()[pairs["j"]] - ends["t"].to_numpy()[pairs["i"]]
    reach = max_distance * np.sqrt(np.clip(gap, 1, None))
    keep = (gap >= 2) & (gap <= max_gap + 1) & (pairs["v"] <= reach)
    i, j = pairs["i"][keep], pairs["j"][keep]
    if not len(i):
        return detections, graph, events
    cost = pairs["v"][keep] / (max_distance * np.sqrt(gap[keep])) + 0.01 * gap[keep]
    end_ids, start_ids = ends["track_id"].to_numpy(), starts["track_id"].to_numpy()
    alias: dict[int, int] = {}
    for rows, cols, costs in _components(i, j, cost):
        r_unique, r_local = np.unique(rows, return_inverse=True)
        c_unique, c_local = np.unique(cols, return_inverse=True)
        matrix = np.full((len(r_unique), len(c_unique)), np.inf)
        matrix[r_local, c_local] = costs
        for r, c in _assign(matrix):
            alias[int(start_ids[c_unique[c]])] = int(end_ids[r_unique[r]])

    def root(track_id: int) -> int:
        while track_id in alias:
            track_id = alias[track_id]
        return track_id

    detections = detections.assign(track_id=[root(int(v)) for v in detections["track_id"]])
    graph = {root(child): sorted({root(p) for p in ps}) for child, ps in graph.items()}
    events = [Event(e.kind, e.t, e.position, tuple(root(p) for p in e.parents),
                    tuple(root(c) for c in e.children)) for e in events]
    return detections, graph, events


def _undo_transient_cuts(detections: pd.DataFrame, graph: dict[int, list[int]],
                         events: list[Event], frames: int
                         ) -> tuple[pd.DataFrame, dict[int, list[int]], list[Event]]:
    """Undo fissions whose two daughters fuse back together within ``frames`` frames."""
    rename: dict[int, int] = {}
    kept = list(events)
    changed = True
    while changed:
        changed = False
        fusions = {frozenset(e.parents): e for e in kept if e.kind == "fusion"}
        for fission in (e for e in kept if e.kind == "fission" and len(e.children) == 2):
            fusion = fusions.get(frozenset(fission.children))
            if fusion is None or not 0 < fusion.t - fission.t <= frames:
                continue
            parent = fission.parents[0]
            step = {child: parent for child in (*fission.children, *fusion.children)}
            rename = {k: step.get(v, v) for k, v in rename.items()} | step
            kept = [_renamed(e, step) for e in kept if e is not fission and e is not fusion]
            graph = {child: sorted({step.get(p, p) for p in parents})
                     for child, parents in graph.items() if child not in step}
            changed = True
            break
    if rename:
        detections = detections.assign(
            track_id=[rename.get(int(v), int(v)) for v in detections["track_id"]])
    return detections, graph, kept


def _drop_weak_events(detections: pd.DataFrame, graph: dict[int, list[int]],
                      events: list[Event], min_area: float, min_frames: int, last_frame: int
                      ) -> tuple[pd.DataFrame, dict[int, list[int]], list[Event]]:
    """Drop events with a tiny object or short-lived new tracks; keep the main line."""
    grouped = detections.groupby("track_id")
    first_area = grouped["area"].first().to_dict()
    last_area = grouped["area"].last().to_dict()
    span = (grouped["t"].max() - grouped["t"].min() + 1).to_dict()
    ends = grouped["t"].max().to_dict()
    rename: dict[int, int] = {}
    kept: list[Event] = []
    for event in sorted(events, key=lambda e: e.t):
        event = _renamed(event, rename)
        new = event.children
        if event.kind == "fission":
            smallest = min(first_area.get(c, np.inf) for c in new)
        else:
            smallest = min(last_area.get(p, np.inf) for p in event.parents)
        short = any(span.get(c, 0) < min_frames and ends.get(c, last_frame) < last_frame
                    for c in new)
        if smallest >= min_area and not short:
            kept.append(event)
            continue
        if event.kind == "fission":
            main = max(new, key=lambda c: first_area.get(c, 0))
            step = {main: event.parents[0]}
        else:
            step = {new[0]: max(event.parents, key=lambda p: last_area.get(p, 0))}
        for old, line in step.items():  # the line now ends where the renamed track ends
            last_area[line], ends[line] = last_area.get(old, 0.0), ends.get(old, last_frame)
        for child in new:
            graph.pop(child, None)
        rename = {k: step.get(v, v) for k, v in rename.items()} | step
        graph = {child: sorted({step.get(p, p) for p in parents})
                 for child, parents in graph.items()}
        kept = [_renamed(e, step) for e in kept]
    if rename:
        detections = detections.assign(
            track_id=[rename.get(int(v), int(v)) for v in detections["track_id"]])
    return detections, graph, kept


def _renamed(event: Event, step: dict[int, int]) -> Event:
    return Event(event.kind, event.t, event.position,
                 tuple(step.get(p, p) for p in event.parents),
                 tuple(step.get(c, c) for c in event.children))


def _collapse(detections: pd.DataFrame, ndim: int) -> pd.DataFrame:
    """One row per track and frame: pieces merged (area-weighted centroid, summed area)."""
    if not detections.duplicated(["track_id", "t"]).any():
        return detections
    names = axis_names(ndim)
    weighted = detections.assign(**{f"_{n}": detections[n] * detections["area"] for n in names})
    grouped = weighted.groupby(["track_id", "t"], sort=False)
    merged = grouped.agg(label=("label", "first"), area=("area", "sum"),
                         length=("length", "max"), **{f"_{n}": (f"_{n}", "sum") for n in names})
    for n in names:
        merged[n] = merged.pop(f"_{n}") / merged["area"]
    merged = merged.reset_index()
    return merged[["t", "label", "track_id", *names, "area", "length"]].sort_values(
        ["t", "track_id"], kind="stable").reset_index(drop=True)


def _components(i: NDArray, j: NDArray, cost: NDArray
                ) -> Generator[tuple[NDArray, NDArray, NDArray], None, None]:
    """Split a bipartite candidate list into independent parts (small assignments)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_i, n_j = int(i.max()) + 1, int(j.max()) + 1
    adjacency = coo_matrix((np.ones(len(i)), (i, n_i + j)), shape=(n_i + n_j,) * 2)
    _, component = connected_components(adjacency, directed=False)
    part = component[i]
    order = np.argsort(part, kind="stable")
    bounds = np.flatnonzero(np.diff(part[order])) + 1
    for chunk in np.split(order, bounds):
        yield i[chunk], j[chunk], cost[chunk]


def _tracks_data(detections: pd.DataFrame, ndim: int) -> NDArray[np.float64]:
    ordered = detections.sort_values(["track_id", "t"], kind="stable")
    return ordered[["track_id", "t", *axis_names(ndim)]].to_numpy(float)


def _track_table(detections: pd.DataFrame, graph: dict[int, list[int]], events: list[Event],
                 pixel: tuple[float, ...], interval: float) -> pd.DataFrame:
    names = axis_names(len(pixel))
    ordered = detections.sort_values(["track_id", "t"], kind="stable")
    xyz = ordered[names].to_numpy() * np.asarray(pixel)
    same = ordered["track_id"].to_numpy()[1:] == ordered["track_id"].to_numpy()[:-1]
    steps = np.r_[0.0, np.where(same, np.linalg.norm(np.diff(xyz, axis=0), axis=1), 0.0)]
    ordered = ordered.assign(_step=steps, **{f"_{n}": xyz[:, k] for k, n in enumerate(names)})
    grouped = ordered.groupby("track_id", sort=True)
    first, last = grouped.first(), grouped.last()
    table = pd.DataFrame({"track_id": first.index.to_numpy()})
    table["start"] = first["t"].to_numpy()
    table["end"] = last["t"].to_numpy()
    table["frames"] = grouped.size().to_numpy()
    span = (table["end"] - table["start"]).to_numpy()
    table["lifetime"] = (span + 1) * interval
    table["path_length"] = grouped["_step"].sum().to_numpy()
    delta = np.stack([last[f"_{n}"] - first[f"_{n}"] for n in names], 1)
    table["displacement"] = np.linalg.norm(delta, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["mean_speed"] = np.where(span > 0, table["path_length"] / (span * interval), np.nan)
    table["mean_area"] = grouped["area"].mean().to_numpy()
    table["mean_length"] = grouped["length"].mean().to_numpy()
    children: dict[int, list[int]] = {}
    for child, parents in graph.items():
        for parent in parents:
            children.setdefault(parent, []).append(child)
    started = {c: e.kind for e in events for c in e.children}
    ended = {p: e.kind for e in events for p in e.parents}
    ids = table["track_id"].tolist()
    table["parents"] = [" ".join(map(str, graph.get(t, []))) for t in ids]
    table["children"] = [" ".join(map(str, sorted(children.get(t, [])))) for t in ids]
    table["start_event"] = [started.get(t, "") for t in ids]
    table["end_event"] = [ended.get(t, "") for t in ids]
    return table


def _event_table(events: list[Event], pixel: tuple[float, ...]) -> pd.DataFrame:
    names = axis_names(len(pixel))
    rows = [{"event_id": k + 1, "kind": e.kind, "t": e.t,
             **dict(zip(names, e.position)),
             "parents": " ".join(map(str, e.parents)),
             "children": " ".join(map(str, e.children))} for k, e in enumerate(events)]
    return pd.DataFrame(rows, columns=["event_id", "kind", "t", *names, "parents", "children"])
