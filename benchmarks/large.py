"""Larger than memory: blockwise segmentation of an OME-Zarr on a dask LocalCluster.

Makes an EM-like image lazily on disk (an OME-Zarr written chunk by chunk, never
whole in memory), segments it end to end with
:func:`napari_organelle.blockwise.segment_blockwise_iter` on a LocalCluster of 1
and 2 worker processes, and reports per run: wall time, throughput, and the
peak resident memory (RSS) of the driver and of every worker process. Where the
image is small enough (``--compare``), it is also segmented in memory with
:func:`napari_organelle.inference.segment`: the labels must be identical (masks
equal, objects equal up to renumbering) and the blockwise overhead on one
worker is reported.

Issue #11's sizes: ``--size 32768`` (1 GPix) and ``--volume 512 1024 1024``;
targets: peak RSS under 2 GB per process, identical labels, overhead at most
15 % at 4096 x 4096 on one worker::

    python benchmarks/large.py --size 32768 --volume 512 1024 1024 --workers 1 2
    python benchmarks/large.py --size 4096 --compare --workers 1     # the overhead
    python benchmarks/large.py --size 2048 --compare --workers 1 2   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CELL = 96  # one possible organelle per CELL x CELL pixels (x CELL/4 planes in 3-D)


def _cell_blobs(cell: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    rng = np.random.default_rng([seed, *cell])
    if rng.random() < 0.3:
        return None
    centre = (np.array(cell) + rng.uniform(0.2, 0.8, len(cell))) * _cell_size(len(cell))
    radii = rng.uniform(10, 30, len(cell)) * (np.array([0.25, 1, 1]) if len(cell) == 3
                                              else 1)
    return centre, radii


def _cell_size(ndim: int) -> np.ndarray:
    return np.array([CELL // 4, CELL, CELL] if ndim == 3 else [CELL, CELL])


def synthetic_block(block: np.ndarray, block_info: dict | None = None, seed: int = 0
                    ) -> np.ndarray:
    """One chunk of the synthetic EM image: dark membranes around bright-ish matrix blobs.

    Every pixel depends only on its global position (objects continue across chunks).
    """
    location = block_info[None]["array-location"]
    starts = np.array([a for a, _ in location])
    shape = block.shape
    rng = np.random.default_rng([seed, 7, *starts])
    image = rng.normal(150.0, 12.0, shape)
    size = _cell_size(len(shape))
    first = np.maximum((starts - size) // size, 0)
    last = (starts + np.array(shape)) // size + 1
    for cell in np.ndindex(*(last - first)):
        cell = tuple(int(c) for c in np.array(cell) + first)
        found = _cell_blobs(cell, seed)
        if found is None:
            continue
        centre, radii = found
        # Only the blob's bounding box (membrane included) is touched: a chunk holds
        # about a hundred blobs, and whole-chunk arithmetic per blob made a 1 GPix
        # image take most of an hour to write.
        low = np.maximum(np.floor(centre - 1.12 * radii).astype(int) - starts, 0)
        high = np.minimum(np.ceil(centre + 1.12 * radii).astype(int) + 1 - starts,
                          np.array(shape))
        if np.any(high <= low):
            continue
        window = tuple(slice(a, b) for a, b in zip(low, high))
        grids = np.ogrid[tuple(slice(starts[i] + low[i], starts[i] + high[i])
                               for i in range(len(shape)))]
        distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
        patch = image[window]
        patch[distance < 1.0] -= 60                                # matrix
        patch[(distance >= 1.0) & (distance < 1.25)] -= 100       # membrane
    return np.clip(image, 0, 255).astype(np.uint8)


def make_image(path: Path, shape: tuple[int, ...], chunk: int, seed: int = 0) -> float:
    """Write the synthetic image as an OME-Zarr, chunk by chunk; returns seconds."""
    import dask
    import dask.array as da

    from napari_organelle.ngff import write_ngff_image

    started = time.perf_counter()
    chunks = tuple(min(n, c) for n, c in zip(shape, ([64, chunk, chunk] if len(shape) == 3
                                                      else [chunk, chunk])))
    lazy = da.zeros(shape, dtype=np.uint8, chunks=chunks).map_blocks(
        synthetic_block, dtype=np.uint8, seed=seed)
    with dask.config.set(scheduler="threads", num_workers=max(1, (os.cpu_count() or 2) // 2)):
        write_ngff_image(path, lazy, axes="ZYX" if len(shape) == 3 else "YX",
                         pixel_size_nm=8.0, z_step_nm=8.0, chunks=chunks)
    return time.perf_counter() - started


class PeakRss:
    """Samples this process's RSS every 50 ms (the driver's peak during one run)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _preload(model: str, device: str) -> None:
    from napari_organelle.blockwise import cached_predictor
    from napari_organelle.devices import resolve_device

    cached_predictor(model, str(resolve_device(device)), False, None)


