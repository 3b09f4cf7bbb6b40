"""Active learning: does annotating the tiles the queue picks beat annotating random ones?

For each data set (``../shared/data``), starting from a model that never saw it:

1. **Pool.** The set's *train* images, cut into square tiles of 256 x 256 pixels at
   the model's pixel size (205 px of a 10 nm HeLa image, 445 px of 4.6 nm vnc);
   only tiles with at least 90 % annotated pixels take part (HeLa annotates
   one cell), so every arm's annotation is complete.
2. **Arms**, each choosing K tiles (K = 1, 2, 4 by default; ``--k 1 2 4 8`` for more;
   the K-tile choice extends the smaller ones):

   * ``queue``: the "annotate next" queue, :func:`napari_organelle.suggest.choose_diverse`
     over the base model's uncertainty maps (entropy of the 4-flip average,
     :func:`~napari_organelle.inference.segment` with ``uncertainty=True``), of the
     classes the set annotates, each discounted where the base model finds less than
     10 % of its class (:func:`~napari_organelle.suggest.score_window`), with its
     default spacing (no two neighbouring tiles). The first runs (before the
     discount) are kept in the results as ``queue-uncertainty-only``;
   * ``random``: K tiles drawn at random (several seeds);
   * ``largest``: the K tiles with the most annotated organelle pixels (what a
     person picks by eye: where the organelles are).

3. **Fine-tuning**, the same for every arm: the chosen tiles are saved to a
   training store as fully reviewed corrections, exactly as the Correct dock
   saves them, and :func:`napari_organelle.training.finetune.finetune` (the code of
   the Train dock and ``napari-organelle train --base``) runs a fixed number of
   steps (no validation split: K is tiny; the last weights are scored).
4. **Score**: pixel Dice on the set's *test* split, per annotated class (ignored
   pixels excluded), at the model's pixel size; the base model's score is K = 0.

Base models: ``em-hela-sbfsem-mito`` starts from em-organelles 1.0.0
(``runs/em-v1``: trained on epfl, vnc and isbi2012, never on HeLa);
``em-drosophila-vnc`` from the epfl-only base model of ``benchmarks/hitl.py``
(trained here once, ``--vnc-base-minutes``, and reused).

Goal (issue #12): the queue beats random at every K, by at least 0.03 Dice at K <= 4.

Usage::

    python benchmarks/active_learning.py                       # both sets, ~1.5 h on 2 cores
    python benchmarks/active_learning.py --sets em-hela-sbfsem-mito --k 1 2 4 --seeds 0 1
    python benchmarks/active_learning.py --quick               # smoke run, minutes

Results (``benchmarks/results/active_learning.json``) are saved after every
fine-tuning and reused by a rerun with the same settings (resumable).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = REPO / "runs" / "active-learning"
DATA_ROOT = REPO.parent / "shared" / "data"
sys.path.insert(0, str(HERE))

#: per set: data class -> model class, of the classes it annotates and the model has
CLASSES = {
    "em-hela-sbfsem-mito": {"mitochondria": "mitochondria"},
    "em-drosophila-vnc": {"mitochondria": "mitochondria", "membranes": "cell_boundary"},
}
TILE_MODEL_PX = 256
MIN_ANNOTATED = 0.9
GOAL_MARGIN = 0.03


@dataclass(frozen=True)
class Tile:
    """One candidate tile of the pool, in pixels of its image."""

    stem: str
    box: tuple[int, int, int, int]
    foreground: float  # share of annotated organelle pixels (all classes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Fine-tuned versions are registered in a home of the benchmark's own, never the user's.
    os.environ["NAPARI_ORGANELLE_HOME"] = str(args.work / "home")
    out = args.out or RESULTS / ("active_learning-quick.json" if args.quick
                                 else "active_learning.json")
    report = load_report(out)
    report.update({"benchmark": "active_learning", "quick": args.quick,
                   "settings": _settings(args), "metric": _METRIC,
                   "machine": _machine(args)})
    started = time.perf_counter()
    for name in args.sets:
        entry = report.setdefault("sets", {}).setdefault(name, {})
        run_set(args, name, entry, lambda: save_report(report, out))
    report["seconds_total_last_run"] = round(time.perf_counter() - started, 1)
    report["goal"] = verdict(report, args)
    save_report(report, out)
    print_table(report)
    print(f"-> {out}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1],
                        help="seeds of the random arm")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps per run")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--hela-base", type=Path, default=REPO / "runs" / "em-v1",
                        help="model that never saw HeLa (default: em-organelles 1.0.0)")
    parser.add_argument("--vnc-base", type=Path,
                        help="model that never saw vnc (default: train the hitl base)")
    parser.add_argument("--vnc-base-minutes", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 K, few steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.k, args.seeds, args.steps = [1, 2], [0], 4
        args.vnc_base_minutes = min(args.vnc_base_minutes, 0.5)
    return args


_METRIC = ("pixel Dice per annotated class on the set's test split (ignored pixels excluded), "
           "counts pooled over the images, at the model's pixel size, threshold 0.5; "
           "'mean' is the mean over the set's annotated classes")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"k": args.k, "seeds": args.seeds, "steps": args.steps,
            "learning_rate": args.learning_rate, "tile_model_px": TILE_MODEL_PX,
            "min_annotated": MIN_ANNOTATED, "replay": 0.0, "batch_size": 4, "crop": 256}


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": args.device, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "load_average": os.getloadavg()}


# ---------------------------------------------------------------------- one set


def run_set(args: argparse.Namespace, name: str, entry: dict[str, Any], save: Any) -> None:
    from napari_organelle.models import load_model_folder

    base = base_model(args, name)
    card = load_model_folder(base).card
    key = _key(args, name, base)
    if entry.get("key") != key:
        entry.clear()
        entry["key"] = key
    entry["base"] = {"path": str(base.relative_to(REPO) if base.is_relative_to(REPO)
                                 else base), "model": card.full_name,
                     "trained_on": [d["name"] for d in card.training_data]}
    runs = entry.setdefault("runs", {})
    tests = test_images(args, name, card)
    if "base" not in runs:
        runs["base"] = {"k": 0, "scores": score(base, tests, args.device, name)}
        save()
    print(f"{name}: base {card.full_name}: {runs['base']['scores']}", flush=True)
    pool, pixel_nm = tile_pool(args, name, card)
    entry["pool"] = {"tiles": len(pool), "tile_px": _tile_px(card, pixel_nm),
                     "images": len({t.stem for t in pool})}
    choices = {"queue": queue_choice(args, name, base, pool, pixel_nm, max(args.k)),
               "largest": sorted(pool, key=lambda t: (-t.foreground, t.stem, t.box))}
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(pool))
        choices[f"random-{seed}"] = [pool[i] for i in order]
    chosen_now = {arm: [[t.stem, *t.box] for t in tiles[:max(args.k)]]
                  for arm, tiles in choices.items()}
    for arm, tiles in chosen_now.items():
        before = entry.get("choices", {}).get(arm)
        if before is not None and before[:len(tiles)] != tiles[:len(before)]:
            # The arm now picks other tiles (its code changed): its scores are stale.
            # (A longer list for a larger K that starts with the same tiles is not.)
            for label in [label for label in runs if label.split("@")[0] == arm]:
                del runs[label]
    # Arms of earlier queue rules (``queue-uncertainty-only``) keep their choices and scores.
    entry["choices"] = {**entry.get("choices", {}), **chosen_now}
    save()
    for k in args.k:
        for arm, tiles in choices.items():
            label = f"{arm}@{k}"
            if label in runs:
                continue
            chosen = tiles[:k]
            if len(chosen) < k:
                print(f"  {label}: only {len(chosen)} tiles, skipped", flush=True)
                continue
            started = time.perf_counter()
            model_dir = fine_tune(args, name, base, chosen, pixel_nm, label)
            scores = score(model_dir, tests, args.device, name)
            runs[label] = {"k": k, "arm": arm.split("-")[0], "scores": scores,
                           "foreground": round(float(np.mean([t.foreground for t in chosen])),
                                               4),
                           "seconds": round(time.perf_counter() - started, 1)}
            shutil.rmtree(model_dir.parent, ignore_errors=True)
            save()
            print(f"  {label:<12} mean Dice {scores['mean']:.3f}  {scores}  "
                  f"({runs[label]['seconds']:.0f} s)", flush=True)


def _key(args: argparse.Namespace, name: str, base: Path) -> str:
    from napari_organelle.durable import sha256_file

    settings = {**_settings(args), "set": name,
                "base": sha256_file(base / "model.safetensors")}
    settings.pop("k")
    settings.pop("seeds")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def base_model(args: argparse.Namespace, name: str) -> Path:
    """A model that never saw ``name``: em-organelles 1.0.0 for HeLa, hitl's base for vnc."""
    if name == "em-hela-sbfsem-mito":
        return args.hela_base
    if args.vnc_base:
        return args.vnc_base
    import hitl

    hitl_args = hitl.parse_args(["--work", str(args.work / "hitl"), "--device", args.device,
                                 "--threads", str(args.threads), "--data-root",
                                 str(args.data_root)] + (["--quick"] if args.quick else []))
    budget = hitl.Budget(base_minutes=args.vnc_base_minutes, minutes=0, marks=(),
                         batch_size=4, crop=256, validate_every=50, test_images=None)
    folder, _ = hitl.base_model(hitl_args, budget)
    return Path(folder)


