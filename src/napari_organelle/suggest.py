"""The "annotate next" queue: where a correction teaches the model most.

Annotation time is the scarce resource of human-in-the-loop training, so the
queue sends the annotator first where the model is least sure. Each image is
segmented with uncertainty maps (:mod:`napari_organelle.uncertainty`: the
entropy of the probabilities averaged over four flips); every plane is cut into
square tiles (the whole plane when it is smaller than a tile); a tile's score is
the mean uncertainty of its pixels, averaged over the classes, each class's
uncertainty discounted where the model finds little of that class: a tile whose
predicted share of the class is below ``presence`` (10 %) keeps that fraction of
its uncertainty (a quarter at 2.5 %). A correction of a tile the model thinks
is nearly empty teaches it mostly background, and a few such tiles fine-tuned
on their own make it unlearn the class (``benchmarks/active_learning.py``;
the rule was chosen on the train images' pools, not the test splits:
docs/benchmarks.md#active-learning). The queue takes
the best-scoring tiles greedily, skipping any tile that lies within
``spacing`` tiles of one already taken in the same plane, or in a plane within
``z_spacing`` of it along the stack's last axis (the same structure seen again
a section away): ten neighbouring tiles of one uncertain cell would teach the
model one thing ten times. The same structure can also come back in another
file (the sections of one volume saved as separate images), so each tile's
score is also discounted by how much its *pattern* of uncertainty (an 8 x 8
thumbnail of its map) correlates with that of a tile already taken: a tile
whose pattern correlates 0.9 with a chosen one keeps a tenth of its score.

What a unit is follows the input: tiles of a large image, planes of a stack
(tiles of each plane), images of a folder (one tile each when they are small).

Examples:
    >>> import numpy as np
    >>> unsure = np.zeros((768, 768), np.float32)
    >>> unsure[:256, :256] = 0.9                # the most uncertain tile
    >>> unsure[:256, 256:512] = 0.8             # its neighbour: skipped
    >>> unsure[512:, 512:] = 0.3                # far from it: next
    >>> [(r.box, round(r.score, 2)) for r in rank_regions({"er": unsure}, n=2, tile=256)]
    [((0, 0, 256, 256), 0.9), ((512, 512, 768, 768), 0.3)]
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

from .errors import InputError
from .progress import Progress

__all__ = ["PRESENCE", "Region", "candidate_regions", "choose_diverse", "rank_regions",
           "score_window", "suggest_iter", "write_suggestions"]

#: Default tile edge of the queue, in pixels (what an annotator corrects in a few minutes).
TILE = 256
#: Predicted share of a class in a tile at which its uncertainty counts in full.
PRESENCE = 0.1


@dataclass(frozen=True)
class Region:
    """One place to annotate.

    Attributes:
        source: the image (a file path or a layer name).
        plane: index of the plane along the axes before Y and X (``()`` for 2-D).
        box: ``(y0, x0, y1, x1)`` in pixels of the image (end exclusive).
        score: expected benefit: mean uncertainty of the region, 0..1 bits, each
            class's discounted by its predicted presence (mean over classes).
        per_class: the mean uncertainty of each class there (not discounted).
        rank: 1 for the region to annotate first.
    """

    source: str
    plane: tuple[int, ...]
    box: tuple[int, int, int, int]
    score: float
    per_class: dict[str, float]
    rank: int = 0
    pattern: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """A short line for a list: ``3. plane 4, y 0-256, x 256-512 (score 0.41)``."""
        y0, x0, y1, x1 = self.box
        where = f"plane {', '.join(map(str, self.plane))}, " if self.plane else ""
        return f"{self.rank}. {where}y {y0}-{y1}, x {x0}-{x1} (score {self.score:.2f})"


def _starts(length: int, tile: int) -> list[int]:
    """Tile starts covering ``length`` with full tiles (the last one flush with the end)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def candidate_regions(maps: Mapping[str, np.ndarray], tile: int = TILE,
                      source: str = "image", masks: Mapping[str, np.ndarray] | None = None,
                      presence: float = PRESENCE) -> list[Region]:
    """Every tile of every plane of uncertainty ``maps``, scored (not yet ranked).

    Args:
        maps: per class, a float map with the image's spatial shape (``(..., Y, X)``),
            all the same shape, as :attr:`SegmentationResult.uncertainty` holds them.
        tile: tile edge in pixels; planes smaller than that are one region.
        source: what the regions are of (a path or a layer name).
        masks: per class, the model's masks or labels (non-zero: the class), to
            discount tiles where it finds little of the class (see :func:`score_window`);
            ``None``: uncertainty alone.
        presence: predicted share at which a class's uncertainty counts in full.

    Raises:
        InputError: no maps, or maps of different shapes.
    """
    if not maps:
        raise InputError("no uncertainty maps to rank: segment with uncertainty first")
    shapes = {np.shape(values) for values in maps.values()}
    if len(shapes) != 1:
        raise InputError(f"uncertainty maps of different shapes: {sorted(shapes)}")
    if tile < 8:
        raise InputError(f"the queue's tile edge must be at least 8 pixels, not {tile}")
    shape = shapes.pop()
    if len(shape) < 2:
        raise InputError(f"uncertainty maps must have Y and X axes, not shape {shape}")
    if masks is not None and any(np.shape(masks[name]) != shape for name in maps):
        raise InputError("the masks must have the uncertainty maps' shape, one per class")
    regions = []
    for plane in product(*(range(n) for n in shape[:-2])):
        for y, x in product(_starts(shape[-2], tile), _starts(shape[-1], tile)):
            box = (y, x, min(y + tile, shape[-2]), min(x + tile, shape[-1]))
            window = (*plane, slice(box[0], box[2]), slice(box[1], box[3]))
            score, per_class, pattern = score_window(maps, masks, window, presence)
            regions.append(Region(source, tuple(int(i) for i in plane), box, score, per_class,
                                  pattern=pattern))
    return regions


