"""Calibrate and check the "this image looks unfamiliar" warning on real test images.

For every image of the real test splits the model is scored on, this segments
the image, records per class the *unsure share* the warning is based on
(:mod:`napari_organelle.confidence`) and the image's Dice, then sets each
class's limit to the highest share seen on images where the model does well
(Dice >= ``--good``), plus ``--margin``. It prints, per image, share, Dice and
whether the warning fires, and how well the warning separates good from bad
results. With ``--write`` the limits go into the model card
(``extra["confidence"]``), which is where Segment reads them.

Usage::

    python benchmarks/confidence.py --model em-organelles
    python benchmarks/confidence.py --model src/napari_organelle/bundled/fluo-organelles --write
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NAPARI_ORGANELLE_DATA", HERE.parents[1] / "shared" / "data"))

#: modality -> training sets whose images give the reference features (EM; fluorescence
#: models learn from the simulator, whose training seed is used instead)
REFERENCE_SETS = {"em": ["em-epfl-hippocampus", "em-drosophila-vnc", "em-isbi2012-membranes",
                         "em-hela-sbfsem-mito"]}

#: modality -> [(data set, data class, model class, slices to take: every Nth)]
SETS = {
    "em": [("em-epfl-hippocampus", "mitochondria", "mitochondria", 1),
           ("em-epfl-hippocampus", "membranes", "cell_boundary", 1),
           ("em-drosophila-vnc", "mitochondria", "mitochondria", 1),
           ("em-drosophila-vnc", "membranes", "cell_boundary", 1),
           ("em-isbi2012-membranes", "membranes", "cell_boundary", 1),
           ("em-hela-sbfsem-mito", "mitochondria", "mitochondria", 1),
           ("em-lucchi-pp", "mitochondria", "mitochondria", 20)],
    "fluorescence": [("fluo-nuclei-stardist", "nuclei", "nuclei", 1),
                     ("fluo-ernet-er-dev", "er", "er", 1)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model name or folder")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--good", type=float, default=0.7,
                        help="Dice at which a result counts as good (default 0.7)")
    parser.add_argument("--margin", type=float, default=0.05,
                        help="added to the highest share seen on good results")
    parser.add_argument("--write", action="store_true", help="write the limits into the card")
    parser.add_argument("--simulated", type=int, default=28,
                        help="fluorescence: also this many simulated test images (the recipe's "
                             "held-out seed), the only ones with true masks for every organelle")
    parser.add_argument("--reference", type=int, default=8,
                        help="training images per set for the reference features")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import tifffile

    from napari_organelle.evaluation import read_dataset_info
    from napari_organelle.inference import segment
    from napari_organelle.metrics import confusion_counts
    from napari_organelle.models import load_model

    model = load_model(args.model)
    mean, std = _reference_features(model, args)
    rows = []
    for dataset, data_class, model_class, step in SETS[model.card.modality]:
        folder = args.data / dataset
        if not folder.is_dir() or model_class not in model.card.class_names:
            continue
        info = read_dataset_info(folder)
        pixel = float(np.mean(info.pixel_size_nm)) if info.pixel_size_nm else None
        images = sorted((folder / "test" / "images").glob("*.tif"))[::step]
        for path in images:
            image = tifffile.imread(path)
            truth = tifffile.imread(folder / "test" / "masks" / data_class / path.name)
            result = segment(image, model, classes=[model_class], pixel_size_nm=pixel)
            ignore = truth == info.ignore_value if info.ignore_value is not None else None
            counts = confusion_counts(result.labels[model_class] > 0, truth > 0, ignore)
            dice = 2 * counts.tp / max(1, 2 * counts.tp + counts.fp + counts.fn)
            share = result.unsure_share[model_class]
            distance = result.features.distance(mean, std)
            rows.append({"dataset": dataset, "image": path.name, "class": model_class,
                         "dice": round(dice, 4), "unsure_share": share,
                         "feature_distance": round(distance, 4),
                         # a validation-only set is scored, never used to set a limit
                         "calibrates": not info.validation_only})
            print(f"{dataset:<24} {path.name:<16} {model_class:<14} Dice {dice:.3f} "
                  f"unsure {share:.3f} distance {distance:.2f}", flush=True)

    if model.card.modality == "fluorescence":
        rows += _simulated_rows(model, args.simulated, mean, std)

    limits = {}
    for name in sorted({row["class"] for row in rows}):
        good = [r["unsure_share"] for r in rows if r["class"] == name and r["dice"] >= args.good
                and r.get("calibrates", True)
                and r["unsure_share"] == r["unsure_share"]]
        if good:
            limits[name] = round(max(good) + args.margin, 3)
    print("\nlimits (highest unsure share on good results + margin):", limits)
    # One distance limit for the model (features do not depend on the class asked for).
    good_distances = [r["feature_distance"] for r in rows
                      if r["dice"] >= args.good and r.get("calibrates", True)]
    distance_limit = round(max(good_distances) * (1 + args.margin), 3) if good_distances else None
    print("feature distance limit (highest on good results, + margin):", distance_limit)
    flagged_bad = flagged_good = bad = good_count = 0
    for row in rows:
        limit = limits.get(row["class"])
        row["warned"] = bool((limit is not None and row["unsure_share"] > limit)
                             or (distance_limit is not None
                                 and row["feature_distance"] > distance_limit))
        if row["dice"] >= args.good:
            good_count += 1
            flagged_good += row["warned"]
        else:
            bad += 1
            flagged_bad += row["warned"]
    print(f"warned on {flagged_bad}/{bad} results with Dice < {args.good} and on "
          f"{flagged_good}/{good_count} good ones")
    report = {"model": model.card.full_name, "good_dice": args.good, "margin": args.margin,
              "limits": limits, "feature_distance_limit": distance_limit,
              "warned_bad": [flagged_bad, bad],
              "warned_good": [flagged_good, good_count], "images": rows,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = args.out or HERE / "results" / f"confidence-{model.card.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")
    if args.write:
        _write_limits(Path(model.path) if model.path else Path(args.model), limits, report,
                      mean, std)


def _simulated_rows(model, count: int, mean: np.ndarray, std: np.ndarray) -> list[dict]:
    """The fluorescence recipe's simulated test images (same seed as its test scores)."""
    from napari_organelle.inference import segment
    from napari_organelle.metrics import confusion_counts
    from napari_organelle.simulation.scene import training_sample

    rng = np.random.default_rng(99_000_001)
    names = model.card.class_names
    rows = []
    for index in range(count):
        shown = names[index % len(names)]
        image, targets = training_sample(rng, (256, 256), names, shown=shown)
        result = segment(image, model, classes=[shown])
        counts = confusion_counts(result.labels[shown] > 0, targets[shown] > 0)
        dice = 2 * counts.tp / max(1, 2 * counts.tp + counts.fp + counts.fn)
        share = result.unsure_share[shown]
        distance = result.features.distance(mean, std)
        rows.append({"dataset": "simulated-test", "image": str(index), "class": shown,
                     "dice": round(dice, 4), "unsure_share": share,
                     "feature_distance": round(distance, 4)})
        print(f"{'simulated-test':<24} {index:<16} {shown:<14} Dice {dice:.3f} "
              f"unsure {share:.3f} distance {distance:.2f}", flush=True)
    return rows


