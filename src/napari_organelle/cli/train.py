"""``napari-organelle train``: fine-tune a model on a lab's data, or rebuild a bundled one.

Fine-tuning (the everyday use)::

    napari-organelle train --base em-organelles --data ~/corrections ~/lab-set \\
        --out em-organelles-lab --minutes 10 [--add-classes er] [--replay 0.2]

trains for 10 minutes and keeps the best model (by Dice on held-out images)
as the next version of ``em-organelles-lab`` (``napari-organelle models``
lists it). Ctrl+C stops early and still keeps the best model so far;
``--resume`` continues the last run of that name.

Rebuilding a bundled model from its recipe (developers)::

    napari-organelle train --recipe em-organelles --data-root ../shared/data --out runs/X
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..models import ClassSpec
    from ..progress import Progress
    from ..training.finetune import FinetuneResult, FinetuneSettings

#: How often (steps) a line is printed between validations.
PRINT_EVERY = 20


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune a model on corrections and data sets (or rebuild one)",
        description="Fine-tune: --base MODEL --data DIR [DIR ...] --out NAME keeps the result "
                    "as a new version of model NAME. Rebuild: --recipe RECIPE --out FOLDER.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  napari-organelle train --base em-organelles --data corrections/ "
               "--out em-lab --minutes 10\n"
               "  napari-organelle train --base em-lab --data corrections/ --out em-lab "
               "--add-classes er --replay 0.2\n"
               "  napari-organelle train --out em-lab --resume --minutes 5\n"
               "  napari-organelle train --recipe em-organelles --data-root ../shared/data "
               "--out runs/em")
    parser.add_argument("--base", metavar="MODEL",
                        help="model to fine-tune (name, name@version or folder)")
    parser.add_argument("--data", type=Path, nargs="+", default=[], metavar="DIR",
                        help="training stores and/or data sets in the shared layout "
                             "(their train split)")
    parser.add_argument("--out", required=True, metavar="NAME",
                        help="fine-tuning: model name the result is kept under (a new "
                             "version); --recipe: output folder of the run")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, metavar="N", help="wall-time budget (default 10)")
    budget.add_argument("--epochs", type=float, metavar="N", help="passes over the training pixels")
    parser.add_argument("--iterations", type=int, metavar="N",
                        help="optimizer steps (an upper limit)")
    parser.add_argument("--val-fraction", type=float, metavar="F",
                        help="share of each source's images held out for validation (0.2)")
    parser.add_argument("--device", default=None, metavar="D",
                        help="auto (default), cpu, cuda or mps")
    parser.add_argument("--add-classes", nargs="*", default=None, metavar="CLASS[:KIND]",
                        help="classes of the data the base model lacks, learnt as new output "
                             "channels; alone: all of them. KIND is instance (objects) or "
                             "semantic (a mask); by default as saved in the data (objects "
                             "when saved with object ids), e.g. er lysosomes:instance")
    parser.add_argument("--class-map", nargs="+", default=[], metavar="DATA=MODEL",
                        help="use data class DATA for model class MODEL, e.g. mito=mitochondria")
    parser.add_argument("--replay", type=float, default=0.0, metavar="F",
                        help="share of each batch from the base model's own training data, "
                             "against forgetting (e.g. 0.2; needs that data, see --data-root)")
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="folder holding the shared data sets (recipes and replay; "
                             "default ../shared/data when present)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="crops per step (4 on a CPU, 8 on a GPU)")
    parser.add_argument("--crop", type=int, metavar="PX", help="crop edge in pixels (256)")
    parser.add_argument("--learning-rate", type=float, metavar="LR",
                        help="peak learning rate (fine-tuning: 0.0003)")
    parser.add_argument("--validate-every", type=int, metavar="N", help="steps between validations")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="validations without improvement before stopping (6; 0: never)")
    parser.add_argument("--activate", action="store_true",
                        help="use the new version right away (else: napari-organelle models "
                             "activate NAME@VERSION)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="run folder for checkpoints (default: in the user data folder)")
    parser.add_argument("--recipe", help="rebuild from a recipe file or bundled recipe name")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue the last run of --out from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    parser.add_argument("--skip-tests", action="store_true",
                        help="with --recipe: do not score the result on the recipe's test splits")
    parser.add_argument("--install", action="store_true",
                        help="with --recipe: copy the result into the package's bundled models")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.recipe:
        return _run_recipe(args)
    if args.base or args.resume:
        return _run_finetune(args)
    raise InputError("give --base MODEL --data DIR to fine-tune, or --recipe to train from "
                     "scratch")


# ---------------------------------------------------------------------- fine-tuning


def _run_finetune(args: argparse.Namespace) -> int:
    from ..training.finetune import finetune_iter, register_run

    settings = _settings(args)
    printer = _Printer(args.quiet)
    work = finetune_iter(settings, resume=args.resume)
    try:
        while True:
            printer(next(work))
    except StopIteration as finished:
        result = finished.value
    except KeyboardInterrupt:
        # The checkpoint on disk is whole (written between steps): keep it.
        work.close()
        print("\nstopped: keeping the best model so far", flush=True)
        result = register_run(_work_dir(settings), "cancelled", activate=settings.activate)
    _print_result(result)
    return 0


def _settings(args: argparse.Namespace) -> FinetuneSettings:
    from ..training.finetune import FinetuneSettings, resume_settings

    if args.resume and not args.base:
        settings = resume_settings(args.out, args.work_dir)
    else:
        if not args.data:
            raise InputError("fine-tuning needs --data (training stores or data set folders)")
        settings = FinetuneSettings(base=args.base, data=list(args.data), name=args.out)
    if args.epochs is not None:
        settings.epochs, settings.minutes = args.epochs, None
    overrides: dict[str, Any] = {
        "minutes": args.minutes, "iterations": args.iterations,
        "val_fraction": args.val_fraction, "device": args.device, "threads": args.threads,
        "seed": args.seed, "batch_size": args.batch_size, "crop": args.crop,
        "learning_rate": args.learning_rate, "validate_every": args.validate_every,
        "patience": args.patience, "data_root": args.data_root, "work_dir": args.work_dir,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    if args.class_map:
        settings.class_map = dict(_pair(text) for text in args.class_map)
    if args.add_classes is not None:
        settings.add_classes = _new_class_specs(settings, args.add_classes)
    if args.replay:
        settings.replay = args.replay
    settings.activate = bool(args.activate)
    return settings


def _new_class_specs(settings: FinetuneSettings, texts: list[str]) -> list[ClassSpec]:
    """``--add-classes``: the named classes (all new ones when none is named), kinds from the data.

    Raises:
        InputError: a bad kind, or a class the data does not annotate (nothing to learn).
    """
    from ..models import ClassSpec
    from ..training.finetune import new_classes

    found = {item.name: item for item in new_classes(settings.base, settings.data,
                                                     settings.class_map)}
    if not texts:
        if not found:
            raise InputError("--add-classes: the data annotates no class the base model lacks")
        return [item.spec() for item in found.values()]
    specs = []
    for text in texts:
        name, _, kind = text.partition(":")
        if kind and kind not in ("semantic", "instance"):
            raise InputError(f"--add-classes {text}: the kind is semantic or instance, "
                             f"not {kind!r}")
        item = found.get(name)
        if item is None:
            offered = ", ".join(found) or "none"
            raise InputError(f"--add-classes {name}: the data has no labels of {name!r} that "
                             f"the base model lacks, so it cannot be learnt (new classes in "
                             f"the data: {offered})")
        specs.append(ClassSpec(name, kind or item.kind))  # type: ignore[arg-type]
    return specs


def _pair(text: str) -> tuple[str, str]:
    data_class, sep, model_class = text.partition("=")
    if not sep or not data_class or not model_class:
        raise InputError(f"--class-map takes DATA=MODEL pairs, not {text!r}")
    return data_class, model_class


def _work_dir(settings: FinetuneSettings) -> Path:
    from ..training.finetune import default_work_dir

    return Path(settings.work_dir) if settings.work_dir else default_work_dir(settings.name)


class _Printer:
    """Prints what a run is doing: messages, every few steps, and every validation."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, report: Progress) -> None:
        if self.quiet:
            return
        data = report.data
        if not data:
            print(report.message, flush=True)
        elif "before" in data:
            print("base model on the validation images: " + _scores(data["before"]), flush=True)
            if data.get("monitor_before"):
                print("  on held-out base training data: " + _scores(data["monitor_before"]),
                      flush=True)
        elif "val" in data or "monitor" in data or data["step"] % PRINT_EVERY == 0:
            print(_describe(data), flush=True)