def score_window(maps: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None,
                 window: tuple[Any, ...], presence: float = PRESENCE
                 ) -> tuple[float, dict[str, float], tuple[float, ...]]:
    """The expected benefit of annotating one window; with its uncertainty per class and pattern.

    Each class's mean uncertainty is multiplied by ``min(1, share / presence)``,
    where ``share`` is the share of the window the model assigns to the class;
    the benefit is the mean over classes.

    Examples:
        >>> unsure = {"er": np.full((4, 4), 0.5, np.float32)}
        >>> found = {"er": np.zeros((4, 4), np.uint8)}
        >>> found["er"][0, :2] = 1          # 1/8 of the window: above 10 %, full weight
        >>> round(score_window(unsure, found, np.s_[:, :])[0], 3)
        0.5
        >>> round(score_window(unsure, found, np.s_[2:, :])[0], 3)  # none found there
        0.0
        >>> round(score_window(unsure, None, np.s_[2:, :])[0], 3)   # uncertainty alone
        0.5
    """
    per_class = {name: float(np.nanmean(maps[name][window], dtype=np.float64)) for name in maps}
    weighted = []
    for name, unsure in per_class.items():
        weight = 1.0
        if masks is not None and presence > 0:
            share = float(np.mean(np.asarray(masks[name][window]) > 0))
            weight = min(1.0, share / presence)
        weighted.append(unsure * weight)
    combined = np.mean([np.asarray(maps[name][window], np.float32) for name in maps], axis=0)
    return float(np.mean(weighted)), per_class, thumbnail(combined)