def _worker_peak_rss() -> int:
    """This worker process's peak RSS in bytes (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def segment_on_cluster(source: Path, out: Path, model: str, workers: int,
                       options: dict[str, Any]) -> dict[str, Any]:
    from napari_organelle.blockwise import segment_blockwise_iter
    from napari_organelle.distributed import connect
    from napari_organelle.ngff import read_ngff
    from napari_organelle.progress import run

    image = read_ngff(source)
    started = time.perf_counter()
    executor = connect(workers=workers)  # one block at a time per worker, all its cores
    client = executor.client
    # Each worker loads the model (and builds its runner) once; timed apart from the run.
    client.run(_preload, model, options.get("device", "cpu"))
    startup = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as driver:
        work = segment_blockwise_iter(
            image.data, model, out, axes=image.axes, pixel_size_nm=image.pixel_size_nm,
            scale=image.scales[0], volume=image.axes == "ZYX" or None,
            executor=_KeepOpen(executor), **options)
        result = run(work)
    seconds = time.perf_counter() - started
    worker_rss = client.run(_worker_peak_rss)
    executor.close()
    pixels = int(np.prod(image.data.shape))
    return {"workers": workers, "blocks_at_once_per_worker": 1,
            "network_threads": executor.network_threads,
            "cluster_start_and_model_load_s": round(startup, 2), "seconds": round(seconds, 2),
            "megapixels_per_s": round(pixels / seconds / 1e6, 3),
            "driver_peak_rss_mb": round(driver.peak / 2**20, 1),
            "worker_peak_rss_mb": sorted(round(v / 2**20, 1) for v in worker_rss.values()),
            "blocks": result.blocks, "object_counts": result.object_counts,
            "notes": result.notes}


class _KeepOpen:
    """Passes a ClusterExecutor through without closing it (the benchmark reads the workers)."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def share(self, value: Any) -> Any:
        return self.executor.share(value)

    def map_unordered(self, *args: Any) -> Any:
        return self.executor.map_unordered(*args)

    def close(self) -> None:
        """The benchmark closes the cluster itself."""


def compare_in_memory(source: Path, out: Path, model: str, options: dict[str, Any]
                      ) -> dict[str, Any]:
    """In-memory :func:`segment` vs blockwise in this process: identity and overhead."""
    from napari_organelle.blockwise import segment_blockwise
    from napari_organelle.inference import segment
    from napari_organelle.ngff import read_labels, read_ngff

    image = read_ngff(source)
    pixels = np.asarray(image.data)
    volume = image.axes == "ZYX" or None
    segment(pixels[(0,) * (pixels.ndim - 2)][:256, :256], model)  # loads the model: not timed
    started = time.perf_counter()
    expected = segment(pixels, model, axes=image.axes, volume=volume,
                       **{k: v for k, v in options.items() if k not in ("block_size", "halo")})
    in_memory = time.perf_counter() - started
    started = time.perf_counter()
    segment_blockwise(image.data, model, out, axes=image.axes, volume=volume, **options)
    blockwise = time.perf_counter() - started
    identical = {}
    for name, labels in read_labels(out).items():
        got, want = np.asarray(labels.data), expected.labels[name]
        identical[name] = bool(np.array_equal(got > 0, want > 0) and _same_objects(got, want))
    return {"in_memory_s": round(in_memory, 2), "blockwise_local_s": round(blockwise, 2),
            "overhead": round(blockwise / in_memory - 1, 3), "identical": identical}


def _same_objects(first: np.ndarray, second: np.ndarray) -> bool:
    both = first > 0
    pairs = np.unique(np.stack([first[both].astype(np.int64), second[both].astype(np.int64)]),
                      axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32768, help="2-D image edge (0: none)")
    parser.add_argument("--volume", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        help="also a Z stack of this shape, segmented in 3-D")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="em-organelles")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--block", type=int, nargs="+")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare", action="store_true",
                        help="also segment in memory: identity and overhead (small images)")
    parser.add_argument("--folder", type=Path, help="where the images go (default: a temp dir)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "large.json")
    args = parser.parse_args(argv)

    folder = args.folder or Path(tempfile.mkdtemp(prefix="napari-organelle-large-"))
    folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"device": args.device}
    if args.block:
        options["block_size"] = args.block[0] if len(args.block) == 1 else args.block
    report = _previous(args.results, args.model)
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average": os.getloadavg()}
    shapes = ([(args.size, args.size)] if args.size else []) + (
        [tuple(args.volume)] if args.volume else [])
    for shape in shapes:
        name = "x".join(map(str, shape))
        source = folder / f"synthetic-{name}.ome.zarr"
        made = make_image(source, shape, args.chunk) if not source.exists() else 0.0
        entry: dict[str, Any] = {"shape": list(shape), "make_image_s": round(made, 1),
                                 "clusters": []}
        report["runs"] = [run for run in report["runs"] if run["shape"] != list(shape)]
        report["runs"].append(entry)
        for workers in args.workers:
            out = folder / f"labels-{name}-{workers}w.ome.zarr"
            entry["clusters"].append(segment_on_cluster(source, out, args.model, workers,
                                                        options))
            print(json.dumps(entry["clusters"][-1]), flush=True)
            _save(report, args.results)
        if args.compare:
            entry["compare"] = compare_in_memory(source, folder / f"labels-{name}-local.ome.zarr",
                                                 args.model, options)
            print(json.dumps(entry["compare"]), flush=True)
        _save(report, args.results)
    print(f"-> {args.results}", file=sys.stderr)
    return 0


def _previous(results: Path, model: str) -> dict[str, Any]:
    """The saved report of earlier runs (a run of the same shape replaces its entry)."""
    try:
        report = json.loads(results.read_text())
    except (OSError, ValueError):
        report = {}
    if report.get("model") != model:
        report = {}
    report.setdefault("model", model)
    report.setdefault("runs", [])
    return report


def _save(report: dict[str, Any], results: Path) -> None:
    """Writes the report after every run, so a long run killed later keeps what it measured."""
    from napari_organelle.durable import atomic_write_text

    report["machine"]["load_average_after"] = os.getloadavg()
    report["runs"].sort(key=lambda run: (len(run["shape"]), run["shape"]))
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
