"""Adding a class from corrections: synapses of em-drosophila-vnc, from 2 and 4 painted images.

The bundled EM model (em-organelles: mitochondria, cell_boundary) has no synapse
class. An annotator paints the synapses of a few vnc *train* images from scratch
on a new Labels layer and saves them (here: the data set's own synapse masks,
saved to a training store as fully reviewed samples of the one new class, as the
Correct dock saves a painted layer). The Train dock's "new classes" path
(:func:`napari_organelle.training.finetune.finetune` with ``add_classes``) then
fine-tunes for 10 minutes on this machine, replaying half of each batch from the
base model's own training sets (their synapses stay unannotated: ignored) so the
old classes are not forgotten, with the settings a run that adds classes uses
(new output row at 10 x the learning rate, encoder frozen, batch-norm statistics
kept, old classes taught on the painted images from the base's predictions; each
can be switched off here to measure it).

Scores: pixel Dice of synapses on the vnc *test* split (never seen), and the
old classes' Dice before and after, on vnc test and em-epfl-hippocampus test
(forgetting). The same on :data:`VALIDATION` images (vnc train slices nobody
painted, a few epfl train images): compare settings there, never on test.

Goal (issue #13): synapse Dice >= 0.6 with 4 images; old classes within 0.02.

Usage::

    python benchmarks/add_class.py                    # 2 and 4 images, 10 min each
    python benchmarks/add_class.py --images 4 --minutes 5
    python benchmarks/add_class.py --quick            # smoke run

Results: ``benchmarks/results/add_class.json``, saved after each run (a rerun
with the same settings skips finished runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = REPO / "runs" / "add-class"
DATA_ROOT = REPO.parent / "shared" / "data"
sys.path.insert(0, str(HERE))

from active_learning import _machine, load_report, save_report  # noqa: E402 - a sibling script

NEW_SET = "em-drosophila-vnc"
NEW_CLASS = "synapses"
#: the painted images, in the order they are added (spread over the train slices)
STEMS = ["00", "08", "04", "12"]
#: per test set: data class -> model class
TESTS = {NEW_SET: {"mitochondria": "mitochondria", "membranes": "cell_boundary",
                   NEW_CLASS: NEW_CLASS},
         "em-epfl-hippocampus": {"mitochondria": "mitochondria",
                                 "membranes": "cell_boundary"}}
#: Where settings are compared (never on the test split): vnc train slices nobody painted
#: (their synapses are never trained on; their old classes were, by the base model) and a
#: few em-epfl-hippocampus train images (forgetting).
VALIDATION = {NEW_SET: lambda stems: [s for s in stems if s not in STEMS],
              "em-epfl-hippocampus": lambda stems: stems[::5]}
GOAL_NEW = 0.6
GOAL_FORGET = 0.02


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["NAPARI_ORGANELLE_HOME"] = str(args.work / "home")
    out = args.out or RESULTS / ("add_class-quick.json" if args.quick else "add_class.json")
    report = load_report(out)
    key = _key(args)
    if report.get("key") != key:
        report = {"key": key}
    report.update({"benchmark": "add_class", "quick": args.quick, "base": args.base,
                   "settings": _settings(args), "machine": _machine(args),
                   "metric": "pixel Dice per class on each test split, counts pooled over "
                             "its images, at the model's pixel size (8 nm), threshold 0.5"})
    runs = report.setdefault("runs", {})
    if "base" not in runs:
        runs["base"] = {"images": 0, "scores": score(args, _base_folder(args)),
                        "validation": score(args, _base_folder(args), "validation")}
        save_report(report, out)
    print(f"base {args.base}: {runs['base']['scores']}", flush=True)
    for count in args.images:
        label = f"{count}-images"
        if label in runs:
            continue
        started = time.perf_counter()
        folder, summary = fine_tune(args, STEMS[:count], label)
        runs[label] = {"images": count, "stems": STEMS[:count], "scores": score(args, folder),
                       "validation": score(args, folder, "validation"),
                       "finetune": summary, "seconds": round(time.perf_counter() - started, 1)}
        if not args.keep:
            shutil.rmtree(folder.parent, ignore_errors=True)
        save_report(report, out)
        print(f"{label}: {runs[label]['scores']} ({summary['steps']} steps)", flush=True)
    report["goal"] = verdict(report)
    save_report(report, out)
    print_table(report)
    print(f"-> {out}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="em-organelles")
    parser.add_argument("--images", nargs="+", type=int, default=[2, 4], choices=[1, 2, 3, 4])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--replay", type=float, default=0.5)
    parser.add_argument("--new-class-crops", type=float, default=0.5,
                        help="share of crops centred on a new-class pixel (0: crops anywhere, "
                             "as the first runs, add_class-uniform-crops.json)")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--new-head-factor", type=float, default=10.0,
                        help="learning-rate multiple for the new class's output row")
    for flag, text in (("keep-norm-statistics", "keep the base model's batch-norm statistics"),
                       ("freeze-encoder", "train the decoder and output layer only"),
                       ("old-classes-from-base", "teach the old classes on the painted images "
                                                 "from the base model's confident predictions")):
        parser.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=True,
                            help=f"{text} (default: on, as the Train dock does when adding)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the fine-tuned models (under --work/home)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.minutes = [2], 0.3
    return args


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"minutes": args.minutes, "replay": args.replay, "learning_rate": args.learning_rate,
            "new_class_crops": args.new_class_crops, "new_head_factor": args.new_head_factor,
            "keep_norm_statistics": args.keep_norm_statistics,
            "old_classes_from_base": args.old_classes_from_base,
            "freeze_encoder": args.freeze_encoder,
            "new_class": NEW_CLASS, "kind": "instance", "new_set": NEW_SET,
            "val_fraction": 0.0, "batch_size": None, "crop": 256}


def _key(args: argparse.Namespace) -> str:
    from napari_organelle.durable import sha256_file

    settings = {**_settings(args), "base": sha256_file(_base_folder(args) / "model.safetensors")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _base_folder(args: argparse.Namespace) -> Path:
    from napari_organelle.models import resolve_model

    return Path(resolve_model(args.base))


def fine_tune(args: argparse.Namespace, stems: list[str], label: str
              ) -> tuple[Path, dict[str, Any]]:
    """Save the painted synapses of ``stems`` to a store and fine-tune with the new class."""
    import tifffile

    from napari_organelle.models import ClassSpec
    from napari_organelle.progress import run
    from napari_organelle.store import open_store, save_sample
    from napari_organelle.training.finetune import FinetuneSettings, finetune_iter

    folder = args.work / label
    shutil.rmtree(folder, ignore_errors=True)
    store = open_store(folder / "store", classes=[NEW_CLASS])
    source = args.data_root / NEW_SET
    pixel = tuple(float(v) for v in json.loads((source / "dataset.json").read_text())
                  ["pixel_size_nm"])
    for stem in stems:
        image = source / "train" / "images" / f"{stem}.tif"
        mask = tifffile.imread(source / "train" / "masks" / NEW_CLASS / f"{stem}.tif")
        save_sample(store, tifffile.imread(image), {NEW_CLASS: (mask > 0).astype(np.uint8)},
                    reviewed=True,
                    provenance={"source_path": str(image), "pixel_size_nm": pixel,
                                "annotator": "add-class benchmark (painted from scratch)",
                                "extra": {"modality": "em"}})
    settings = FinetuneSettings(
        base=args.base, data=[folder / "store"], name=f"add-{NEW_CLASS}-{label}",
        add_classes=[ClassSpec(NEW_CLASS, "instance", color="#ff7f0e")],
        minutes=args.minutes, iterations=None, val_fraction=0.0, replay=args.replay,
        data_root=args.data_root, device=args.device, threads=args.threads,
        learning_rate=args.learning_rate, new_class_crops=args.new_class_crops,
        new_head_factor=args.new_head_factor,
        keep_norm_statistics=args.keep_norm_statistics,
        old_classes_from_base=args.old_classes_from_base,
        freeze_encoder=args.freeze_encoder, patience=0,
        seed=0, work_dir=folder / "run")
    result = run(finetune_iter(settings))
    steps = result.history[-1]["step"] if result.history else 0
    return result.version.path, {"steps": steps, "stopped": result.stopped,
                                 "notes": result.notes, "version": result.version.full_name}


def score(args: argparse.Namespace, folder: Path, split: str = "test"
          ) -> dict[str, dict[str, float]]:
    """Dice per class on the test split, or on the :data:`VALIDATION` images (``validation``)."""
    from napari_organelle.devices import resolve_device
    from napari_organelle.models import load_model_folder
    from napari_organelle.training import DatasetSpec, load_dataset, validate

    model = load_model_folder(folder)
    card = model.card
    target = resolve_device(args.device)
    network = model.network.to(target)
    scores = {}
    for name, class_map in TESTS.items():
        usable = {d: m for d, m in class_map.items() if m in card.class_names}
        images = load_dataset(DatasetSpec(args.data_root / name,
                                          "train" if split == "validation" else "test", usable),
                              card.class_names, card.pixel_size_nm,
                              (card.normalization.low, card.normalization.high))
        if split == "validation":
            chosen = set(VALIDATION[name](sorted(item.name.split("/")[-1] for item in images)))
            images = [item for item in images if item.name.split("/")[-1] in chosen]
        values = validate(network, images, card.class_names, target)
        scores[name] = {m: round(float(v), 4) for m, v in values.items()
                        if m in usable.values() and v == v}
    return scores


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    runs = report.get("runs", {})
    base = runs.get("base", {}).get("scores", {})
    out: dict[str, Any] = {"new_class_dice_at_least": GOAL_NEW,
                           "old_classes_within": GOAL_FORGET, "runs": {}}
    for label, run in runs.items():
        if label == "base":
            continue
        new = run["scores"][NEW_SET].get(NEW_CLASS, float("nan"))
        change = {f"{s}/{c}": round(v - base[s][c], 4) for s, classes in run["scores"].items()
                  for c, v in classes.items() if c in base.get(s, {})}
        out["runs"][label] = {"new_class_dice": new, "old_class_change": change,
                              "passed": new >= GOAL_NEW and all(
                                  v >= -GOAL_FORGET for v in change.values())}
    four = out["runs"].get("4-images")
    out["passed_with_4_images"] = bool(four and four["passed"])
    return out


def print_table(report: dict[str, Any]) -> None:
    runs = report.get("runs", {})
    columns = [(s, c) for s, classes in TESTS.items() for c in classes.values()]
    print("\n" + f"{'model':<10}" + "".join(f"{s.split('-')[-1][:5] + ' ' + c[:6]:>14}"
                                           for s, c in columns))
    for key, title in (("validation", "validation (vnc slices nobody painted, epfl train)"),
                       ("scores", "test")):
        print(f"{title}:")
        for label, run in runs.items():
            values = [run.get(key, {}).get(s, {}).get(c, float("nan")) for s, c in columns]
            print(f"{label:<10}" + "".join(f"{v:>14.3f}" for v in values))
    goal = report.get("goal", {})
    print(f"\ngoal: {NEW_CLASS} Dice >= {GOAL_NEW} with 4 images, old classes within "
          f"{GOAL_FORGET}: {'PASS' if goal.get('passed_with_4_images') else 'FAIL'}"
          f"{' (quick smoke run)' if report.get('quick') else ''}")


if __name__ == "__main__":
    sys.exit(main())