def thumbnail(values: np.ndarray, size: int = 8) -> tuple[float, ...]:
    """Block means of a 2-D map on a ``size`` x ``size`` grid, centred and scaled to unit norm.

    Two thumbnails' dot product is then the correlation of their patterns.

    Examples:
        >>> ramp = np.tile(np.arange(16.0), (16, 1))
        >>> round(float(np.dot(thumbnail(ramp), thumbnail(2 * ramp + 1))), 3)
        1.0
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    rows = np.array_split(np.arange(values.shape[0]), min(size, values.shape[0]))
    cols = np.array_split(np.arange(values.shape[1]), min(size, values.shape[1]))
    grid = np.array([[values[np.ix_(r, c)].mean() for c in cols] for r in rows]).ravel()
    grid -= grid.mean()
    norm = np.linalg.norm(grid)
    return tuple(float(v) for v in (grid / norm if norm > 1e-12 else grid))


def _similarity(first: Region, second: Region) -> float:
    if first.pattern is None or second.pattern is None or \
            len(first.pattern) != len(second.pattern):
        return 0.0
    return max(0.0, float(np.dot(first.pattern, second.pattern)))


def _too_close(first: Region, second: Region, tile: int, spacing: int, z_spacing: int) -> bool:
    if first.source != second.source:
        return False
    if first.plane[:-1] != second.plane[:-1]:
        return False
    if first.plane and abs(first.plane[-1] - second.plane[-1]) > z_spacing:
        return False
    reach = spacing * tile
    (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1) = first.box, second.box
    return ay0 < by1 + reach and by0 < ay1 + reach and ax0 < bx1 + reach and bx0 < ax1 + reach


def choose_diverse(candidates: Iterable[Region], n: int, tile: int = TILE, spacing: int = 1,
                   z_spacing: int = 1) -> list[Region]:
    """The ``n`` best regions, greedily, none within ``spacing`` tiles of a better one.

    Each step takes the region with the highest score times its discount; the
    discount of every region left is then multiplied by one minus the (positive)
    correlation of its uncertainty pattern with the region just taken.

    Args:
        candidates: scored regions (:func:`candidate_regions`, of one or many images).
        n: how many to keep.
        tile: the tiles' edge (the unit of ``spacing``).
        spacing: a region closer than this many tiles (edge to edge, in the same plane)
            to a chosen one is skipped; 0 only skips overlapping regions.
        z_spacing: planes this close along the stack's last axis count as the same plane.

    Returns:
        The chosen regions, ranked from 1.
    """
    if n < 1:
        raise InputError(f"the queue needs at least one region, not {n}")
    remaining = [region for region in candidates if np.isfinite(region.score)]
    remaining.sort(key=lambda region: (region.source, region.plane, region.box))
    discount = np.ones(len(remaining))
    chosen: list[Region] = []
    while remaining and len(chosen) < n:
        scores = np.array([region.score for region in remaining]) * discount
        best = int(np.argmax(scores))  # ties: the first in (source, plane, box) order
        pick = remaining.pop(best)
        discount = np.delete(discount, best)
        chosen.append(pick)
        keep = [i for i, region in enumerate(remaining)
                if not _too_close(region, pick, tile, spacing, z_spacing)]
        remaining = [remaining[i] for i in keep]
        discount = discount[keep] * np.array(
            [1.0 - _similarity(region, pick) for region in remaining]) if keep else discount[:0]
    return [replace(region, rank=rank) for rank, region in enumerate(chosen, start=1)]


def rank_regions(maps: Mapping[str, np.ndarray], n: int, tile: int = TILE,
                 source: str = "image", spacing: int = 1, z_spacing: int = 1,
                 masks: Mapping[str, np.ndarray] | None = None) -> list[Region]:
    """The queue of one image: :func:`candidate_regions`, then :func:`choose_diverse`."""
    return choose_diverse(candidate_regions(maps, tile, source, masks), n, tile, spacing,
                          z_spacing)


def suggest_iter(images: Sequence[tuple[str, Any]], model: Any, n: int, *, tile: int = TILE,
                 spacing: int = 1, z_spacing: int = 1, classes: Sequence[str] | None = None,
                 **options: Any) -> Generator[Progress, None, list[Region]]:
    """Segment each image with uncertainty maps and rank all their tiles; yields progress.

    Args:
        images: ``(source name, pixels)`` pairs (pixels as
            :func:`~napari_organelle.inference.segment` takes them).
        model: a loaded model or its name/path.
        n: regions in the queue.
        tile, spacing, z_spacing: see :func:`choose_diverse`.
        classes: classes whose uncertainty counts (default: all the model's).
        **options: more options of :func:`~napari_organelle.inference.segment_iter`
            (``pixel_size_nm``, ``channel_axis``, ``device``...).

    Returns:
        The ranked regions of all the images together.
    """
    from .inference import segment_iter
    from .models import load_model

    if not images:
        raise InputError("no images to rank")
    loaded = load_model(model)
    candidates: list[Region] = []
    for index, (source, pixels) in enumerate(images):
        work = segment_iter(pixels, loaded, classes=classes, uncertainty=True, **options)
        while True:
            try:
                step = next(work)
            except StopIteration as finished:
                result = finished.value
                break
            yield Progress(index * 100 + round(100 * step.fraction), 100 * len(images),
                           f"{source}: {step.message}")
        candidates.extend(candidate_regions(result.uncertainty, tile, source,
                                            masks={name: result.labels[name]
                                                   for name in result.uncertainty}))
    return choose_diverse(candidates, n, tile, spacing, z_spacing)


def write_suggestions(path: str | os.PathLike, regions: Sequence[Region],
                      model: str | None = None) -> None:
    """Write the queue as JSON (``.json``) or CSV (any other suffix), atomically."""
    from .durable import atomic_write_text

    path = os.fspath(path)
    if path.endswith(".json"):
        rows = [{k: v for k, v in asdict(r).items() if k != "pattern"} for r in regions]
        text = json.dumps({"model": model, "regions": rows}, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        names = sorted({name for r in regions for name in r.per_class})
        writer.writerow(["rank", "source", "plane", "y0", "x0", "y1", "x1", "score",
                         *(f"unsure_{name}" for name in names)])
        for r in regions:
            writer.writerow([r.rank, r.source, " ".join(map(str, r.plane)), *r.box,
                             f"{r.score:.4f}",
                             *(f"{r.per_class.get(name, float('nan')):.4f}" for name in names)])
        text = buffer.getvalue()
    atomic_write_text(path, text)