def _print_result(result: FinetuneResult) -> None:
    if result.version is None:
        print(f"nothing kept ({result.stopped} before the first checkpoint)")
        return
    print(f"kept {result.version.full_name} ({result.stopped}), parent {result.card.parent}")
    for note in result.notes:
        print(f"note: {note}")
    if result.after or result.before:
        print(f"validation Dice on {len(result.validation_images)} held-out image(s), "
              "base -> new:")
        for name in result.card.class_names:
            if name in result.before or name in result.after:
                print(f"  {name:<16} {_fmt(result.before.get(name))} -> "
                      f"{_fmt(result.after.get(name))}")
    else:
        print("no validation images (3 or more images per source are needed to hold one out)")
    if result.monitor_after:
        print("held-out base training data (forgetting), base -> new:")
        for name, after in result.monitor_after.items():
            print(f"  {name:<16} {_fmt(result.monitor_before.get(name))} -> {_fmt(after)}")
    from ..models.versions import active_version

    active = active_version(result.version.name)
    if active.full_name != result.version.full_name:
        print(f"in use: {active.full_name}; to use the new one: napari-organelle models "
              f"activate {result.version.full_name}")


# ---------------------------------------------------------------------- recipes


def _run_recipe(args: argparse.Namespace) -> int:
    from ..training import load_recipe, train_iter
    from ..training.recipe import find_recipe

    overrides = {"iterations": args.iterations, "minutes": args.minutes, "device": args.device,
                 "threads": args.threads, "seed": args.seed, "val_fraction": args.val_fraction,
                 "resume": args.resume or None, "base": args.base}
    out = Path(args.out)
    base_recipe = json.loads(find_recipe(args.recipe).read_text()).get("base_recipe")
    if base_recipe and not args.base:
        raise InputError(
            f"recipe {args.recipe} continues training from the model that recipe {base_recipe} "
            f"builds: run `napari-organelle train --recipe {base_recipe} --out runs/{base_recipe}` "
            f"first, then pass --base runs/{base_recipe}/best")
    config, recipe = load_recipe(args.recipe, out, args.data_root, **overrides)
    if args.epochs:
        config.iterations = _epochs_to_iterations(config, args.epochs)
        if args.minutes is None:
            config.minutes = None
    out.mkdir(parents=True, exist_ok=True)
    work = train_iter(config)
    printer = _Printer(args.quiet)
    with open(out / "log.jsonl", "a") as log:
        try:
            while True:
                report = next(work)
                if report.data:
                    log.write(json.dumps(report.data) + "\n")
                    log.flush()
                printer(report)
        except StopIteration as finished:
            result = finished.value
            model_dir, name = result.model_dir, result.card.name
            print(f"kept model {result.card.full_name} in {model_dir} ({result.stopped})")
        except KeyboardInterrupt:
            # best/ is written whole at each validation that improves: score and keep it
            model_dir, name = out / "best", config.card.name
            if not (model_dir / "card.json").is_file():
                print("\nstopped before the first checkpoint: nothing kept", flush=True)
                return 1
            print(f"\nstopped: keeping the best model so far ({model_dir})", flush=True)
    if recipe.get("evaluate") and not args.skip_tests:
        from ..models import load_model_folder
        from ..training.report import evaluate_recipe, install_bundled, write_model_card

        print("scoring the kept model on the recipe's test splits...", flush=True)
        scores = evaluate_recipe(load_model_folder(model_dir), recipe, args.data_root,
                                 device=config.device)
        card_path = write_model_card(model_dir, scores)
        print(f"model card: {card_path}")
        print_scores(scores)
        if args.install:
            target = install_bundled(model_dir, name)
            print(f"installed as the bundled model {name} ({target})")
    return 0


