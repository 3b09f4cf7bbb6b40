"""Inference speed and memory: napari-organelle's tiler on each backend against MONAI.

For each image size, each method runs in its own fresh process (so peak memory
is its own): the same network, tile, overlap, batch and Gaussian blending.

- ``ours-onnx``, ``ours-torch``, ``ours-channels_last``:
  :func:`napari_organelle.tiling.predict_plane` (strip buffer) thresholding each
  finished row as it is written (0/1 masks out, no probability image), as ``segment``
  does for an image at the model's pixel size, with the network run by ONNX Runtime,
  eager PyTorch, or PyTorch with channels-last tensors (:mod:`napari_organelle.backends`).
  The ONNX conversion is made (or read from its cache) before the clock starts: it
  happens once per model version.
- ``monai``: ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"``,
  ``sigma_scale=0.125`` on a float32 tensor of the normalised image, then thresholding,
  with the eager PyTorch network.
- ``segment``: the whole ``napari_organelle.segment`` with its default backend
  (normalisation, rescaling to the model's pixel size, tiling, instance post-processing).
- ``sgemm``: this CPU's float32 matrix-multiply peak on the same threads (torch and
  numpy, square matrices), against which the network's GFLOP/s are read.

Memory is the peak resident size of the process while the method runs (the
kernel's high-water mark is reset just before it starts) minus its size once
the model is loaded and the input image exists (both methods need those), i.e.
the working memory of the method. Ratios are machine-independent enough to compare.

For each ``ours-*`` method the network alone is timed too, on the tiler's own batches
(``--network-batches`` of them, scaled to all): the share of the end-to-end time that is
the network, and its GFLOP/s (FLOPs counted by ``torch.utils.flop_counter``).

Usage::

    python benchmarks/inference.py --threads 2          # 4096 and 16384, every method
    python benchmarks/inference.py --sizes 2048 --methods ours-onnx monai
    python benchmarks/inference.py --sizes 512 --network-batches 2 --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Start the peak resident size afresh (Linux: ``5`` into ``clear_refs`` resets VmHWM).

    Without it the peak would include whatever came before the method ran, such
    as the temporaries of generating the test image.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident size since :func:`reset_peak_rss` (VmHWM), else since the process began."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_image(size: int, seed: int = 0) -> np.ndarray:
    """EM-like texture: smooth blobs plus noise, uint8, generated in tiles to stay small."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 64 + 2, size // 64 + 2)).astype(np.float32)
    from scipy.ndimage import zoom

    image = np.empty((size, size), np.uint8)
    block = 4096
    for y in range(0, size, block):
        rows = min(block, size - y)
        smooth = zoom(coarse[y // 64: (y + rows) // 64 + 2], 64, order=1)[:rows, :size]
        noise = rng.standard_normal((rows, size), dtype=np.float32) * 20
        image[y:y + rows] = np.clip(smooth * 200 + 20 + noise, 0, 255).astype(np.uint8)
    return image


def load_benchmark_model(name: str):
    from napari_organelle.models import Model, ModelCard, build_network, list_models, load_model
    from napari_organelle.training.recipe import find_recipe

    if any(info.name == name for info in list_models()):
        return load_model(name), "bundled weights"
    # Speed does not depend on the weights: build the recipe's architecture untrained.
    card = ModelCard.from_dict(json.loads(find_recipe(name).read_text())["card"])
    return Model(card, build_network(card).eval()), "recipe architecture, untrained"


OURS = ("ours-onnx", "ours-torch", "ours-channels_last")
METHODS = (*OURS, "monai", "segment", "sgemm")


def tiler_batches(image: np.ndarray, tile: int, overlap: float, batch: int, normalize,
                  sample: int) -> tuple[int, int, list[np.ndarray]]:
    """The tiler's batch and tile counts on ``image``, and ``sample`` of its batches, spread
    evenly (only those are built: all of a 16384 image's would not fit in memory)."""
    from napari_organelle.tiling import tile_starts

    stride = max(1, int(round(tile * (1.0 - overlap))))
    ys = tile_starts(image.shape[0], tile, stride)
    xs = tile_starts(image.shape[1], tile, stride)
    starts = [(y, xs[first:first + batch]) for y in ys for first in range(0, len(xs), batch)]
    chosen = starts[::max(1, len(starts) // max(1, sample))][:max(1, sample)]
    return len(starts), len(ys) * len(xs), [
        np.stack([normalize(image[None, y:y + tile, x:x + tile]) for x in row])
        for y, row in chosen]


def network_flops(network, batch: np.ndarray) -> float:
    """FLOPs of one forward pass of ``network`` on ``batch`` (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.from_numpy(batch))
    return float(counter.get_total_flops())


def sgemm_peak(threads: int, size: int, repeats: int = 5) -> dict:
    """Best float32 GFLOP/s of ``size`` x ``size`` matrix products, torch and numpy."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2.0 * size ** 3
    result = {}
    for name, product in (("torch", lambda: torch.mm(ta, tb)), ("numpy", lambda: a @ b)):
        product()
        best = min(_seconds(product) for _ in range(repeats))
        result[f"{name}_gflops"] = flops / best / 1e9
    result["peak_gflops"] = max(result["torch_gflops"], result["numpy_gflops"])
    return result


def _seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def worker(method: str, size: int, args: argparse.Namespace) -> dict:
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    if method == "sgemm":
        return {"method": method, "size": args.sgemm_size, "threads": threads,
                **sgemm_peak(threads, args.sgemm_size)}
    model, weights = load_benchmark_model(args.model)
    network = model.network.eval()
    n_classes = len(model.card.classes)
    image = make_image(size)
    extra: dict = {}
    if method in OURS:
        from napari_organelle.image_input import plane_statistics
        from napari_organelle.inference import _BatchPredictor, _normalizer
        from napari_organelle.progress import run
        from napari_organelle.tiling import predict_plane

        plane = image[None]
        lows, highs, _ = plane_statistics(plane, 1.0, 99.8)
        normalize = _normalizer(lows, highs)
        # Made (or read from the cache) before the clock starts: once per model version.
        predictor = _BatchPredictor(model, torch.device("cpu"), tta=False,
                                    backend=method.removeprefix("ours-"))
        thresholds = [spec.threshold for spec in model.card.classes]
    elif method == "segment":
        from napari_organelle.backends import make_runner

        extra["backend"] = make_runner(model, torch.device("cpu")).backend  # cache made
    baseline = rss_bytes()
    peak_is_own = reset_peak_rss()
    started = time.perf_counter()
    if method in OURS:
        masks = run(predict_plane(plane, predictor, n_classes, tile=args.tile,
                                  overlap=args.overlap, batch_size=args.batch,
                                  normalize=normalize, thresholds=thresholds))
    elif method == "monai":
        from monai.inferers import sliding_window_inference

        low, high = np.percentile(image[::8, ::8], [1.0, 99.8])
        inputs = torch.from_numpy(image).float().sub_(float(low)).div_(float(high - low))
        inputs = inputs[None, None]

        def predict(batch):
            return torch.sigmoid(network(batch))

        with torch.inference_mode():
            probabilities = sliding_window_inference(
                inputs, roi_size=(args.tile, args.tile), sw_batch_size=args.batch,
                predictor=predict, overlap=args.overlap, mode="gaussian", sigma_scale=0.125,
                padding_mode="reflect")
        masks = probabilities[0] >= 0.5
    elif method == "segment":
        from napari_organelle.inference import segment

        result = segment(image, model, pixel_size_nm=args.pixel_size, tile_size=args.tile,
                         overlap=args.overlap, batch_size=args.batch, device="cpu")
        masks = result.labels
        extra["backend"] = result.settings["backend"]
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - started
    del masks
    peak = peak_rss_bytes()
    if method in OURS:
        extra.update(network_alone(predictor, image, normalize, network, seconds, args))
    return {"method": method, "size": size, "megapixels": size * size / 1e6,
            "seconds": seconds, "mpix_per_s": size * size / 1e6 / seconds,
            "working_memory_mb": max(0, peak - baseline) / 1e6, "peak_rss_mb": peak / 1e6,
            "peak_since_method_start": peak_is_own, "threads": threads,
            "weights": weights, "classes": n_classes, **extra}


def network_alone(predictor, image: np.ndarray, normalize, network, end_to_end: float,
                  args: argparse.Namespace) -> dict:
    """The network on a sample of the tiler's batches, scaled to all of them."""
    n_batches, n_tiles, sample = tiler_batches(image, args.tile, args.overlap, args.batch,
                                               normalize, args.network_batches)
    predictor(sample[0])  # warm, as the end-to-end run was by its first batch
    seconds = sum(_seconds(lambda batch=batch: predictor(batch)) for batch in sample)
    sampled_tiles = sum(len(batch) for batch in sample)
    network_seconds = seconds / sampled_tiles * n_tiles
    flops = network_flops(network, sample[0]) / len(sample[0])  # per tile
    return {"network_seconds": network_seconds,
            "network_share": network_seconds / end_to_end,
            "gflop_per_tile": flops / 1e9,
            "network_gflops": flops * n_tiles / network_seconds / 1e9,
            "network_batches_timed": len(sample), "batches": n_batches, "tiles": n_tiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--model", default="em-organelles")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--pixel-size", type=float, default=5.0,
                        help="pixel size given to segment (the EM model runs at 8 nm)")
    parser.add_argument("--network-batches", type=int, default=20,
                        help="batches timed for the network alone (scaled to all)")
    parser.add_argument("--sgemm-size", type=int, default=2048)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--skip-segment", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return

    methods = [m for m in args.methods
               if not (m == "monai" and args.skip_monai)
               and not (m == "segment" and args.skip_segment)]
    threads = args.threads or os.cpu_count()
    # numpy's BLAS (for the sgemm peak) reads its thread count at import: set it for workers.
    env = {**os.environ, **{name: str(threads) for name in
                            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    rows = []
    passthrough = ["--model", args.model, "--tile", str(args.tile), "--overlap", str(args.overlap),
                   "--batch", str(args.batch), "--threads", str(threads),
                   "--pixel-size", str(args.pixel_size),
                   "--network-batches", str(args.network_batches),
                   "--sgemm-size", str(args.sgemm_size)]
    jobs = ([("sgemm", args.sgemm_size)] if "sgemm" in methods else []) + [
        (method, size) for size in args.sizes for method in methods if method != "sgemm"]
    peak = None
    for method, size in jobs:
        command = [sys.executable, __file__, "--worker", method, str(size), *passthrough]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{method} {size}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            rows.append({"method": method, "size": size, "error": done.stderr[-500:]})
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        if method == "sgemm":
            peak = row["peak_gflops"]
            print(f"sgemm {size}: torch {row['torch_gflops']:.1f}, numpy "
                  f"{row['numpy_gflops']:.1f} GFLOP/s on {threads} thread(s)", flush=True)
            continue
        line = (f"{size:>6}px  {method:<18} {row['seconds']:8.1f} s  "
                f"{row['mpix_per_s']:6.2f} MPix/s  working memory "
                f"{row['working_memory_mb']:8.0f} MB  (peak RSS {row['peak_rss_mb']:.0f} MB)")
        if "network_seconds" in row:
            if peak:
                row["network_share_of_sgemm_peak"] = row["network_gflops"] / peak
            line += (f"  network {100 * row['network_share']:.0f}% of it, "
                     f"{row['network_gflops']:.1f} GFLOP/s"
                     + (f" ({100 * row['network_gflops'] / peak:.0f}% of sgemm)" if peak else ""))
        if "backend" in row:
            line += f"  backend {row['backend']}"
        print(line, flush=True)
    ratios = {}
    for size in args.sizes:
        by_method = {r["method"]: r for r in rows if r["size"] == size and "error" not in r}
        monai = by_method.get("monai")
        for method in OURS:
            if method not in by_method or monai is None:
                continue
            ours = by_method[method]
            ratio = ratios.setdefault(str(size), {})[method] = {
                "speed_over_monai": ours["mpix_per_s"] / monai["mpix_per_s"],
                "memory_over_monai": (ours["working_memory_mb"]
                                      / max(monai["working_memory_mb"], 1e-9)),
            }
            print(f"{size:>6}px  {method}/MONAI: speed {ratio['speed_over_monai']:.2f}x"
                  f"   working memory {ratio['memory_over_monai']:.3f}")
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "load_average": os.getloadavg()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
              "rows": rows, "ratios": ratios, "sgemm_peak_gflops": peak,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
