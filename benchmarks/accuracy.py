"""Accuracy of the bundled models on every held-out test split of ../shared/data, in one table.

Uses the same code as ``napari-organelle evaluate``
(:func:`napari_organelle.evaluation.evaluate_dataset`: pooled pixel Dice, IoU,
precision, recall, F1 and object F1 at IoU 0.5 for instance classes; mask
pixels equal to a set's ``ignore_value``, e.g. 255 outside the annotated cell
of em-hela-sbfsem-mito, count neither way).

Usage::

    python benchmarks/accuracy.py                    # bundled models, test splits
    python benchmarks/accuracy.py --em runs/em-organelles/best --fluo runs/fluo-organelles/best
    python benchmarks/accuracy.py --tta
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"

#: (data set, model kind, class map data -> model, issue targets data class -> (metric, goal))
SUITE = [
    ("em-epfl-hippocampus", "em", {"mitochondria": "mitochondria", "membranes": "cell_boundary"},
     {"mitochondria": ("iou", 0.85)}),
    ("em-drosophila-vnc", "em", {"mitochondria": "mitochondria", "membranes": "cell_boundary"},
     {"mitochondria": ("dice", 0.85), "membranes": ("dice", 0.80)}),
    ("em-isbi2012-membranes", "em", {"membranes": "cell_boundary"},
     {"membranes": ("dice", 0.80)}),
    ("em-hela-sbfsem-mito", "em", {"mitochondria": "mitochondria"},
     {"mitochondria": ("dice", 0.85)}),
    ("fluo-nuclei-stardist", "fluorescence", {"nuclei": "nuclei"},
     {"nuclei": ("dice", 0.85)}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--em", default="em-organelles", help="EM model name or folder")
    parser.add_argument("--fluo", default="fluo-organelles",
                        help="fluorescence model name or folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "accuracy.json")
    args = parser.parse_args()

    from napari_organelle.evaluation import evaluate_dataset, model_predictor
    from napari_organelle.models import load_model

    models = {"em": load_model(args.em), "fluorescence": load_model(args.fluo)}
    rows = []
    for dataset, kind, class_map, targets in SUITE:
        folder = args.data / dataset
        if not folder.is_dir():
            print(f"{dataset}: not here, skipped")
            continue
        model = models[kind]
        started = time.perf_counter()
        predict = model_predictor(model, classes=sorted(set(class_map.values())),
                                  device=args.device, tta=args.tta)
        evaluation = evaluate_dataset(folder, args.split, predict, class_map,
                                      model_classes={s.name: s.kind for s in model.card.classes})
        seconds = time.perf_counter() - started
        for data_class, scores in evaluation.scores.items():
            metric, goal = targets.get(data_class, (None, None))
            value = getattr(scores, metric) if metric else None
            rows.append({
                "dataset": dataset, "class": data_class, "model": model.card.full_name,
                "dice": scores.dice, "iou": scores.iou, "precision": scores.precision,
                "recall": scores.recall, "object_f1": scores.object_f1 if scores.objects else None,
                "target": f"{metric} >= {goal}" if metric else "",
                "met": (value >= goal) if metric else None, "seconds": seconds,
            })
    header = (f"{'data set':<24} {'class':<14} {'model':<22} {'Dice':>6} {'IoU':>6} {'prec':>6} "
              f"{'recall':>6} {'objF1':>6}  target")
    print(header)
    print("-" * len(header))
    for row in rows:
        object_f1 = f"{row['object_f1']:.3f}" if row["object_f1"] is not None else "   -  "
        verdict = "" if row["met"] is None else ("met" if row["met"] else "NOT met")
        print(f"{row['dataset']:<24} {row['class']:<14} {row['model']:<22} {row['dice']:6.3f} "
              f"{row['iou']:6.3f} {row['precision']:6.3f} {row['recall']:6.3f} {object_f1:>6}  "
              f"{row['target']} {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": args.split, "tta": args.tta, "rows": rows,
                                    "date": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
