"""Blockwise segmentation of images larger than memory, resumable, into OME-Zarr labels.

The image (2-D, a stack of planes, or a Z stack in volume mode) is cut into
*blocks* aligned with the output chunks; every block is one task, run in this
process (:class:`LocalExecutor`) or on a dask cluster
(:mod:`napari_organelle.distributed`). Four phases:

1. **Predict** each block. The network sees the tiles of the *global* tile grid
   (the grid :func:`~napari_organelle.tiling.predict_plane` uses on the whole
   plane) that touch the block; its blended probabilities and masks are
   therefore the in-memory ones, pixel for pixel, whatever the block grid.
   Normalisation uses per-plane percentiles computed once for the whole image
   (from the same subsample the in-memory path uses). Semantic masks go to the
   output, instance masks to a mask array in the work folder.
2. **Label** each block plus a *halo* read from those masks (so the halo costs
   no network time, only labelling): an object that crosses the block border is
   seen whole. The labels, with block-local ids, are kept in a file of the work
   folder.
3. **Merge** across block faces (and edges, corners): for each pair of
   neighbouring blocks, the two labellings are compared where both see the
   image (the halo overlap); two ids are joined (union-find) when their common
   pixels are at least :data:`MATCH_FRACTION` of the smaller one there. An
   overlap test, not touch-only merging, so dense touching objects stay apart.
4. **Write** each block's inner region with the merged, consecutive ids, then
   build the pyramids (:func:`napari_organelle.ngff.finish_labels`).

**Identity with in-memory segmentation**: the masks are always identical (with
the same tile size, overlap and batch size; see the tests). Instance labels are
identical up to renumbering when every object touching a block's inner region
fits in the block plus halo without reaching the halo's outer edge: an object at
most ``halo`` pixels long in every direction always does. Objects that do not
are counted (a note in the result) and merged by overlap.

**Resumable**: finished blocks of phases 1 and 2 are appended to ``log.jsonl``
in the work folder (beside the output, see :func:`work_folder`); a rerun with
the same settings skips them (phases 3 and 4 are redone, they are cheap and
deterministic) and gives the same result. Memory per task: one block plus
halo (raw pixels, masks, labels), independent of the image size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from .durable import append_line, atomic_path, atomic_write_json
from .errors import InputError
from .image_input import plane_statistics, prepare_image
from .inference import (
    RESCALE_TOLERANCE,
    _anisotropy,
    _BatchPredictor,
    _min_sizes,
    _normalizer,
    _plan_channel_jobs,
    _rescale_factor,
    _volume_axis,
    checked_tile_size,
)
from .models import ClassSpec, Model, load_model
from .ngff import LabelsTarget, create_labels, finish_labels
from .postprocess import label_instances
from .progress import Progress
from .tiling import predict_plane, tile_starts
from .volume import label_volume, min_object_voxels

#: Two ids seen by neighbouring blocks are one object when they share at least this
#: fraction of the smaller one's pixels in the blocks' common region.
MATCH_FRACTION = 0.5
#: Default inner block edge (Y, X) in 2-D, and (Z, Y, X) in volume mode. The network
#: runs twice on the tiles that straddle a block border, (block + tile) / block per axis:
#: 1.06 x 1.06 at 4096 px and a 256 px tile; the Z axis costs none (planes are predicted
#: one by one). Memory per task grows with the block: about 1 GB at these sizes.
BLOCK_2D = 4096
BLOCK_3D = (32, 1024, 1024)
LOG_NAME = "log.jsonl"
#: Volume mode labels a block plus halo in 3-D: measured 15-19 bytes a voxel above the
#: process's 0.9-1 GB of libraries and model (benchmarks/large.py, 64-plane blocks of
#: 1024 x 1024: 2.2-2.25 GB peak per worker). The default 3-D block is shrunk, Z first
#: (planes cost no network time), until a block plus halo needs at most VOLUME_TASK_BYTES,
#: so that a worker stays under 2 GB.
VOLUME_BYTES_PER_VOXEL = 20
VOLUME_TASK_BYTES = 900 * 2**20
#: In-memory segmentation may take this share of the free memory; a lazy image that
#: needs more is segmented blockwise by the Segment dock (:func:`needs_blockwise`).
MEMORY_SHARE = 0.5


@dataclass
class BlockPlan:
    """Everything a task needs to segment, merge or write one block (picklable).

    Attributes:
        source: the image as given (numpy, dask or zarr array), in its own axis order.
        channel_axis, rgb: how to read it (see :func:`~napari_organelle.image_input.prepare_image`).
        shape: spatial output shape ``(*leading, Y, X)``; leading is ``()`` or ``(Z,)``.
        block: inner block size per spatial axis.
        halo: context added on each side, per spatial axis (for labelling).
        tile, stride: the network's global tile grid.
        volume: instance objects are 3-D (Z stack labelled in 3-D).
        channels, names: image channels fed to the network and classes it returns.
        class_index: per class, the network output channel.
        specs: per class, its :class:`ClassSpec`.
        min_sizes: per instance class, the smallest object (pixels; voxels in 3-D).
        anisotropy: Z step / pixel size (volume mode).
        lows, highs: per plane (flattened leading index) and channel, normalisation.
        fill: per plane and channel, the value replacing NaN pixels (NaN: none).
        batch_size, tta, device, backend: how the network runs.
        targets: per class, where its labels go.
        work: the work folder (block files and the log).
    """

    source: Any
    channel_axis: int | None
    rgb: bool | None
    shape: tuple[int, ...]
    block: tuple[int, ...]
    halo: tuple[int, ...]
    tile: int
    stride: int
    volume: bool
    channels: list[int]
    names: list[str]
    class_index: list[int]
    specs: dict[str, ClassSpec]
    min_sizes: dict[str, int]
    anisotropy: float
    lows: np.ndarray
    highs: np.ndarray
    fill: np.ndarray
    batch_size: int
    tta: bool
    device: str
    backend: str | None
    targets: dict[str, LabelsTarget]
    work: str
    overlap: float = 0.25

    @property
    def grid(self) -> tuple[int, ...]:
        """Blocks along each spatial axis."""
        return tuple(math.ceil(n / b) for n, b in zip(self.shape, self.block))

    def blocks(self) -> list[tuple[int, ...]]:
        """Every block index, in raster order."""
        return list(product(*(range(n) for n in self.grid)))

    def linear(self, index: tuple[int, ...]) -> int:
        return int(np.ravel_multi_index(index, self.grid))

    def inner(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        """The block's own region (what it writes)."""
        return tuple(slice(i * b, min((i + 1) * b, n))
                     for i, b, n in zip(index, self.block, self.shape))

    def extended(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        """The block plus halo, clipped to the image (what it labels)."""
        return tuple(slice(max(s.start - h, 0), min(s.stop + h, n))
                     for s, h, n in zip(self.inner(index), self.halo, self.shape))

    @property
    def instance_names(self) -> list[str]:
        return [name for name in self.names if self.specs[name].kind == "instance"]

    def block_file(self, index: tuple[int, ...]) -> Path:
        return Path(self.work) / "blocks" / ("_".join(map(str, index)) + ".npz")


def tile_span(length: int, tile: int, stride: int, start: int, stop: int) -> tuple[int, int]:
    """The pixels ``[a, b)`` covered by the global tiles that touch ``[start, stop)``.

    Predicting ``[a, b)`` with :func:`~napari_organelle.tiling.predict_plane` runs
    exactly those tiles, so the blended result equals the whole plane's there.

    Examples:
        >>> tile_starts(1000, 256, 192)
        [0, 192, 384, 576, 744]
        >>> tile_span(1000, 256, 192, 400, 500)
        (192, 640)
        >>> tile_span(1000, 256, 192, 900, 1000)
        (744, 1000)
    """
    if length <= tile:
        return 0, length
    starts = tile_starts(length, tile, stride)
    first = max(bisect_right(starts, start - tile), 0)   # first tile with s + tile > start
    last = bisect_left(starts, stop) - 1                  # last tile with s < stop
    return starts[first], min(starts[last] + tile, length)


# --------------------------------------------------------------------------- executors


class LocalExecutor:
    """Runs tasks one after the other in this process (results in order)."""

    def map_unordered(self, function: Callable[..., Any], items: Sequence[Any],
                      *shared: Any) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, function(*shared, item)

    def close(self) -> None:
        """Nothing to release."""


_PREDICTORS: dict[tuple[Any, ...], tuple[Any, _BatchPredictor]] = {}
_PREDICTOR_LOCK = threading.Lock()


def cached_predictor(model: Model | str, device: str, tta: bool,
                     backend: str | None) -> tuple[Model, _BatchPredictor]:
    """The model and its runner, loaded once per process (each dask worker loads it once)."""
    from .devices import resolve_device

    key = (id(model) if isinstance(model, Model) else str(model), device, tta, backend)
    with _PREDICTOR_LOCK:
        if key not in _PREDICTORS:
            loaded = load_model(model)
            _PREDICTORS[key] = (loaded, _BatchPredictor(loaded, resolve_device(device), tta,
                                                        backend, []))
            if isinstance(model, Model):
                _PREDICTORS[key] = (model, _PREDICTORS[key][1])  # keeps id(model) alive
        return _PREDICTORS[key]


# --------------------------------------------------------------------------- phase 1


def _prepared_data(plan: BlockPlan) -> Any:
    source = plan.source
    if not isinstance(source, np.ndarray) and not hasattr(source, "dask"):
        import dask.array as da

        source = da.from_zarr(source)
    return prepare_image(source, channel_axis=plan.channel_axis, rgb=plan.rgb,
                         keep_rgb=len(plan.channels) == 3).data


def _read(data: Any, index: tuple[Any, ...]) -> np.ndarray:
    region = data[index]
    if hasattr(region, "compute"):
        region = region.compute(scheduler="sync")
    return np.asarray(region)


def predict_block(plan: BlockPlan, model: Model | str, index: tuple[int, ...]
                  ) -> dict[str, Any]:
    """Phase 1 for one block: run the network on the block's own pixels, write the masks.

    Semantic masks go to the output; instance masks to the work folder's mask
    arrays (labelled in phase 2 with a halo read from there, so the halo costs
    no network time).

    Returns:
        ``{"block": [...]}``, for the log.
    """
    _, predictor = cached_predictor(model, plan.device, plan.tta, plan.backend)
    data = _prepared_data(plan)
    inner = plan.inner(index)
    n_lead = len(plan.shape) - 2
    height, width = plan.shape[-2:]
    ty = tile_span(height, plan.tile, plan.stride, inner[-2].start, inner[-2].stop)
    tx = tile_span(width, plan.tile, plan.stride, inner[-1].start, inner[-1].stop)
    crop = (slice(inner[-2].start - ty[0], inner[-2].stop - ty[0]),
            slice(inner[-1].start - tx[0], inner[-1].stop - tx[0]))
    planes = list(product(*(range(s.start, s.stop) for s in inner[:n_lead])))
    inner_shape = tuple(s.stop - s.start for s in inner)
    masks = {name: np.zeros(inner_shape, dtype=np.uint8) for name in plan.names}
    predict = predictor.for_classes(plan.class_index)
    thresholds = [plan.specs[name].threshold for name in plan.names]
    for position, lead in enumerate(planes):
        flat = int(np.ravel_multi_index(lead, plan.shape[:n_lead])) if n_lead else 0
        lows, highs = plan.lows[flat], plan.highs[flat]
        if np.isnan(lows).any() or (highs <= lows).all():
            continue  # a blank plane: left unlabelled, as in memory
        raw = _read(data, (*lead, plan.channels, slice(*ty), slice(*tx)))
        if not np.isnan(plan.fill[flat]).all():
            raw = _fill(raw, plan.fill[flat])
        work = predict_plane(raw, predict, len(plan.names), tile=plan.tile,
                             overlap=plan.overlap, batch_size=plan.batch_size,
                             normalize=_normalizer(lows, highs), thresholds=thresholds)
        predicted = _drain(work)
        where = np.unravel_index(position, inner_shape[:n_lead]) if n_lead else ()
        for channel, name in enumerate(plan.names):
            masks[name][tuple(where)] = predicted[channel][crop]
    for name in plan.names:
        if plan.specs[name].kind == "semantic":
            plan.targets[name].open()[inner] = masks[name]
        else:
            _open_mask(plan, name)[inner] = masks[name]
    return {"block": list(index)}


def label_block(plan: BlockPlan, index: tuple[int, ...]) -> dict[str, Any]:
    """Phase 2 for one block: label the instance masks of the block plus halo.

    The labels (block-local ids) are kept in the work folder for merging.

    Returns:
        A JSON-ready record: per instance class the ids present in the block's
        own region, and how many of them reach the halo's outer edge.
    """
    inner, ext = plan.inner(index), plan.extended(index)
    local = tuple(slice(i.start - e.start, i.stop - e.start) for i, e in zip(inner, ext))
    record: dict[str, Any] = {"block": list(index), "ids": {}, "cut": {}}
    labels_out = {}
    for name in plan.instance_names:
        labels = _label_block(plan, np.asarray(_open_mask(plan, name, "r")[ext]), name)
        present = _present(labels[local])
        record["ids"][name] = [int(i) for i in present]
        record["cut"][name] = int(np.intersect1d(_cut_ids(plan, labels, ext), present).size)
        labels_out[name] = labels
    if labels_out:
        path = plan.block_file(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez_compressed(handle, **labels_out)
    return record


def segment_block(plan: BlockPlan, model: Model | str, index: tuple[int, ...]
                  ) -> dict[str, Any]:
    """Phases 1 and 2 of one block, for a caller with the neighbours' masks already written."""
    predict_block(plan, model, index)
    return label_block(plan, index)


def _mask_path(plan: BlockPlan, name: str) -> str:
    return str(Path(plan.work) / "masks" / name)


def _open_mask(plan: BlockPlan, name: str, mode: str = "r+") -> Any:
    import zarr

    return zarr.open_array(_mask_path(plan, name), mode=mode)


def _create_masks(plan: BlockPlan) -> None:
    """The work folder's instance mask arrays (kept when resuming)."""
    import zarr

    for name in plan.instance_names:
        path = Path(_mask_path(plan, name))
        if (path / "zarr.json").exists():
            existing = zarr.open_array(str(path), mode="r")
            if tuple(existing.shape) == plan.shape and tuple(existing.chunks) == plan.block:
                continue
        zarr.create_array(str(path), shape=plan.shape, chunks=plan.block, dtype=np.uint8,
                          fill_value=0, overwrite=True, zarr_format=3)


def _drain(work: Generator[Progress, None, np.ndarray]) -> np.ndarray:
    try:
        while True:
            next(work)
    except StopIteration as finished:
        return finished.value


def _fill(raw: np.ndarray, values: np.ndarray) -> np.ndarray:
    raw = raw.astype(np.float32, copy=True)
    for channel, value in zip(raw, values):
        channel[~np.isfinite(channel)] = 0.0 if np.isnan(value) else value
    return raw


def _label_block(plan: BlockPlan, mask: np.ndarray, name: str) -> np.ndarray:
    """Instance labels of a block plus halo: 3-D objects, or plane by plane with unique ids."""
    size = plan.min_sizes[name]
    if plan.volume:
        return label_volume(mask, min_size=size, anisotropy=plan.anisotropy).astype(np.uint32)
    labels = np.zeros(mask.shape, dtype=np.uint32)
    flat_mask = mask.reshape(-1, *mask.shape[-2:])
    flat_labels = labels.reshape(-1, *mask.shape[-2:])
    next_id = 0
    for plane, out in zip(flat_mask, flat_labels):
        found = label_instances(plane, min_size=size)
        count = int(found.max())
        np.add(found, next_id, out=out, where=found > 0, casting="unsafe")
        next_id += count
    return labels


def _present(labels: np.ndarray) -> np.ndarray:
    values = np.unique(labels)
    return values[values > 0]


def _cut_ids(plan: BlockPlan, labels: np.ndarray, ext: tuple[slice, ...]) -> np.ndarray:
    """Ids that reach the halo's outer edge where it is not the image's edge."""
    found = []
    for axis, (s, n) in enumerate(zip(ext, plan.shape)):
        if not plan.volume and axis < len(plan.shape) - 2:
            continue  # plane by plane: objects do not continue along Z
        if s.start > 0:
            found.append(np.take(labels, 0, axis=axis).ravel())
        if s.stop < n:
            found.append(np.take(labels, -1, axis=axis).ravel())
    return _present(np.concatenate(found)) if found else np.zeros(0, np.uint32)


# --------------------------------------------------------------------------- phase 3 (merge)


def _neighbours(plan: BlockPlan, index: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Later blocks (raster order) whose halo overlaps this one's: faces, edges, corners."""
    result = []
    for step in product((-1, 0, 1), repeat=len(index)):
        other = tuple(i + s for i, s in zip(index, step))
        if other <= index or any(not 0 <= o < n for o, n in zip(other, plan.grid)):
            continue
        if not plan.volume and len(index) == 3 and other[0] != index[0]:
            continue
        result.append(other)
    return result


def merge_pairs(plan: BlockPlan, index: tuple[int, ...]) -> dict[str, list[list[int]]]:
    """Phase 3 for one block: the ids it shares with each later neighbour.

    Returns:
        Per instance class, ``[block_a, id_a, block_b, id_b]`` rows (linear block
        numbers, local ids) of the objects to join.
    """
    pairs: dict[str, list[list[int]]] = {name: [] for name in plan.instance_names}
    mine = np.load(plan.block_file(index)) if plan.block_file(index).exists() else None
    if mine is None:
        return pairs
    ext_a = plan.extended(index)
    for other in _neighbours(plan, index):
        path = plan.block_file(other)
        if not path.exists():
            continue
        theirs = np.load(path)
        ext_b = plan.extended(other)
        common = tuple(slice(max(a.start, b.start), min(a.stop, b.stop))
                       for a, b in zip(ext_a, ext_b))
        if any(s.stop <= s.start for s in common):
            continue
        in_a = tuple(slice(c.start - a.start, c.stop - a.start) for c, a in zip(common, ext_a))
        in_b = tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(common, ext_b))
        for name in plan.instance_names:
            for id_a, id_b in match_overlaps(mine[name][in_a], theirs[name][in_b]):
                pairs[name].append([plan.linear(index), id_a, plan.linear(other), id_b])
    return pairs


def match_overlaps(first: np.ndarray, second: np.ndarray,
                   fraction: float = MATCH_FRACTION) -> list[tuple[int, int]]:
    """Id pairs of two labellings of one region that are the same object.

    ``a`` and ``b`` match when their common pixels are at least ``fraction`` of
    the smaller of the two (in this region); objects that merely touch share no
    pixel and never match.

    Examples:
        >>> a = np.array([[1, 1, 0, 2, 2]])
        >>> b = np.array([[5, 5, 6, 6, 6]])
        >>> match_overlaps(a, b)
        [(1, 5), (2, 6)]
    """
    both = (first > 0) & (second > 0)
    if not both.any():
        return []
    a, b = first[both].astype(np.int64), second[both].astype(np.int64)
    pair_keys, joint = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    size_a = dict(zip(*np.unique(first[first > 0], return_counts=True)))
    size_b = dict(zip(*np.unique(second[second > 0], return_counts=True)))
    matches = []
    for (id_a, id_b), count in zip(pair_keys.T, joint):
        if count >= fraction * min(size_a[id_a], size_b[id_b]):
            matches.append((int(id_a), int(id_b)))
    return matches


class UnionFind:
    """Disjoint sets of hashable keys (path halving)."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, key: Any) -> Any:
        parent = self.parent.setdefault(key, key)
        while parent != key:
            grand = self.parent[parent]
            self.parent[key] = grand
            key, parent = parent, self.parent[grand]
        return key

    def union(self, first: Any, second: Any) -> None:
        root_a, root_b = self.find(first), self.find(second)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def final_lookups(plan: BlockPlan, records: dict[tuple[int, ...], dict[str, Any]],
                  pairs: Iterable[dict[str, list[list[int]]]]) -> dict[str, dict[int, np.ndarray]]:
    """Per class and linear block, the array mapping local ids to final consecutive ids."""
    sets = {name: UnionFind() for name in plan.instance_names}
    for found in pairs:
        for name, rows in found.items():
            for block_a, id_a, block_b, id_b in rows:
                sets[name].union((block_a, id_a), (block_b, id_b))
    lookups: dict[str, dict[int, np.ndarray]] = {}
    for name in plan.instance_names:
        numbers: dict[Any, int] = {}
        lookups[name] = {}
        for index in plan.blocks():
            ids = records.get(index, {}).get("ids", {}).get(name, [])
            block = plan.linear(index)
            lookup = np.zeros((max(ids) if ids else 0) + 1, dtype=np.uint32)
            for local in ids:
                root = sets[name].find((block, local))
                lookup[local] = numbers.setdefault(root, len(numbers) + 1)
            lookups[name][block] = lookup
    return lookups


# --------------------------------------------------------------------------- phase 4 (write)


def write_block(plan: BlockPlan, lookups: dict[str, np.ndarray], index: tuple[int, ...]) -> int:
    """Phase 4 for one block: write its inner region with the final ids; returns 0."""
    path = plan.block_file(index)
    if not path.exists():
        return 0
    stored = np.load(path)
    inner, ext = plan.inner(index), plan.extended(index)
    local = tuple(slice(i.start - e.start, i.stop - e.start) for i, e in zip(inner, ext))
    for name, lookup in lookups.items():
        labels = stored[name][local]
        labels = np.where(labels < lookup.size, labels, 0)
        plan.targets[name].open()[inner] = lookup[labels]
    return 0


# --------------------------------------------------------------------------- driver


@dataclass
class BlockwiseResult:
    """What :func:`segment_blockwise_iter` returns.

    Attributes:
        out: the OME-Zarr folder that holds ``labels/<class>``.
        classes: the returned classes.
        object_counts: per instance class, objects after merging.
        blocks: blocks in all; skipped: blocks already done by an earlier run.
        seconds: wall time.
        notes: what the user should know.
        settings: the block size, halo, tile and so on.
    """

    out: Path
    classes: dict[str, ClassSpec]
    object_counts: dict[str, int]
    blocks: int
    skipped: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "classes": {n: {"kind": s.kind, "color": s.color}
                                                  for n, s in self.classes.items()},
                "object_counts": self.object_counts, "blocks": self.blocks,
                "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "settings": self.settings, "notes": self.notes}


def needs_blockwise(image: Any, card: Any, classes: Sequence[str], *, rgb: bool = False,
                    volume: bool = False, available: int | None = None) -> bool:
    """Whether segmenting ``image`` in memory would take more than :data:`MEMORY_SHARE`
    of the free memory, so that it should be segmented blockwise.

    Reads no pixels (the shape and dtype of a dask or zarr array are enough).

    Args:
        image: the image as :func:`~napari_organelle.inference.segment` takes it.
        card: the model's card; classes: the classes to segment.
        rgb, volume: as for :func:`~napari_organelle.inference.segment`.
        available: free bytes (default: this machine's).

    Examples:
        >>> import dask.array as da
        >>> from napari_organelle.models import ClassSpec, ModelCard
        >>> card = ModelCard("m", "1.0.0", "Unet", "resnet18", 1, "em",
        ...                  [ClassSpec("mitochondria", "instance")])
        >>> big = da.zeros((65536, 65536), dtype="uint8")
        >>> needs_blockwise(big, card, ["mitochondria"], available=8 << 30)
        True
        >>> needs_blockwise(big[:4096, :4096], card, ["mitochondria"], available=8 << 30)
        False
    """
    from .inference import available_memory, estimated_memory

    prepared = prepare_image(image, rgb=rgb, keep_rgb=card.in_channels == 3)
    specs = [card.class_spec(name) for name in classes]
    z_axis = 0 if volume and prepared.leading_shape else None
    free = available if available is not None else available_memory()
    return bool(free) and estimated_memory(prepared, specs, z_axis) > MEMORY_SHARE * free


def work_folder(out: str | os.PathLike) -> Path:
    """Where a run keeps its block files and log: beside the output, ``<out>.work``."""
    out = Path(out)
    return out.parent / f"{out.name}.napari-organelle-work"


def segment_blockwise_iter(
    image: Any,
    model: Model | str,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    axes: str | None = None,
    pixel_size_nm: float | None = None,
    scale: Sequence[float] | None = None,
    volume: bool | None = None,
    z_anisotropy: float | None = None,
    tile_size: int | None = None,
    overlap: float = 0.25,
    batch_size: int | None = None,
    tta: bool = False,
    device: str = "auto",
    backend: str | None = None,
    min_size: dict[str, int] | None = None,
    block_size: int | Sequence[int] | None = None,
    halo: int | Sequence[int] | None = None,
    executor: Any = None,
    version: str = "0.5",
    keep_work: bool = False,
) -> Generator[Progress, None, BlockwiseResult]:
    """Segment an image block by block into OME-Zarr labels, yielding progress.

    Args:
        image: numpy, dask or zarr array (an OME-Zarr level:
            :func:`napari_organelle.ngff.read_ngff`), read one block at a time.
        model: a loaded model or its name/path (a name is loaded once per worker).
        out: the OME-Zarr folder for ``labels/<class>`` (the source image itself,
            or a new folder).
        classes, channel_axis, rgb, tile_size, overlap, batch_size, tta, device,
            backend, min_size, volume, z_anisotropy: as for
            :func:`~napari_organelle.inference.segment_iter`.
        axes: one letter per axis of ``image`` (``"ZYX"``); finds Z.
        pixel_size_nm: must match the model's (within 10 %) or be None: blocks
            are not rescaled (open the pyramid level nearest the model's pixel size).
        scale: physical pixel size per spatial output axis, for the metadata.
        block_size: inner block edge (one int, or one per spatial axis); rounded
            up to a multiple of the image's chunks; default :data:`BLOCK_2D`
            or :data:`BLOCK_3D` (volume).
        halo: context on each side for labelling, one int (Y and X; 8 planes in
            Z in volume mode) or one per spatial axis; default: the tile size.
            Objects up to this size are labelled exactly as in memory.
        executor: runs the tasks (:class:`LocalExecutor` by default;
            :class:`napari_organelle.distributed.ClusterExecutor` for dask).
        version: NGFF version of a new output (``"0.4"`` or ``"0.5"``); an existing
            OME-Zarr keeps its own.
        keep_work: keep the work folder (block files, log) after success.

    Raises:
        InputError: the image cannot be segmented blockwise as given, or ``out``
            holds a run with other settings.
    """
    started = time.perf_counter()
    loaded = load_model(model)
    card = loaded.card
    wanted = list(classes) if classes is not None else card.class_names
    if not wanted:
        raise InputError("no classes chosen: pick at least one organelle to segment")
    for name in wanted:
        card.class_spec(name)
    tile = checked_tile_size(card, tile_size)
    if not 0 <= overlap < 0.9:
        raise InputError(f"overlap must be between 0 and 0.9, not {overlap}")
    if _rescale_factor(pixel_size_nm, card.pixel_size_nm) != 1.0:
        raise InputError(
            f"the image's pixels ({pixel_size_nm} nm) differ from the model's "
            f"({card.pixel_size_nm} nm) by more than {RESCALE_TOLERANCE:.0%}; blockwise "
            "segmentation does not rescale: use the pyramid level nearest the model's pixel "
            "size (--level), or segment in memory")
    source = image
    lazy = image if isinstance(image, np.ndarray) or hasattr(image, "dask") else _as_dask(image)
    prepared = prepare_image(lazy, channel_axis=channel_axis, rgb=rgb,
                             keep_rgb=card.in_channels == 3)
    notes = list(prepared.notes)
    if len(prepared.leading_shape) > 1:
        raise InputError("blockwise segmentation takes 2-D images, stacks and Z stacks "
                         f"(Y, X with at most one axis before them), not {prepared.output_shape}"
                         "; segment one time point at a time")
    jobs = _plan_channel_jobs(prepared, card.in_channels, wanted, None)
    channels, names = jobs[0]
    z_axis = _volume_axis(prepared, volume, axes, notes)
    anisotropy = _anisotropy(z_anisotropy)
    specs = {name: card.class_spec(name) for name in names}
    sizes = _min_sizes(specs, min_size, 1.0)
    if z_axis is not None:
        sizes = {name: min_object_voxels(size, anisotropy) for name, size in sizes.items()}
    shape = prepared.output_shape
    chunks = _source_chunks(lazy, prepared, channel_axis)
    block = _block_shape(shape, chunks, block_size, z_axis is not None)
    halo_shape = _halo_shape(shape, halo, tile, z_axis is not None, block)
    if block_size is None and z_axis is not None:
        block = fit_volume_block(shape, block, halo_shape, tile)
    stride = max(1, int(round(tile * (1.0 - overlap))))
    from .devices import resolve_device

    device_name = str(resolve_device(device))
    batch = int(batch_size or (4 if device_name == "cpu" else 16))

    yield Progress(0, 1, "normalisation statistics")
    lows, highs, fill, stats_notes = _plane_statistics(prepared, channels, card)
    notes += stats_notes
    if np.isnan(lows).any(axis=1).all() or (highs <= lows).all():
        raise InputError("the image is blank (every pixel has the same value, or none is a "
                         "number): there is nothing to segment")

    out = Path(out)
    work = work_folder(out)
    spatial_axes = _spatial_axes(axes, prepared, channel_axis, z_axis is not None)
    scale = list(scale) if scale is not None else [
        (pixel_size_nm or 1.0) for _ in spatial_axes]
    existing_version = _existing_version(out)
    version = existing_version or version
    targets = {name: create_labels(out, name, shape, block,
                                   np.uint32 if specs[name].kind == "instance" else np.uint8,
                                   spatial_axes, scale, version=version)
               for name in names}
    plan = BlockPlan(source=source, channel_axis=channel_axis, rgb=rgb, shape=shape,
                     block=block, halo=halo_shape, tile=tile, stride=stride,
                     volume=z_axis is not None, channels=channels, names=names,
                     class_index=[card.class_names.index(n) for n in names], specs=specs,
                     min_sizes=sizes, anisotropy=anisotropy, lows=lows, highs=highs, fill=fill,
                     batch_size=batch, tta=tta, device=device_name, backend=backend,
                     targets=targets, work=str(work), overlap=overlap)
    settings = {"block": list(block), "halo": list(halo_shape), "tile_size": tile,
                "overlap": overlap, "batch_size": batch, "tta": tta, "volume": plan.volume,
                "model": card.full_name, "classes": names, "shape": list(shape),
                "ngff_version": version}
    predicted, records = _start_log(work, settings)
    _create_masks(plan)
    executor = executor or LocalExecutor()
    blocks = plan.blocks()
    to_predict = [index for index in blocks if index not in predicted]
    to_label = [index for index in blocks if index not in records]
    skipped = len(blocks) - len(to_predict)
    total = len(to_predict) + len(to_label) + 2 * len(blocks) + 1
    done = 0
    shared_model = executor.share(model) if hasattr(executor, "share") else (
        model if isinstance(model, str) else loaded)
    plan_ref = executor.share(plan) if hasattr(executor, "share") else plan
    try:
        for index, record in executor.map_unordered(predict_block, to_predict, plan_ref,
                                                    shared_model):
            append_line(work / LOG_NAME, json.dumps({"phase": 1, **record}).encode())
            done += 1
            yield Progress(done, total, f"segmented block {done}/{len(to_predict)}")
        if plan.instance_names:
            for index, record in executor.map_unordered(label_block, to_label, plan_ref):
                append_line(work / LOG_NAME, json.dumps({"phase": 2, **record}).encode())
                records[tuple(index)] = record
                done += 1
                yield Progress(done, total, "labelling objects")
        pairs = []
        for _, found in executor.map_unordered(merge_pairs, blocks, plan_ref):
            pairs.append(found)
            done += 1
            yield Progress(done, total, "merging across blocks")
        lookups = final_lookups(plan, records, pairs)
        by_block = [(index, {name: lookups[name][plan.linear(index)]
                             for name in plan.instance_names}) for index in blocks]
        for _ in executor.map_unordered(_write_block_item, by_block, plan_ref):
            done += 1
            yield Progress(done, total, "writing objects")
    finally:
        executor.close()
    yield Progress(done, total, "building pyramids")
    for name in names:
        finish_labels(targets[name], color=specs[name].color, kind=specs[name].kind,
                      source_image=existing_version is not None)
    cut = {name: sum(r.get("cut", {}).get(name, 0) for r in records.values())
           for name in plan.instance_names}
    for name, count in cut.items():
        if count:
            notes.append(f"{count} {name} object(s) reached the edge of a block's halo "
                         f"({halo_shape[-1]} px); they were joined by overlap and may differ "
                         "from an in-memory segmentation (use a larger --halo)")
    counts = {name: int(max((lk.max(initial=0) for lk in lookups[name].values()), default=0))
              for name in plan.instance_names}
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return BlockwiseResult(out=out, classes=specs, object_counts=counts, blocks=len(blocks),
                           skipped=skipped, seconds=time.perf_counter() - started,
                           notes=notes, settings=settings)


def segment_blockwise(image: Any, model: Model | str, out: str | os.PathLike,
                      progress: Callable[[Progress], None] | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      **options: Any) -> BlockwiseResult:
    """Run :func:`segment_blockwise_iter` to the end (a stop leaves a resumable run)."""
    from .progress import run

    return run(segment_blockwise_iter(image, model, out, **options), progress, should_stop)


def _write_block_item(plan: BlockPlan, item: tuple[tuple[int, ...], dict[str, np.ndarray]]
                      ) -> int:
    index, lookups = item
    return write_block(plan, lookups, index)


def _as_dask(array: Any) -> Any:
    import dask.array as da

    return da.from_zarr(array) if hasattr(array, "store") else da.asarray(array)


def _source_chunks(lazy: Any, prepared: Any, channel_axis: int | None) -> tuple[int, ...]:
    """The chunk edge of the image along each spatial output axis (1 when not chunked)."""
    data = prepared.data
    if not hasattr(data, "chunks") or isinstance(data, np.ndarray):
        return (1,) * len(prepared.output_shape)
    chunk = [c[0] for c in data.chunks]
    return tuple(int(c) for c in (*chunk[:-3], *chunk[-2:]))


def _block_shape(shape: tuple[int, ...], chunks: tuple[int, ...],
                 block_size: int | Sequence[int] | None, volume: bool) -> tuple[int, ...]:
    n_lead = len(shape) - 2
    if block_size is None:
        wanted = list(BLOCK_3D[-len(shape):]) if volume else [1] * n_lead + [BLOCK_2D] * 2
    elif isinstance(block_size, int):
        wanted = ([block_size] * len(shape) if volume
                  else [1] * n_lead + [block_size] * 2)
    else:
        wanted = [int(b) for b in block_size]
        if len(wanted) != len(shape):
            raise InputError(f"--block needs {len(shape)} sizes for a {len(shape)}-D image")
    if any(b < 1 for b in wanted):
        raise InputError(f"block sizes must be positive, not {wanted}")
    # Chunk-aligned: a multiple of the image's chunks, and never larger than the image.
    return tuple(min(n, max(c, int(math.ceil(b / c)) * c))
                 for n, c, b in zip(shape, chunks, wanted))


def fit_volume_block(shape: Sequence[int], block: Sequence[int], halo: Sequence[int],
                     tile: int, budget: int | None = None) -> tuple[int, ...]:
    """Shrink a 3-D block until the block plus halo fits ``budget`` bytes of labelling.

    Z is halved first (planes cost no network time; down to twice the Z halo, at
    least 8 planes), then Y and X (down to twice the tile). Blocks smaller than the
    image's chunks read each chunk more than once; the output is chunked like the
    blocks, so no two tasks ever write one chunk.

    Examples:
        >>> fit_volume_block((512, 1024, 1024), (64, 1024, 1024), (8, 256, 256), 256)
        (16, 1024, 1024)
        >>> fit_volume_block((512, 4096, 4096), (32, 1024, 1024), (8, 256, 256), 256)
        (16, 512, 512)
    """
    budget = VOLUME_TASK_BYTES if budget is None else budget
    block = [int(b) for b in block]

    def needed() -> int:
        extended = [min(n, b + 2 * h) for n, b, h in zip(shape, block, halo)]
        return int(np.prod(extended, dtype=np.int64)) * VOLUME_BYTES_PER_VOXEL

    floor_z = max(8, 2 * int(halo[0]))  # thinner blocks label mostly halo
    while needed() > budget and block[0] // 2 >= floor_z:
        block[0] //= 2
    while needed() > budget and min(block[-2:]) // 2 >= 2 * tile:
        block[-2], block[-1] = block[-2] // 2, block[-1] // 2
    return tuple(block)


def _halo_shape(shape: tuple[int, ...], halo: int | Sequence[int] | None, tile: int,
                volume: bool, block: tuple[int, ...]) -> tuple[int, ...]:
    n_lead = len(shape) - 2
    if halo is None:
        values = [8 if volume else 0] * n_lead + [tile, tile]
    elif isinstance(halo, int):
        values = [8 if volume else 0] * n_lead + [halo, halo]
    else:
        values = [int(h) for h in halo]
    if any(h < 0 for h in values):
        raise InputError(f"the halo must not be negative, not {values}")
    too_big = [(h, b) for h, b, n in zip(values, block, shape) if h > b and b < n]
    if too_big:
        raise InputError(f"the halo ({too_big[0][0]}) is larger than the block "
                         f"({too_big[0][1]}); use a larger --block")
    return tuple(values)


def _plane_statistics(prepared: Any, channels: list[int], card: Any
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per plane, the in-memory path's normalisation: percentiles of a strided subsample.

    The subsample is the one :func:`~napari_organelle.image_input.plane_statistics`
    takes of a whole plane, so the numbers are the in-memory ones.
    """
    height, width = prepared.plane_shape
    step = max(1, int(np.ceil(np.sqrt(height * width / (1 << 21)))))
    n_planes = prepared.n_planes
    lows = np.full((n_planes, len(channels)), np.nan, np.float32)
    highs = np.full_like(lows, np.nan)
    fill = np.full_like(lows, np.nan)
    notes: list[str] = []
    for flat, index in enumerate(prepared.plane_indices()):
        sample = _read(prepared.data, (*index, channels, slice(None, None, step),
                                       slice(None, None, step)))
        low, high, nonfinite = plane_statistics(sample, card.normalization.low,
                                                card.normalization.high, max_pixels=1 << 62)
        if nonfinite:
            finite = np.where(np.isfinite(sample), sample, np.nan)
            fill[flat] = np.nanmedian(finite.reshape(len(channels), -1), axis=1)
            if not notes:
                notes.append("NaN or infinite pixels were replaced by the median of a subsample "
                             "before segmenting; they may be mislabelled")
        flat_range = high <= low
        if flat_range.any() and not np.isnan(low).any():
            for channel in np.flatnonzero(flat_range):
                plane = prepared.data[(*index, channels[channel])]
                low[channel] = float(_nan_reduce(plane, "nanmin"))
                high[channel] = float(_nan_reduce(plane, "nanmax"))
        lows[flat], highs[flat] = low, high
    return lows, highs, fill, notes


def _nan_reduce(plane: Any, name: str) -> float:
    if isinstance(plane, np.ndarray):
        return float(getattr(np, name)(plane))
    import dask.array as da

    return float(getattr(da, name)(plane).compute())


def _spatial_axes(axes: str | None, prepared: Any, channel_axis: int | None,
                  volume: bool) -> str:
    n = len(prepared.output_shape)
    if axes:
        letters = "".join(a for a in axes.upper() if a not in "CS")
        if len(letters) == n:
            return letters
    return ("ZYX" if volume or n == 3 else "YX")[-n:]


def _existing_version(out: Path) -> str | None:
    """The NGFF version of an existing OME-Zarr image at ``out`` (its labels go beside it)."""
    from .ngff import _multiscales, _read_attrs

    if not out.is_dir():
        return None
    try:
        multiscales, version = _multiscales(_read_attrs(out))
    except InputError:
        return None
    if multiscales:
        return "0.5" if version.startswith("0.5") else "0.4"
    return "0.5" if (out / "zarr.json").exists() else "0.4"


def _start_log(work: Path, settings: dict[str, Any]
               ) -> tuple[set[tuple[int, ...]], dict[tuple[int, ...], dict[str, Any]]]:
    """Open (or start) a run's log; returns the blocks phases 1 and 2 already finished."""
    work.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    settings_file = work / "settings.json"
    if settings_file.exists():
        try:
            previous = json.loads(settings_file.read_text()).get("fingerprint")
        except ValueError:
            previous = None
        if previous != fingerprint:
            raise InputError(f"{work} holds an unfinished run with other settings; delete it "
                             "(and the output's labels) or choose another --out")
    else:
        atomic_write_json(settings_file, {"fingerprint": fingerprint, "settings": settings})
    predicted: set[tuple[int, ...]] = set()
    records: dict[tuple[int, ...], dict[str, Any]] = {}
    log = work / LOG_NAME
    if log.exists():
        for line in log.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line from a killed run
            if entry.get("phase") == 1:
                predicted.add(tuple(entry["block"]))
            elif entry.get("phase") == 2:
                index = tuple(entry["block"])
                block_file = work / "blocks" / ("_".join(map(str, index)) + ".npz")
                if not entry.get("ids") or block_file.exists():
                    records[index] = entry
    return predicted, records


__all__ = ["BlockPlan", "BlockwiseResult", "LocalExecutor", "MATCH_FRACTION", "UnionFind",
           "final_lookups", "label_block", "match_overlaps", "merge_pairs", "predict_block",
           "segment_block",
           "segment_blockwise", "segment_blockwise_iter", "tile_span", "work_folder",
           "write_block"]