def _reference_features(model, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and spread of the pooled deepest features over training images."""
    import tifffile

    from napari_organelle.evaluation import read_dataset_info
    from napari_organelle.inference import segment

    vectors = []
    first_class = [model.card.class_names[0]]
    if model.card.modality == "em":
        for dataset in REFERENCE_SETS["em"]:
            folder = args.data / dataset
            if not folder.is_dir():
                continue
            info = read_dataset_info(folder)
            pixel = float(np.mean(info.pixel_size_nm)) if info.pixel_size_nm else None
            for path in sorted((folder / "train" / "images").glob("*.tif"))[:args.reference]:
                result = segment(tifffile.imread(path), model, classes=first_class,
                                 pixel_size_nm=pixel)
                vectors.append(result.features.vectors())
    else:
        from napari_organelle.simulation.scene import training_sample

        rng = np.random.default_rng(1)  # the fluorescence recipe's training seed
        names = model.card.class_names
        for index in range(4 * args.reference):
            shown = names[index % len(names)]
            image, _ = training_sample(rng, (256, 256), names, shown=shown)
            vectors.append(segment(image, model, classes=[shown]).features.vectors())
    stacked = np.concatenate(vectors)
    print(f"reference: {len(stacked)} training tiles", flush=True)
    return stacked.mean(axis=0), stacked.std(axis=0)


def _write_limits(folder: Path, limits: dict[str, float], report: dict, mean: np.ndarray,
                  std: np.ndarray) -> None:
    from napari_organelle.durable import atomic_write_json

    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    card.setdefault("extra", {})["confidence"] = {
        "unsure_share_limit": limits,
        "feature_mean": [round(float(v), 5) for v in mean],
        "feature_std": [round(float(v), 5) for v in std],
        "feature_distance_limit": report["feature_distance_limit"],
        "calibration": {"good_dice": report["good_dice"], "margin": report["margin"],
                        "warned_bad": report["warned_bad"], "warned_good": report["warned_good"],
                        "command": "python benchmarks/confidence.py --write"},
    }
    atomic_write_json(card_path, card, indent=2)
    print(f"limits written to {card_path}")


if __name__ == "__main__":
    main()
