"""Inference speed and memory: napari-organelle's tiler against MONAI, and end to end.

For each image size, each method runs in its own fresh process (so peak memory
is its own): the same network, tile, overlap, batch and Gaussian blending.

- ``ours``: :func:`napari_organelle.tiling.predict_plane` (strip buffer) thresholding each
  finished row as it is written (0/1 masks out, no probability image), as ``segment``
  does for an image at the model's pixel size.
- ``monai``: ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"``,
  ``sigma_scale=0.125`` on a float32 tensor of the normalised image, then thresholding.
- ``segment``: the whole ``napari_organelle.segment`` (normalisation, rescaling to
  the model's pixel size, tiling, instance post-processing).

Memory is the peak resident size of the process while the method runs (the
kernel's high-water mark is reset just before it starts) minus its size once
the model is loaded and the input image exists (both methods need those), i.e.
the working memory of the method. Ratios are machine-independent enough to compare.

Usage::

    python benchmarks/inference.py                       # 4096 and 16384, all methods
    python benchmarks/inference.py --sizes 2048 --skip-monai
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


def worker(method: str, size: int, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    model, weights = load_benchmark_model(args.model)
    network = model.network.eval()
    n_classes = len(model.card.classes)
    image = make_image(size)
    baseline = rss_bytes()
    peak_is_own = reset_peak_rss()
    started = time.perf_counter()
    if method == "ours":
        from napari_organelle.image_input import plane_statistics
        from napari_organelle.inference import _BatchPredictor, _normalizer
        from napari_organelle.progress import run
        from napari_organelle.tiling import predict_plane

        plane = image[None]
        lows, highs, _ = plane_statistics(plane, 1.0, 99.8)
        predictor = _BatchPredictor(model, torch.device("cpu"), tta=False)
        thresholds = [spec.threshold for spec in model.card.classes]
        masks = run(predict_plane(plane, predictor, n_classes, tile=args.tile,
                                  overlap=args.overlap, batch_size=args.batch,
                                  normalize=_normalizer(lows, highs), thresholds=thresholds))
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
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - started
    del masks
    peak = peak_rss_bytes()
    return {"method": method, "size": size, "megapixels": size * size / 1e6,
            "seconds": seconds, "mpix_per_s": size * size / 1e6 / seconds,
            "working_memory_mb": max(0, peak - baseline) / 1e6, "peak_rss_mb": peak / 1e6,
            "peak_since_method_start": peak_is_own,
            "weights": weights, "classes": n_classes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--model", default="em-organelles")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--pixel-size", type=float, default=5.0,
                        help="pixel size given to segment (the EM model runs at 8 nm)")
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--skip-segment", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return

    methods = (["ours"] + ([] if args.skip_monai else ["monai"])
               + ([] if args.skip_segment else ["segment"]))
    rows = []
    passthrough = ["--model", args.model, "--tile", str(args.tile), "--overlap", str(args.overlap),
                   "--batch", str(args.batch), "--threads", str(args.threads),
                   "--pixel-size", str(args.pixel_size)]
    for size in args.sizes:
        for method in methods:
            command = [sys.executable, __file__, "--worker", method, str(size), *passthrough]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{method} {size}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                rows.append({"method": method, "size": size, "error": done.stderr[-500:]})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{size:>6}px  {method:<8} {row['seconds']:8.1f} s  "
                  f"{row['mpix_per_s']:6.2f} MPix/s"
                  f"  working memory {row['working_memory_mb']:8.0f} MB  (peak RSS "
                  f"{row['peak_rss_mb']:.0f} MB)", flush=True)
    ratios = {}
    for size in args.sizes:
        by_method = {r["method"]: r for r in rows if r["size"] == size and "error" not in r}
        if "ours" in by_method and "monai" in by_method:
            ours, monai = by_method["ours"], by_method["monai"]
            ratios[str(size)] = {
                "speed_ours_over_monai": ours["mpix_per_s"] / monai["mpix_per_s"],
                "memory_ours_over_monai": (ours["working_memory_mb"]
                                           / max(monai["working_memory_mb"], 1e-9)),
            }
            ratio = ratios[str(size)]
            print(f"{size:>6}px  speed ours/MONAI = {ratio['speed_ours_over_monai']:.2f}x"
                  f"   working memory ours/MONAI = {ratio['memory_ours_over_monai']:.3f}")
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
              "rows": rows, "ratios": ratios,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
