"""What the EM model's simulation-only classes do on real micrographs.

No real EM set here annotates nuclei, ER, lipid droplets or Golgi, so their
Dice on real images cannot be measured. What can be measured on the real test
splits is how much of each image they claim, and where:

- the neural sets (em-epfl-hippocampus, em-drosophila-vnc, em-isbi2012-membranes,
  em-lucchi-pp) are neuropil: axons, dendrites, synapses. A nucleus or a lipid
  droplet there is a false positive; so their share of the pixels is a floor on
  the false-positive rate (ER and Golgi exist in neuropil, so theirs is not);
- the HeLa SBF-SEM cell (em-hela-sbfsem-mito test sections) has a nucleus in its
  middle: the picture shows whether the nuclei class finds it.

Also: the old classes (mitochondria, cell boundaries) of the composite against
the network they come from, image by image (they must be the same); and what the
second network costs: seconds to segment a 2048 x 2048 simulated section with
the first network's classes only (only that network runs) and with all classes.

Usage::

    python benchmarks/em_new_classes.py --model runs/em-organelles-3 --data-root ../shared/data

Results: ``benchmarks/results/em_new_classes.json`` and a picture
``docs/images/em-new-classes-hela.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NEURAL_SETS = ("em-epfl-hippocampus", "em-drosophila-vnc", "em-isbi2012-membranes", "em-lucchi-pp")
HELA = "em-hela-sbfsem-mito"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="em-organelles")
    parser.add_argument("--reference", default=None,
                        help="the network the old classes come from (default: the composite's "
                             "first member, as a model of its own)")
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "em_new_classes.json")
    parser.add_argument("--picture", type=Path,
                        default=HERE.parent / "docs" / "images" / "em-new-classes-hela.png")
    parser.add_argument("--limit", type=int, default=20,
                        help="images per set, the first in name order (0: all)")
    args = parser.parse_args(argv)

    import tifffile

    from napari_organelle.evaluation import read_dataset_info
    from napari_organelle.inference import segment
    from napari_organelle.models import load_model
    from napari_organelle.models.composite import is_composite, member_model, members

    model = load_model(args.model)
    card = model.card
    if not is_composite(card):
        print(f"{card.full_name} is not a composite model", file=sys.stderr)
        return 2
    first = members(card)[0]
    old = list(first["classes"])
    new = [name for name in card.class_names if name not in old]
    # by default the first member run alone, with the composite's settings
    reference = load_model(args.reference) if args.reference else member_model(model, 0)

    results: dict = {"model": card.full_name, "new_classes": new, "old_classes": old,
                     "sets": {}}
    hela_picture = None
    started = time.perf_counter()
    for set_name in (*NEURAL_SETS, HELA):
        folder = args.data_root / set_name / "test" / "images"
        if not folder.is_dir():
            results["sets"][set_name] = {"skipped": f"{folder} not found"}
            continue
        info = read_dataset_info(args.data_root / set_name)
        images = sorted(folder.glob("*.tif"))[: args.limit or None]
        shares = {name: [] for name in new}
        objects = {name: 0 for name in new}
        differing = {name: 0 for name in old}
        pixels = 0
        for path in images:
            image = tifffile.imread(path)
            if image.ndim == 3:  # a few sets store each section as a 1-plane stack
                image = image[0]
            # both in eager PyTorch, so that any difference is the composite's, not ONNX's
            result = segment(image, model, pixel_size_nm=info.pixel_size_nm, backend="torch")
            alone_result = segment(image, reference, pixel_size_nm=info.pixel_size_nm,
                                   classes=old, backend="torch")
            pixels += image.size
            for name in new:
                labels = result.labels[name]
                shares[name].append(float((labels > 0).mean()))
                objects[name] += int(len(np.unique(labels)) - 1) if labels.any() else 0
            for name in old:
                differing[name] += int(((result.labels[name] > 0)
                                        != (alone_result.labels[name] > 0)).sum())
            if set_name == HELA and hela_picture is None:
                hela_picture = (image, result)
        results["sets"][set_name] = {
            "images": len(images), "neuropil": set_name in NEURAL_SETS,
            "share_of_pixels": {name: round(float(np.mean(v)), 4) for name, v in shares.items()},
            "objects": objects,
            "old_class_pixels_differing_from_the_member_alone": {
                name: round(count / max(1, pixels), 6) for name, count in differing.items()},
        }
        print(f"{set_name:<24} " + "  ".join(
            f"{name} {np.mean(shares[name]) * 100:5.1f} %" for name in new)
            + "   old classes differing: " + ", ".join(
                f"{name} {differing[name] / max(1, pixels):.2e}" for name in old), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["speed_2048"] = _speed(model, old)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out}")
    if hela_picture is not None:
        _picture(*hela_picture, new, args.picture)
        print(f"picture {args.picture}")
    return 0


def _speed(model, first_classes: list[str]) -> dict:
    """Seconds for a 2048 x 2048 section, default backend, after a warm-up that converts."""
    from napari_organelle.inference import segment
    from napari_organelle.simulation.sample import sample_em_like

    section, _ = sample_em_like(seed=3)
    section = np.tile(section, (4, 4))[:2048, :2048]
    timings = {}
    for label, classes in (("first network's classes", first_classes), ("all classes", None)):
        segment(section[:256, :256], model, classes=classes)
        begin = time.perf_counter()
        result = segment(section, model, classes=classes)
        timings[label] = {"seconds": round(time.perf_counter() - begin, 2),
                          "backend": result.settings["backend"]}
    timings["ratio"] = round(timings["all classes"]["seconds"]
                             / timings["first network's classes"]["seconds"], 2)
    print("2048 x 2048:", json.dumps(timings), flush=True)
    return timings


def _picture(image: np.ndarray, result, names: list[str], path: Path) -> None:
    """The HeLa section, and the same with each new class's outline in its colour."""
    from skimage import io, segmentation, transform

    from napari_organelle.models import ORGANELLE_COLORS

    low, high = np.percentile(image, (1, 99.8))
    grey = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-6), 0, 1)
    overlay = np.stack([grey] * 3, axis=-1)
    for name in names:
        mask = result.labels[name] > 0
        if not mask.any():
            continue
        edges = segmentation.find_boundaries(mask, mode="thick")
        colour = np.array([int(ORGANELLE_COLORS.get(name, "#ffffff")[i:i + 2], 16) / 255
                           for i in (1, 3, 5)])
        overlay[mask] = 0.75 * overlay[mask] + 0.25 * colour
        overlay[edges] = colour
    both = np.concatenate([np.stack([grey] * 3, axis=-1), overlay], axis=1)
    scale = min(1.0, 1400 / both.shape[1])
    small = transform.resize(both, (int(both.shape[0] * scale), int(both.shape[1] * scale)),
                             anti_aliasing=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(path, (small * 255).astype(np.uint8), check_contrast=False)


if __name__ == "__main__":
    raise SystemExit(main())