def print_scores(scores: dict[str, Any]) -> None:
    """One line per test set and class: Dice and IoU."""
    for dataset, classes in scores.items():
        for name, values in classes.items():
            if isinstance(values, dict):
                print(f"  {dataset:<24} {name:<16} Dice {_fmt(values.get('dice'))}  "
                      f"IoU {_fmt(values.get('iou'))}")


def _epochs_to_iterations(config: Any, epochs: float) -> int:
    from ..training import load_dataset

    pixels = 0
    for spec in config.datasets:
        pixels += sum(item.image.size for item in load_dataset(spec, config.card.class_names,
                                                               config.card.pixel_size_nm))
    per_step = config.batch_size * config.crop * config.crop
    return max(1, int(epochs * pixels / per_step))


# ---------------------------------------------------------------------- formatting


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _scores(scores: dict[str, float]) -> str:
    shown = {k: v for k, v in scores.items() if v == v}  # NaN: class not in these images
    return " ".join(f"{k}={v:.3f}" for k, v in shown.items()) or "n/a"


def _describe(data: dict[str, Any]) -> str:
    text = f"step {data['step']:>6}  loss {data['loss']:.4f}  {data.get('seconds', 0):>7.0f}s"
    if "val" in data:
        text += "  val Dice " + _scores(data["val"])
    if "monitor" in data:
        text += "  | base data " + _scores(data["monitor"])
    return text
