"""Known-truth time-lapses: mitochondria move, grow, divide and fuse; lysosomes move.

A fast, simple simulator for testing and benchmarking tracking
(:mod:`napari_organelle.tracking`), not the fluorescence scene: objects are
drawn as capsules (mitochondria) and disks (lysosomes) on the pixel grid of a
label movie ``(T, Y, X)`` whose values are the true track ids. The field is cut
into square slots; each slot tells one story, so objects of different stories
never touch:

* ``mito``: a mitochondrion drifts (random walk with a persistent velocity),
  turns a little and grows;
* ``fission``: a long mitochondrion grows, then divides at a random point
  along its axis (frame ``t``); the two daughters drift apart;
* ``fusion``: two mitochondria on one axis approach tip to tip and fuse;
* ``lyso_directed``: a lysosome runs along a straight line (motor transport),
  turning back at the slot edge;
* ``lyso_diffusive``: a lysosome diffuses (Brownian steps).

Conventions are those of the tracker and of napari's Tracks layer: at a
fission the parent track ends and both daughters start new tracks; at a fusion
both parents end and the fused object starts a new one. An event's ``t`` is the
first frame after it; its position is the cut (fission) or the contact point
(fusion) in pixels. ``dropout`` removes objects from single frames at random
(never next to an event), to test gap closing.

Examples:
    >>> movie = simulate_dynamics((80, 80), frames=12, seed=1)
    >>> movie.labels.shape
    (12, 80, 80)
    >>> sorted({e.kind for e in movie.events}) <= ["fission", "fusion"]
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..tracking.core import Event
from ._random import SeedLike, as_rng

#: story -> default share of the slots
STORIES = {"mito": 0.2, "fission": 0.25, "fusion": 0.25, "lyso_directed": 0.15,
           "lyso_diffusive": 0.15}


@dataclass
class DynamicsMovie:
    """A simulated label time-lapse and its truth.

    Attributes:
        labels: ``(T, Y, X)`` uint16; each object's value is its true track id.
        tracks: napari Tracks data ``(track_id, t, y, x)`` of the drawn objects
            (centroids in pixels; frames where an object dropped out are absent).
        graph: child track id -> parent track ids.
        events: the true fissions and fusions.
        kinds: track id -> ``"mitochondria"`` or ``"lysosome"``.
        stories: track id -> the story it belongs to (see the module).
        pixel_size_nm: pixel size the shapes were sized for.
    """

    labels: NDArray[np.uint16]
    tracks: NDArray[np.float64]
    graph: dict[int, list[int]]
    events: list[Event]
    kinds: dict[int, str]
    stories: dict[int, str] = field(default_factory=dict)
    pixel_size_nm: float = 100.0


@dataclass
class _Shape:
    """One object in one frame: a capsule from ``p`` to ``q`` of ``radius`` (a disk if p == q)."""

    track_id: int
    p: NDArray[np.float64]
    q: NDArray[np.float64]
    radius: float


def simulate_dynamics(
    shape: Sequence[int] = (128, 128),
    frames: int = 30,
    *,
    slot: int = 40,
    shares: dict[str, float] | None = None,
    dropout: float = 0.0,
    pixel_size_nm: float = 100.0,
    seed: SeedLike = 0,
) -> DynamicsMovie:
    """Simulate a label time-lapse with known tracks, fissions and fusions.

    Args:
        shape: ``(Y, X)`` of each frame, in pixels.
        frames: number of frames (at least 6, so that events fit).
        slot: edge of the square slot each story lives in, in pixels (>= 32).
        shares: story -> share of slots (default :data:`STORIES`).
        dropout: chance that an object is missing from a frame (not at events).
        pixel_size_nm: recorded in the result (shapes are sized in pixels:
            mitochondria 4-5 px wide, i.e. ~450 nm at the default 100 nm).
        seed: random seed or generator.

    Returns:
        The movie and its truth (:class:`DynamicsMovie`).
    """
    if frames < 6 or slot < 32:
        raise ValueError("simulate_dynamics needs frames >= 6 and slot >= 32")
    rng = as_rng(seed)
    weights = shares or STORIES
    names = list(weights)
    probabilities = np.array([weights[n] for n in names], float)
    probabilities /= probabilities.sum()
    labels = np.zeros((frames, *shape), np.uint16)
    state = _Truth()
    for y0 in range(0, shape[0] - slot + 1, slot):
        for x0 in range(0, shape[1] - slot + 1, slot):
            story = names[rng.choice(len(names), p=probabilities)]
            box = (np.array([y0, x0], float), np.array([y0 + slot, x0 + slot], float))
            per_frame = _STORY[story](rng, frames, box, state, story)
            protected = state.near_events
            for t, shapes in enumerate(per_frame):
                for item in shapes:
                    if dropout and (item.track_id, t) not in protected and rng.random() < dropout:
                        continue
                    _draw(labels[t], item)
    return DynamicsMovie(labels, _tracks_of(labels), state.graph, sorted(state.events,
                         key=lambda e: (e.t, e.position)), state.kinds, state.stories,
                         pixel_size_nm)


@dataclass
class _Truth:
    """Ids, graph, events and kinds collected while stories are written."""

    next_id: int = 1
    graph: dict[int, list[int]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    stories: dict[int, str] = field(default_factory=dict)
    near_events: set[tuple[int, int]] = field(default_factory=set)

    def new(self, kind: str, story: str) -> int:
        track_id = self.next_id
        self.next_id += 1
        self.kinds[track_id] = kind
        self.stories[track_id] = story
        return track_id


# --- motion ------------------------------------------------------------------------------


def _walk(rng: np.random.Generator, start: NDArray, steps: int, box: tuple[NDArray, NDArray],
          margin: float, speed: float, jitter: float, persistence: float = 0.9
          ) -> NDArray[np.float64]:
    """Positions of a persistent random walk reflected inside ``box`` shrunk by ``margin``."""
    low, high = box[0] + margin, box[1] - margin
    position = np.clip(start.astype(float), low, np.maximum(low, high))
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    out = np.empty((steps, 2))
    for k in range(steps):
        out[k] = position
        velocity = persistence * velocity + (1 - persistence) * speed * rng.normal(size=2)
        position = position + velocity + jitter * rng.normal(size=2)
        for axis in range(2):
            if high[axis] <= low[axis]:
                position[axis] = (low[axis] + high[axis]) / 2
            elif position[axis] < low[axis] or position[axis] > high[axis]:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], low[axis], high[axis])
    return out


def _unit(angle: float) -> NDArray[np.float64]:
    return np.array([np.sin(angle), np.cos(angle)])


def _capsule(track_id: int, centre: NDArray, angle: float, length: float, radius: float
             ) -> _Shape:
    """A capsule of total ``length`` (tips included) centred at ``centre``."""
    half = max(length / 2 - radius, 0.0) * _unit(angle)
    return _Shape(track_id, centre - half, centre + half, radius)


# --- stories -----------------------------------------------------------------------------


def _mito(rng, frames, box, truth, story):
    track_id = truth.new("mitochondria", story)
    length0, growth = rng.uniform(8, 14), rng.uniform(0.0, 0.15)
    angle0, turn = rng.uniform(0, np.pi), rng.uniform(-0.02, 0.02)
    margin = (length0 + growth * frames) / 2 + 3
    path = _walk(rng, (box[0] + box[1]) / 2, frames, box, margin, 0.4, 0.15)
    return [[_capsule(track_id, path[t], angle0 + turn * t, length0 + growth * t, 2.0)]
            for t in range(frames)]


def _fission(rng, frames, box, truth, story):
    parent = truth.new("mitochondria", story)
    first, second = truth.new("mitochondria", story), truth.new("mitochondria", story)
    truth.graph[first] = [parent]
    truth.graph[second] = [parent]
    t_cut = int(rng.integers(2, frames - 2))
    length0 = rng.uniform(16, 20)
    growth = rng.uniform(0.0, 0.1)
    angle, radius = rng.uniform(0, np.pi), 2.0
    margin = (length0 + growth * frames) / 2 + 6
    path = _walk(rng, (box[0] + box[1]) / 2, frames, box, margin, 0.3, 0.1)
    split = rng.uniform(0.35, 0.65)
    axis = _unit(angle)
    out = []
    for t in range(frames):
        length = length0 + growth * t
        if t < t_cut:
            out.append([_capsule(parent, path[t], angle, length, radius)])
            continue
        apart = 2.0 + 0.4 * (t - t_cut)  # gap between the daughters' tips
        cut = path[t] + (split - 0.5) * length * axis
        low_len, high_len = split * length - 1.0, (1 - split) * length - 1.0
        tip_low = cut - (apart / 2) * axis
        tip_high = cut + (apart / 2) * axis
        out.append([_capsule(first, tip_low - (low_len / 2) * axis, angle, low_len, radius),
                    _capsule(second, tip_high + (high_len / 2) * axis, angle, high_len, radius)])
        if t == t_cut:
            truth.events.append(Event("fission", t, tuple(float(v) for v in cut), (parent,),
                                      (first, second)))
    truth.near_events.update({(parent, t_cut - 1), (first, t_cut), (second, t_cut)})
    return out


def _fusion(rng, frames, box, truth, story):
    left, right = truth.new("mitochondria", story), truth.new("mitochondria", story)
    fused = truth.new("mitochondria", story)
    truth.graph[fused] = [left, right]
    t_join = int(rng.integers(2, frames - 2))
    len_left, len_right = rng.uniform(7, 10), rng.uniform(7, 10)
    angle, radius = rng.uniform(0, np.pi), 2.0
    axis = _unit(angle)
    margin = (len_left + len_right) / 2 + 9
    path = _walk(rng, (box[0] + box[1]) / 2, frames, box, margin, 0.3, 0.1)
    out = []
    for t in range(frames):
        if t >= t_join:
            out.append([_capsule(fused, path[t], angle, len_left + len_right, radius)])
            continue
        gap = min(3.0 + 1.0 * (t_join - 1 - t), 8.0)  # tip-to-tip, 3 px just before fusing
        contact = path[t]
        out.append([_capsule(left, contact - (gap / 2 + len_left / 2) * axis, angle, len_left,
                             radius),
                    _capsule(right, contact + (gap / 2 + len_right / 2) * axis, angle, len_right,
                             radius)])
        if t == t_join - 1:
            truth.events.append(Event("fusion", t_join, tuple(float(v) for v in contact),
                                      (left, right), (fused,)))
    truth.near_events.update({(left, t_join - 1), (right, t_join - 1), (fused, t_join)})
    return out


def _lysosome(rng, frames, box, truth, story):
    track_id = truth.new("lysosome", story)
    radius = rng.uniform(2.0, 3.0)
    if story == "lyso_directed":
        path = _walk(rng, (box[0] + box[1]) / 2, frames, box, radius + 2, 1.5, 0.1,
                     persistence=1.0)
    else:
        path = _walk(rng, (box[0] + box[1]) / 2, frames, box, radius + 2, 0.0, 1.0)
    return [[_Shape(track_id, path[t], path[t], radius)] for t in range(frames)]


_STORY = {"mito": _mito, "fission": _fission, "fusion": _fusion,
          "lyso_directed": _lysosome, "lyso_diffusive": _lysosome}


# --- drawing -----------------------------------------------------------------------------


def _draw(frame: NDArray[np.uint16], item: _Shape) -> None:
    """Paint a capsule: pixels whose centre lies within ``radius`` of the segment p-q."""
    low = np.floor(np.minimum(item.p, item.q) - item.radius).astype(int)
    high = np.ceil(np.maximum(item.p, item.q) + item.radius).astype(int) + 1
    low = np.maximum(low, 0)
    high = np.minimum(high, frame.shape)
    if np.any(high <= low):
        return
    yy, xx = np.mgrid[low[0]:high[0], low[1]:high[1]].astype(float)
    points = np.stack([yy, xx], -1)
    segment = item.q - item.p
    length2 = float(segment @ segment)
    along = ((points - item.p) @ segment) / length2 if length2 else np.zeros(yy.shape)
    nearest = item.p + np.clip(along, 0, 1)[..., None] * segment
    inside = np.sum((points - nearest) ** 2, axis=-1) <= item.radius ** 2
    crop = frame[low[0]:high[0], low[1]:high[1]]
    crop[inside & (crop == 0)] = item.track_id


def _tracks_of(labels: NDArray) -> NDArray[np.float64]:
    """Tracks data (track_id, t, y, x) of the drawn objects."""
    rows = []
    for t, frame in enumerate(labels):
        ids = np.unique(frame)
        ids = ids[ids > 0]
        if not len(ids):
            continue
        centres = ndimage.center_of_mass(np.ones_like(frame), frame, ids)
        rows += [(int(i), t, *c) for i, c in zip(ids, centres)]
    return np.array(sorted(rows), float).reshape(-1, 4)


def shuffle_labels(labels: NDArray, seed: SeedLike = 0) -> NDArray[np.int32]:
    """Give each frame's objects new random ids, so that ids carry no track identity.

    Examples:
        >>> movie = np.array([[[0, 3, 3]], [[0, 3, 3]]], np.uint16)
        >>> shuffled = shuffle_labels(movie)
        >>> bool((shuffled > 0).sum() == 4)
        True
    """
    rng = as_rng(seed)
    out = np.zeros(labels.shape, np.int32)
    for t, frame in enumerate(labels):
        ids = np.unique(frame)
        ids = ids[ids > 0]
        lookup = np.zeros(int(frame.max()) + 1, np.int32)
        lookup[ids] = rng.permutation(len(ids)) + 1 + rng.integers(0, 1000)
        out[t] = lookup[frame]
    return out


def perturb_labels(labels: NDArray, seed: SeedLike = 0, boundary: float = 0.5,
                   cuts: float = 0.0, min_cut_length: float = 12.0) -> NDArray[np.int32]:
    """Segmentation-like errors: jittered outlines and transient cuts of long objects.

    Args:
        labels: ``(T, Y, X)`` label movie.
        seed: random seed or generator.
        boundary: chance per object and frame that its outline moves by one
            pixel (half the time in, half out).
        cuts: chance per object and frame that an object longer than
            ``min_cut_length`` pixels is cut in two across its middle for that
            frame only (a false fission followed by a false fusion).
        min_cut_length: major-axis length (pixels) an object needs to be cut.

    Examples:
        >>> movie = np.zeros((2, 9, 20), np.uint16); movie[:, 2:7, 2:18] = 1
        >>> cut = perturb_labels(movie, boundary=0.0, cuts=1.0)
        >>> [len(np.unique(ndimage.label(f > 0)[0])) - 1 for f in cut]
        [2, 2]
    """
    rng = as_rng(seed)
    out = np.zeros(labels.shape, np.int32)
    for t, frame in enumerate(np.asarray(labels)):
        frame = frame.astype(np.int32)
        top = int(frame.max())
        move = np.zeros(top + 1, np.int8)
        if top:
            move[1:] = rng.choice([-1, 0, 1], size=top,
                                  p=[boundary / 2, 1 - boundary, boundary / 2])
        low = ndimage.minimum_filter(frame, size=3, mode="nearest")
        high = ndimage.maximum_filter(frame, size=3, mode="nearest")
        shrink = (move[frame] < 0) & (low != high)
        grow = ndimage.grey_dilation(frame, size=3)
        grown = (frame == 0) & (move[grow] > 0)
        result = frame.copy()
        result[shrink] = 0
        result[grown] = grow[grown]
        if cuts:
            _cut(result, rng, cuts, min_cut_length)
        out[t] = result
    return out


def _cut(frame: NDArray[np.int32], rng: np.random.Generator, chance: float,
         min_length: float) -> None:
    """Cut long objects across their middle, in place, each with probability ``chance``."""
    for index, where in enumerate(ndimage.find_objects(frame), start=1):
        if where is None or rng.random() >= chance:
            continue
        ys, xs = np.nonzero(frame[where] == index)
        points = np.stack([ys, xs], 1).astype(float)
        centre = points.mean(0)
        values, vectors = np.linalg.eigh(np.cov((points - centre).T) if len(points) > 2
                                         else np.eye(2))
        if 4 * np.sqrt(max(values[-1], 0)) < min_length:
            continue
        along = (points - centre) @ vectors[:, -1]
        band = np.abs(along) < 1.5
        crop = frame[where]
        crop[ys[band], xs[band]] = 0
        far = ~band & (along > 0)
        crop[ys[far], xs[far]] = frame.max() + 1  # the far piece is a new object
