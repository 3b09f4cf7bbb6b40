"""``napari-organelle train``: rebuild a bundled model from its recipe, or fine-tune one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a recipe, or fine-tune one on corrections",
        description="Either --recipe (rebuild a bundled model from scratch) or --base with "
                    "--data (fine-tune on data sets / exported corrections).")
    parser.add_argument("--recipe", help="recipe file or bundled recipe name (em-organelles)")
    parser.add_argument("--data-root", type=Path, help="folder holding the recipe's data sets")
    parser.add_argument("--base", help="model to fine-tune (name, name@version or folder)")
    parser.add_argument("--data", type=Path, nargs="+", default=[],
                        help="data sets in the shared layout (train split is used)")
    parser.add_argument("--out", type=Path, required=True, help="output folder of the run")
    parser.add_argument("--iterations", type=int, help="optimizer steps")
    parser.add_argument("--minutes", type=float, help="wall-time budget")
    parser.add_argument("--epochs", type=int, help="passes over the training pixels (approx.)")
    parser.add_argument("--val-fraction", type=float, help="share of images held out")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training import DatasetSpec, TrainConfig, load_recipe, train_iter

    overrides = {"iterations": args.iterations, "minutes": args.minutes, "device": args.device,
                 "threads": args.threads, "seed": args.seed, "val_fraction": args.val_fraction,
                 "resume": args.resume or None}
    if args.recipe:
        config, _ = load_recipe(args.recipe, args.out, args.data_root, **overrides)
    elif args.base:
        if not args.data:
            raise InputError("fine-tuning needs --data (one or more data set folders)")
        config = TrainConfig(out=args.out, base=args.base,
                             datasets=[DatasetSpec(Path(p)) for p in args.data],
                             iterations=None, minutes=10.0, learning_rate=5e-4,
                             **{k: v for k, v in overrides.items() if v is not None})
    else:
        raise InputError("give --recipe to train from scratch or --base to fine-tune")
    if args.epochs:
        config.iterations = _epochs_to_iterations(config, args.epochs)
        if args.minutes is None:
            config.minutes = None
    log_path = Path(args.out) / "log.jsonl"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    work = train_iter(config)
    with open(log_path, "a") as log:
        try:
            while True:
                report = next(work)
                if report.data:
                    log.write(json.dumps(report.data) + "\n")
                    log.flush()
                    if not args.quiet and ("val" in report.data or report.data["step"] % 20 == 0):
                        print(_describe(report.data), flush=True)
        except StopIteration as finished:
            result = finished.value
    print(f"kept model {result.card.full_name} in {result.model_dir} ({result.stopped})")
    if result.before:
        print("validation Dice before -> after:")
        for name in result.card.class_names:
            before, after = result.before.get(name), result.after.get(name)
            if before is not None or after is not None:
                print(f"  {name:<16} {_fmt(before)} -> {_fmt(after)}")
    return 0


def _epochs_to_iterations(config, epochs: int) -> int:
    from ..training import load_dataset

    pixels = 0
    for spec in config.datasets:
        card = config.card
        if card is None:
            from ..models import load_model

            card = load_model(config.base).card
        pixels += sum(item.image.size for item in load_dataset(spec, card.class_names,
                                                               card.pixel_size_nm))
    per_step = config.batch_size * config.crop * config.crop
    return max(1, int(epochs * pixels / per_step))


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _describe(data: dict) -> str:
    text = f"step {data['step']:>6}  loss {data['loss']:.4f}  {data.get('seconds', 0):>7.0f}s"
    if "val" in data:
        text += "  val Dice " + " ".join(f"{k}={v:.3f}" for k, v in data["val"].items())
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