def _pixel_nm(args: argparse.Namespace, name: str) -> float:
    info = json.loads((args.data_root / name / "dataset.json").read_text())
    return float(info["pixel_size_nm"][-1])


def _tile_px(card: Any, pixel_nm: float) -> int:
    """256 model pixels in the image's own pixels."""
    return int(round(TILE_MODEL_PX * card.pixel_size_nm / pixel_nm))


def _stems(args: argparse.Namespace, name: str) -> list[str]:
    return sorted(p.stem for p in (args.data_root / name / "train" / "images").glob("*.tif"))


def _masks(args: argparse.Namespace, name: str, stem: str) -> dict[str, np.ndarray]:
    import tifffile

    folder = args.data_root / name / "train" / "masks"
    return {data: tifffile.imread(folder / data / f"{stem}.tif") for data in CLASSES[name]}


def _image(args: argparse.Namespace, name: str, stem: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(args.data_root / name / "train" / "images" / f"{stem}.tif")


def tile_pool(args: argparse.Namespace, name: str, card: Any) -> tuple[list[Tile], float]:
    """Every non-overlapping tile of the train images with >= 90 % annotated pixels."""
    from napari_organelle.store import IGNORE_VALUE
    from napari_organelle.suggest import _starts

    pixel_nm = _pixel_nm(args, name)
    edge = _tile_px(card, pixel_nm)
    pool = []
    for stem in _stems(args, name):
        masks = _masks(args, name, stem)
        shape = next(iter(masks.values())).shape
        ignored = np.any([m == IGNORE_VALUE for m in masks.values()], axis=0)
        organelle = np.any([(m > 0) & (m != IGNORE_VALUE) for m in masks.values()], axis=0)
        for y in _starts(shape[0], edge):
            for x in _starts(shape[1], edge):
                window = (slice(y, y + edge), slice(x, x + edge))
                if ignored[window].mean() > 1 - MIN_ANNOTATED:
                    continue
                pool.append(Tile(stem, (y, x, min(y + edge, shape[0]), min(x + edge, shape[1])),
                                 float(organelle[window].mean())))
    if not pool:
        raise SystemExit(f"{name}: no tile of {edge} px has {MIN_ANNOTATED:.0%} annotated pixels")
    return pool, pixel_nm


def queue_choice(args: argparse.Namespace, name: str, base: Path, pool: list[Tile],
                 pixel_nm: float, n: int) -> list[Tile]:
    """The queue's first ``n`` tiles among the pool: the score of the "annotate next" queue
    (:func:`napari_organelle.suggest.score_window`: uncertainty of the annotated classes,
    discounted where the base model finds little of them), then its diverse choice."""
    from napari_organelle.suggest import Region, choose_diverse, score_window

    candidates = []
    by_box = {(t.stem, t.box): t for t in pool}
    for stem in sorted({t.stem for t in pool}):
        maps, masks = base_maps(args, name, base, stem, pixel_nm)
        for tile in (t for t in pool if t.stem == stem):
            y0, x0, y1, x1 = tile.box
            score, per_class, pattern = score_window(maps, masks, np.s_[y0:y1, x0:x1])
            candidates.append(Region(stem, (), tile.box, score, per_class, pattern=pattern))
    edge = pool[0].box[2] - pool[0].box[0]
    chosen = choose_diverse(candidates, n, tile=edge)
    return [by_box[(region.source, region.box)] for region in chosen]


def base_maps(args: argparse.Namespace, name: str, base: Path, stem: str, pixel_nm: float
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The base model's uncertainty maps and masks of one train image (cached on disk).

    Four-flip segmentation of every train image is the slow part of choosing
    the queue; a rerun with another queue rule reads them back.
    """
    from napari_organelle.durable import sha256_file
    from napari_organelle.inference import segment
    from napari_organelle.models import load_model_folder

    classes = list(CLASSES[name].values())
    weights = sha256_file(base / "model.safetensors")[:12]
    cache = args.work / name / "maps" / f"{stem}-{weights}.npz"
    try:
        with np.load(cache) as saved:
            return ({c: saved[f"unsure_{c}"] for c in classes},
                    {c: saved[f"mask_{c}"] for c in classes})
    except (OSError, KeyError, ValueError):
        pass
    result = segment(_image(args, name, stem), load_model_folder(base), classes=classes,
                     pixel_size_nm=pixel_nm, uncertainty=True, device=args.device)
    unsure = {c: result.uncertainty[c].astype(np.float16) for c in classes}
    masks = {c: (result.labels[c] > 0).astype(np.uint8) for c in classes}
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez_compressed(partial, **{f"unsure_{c}": v for c, v in unsure.items()},
                        **{f"mask_{c}": v for c, v in masks.items()})
    os.replace(partial, cache)
    return unsure, masks


def fine_tune(args: argparse.Namespace, name: str, base: Path, tiles: list[Tile],
              pixel_nm: float, label: str) -> Path:
    """Save the tiles as reviewed corrections and fine-tune a fixed number of steps."""
    from napari_organelle.progress import run
    from napari_organelle.store import IGNORE_VALUE, open_store, save_sample
    from napari_organelle.training.finetune import FinetuneSettings, finetune_iter

    folder = args.work / name / label
    shutil.rmtree(folder, ignore_errors=True)
    store = open_store(folder / "store", classes=list(CLASSES[name]))
    for tile in tiles:
        y0, x0, y1, x1 = tile.box
        image = _image(args, name, tile.stem)[y0:y1, x0:x1]
        masks = {c: m[y0:y1, x0:x1] for c, m in _masks(args, name, tile.stem).items()}
        # Not-annotated pixels (HeLa: outside the one annotated cell) stay ignored.
        annotated = ~np.any([m == IGNORE_VALUE for m in masks.values()], axis=0)
        masks = {c: np.where(annotated, m > 0, 0).astype(np.uint8) for c, m in masks.items()}
        save_sample(store, image, masks, reviewed=True if annotated.all() else annotated,
                    provenance={"source_path": f"{name}/train/images/{tile.stem}.tif",
                                "pixel_size_nm": (pixel_nm, pixel_nm), "crop": list(tile.box),
                                "annotator": "active-learning benchmark",
                                "extra": {"modality": "em"}})
    settings = FinetuneSettings(
        base=str(base), data=[folder / "store"], name=f"al-{label.replace('@', '-k')}",
        class_map={d: m for d, m in CLASSES[name].items() if d != m},
        minutes=None, iterations=args.steps, val_fraction=0.0, replay=0.0,
        device=args.device, threads=args.threads, batch_size=4, crop=256,
        learning_rate=args.learning_rate, patience=0, seed=0, work_dir=folder / "run")
    result = run(finetune_iter(settings))
    return result.version.path


def test_images(args: argparse.Namespace, name: str, card: Any) -> list[Any]:
    from napari_organelle.training import DatasetSpec, load_dataset

    class_map = {d: m for d, m in CLASSES[name].items()}
    return load_dataset(DatasetSpec(args.data_root / name, "test", class_map),
                        card.class_names, card.pixel_size_nm,
                        (card.normalization.low, card.normalization.high))


def score(folder: Path, images: list[Any], device: str, name: str) -> dict[str, float]:
    from napari_organelle.devices import resolve_device
    from napari_organelle.models import load_model_folder
    from napari_organelle.training import validate

    model = load_model_folder(folder)
    target = resolve_device(device)
    values = validate(model.network.to(target), images, model.card.class_names, target)
    wanted = {m: d for d, m in CLASSES[name].items()}
    scores = {wanted[m]: round(float(v), 4) for m, v in values.items() if m in wanted}
    scores["mean"] = round(float(np.mean(list(scores.values()))), 4)
    return scores


# ---------------------------------------------------------------------- report


def load_report(path: Path) -> dict[str, Any]:
    """A saved results file, or {} when there is none (or it is damaged)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_report(report: dict[str, Any], path: Path) -> None:
    """Write a results file atomically (a killed run never leaves half a file)."""
    from napari_organelle.durable import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def table(entry: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Mean Dice per K and arm (the random arm averaged over its seeds)."""
    rows: dict[int, dict[str, list[float]]] = {}
    for label, run in entry.get("runs", {}).items():
        if label == "base":
            continue
        rows.setdefault(run["k"], {}).setdefault(run["arm"], []).append(run["scores"]["mean"])
    return {k: {arm: float(np.mean(v)) for arm, v in arms.items()}
            for k, arms in sorted(rows.items())}


def verdict(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    per_set = {}
    for name, entry in report.get("sets", {}).items():
        margins = {k: round(arms["queue"] - arms["random"], 4)
                   for k, arms in table(entry).items() if "queue" in arms and "random" in arms}
        per_set[name] = {
            "queue_minus_random": margins,
            "beats_random_at_every_k": bool(margins) and all(v > 0 for v in margins.values()),
            "margin_at_k_le_4_at_least_0.03": bool(margins) and all(
                v >= GOAL_MARGIN for k, v in margins.items() if k <= 4)}
    passed = bool(per_set) and all(s["beats_random_at_every_k"]
                                   and s["margin_at_k_le_4_at_least_0.03"]
                                   for s in per_set.values())
    return {"queue_beats_random_at_every_k_by_0.03_at_k_le_4": passed, "per_set": per_set}


def print_table(report: dict[str, Any]) -> None:
    for name, entry in report.get("sets", {}).items():
        base = entry.get("runs", {}).get("base", {}).get("scores", {}).get("mean", float("nan"))
        print(f"\n{name} (base {entry.get('base', {}).get('model')}: mean Dice {base:.3f}; "
              f"pool {entry.get('pool', {}).get('tiles')} tiles)")
        print(f"{'K':>3} {'queue':>8} {'random':>8} {'largest':>8} {'q - r':>8} "
              f"{'uncertainty only':>17}")
        for k, arms in table(entry).items():
            q, r, g, u = (arms.get(a, float("nan"))
                          for a in ("queue", "random", "largest", "queue-uncertainty-only"))
            print(f"{k:>3} {q:>8.3f} {r:>8.3f} {g:>8.3f} {q - r:>+8.3f} {u:>17.3f}")
    goal = report.get("goal", {})
    print(f"\ngoal (queue > random at every K, by >= {GOAL_MARGIN} at K <= 4): "
          f"{'PASS' if goal.get('queue_beats_random_at_every_k_by_0.03_at_k_le_4') else 'FAIL'}"
          f"{' (quick smoke run: not meaningful)' if report.get('quick') else ''}")


if __name__ == "__main__":
    sys.exit(main())
