"""Human-in-the-loop benchmark: do two corrected images adapt a model to a new domain, without
forgetting the old one?

The loop as a user lives it, on ``../shared/data``:

1. **Base model.** The bundled EM architecture and recipe settings (U-Net,
   8 nm pixels, same augmentation), trained on em-epfl-hippocampus only
   (mitochondria; membranes as cell_boundary). It is kept in
   ``runs/hitl/base-<key>/`` and reused by later runs with the same settings
   (``--base MODEL`` uses another model instead).
2. **Corrections.** Two training images of em-drosophila-vnc (another tissue,
   another microscope) are saved to a training store as an annotator's fully
   reviewed corrections, with their pixel size, exactly as the Correct dock
   would save them.
3. **Fine-tuning.** :func:`napari_organelle.training.finetune.finetune` (the
   code behind ``napari-organelle train --base`` and the Train dock) on that
   store for 10 minutes on this machine, replaying a share of the base
   model's own training data against forgetting. The checkpoint written at
   each validation is copied aside, to score the model against minutes of
   training.
4. **Evaluation.** Pixel Dice per class, pooled over the held-out test
   splits, at the model's pixel size: em-drosophila-vnc test (new domain)
   and em-epfl-hippocampus test (old domain: forgetting), for the base model,
   the snapshots and the kept model.

Goal: the kept model gains at least 0.10 Dice on the new domain (mean of
mitochondria and membranes) and loses at most 0.02 on the old one.

Usage::

    python benchmarks/hitl.py                        # base 30 min (once), fine-tune 10 min
    python benchmarks/hitl.py --quick                # smoke run, about 3 minutes
    python benchmarks/hitl.py --base-minutes 60 --minutes 10 --replay 0.25 --learning-rate 1e-3
    python benchmarks/hitl.py --base runs/my-epfl-model/best

Results: ``benchmarks/results/hitl.json`` (``hitl-quick.json`` with ``--quick``)
and a table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = REPO / "runs" / "hitl"
DATA_ROOT = REPO.parent / "shared" / "data"

OLD_DOMAIN = "em-epfl-hippocampus"
NEW_DOMAIN = "em-drosophila-vnc"
#: model class -> data class, in both sets
CLASS_MAP = {"mitochondria": "mitochondria", "cell_boundary": "membranes"}
GOAL_GAIN = 0.10
GOAL_MAX_LOSS = 0.02


@dataclass
class Budget:
    """How long each stage may take (the quick smoke run shrinks everything)."""

    base_minutes: float
    minutes: float
    marks: tuple[float, ...]
    batch_size: int
    crop: int
    validate_every: int
    test_images: int | None  # per test split; None: all


FULL = Budget(base_minutes=30.0, minutes=10.0, marks=(1.0, 2.0, 5.0), batch_size=4, crop=256,
              validate_every=20, test_images=None)
QUICK = Budget(base_minutes=0.75, minutes=0.75, marks=(0.25, 0.5), batch_size=2, crop=128,
               validate_every=4, test_images=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = QUICK if args.quick else FULL
    if args.base_minutes is not None:
        budget.base_minutes = args.base_minutes
    if args.minutes is not None:
        budget.minutes = args.minutes
    data_root = args.data_root
    for name in (OLD_DOMAIN, NEW_DOMAIN):
        if not (data_root / name).is_dir():
            print(f"hitl: {data_root / name} is missing (pass --data-root)", file=sys.stderr)
            return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # Everything the benchmark registers stays in its own napari-organelle home.
    os.environ["NAPARI_ORGANELLE_HOME"] = str(args.work / "home")

    started = time.perf_counter()
    base_dir, base_seconds = base_model(args, budget)
    store = save_corrections(args.work / "corrections", data_root, args.corrections)
    finetuned, snapshots, finetune_report = fine_tune(args, budget, base_dir, store)
    print("scoring on the test splits…", flush=True)
    rows = score_all(args, budget, base_dir, finetuned, snapshots)
    report = summarise(args, budget, rows, base_dir, base_seconds, finetune_report,
                       time.perf_counter() - started)
    out = args.out or RESULTS / ("hitl-quick.json" if args.quick else "hitl.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten to {out}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (~3 minutes)")
    parser.add_argument("--base", help="base model to use instead of training one "
                                       "(name, name@version or folder)")
    parser.add_argument("--base-minutes", type=float,
                        help=f"training time of the base model ({FULL.base_minutes:g})")
    parser.add_argument("--minutes", type=float,
                        help=f"fine-tuning time ({FULL.minutes:g})")
    parser.add_argument("--corrections", nargs="+", default=["00", "08"], metavar="STEM",
                        help=f"{NEW_DOMAIN} training images used as corrections (00 08)")
    parser.add_argument("--replay", type=float, default=0.5,
                        help="share of each batch from the base training data (0.5)")
    parser.add_argument("--learning-rate", type=float, default=3e-4,
                        help="peak learning rate (3e-4, the fine-tuning default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--work", type=Path, default=WORK,
                        help="where the base model, store and runs are kept (runs/hitl)")
    parser.add_argument("--out", type=Path, help="results JSON")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- 1. base model


def base_model(args: argparse.Namespace, budget: Budget) -> tuple[Path, float | None]:
    """Train (or reuse) the epfl-only base model; returns its folder and training seconds."""
    if args.base:
        from napari_organelle.models import resolve_model

        return resolve_model(args.base), None
    from napari_organelle.models import ModelCard
    from napari_organelle.training import AugmentSettings, DatasetSpec, TrainConfig, train_iter
    from napari_organelle.training.recipe import find_recipe

    settings = {"recipe": "em-organelles", "data": OLD_DOMAIN, "minutes": budget.base_minutes,
                "batch_size": budget.batch_size, "crop": budget.crop, "seed": args.seed,
                "device": args.device}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    run_dir = args.work / f"base-{key}"
    kept = run_dir / "best"
    if (kept / "card.json").exists() and (run_dir / "done.json").exists():
        print(f"reusing base model {kept}", flush=True)
        return kept, json.loads((run_dir / "done.json").read_text()).get("seconds")

    print(f"training the base model on {OLD_DOMAIN} for {budget.base_minutes:g} min…",
          flush=True)
    # The bundled model's card and training settings, on one data set.
    recipe = json.loads(find_recipe("em-organelles").read_text())
    card = ModelCard.from_dict(recipe["card"])
    card.name, card.version = "hitl-base", "1"
    card.training_data = [entry for entry in card.training_data
                          if entry["name"].startswith(OLD_DOMAIN)]
    card.description = f"hitl benchmark base model: {OLD_DOMAIN} only."
    training = recipe["training"]
    augment = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in training.get("augment", {}).items()})
    class_map = {data: model for model, data in CLASS_MAP.items()}
    config = TrainConfig(
        out=run_dir, card=card, datasets=[DatasetSpec(args.data_root / OLD_DOMAIN, "train",
                                                      class_map)],
        val_fraction=training["val_fraction"], iterations=None, minutes=budget.base_minutes,
        batch_size=budget.batch_size, crop=budget.crop,
        learning_rate=training["learning_rate"], weight_decay=training["weight_decay"],
        validate_every=8 if args.quick else 50, seed=args.seed, device=args.device,
        threads=args.threads, augment=augment)
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    result = _drive(train_iter(config), every=50)
    seconds = round(time.perf_counter() - started, 1)
    (run_dir / "done.json").write_text(json.dumps({"seconds": seconds, "settings": settings,
                                                   "steps": result.history[-1]["step"]}))
    print(f"base model: {result.history[-1]['step']} steps in {seconds:.0f} s, validation "
          f"Dice {result.after}", flush=True)
    return result.model_dir, seconds


# ---------------------------------------------------------------------- 2. corrections


def save_corrections(folder: Path, data_root: Path, stems: list[str]) -> Path:
    """Save training images of the new domain to a store as fully reviewed corrections."""
    import tifffile

    from napari_organelle.store import open_store, save_sample

    shutil.rmtree(folder, ignore_errors=True)
    store = open_store(folder, classes=list(CLASS_MAP.values()))
    source = data_root / NEW_DOMAIN
    info = json.loads((source / "dataset.json").read_text())
    pixel = tuple(float(v) for v in info["pixel_size_nm"])
    for stem in stems:
        image_path = source / "train" / "images" / f"{stem}.tif"
        masks = {name: tifffile.imread(source / "train" / "masks" / name / f"{stem}.tif")
                 for name in CLASS_MAP.values()}
        save_sample(store, tifffile.imread(image_path), masks, reviewed=True,
                    provenance={"source_path": str(image_path), "pixel_size_nm": pixel,
                                "annotator": "hitl benchmark", "extra": {"modality": "em"}})
    print(f"saved {len(stems)} corrections of {NEW_DOMAIN} ({', '.join(stems)}) to {folder}",
          flush=True)
    return folder


# ---------------------------------------------------------------------- 3. fine-tuning


def fine_tune(args: argparse.Namespace, budget: Budget, base_dir: Path, store: Path
              ) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune on the store; returns the kept model, checkpoint snapshots and a summary."""
    from napari_organelle.training.finetune import FinetuneSettings, finetune

    work_dir = args.work / "finetune"
    snapshot_dir = args.work / "snapshots"
    shutil.rmtree(snapshot_dir, ignore_errors=True)
    snapshot_dir.mkdir(parents=True)
    settings = FinetuneSettings(
        base=str(base_dir), data=[store], name="hitl-finetuned", minutes=budget.minutes,
        replay=args.replay, data_root=args.data_root, device=args.device,
        threads=args.threads, batch_size=budget.batch_size, crop=budget.crop,
        learning_rate=args.learning_rate, validate_every=budget.validate_every,
        seed=args.seed, work_dir=work_dir)
    snapshots: list[dict[str, Any]] = []
    seen = {"mtime": 0.0}

    def keep_snapshots(report: Any) -> None:
        data = report.data
        if "loss" not in data:
            if report.message:
                print(f"  {report.message}", flush=True)
            return
        last = work_dir / "last" / "card.json"
        if last.exists() and last.stat().st_mtime > seen["mtime"]:
            seen["mtime"] = last.stat().st_mtime
            target = snapshot_dir / f"step-{data['step']:06d}"
            shutil.copytree(work_dir / "last", target,
                            ignore=shutil.ignore_patterns("train_state.pt"))
            snapshots.append({"step": data["step"], "seconds": data["seconds"],
                              "path": str(target)})
        if "monitor" in data or "val" in data:
            scores = data.get("monitor", {})
            shown = " ".join(f"{k}={v:.3f}" for k, v in scores.items() if v == v)
            print(f"  step {data['step']:>5}  {data['seconds']:>6.0f} s  loss "
                  f"{data['loss']:.3f}  {OLD_DOMAIN} held-out: {shown}", flush=True)

    print(f"fine-tuning for {budget.minutes:g} min (replay {args.replay:g})…", flush=True)
    result = finetune(settings, progress=keep_snapshots)
    steps = result.history[-1]["step"] if result.history else 0
    seconds = result.history[-1]["seconds"] if result.history else 0.0
    summary = {"steps": steps, "seconds": seconds, "stopped": result.stopped,
               "version": result.version.full_name if result.version else None,
               "notes": result.notes, "settings": settings.to_dict()}
    return result.version.path, snapshots, summary


