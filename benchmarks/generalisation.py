"""Generalisation: the models on real images from other labs, beside what a threshold gives.

Three parts, each saved into one JSON file as it finishes (a crash keeps the
parts already done; ``--parts`` re-runs only some):

``models``
    The bundled models (or ``--em`` / ``--fluo``) on every real test split of
    ../shared/data, scored by :func:`napari_organelle.evaluation.evaluate_dataset`
    (pooled pixel scores, object F1 at IoU 0.5, ``ignore_value`` honoured).
``baselines``
    Classical methods (:mod:`napari_organelle.baselines`: Otsu, local
    threshold, Sato and Frangi ridge filters, Otsu + watershed) on the same
    images with the same scoring: what a thresholding macro would have given.
    Their settings are fixed in that module and never tuned on these images.
``lodo``
    Leave one data set out: for each real EM set with mitochondria
    (em-epfl-hippocampus, em-drosophila-vnc, em-hela-sbfsem-mito) a model is
    trained from scratch with the EM recipe's data, network and augmentation on
    the *other* sets only, for a fixed time (``--fold-minutes``), and scored
    on the left-out set's test split: a model that never saw that lab.
    em-isbi2012-membranes comes from the same lab and animal as
    em-drosophila-vnc, so it is left out with it.

Usage::

    python benchmarks/generalisation.py                       # models + baselines
    python benchmarks/generalisation.py --parts lodo --fold-minutes 25
    python benchmarks/generalisation.py --em runs/em-v2/best --lucchi-step 4

em-lucchi-pp is the 165-slice EPFL test volume, scored pooled over the whole
volume (foreground IoU, the figure papers report); ``--lucchi-step N`` scores
every Nth slice for a quicker look. fluo-ernet-er-dev is marked validation
only: it is scored here, never trained or tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NAPARI_ORGANELLE_DATA", HERE.parents[1] / "shared" / "data"))

#: data set -> (modality, data class -> model class, classes scored as objects)
SUITE: dict[str, tuple[str, dict[str, str]]] = {
    "em-epfl-hippocampus": ("em", {"mitochondria": "mitochondria",
                                   "membranes": "cell_boundary"}),
    "em-drosophila-vnc": ("em", {"mitochondria": "mitochondria", "membranes": "cell_boundary"}),
    "em-isbi2012-membranes": ("em", {"membranes": "cell_boundary"}),
    "em-hela-sbfsem-mito": ("em", {"mitochondria": "mitochondria"}),
    "em-lucchi-pp": ("em", {"mitochondria": "mitochondria"}),
    "fluo-ernet-er-dev": ("fluorescence", {"er": "er"}),
    "fluo-nuclei-stardist": ("fluorescence", {"nuclei": "nuclei"}),
}

#: Which classical methods suit which model class (ridge filters for tubules and membranes).
BASELINES = {
    "mitochondria": ("otsu", "local"),
    "cell_boundary": ("otsu", "local", "sato", "frangi"),
    "er": ("otsu", "local", "sato", "frangi"),
    "nuclei": ("otsu", "local", "otsu-watershed"),
}
INSTANCE_CLASSES = {"mitochondria", "nuclei"}

#: Issue targets: (data set, data class) -> (metric, goal).
TARGETS = {
    ("em-lucchi-pp", "mitochondria"): ("iou", 0.89),
    ("em-drosophila-vnc", "mitochondria"): ("dice", 0.88),
    ("em-isbi2012-membranes", "membranes"): ("dice", 0.80),
    ("em-hela-sbfsem-mito", "mitochondria"): ("dice", 0.85),
    ("fluo-ernet-er-dev", "er"): ("dice", 0.75),
    ("fluo-nuclei-stardist", "nuclei"): ("object_f1", 0.80),
}

LODO_SETS = ("em-epfl-hippocampus", "em-drosophila-vnc", "em-hela-sbfsem-mito")
#: Sets that are not independent of a left-out one (same lab, animal and tissue).
SAME_SOURCE = {"em-drosophila-vnc": ("em-isbi2012-membranes",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--parts", nargs="+", default=["models", "baselines"],
                        choices=("models", "baselines", "lodo"))
    parser.add_argument("--em", default="em-organelles", help="EM model name or folder")
    parser.add_argument("--fluo", default="fluo-organelles", help="fluorescence model")
    parser.add_argument("--sets", nargs="+", default=list(SUITE), help="data sets to score")
    parser.add_argument("--lucchi-step", type=int, default=1,
                        help="score every Nth slice of em-lucchi-pp (1: the whole volume)")
    parser.add_argument("--fold-minutes", type=float, default=25.0,
                        help="training time per leave-one-out fold")
    parser.add_argument("--folds", nargs="+", default=list(LODO_SETS), choices=LODO_SETS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "lodo",
                        help="where the fold models are trained (resumable)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "generalisation.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    report = _load(args.out)
    if "models" in args.parts:
        report["models"] = _merged(report.get("models", []), score_models(args), args.sets)
        _save(args.out, report)
    if "baselines" in args.parts:
        report["baselines"] = _merged(report.get("baselines", []), score_baselines(args),
                                      args.sets)
        _save(args.out, report)
    if "lodo" in args.parts:
        def keep(folds: dict[str, Any]) -> None:
            report["lodo"] = folds
            _save(args.out, report)

        report["lodo"] = leave_one_out(args, report.get("lodo", {}), keep)
        _save(args.out, report)
    print_report(report)
    print(f"saved {args.out}")


# ---------------------------------------------------------------------- parts


def score_models(args: argparse.Namespace) -> list[dict[str, Any]]:
    from napari_organelle.evaluation import model_predictor
    from napari_organelle.models import load_model

    models = {"em": load_model(args.em), "fluorescence": load_model(args.fluo)}
    rows = []
    for dataset in _present(args):
        modality, class_map = SUITE[dataset]
        model = models[modality]
        predict = model_predictor(model, classes=sorted(set(class_map.values())),
                                  device=args.device)
        kinds = {spec.name: spec.kind for spec in model.card.classes}
        rows += _score(args, dataset, class_map, predict, kinds, model.card.full_name)
    return rows


def score_baselines(args: argparse.Namespace) -> list[dict[str, Any]]:
    from napari_organelle.baselines import classical_predictor

    rows = []
    for dataset in _present(args):
        modality, class_map = SUITE[dataset]
        for data_class, model_class in class_map.items():
            kind = "instance" if model_class in INSTANCE_CLASSES else "semantic"
            for method in BASELINES[model_class]:
                predict = classical_predictor(method, {model_class: kind},
                                              dark=modality == "em")
                rows += _score(args, dataset, {data_class: model_class}, predict,
                               {model_class: kind}, f"classical: {method}")
    return rows


def leave_one_out(args: argparse.Namespace, done: dict[str, Any],
                  on_fold: Any = None) -> dict[str, Any]:
    """Train one model per left-out set (from scratch, fixed minutes) and score it there.

    A fold's training is recorded in ``fold.json`` beside its model, so a
    stopped run scores the folds it trained instead of training them again.
    """
    from napari_organelle.durable import atomic_write_text
    from napari_organelle.evaluation import model_predictor
    from napari_organelle.models import load_model
    from napari_organelle.training import load_recipe

    results = dict(done)
    for held_out in args.folds:
        if not (args.data / held_out).is_dir():
            print(f"{held_out}: not here, fold skipped")
            continue
        out = args.work / f"without-{held_out}"
        config, recipe = load_recipe("em-organelles", out, args.data)
        left_out = {held_out, *SAME_SOURCE.get(held_out, ())}
        config.datasets = [spec for spec in config.datasets
                           if Path(spec.path).name not in left_out]
        # From scratch: the recipe's base saw every set, the held-out one included.
        # Training from scratch wants the from-scratch peak rate of the base recipe,
        # not the lower fine-tuning rate of the continuation.
        config.base = None
        if recipe.get("base_recipe"):
            base_config, _ = load_recipe(recipe["base_recipe"], out, args.data)
            config.learning_rate = base_config.learning_rate
        config.iterations, config.minutes = None, args.fold_minutes
        config.threads, config.device, config.resume = args.threads, args.device, True
        trained_on = [Path(spec.path).name for spec in config.datasets]
        record = out / "fold.json"
        if record.is_file():
            # trained before (the run was stopped or only scoring is wanted): score again
            fold = json.loads(record.read_text())
            print(f"fold without {held_out}: trained before ({fold['steps']} steps), scoring",
                  flush=True)
        else:
            fold = _train_fold(config, held_out, trained_on, args.fold_minutes)
            atomic_write_text(record, json.dumps(fold, indent=2))
        model = load_model(Path(fold["model_dir"]))
        _, class_map = SUITE[held_out]
        predict = model_predictor(model, classes=["mitochondria"], device=args.device)
        kinds = {spec.name: spec.kind for spec in model.card.classes}
        rows = _score(args, held_out, {"mitochondria": "mitochondria"}, predict, kinds,
                      f"trained without {held_out}")
        results[held_out] = {**fold, "test": rows[0] if rows else None}
        # saved after every fold: a stopped run keeps the folds it finished
        if on_fold is not None:
            on_fold(results)
    dice = [fold["test"]["dice"] for fold in results.values() if fold.get("test")]
    if dice:
        results["mean_dice"] = sum(dice) / len(dice)
    return results


def _train_fold(config: Any, held_out: str, trained_on: list[str],
                minutes: float) -> dict[str, Any]:
    from napari_organelle.training import train_iter

    print(f"fold without {held_out}: training {minutes:g} min on {', '.join(trained_on)}",
          flush=True)
    started = time.perf_counter()
    work = train_iter(config)
    try:
        while True:
            report = next(work)
            if report.data and "val" in report.data:
                print(f"  step {report.data['step']}: val {report.data['val']}", flush=True)
    except StopIteration as finished:
        result = finished.value
    return {
        "trained_on": trained_on, "minutes": minutes, "model_dir": str(result.model_dir),
        "steps": result.history[-1]["step"] if result.history else 0,
        "train_seconds": round(time.perf_counter() - started, 1),
        "validation": result.after,
    }


# ---------------------------------------------------------------------- scoring


def _score(args: argparse.Namespace, dataset: str, class_map: dict[str, str], predict: Any,
           model_classes: dict[str, str], method: str) -> list[dict[str, Any]]:
    from napari_organelle.evaluation import evaluate_dataset

    folder = _subset(args, dataset)
    started = time.perf_counter()
    evaluation = evaluate_dataset(folder, "test", predict, class_map,
                                  model_classes=model_classes)
    seconds = time.perf_counter() - started
    rows = []
    for data_class, scores in evaluation.scores.items():
        metric, goal = TARGETS.get((dataset, data_class), (None, None))
        value = getattr(scores, metric) if metric else None
        rows.append({
            "dataset": dataset, "class": data_class, "method": method,
            "images": scores.n_images, "dice": scores.dice, "iou": scores.iou,
            "precision": scores.precision, "recall": scores.recall,
            "object_f1": scores.object_f1 if scores.objects else None,
            "target": f"{metric} >= {goal}" if metric else None,
            "met": (value >= goal) if metric and value == value else None,
            "seconds": round(seconds, 1),
        })
        print(f"{dataset:<24} {data_class:<14} {method:<34} Dice {scores.dice:.3f} "
              f"IoU {scores.iou:.3f}" + (f" objF1 {scores.object_f1:.3f}"
                                          if scores.objects else ""), flush=True)
    if folder != args.data / dataset:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return rows


def _subset(args: argparse.Namespace, dataset: str) -> Path:
    """The data set, or for em-lucchi-pp with ``--lucchi-step`` > 1 every Nth slice (links)."""
    folder = args.data / dataset
    if dataset != "em-lucchi-pp" or args.lucchi_step <= 1:
        return folder
    root = Path(tempfile.mkdtemp(prefix="lucchi-")) / dataset
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "masks" / "mitochondria").mkdir(parents=True)
    shutil.copy(folder / "dataset.json", root / "dataset.json")
    for index, image in enumerate(sorted((folder / "test" / "images").glob("*.tif"))):
        if index % args.lucchi_step:
            continue
        (root / "test" / "images" / image.name).symlink_to(image)
        (root / "test" / "masks" / "mitochondria" / image.name).symlink_to(
            folder / "test" / "masks" / "mitochondria" / image.name)
    return root


def _merged(old: list[dict[str, Any]], new: list[dict[str, Any]],
            scored: list[str]) -> list[dict[str, Any]]:
    """The new rows, plus the old rows of the data sets this run did not score."""
    return [row for row in old if row["dataset"] not in scored] + new


def _present(args: argparse.Namespace) -> list[str]:
    present = []
    for dataset in args.sets:
        if dataset not in SUITE:
            raise SystemExit(f"unknown data set {dataset!r}; known: {', '.join(SUITE)}")
        if (args.data / dataset).is_dir():
            present.append(dataset)
        else:
            print(f"{dataset}: not here, skipped")
    return present


# ---------------------------------------------------------------------- report


def print_report(report: dict[str, Any]) -> None:
    rows = report.get("models", []) + report.get("baselines", [])
    if rows:
        print(f"\n{'data set':<24} {'class':<14} {'method':<34} {'Dice':>6} {'IoU':>6} "
              f"{'objF1':>6}  target")
        for row in sorted(rows, key=lambda r: (r["dataset"], r["class"])):
            object_f1 = f"{row['object_f1']:.3f}" if row["object_f1"] is not None else "-"
            verdict = "" if row["met"] is None else ("met" if row["met"] else "NOT met")
            print(f"{row['dataset']:<24} {row['class']:<14} {row['method']:<34} "
                  f"{row['dice']:6.3f} {row['iou']:6.3f} {object_f1:>6}  "
                  f"{row['target'] or ''} {verdict}")
    lodo = report.get("lodo", {})
    folds = {k: v for k, v in lodo.items() if isinstance(v, dict) and v.get("test")}
    if folds:
        print("\nleave one data set out (mitochondria Dice on the left-out test split; "
              "target >= 0.75 each)")
        for held_out, fold in folds.items():
            dice = fold["test"]["dice"]
            print(f"  without {held_out:<24} {dice:.3f} ({fold['steps']} steps, "
                  f"{fold['minutes']:g} min) {'met' if dice >= 0.75 else 'NOT met'}")
        print(f"  mean {lodo['mean_dice']:.3f}")


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(path: Path, report: dict[str, Any]) -> None:
    from napari_organelle.durable import atomic_write_text

    report["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