# ---------------------------------------------------------------------- 4. evaluation


def score_all(args: argparse.Namespace, budget: Budget, base_dir: Path, finetuned: Path,
              snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dice on both test splits for the base model, snapshots near the marks, the kept model."""
    from napari_organelle.models import load_model_folder

    card = load_model_folder(base_dir).card
    tests = {name: _test_images(args.data_root / name, card, budget.test_images)
             for name in (NEW_DOMAIN, OLD_DOMAIN)}
    chosen = _near_marks(snapshots, budget.marks)
    models = [("base", 0.0, 0, base_dir)]
    models += [("fine-tuned", round(s["seconds"] / 60, 2), s["step"], Path(s["path"]))
               for s in chosen]
    models.append(("kept", None, None, finetuned))
    rows = []
    for label, minutes, step, folder in models:
        scores = {name: _dice(folder, images, args.device) for name, images in tests.items()}
        rows.append({"model": label, "minutes": minutes, "step": step, "scores": scores})
        print(f"  {label:<11} {_minutes(minutes):>6}  " + "  ".join(
            f"{name}: " + " ".join(f"{k}={v:.3f}" for k, v in s.items())
            for name, s in scores.items()), flush=True)
    return rows


def _test_images(folder: Path, card: Any, limit: int | None) -> list[Any]:
    from napari_organelle.training import DatasetSpec, load_dataset

    class_map = {data: model for model, data in CLASS_MAP.items()}
    images = load_dataset(DatasetSpec(folder, "test", class_map), card.class_names,
                          card.pixel_size_nm,
                          (card.normalization.low, card.normalization.high))
    return images[:limit] if limit else images


def _dice(folder: Path, images: list[Any], device: str) -> dict[str, float]:
    """Pixel Dice per class, counts pooled over the images (``membranes`` for cell_boundary)."""
    from napari_organelle.devices import resolve_device
    from napari_organelle.models import load_model_folder
    from napari_organelle.training import validate

    model = load_model_folder(folder)
    target = resolve_device(device)
    scores = validate(model.network.to(target), images, model.card.class_names, target)
    return {CLASS_MAP.get(name, name): round(float(value), 4)
            for name, value in scores.items() if name in CLASS_MAP}


def _near_marks(snapshots: list[dict[str, Any]], marks: tuple[float, ...]
                ) -> list[dict[str, Any]]:
    """For each minute mark, the last snapshot taken before it (each at most once)."""
    chosen: list[dict[str, Any]] = []
    for mark in marks:
        before = [s for s in snapshots if s["seconds"] <= 60 * mark]
        if before and before[-1] not in chosen:
            chosen.append(before[-1])
    return chosen


# ---------------------------------------------------------------------- report


def summarise(args: argparse.Namespace, budget: Budget, rows: list[dict[str, Any]],
              base_dir: Path, base_seconds: float | None, finetune_report: dict[str, Any],
              total_seconds: float) -> dict[str, Any]:
    import torch

    base, kept = rows[0]["scores"], rows[-1]["scores"]
    change = {domain: {k: round(kept[domain][k] - base[domain][k], 4) for k in base[domain]}
              for domain in base}
    new_gain = float(np.mean(list(change[NEW_DOMAIN].values())))
    old_change = float(np.mean(list(change[OLD_DOMAIN].values())))
    return {
        "benchmark": "hitl",
        "quick": args.quick,
        "goal": {"new_domain_mean_gain_at_least": GOAL_GAIN,
                 "old_domain_mean_loss_at_most": GOAL_MAX_LOSS,
                 "new_domain_mean_gain": round(new_gain, 4),
                 "old_domain_mean_change": round(old_change, 4),
                 "passed": new_gain >= GOAL_GAIN and old_change >= -GOAL_MAX_LOSS},
        "change": change,
        "rows": rows,
        "base": {"path": str(base_dir), "train_seconds": base_seconds,
                 "given": args.base},
        "finetune": finetune_report,
        "corrections": {"set": NEW_DOMAIN, "images": args.corrections},
        "budget": asdict(budget),
        "metric": "pixel Dice per class, counts pooled over the test split, at the model's "
                  "pixel size (8 nm), threshold 0.5",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": args.device, "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "seconds_total": round(total_seconds, 1),
    }


def print_table(report: dict[str, Any]) -> None:
    """Dice per model and snapshot: new domain (vnc) and old domain (epfl), then the change."""
    columns = [(domain, name) for domain in (NEW_DOMAIN, OLD_DOMAIN)
               for name in ("mitochondria", "membranes")]
    titles = [f"{_short(domain)} {name[:4]}" for domain, name in columns]
    print("\n" + f"{'model':<11}{'minutes':>8}" + "".join(f"{t:>11}" for t in titles))
    print("-" * (19 + 11 * len(titles)))
    for row in report["rows"]:
        values = [row["scores"][domain].get(name, float("nan")) for domain, name in columns]
        print(f"{row['model']:<11}{_minutes(row['minutes']):>8}"
              + "".join(f"{v:>11.3f}" for v in values))
    change = [report["change"][domain].get(name, float("nan")) for domain, name in columns]
    print(f"{'change':<11}{'':>8}" + "".join(f"{v:>+11.3f}" for v in change))
    goal = report["goal"]
    verdict = "PASS" if goal["passed"] else "FAIL"
    note = " (quick smoke run: not meaningful)" if report["quick"] else ""
    print(f"\ngoal: {NEW_DOMAIN} mean gain {goal['new_domain_mean_gain']:+.3f} (at least "
          f"+{GOAL_GAIN}), {OLD_DOMAIN} mean change {goal['old_domain_mean_change']:+.3f} "
          f"(at least -{GOAL_MAX_LOSS}): {verdict}{note}")
    tuned = report["finetune"]
    print(f"fine-tuning: {tuned['steps']} steps in {tuned['seconds']:.0f} s "
          f"({tuned['stopped']}); whole benchmark {report['seconds_total']:.0f} s")


def _short(domain: str) -> str:
    return {NEW_DOMAIN: "vnc", OLD_DOMAIN: "epfl"}.get(domain, domain)


def _minutes(value: float | None) -> str:
    return "end" if value is None else f"{value:.1f}"


def _drive(work: Any, every: int) -> Any:
    """Run a training generator, printing a line every ``every`` steps and at validations."""
    try:
        while True:
            report = next(work)
            data = report.data
            if "loss" in data and ("val" in data or data["step"] % every == 0):
                shown = " ".join(f"{k}={v:.3f}" for k, v in data.get("val", {}).items()
                                 if v == v)
                print(f"  step {data['step']:>5}  {data['seconds']:>6.0f} s  loss "
                      f"{data['loss']:.3f}  {shown}", flush=True)
    except StopIteration as finished:
        return finished.value


if __name__ == "__main__":
    sys.exit(main())
