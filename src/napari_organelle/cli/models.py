"""``napari-organelle models``: list models and their versions, choose, export and import them.

::

    napari-organelle models                          # every model; * marks the version in use
    napari-organelle models show em-lab@2            # card and lineage of one version
    napari-organelle models activate em-lab@1        # roll back: use version 1 again
    napari-organelle models export em-lab@2 /media/usb
    napari-organelle models export em-lab@2 ~/share --format bioimageio   # a bioimage.io zip
    napari-organelle models import /media/usb/em-lab@2
    napari-organelle models compose em-organelles@2.0.0 runs/em-cell-organelles/best \\
        --name em-organelles --version 3.0.0 --tile-size 256 --out runs/em-organelles-3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import ModelCard


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list, choose, export and import models and their versions",
        description="Without an action: list the models on this machine; * marks the version "
                    "a bare model name stands for.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    show = actions.add_parser("show", help="card and lineage of a model version")
    show.add_argument("model", help="NAME or NAME@VERSION")
    show.add_argument("--json", action="store_true", help="the whole card as JSON")

    activate = actions.add_parser(
        "activate", help="use this version wherever the bare name is used (rollback)")
    activate.add_argument("model", help="NAME@VERSION")

    export = actions.add_parser("export", help="write a version as a folder to copy elsewhere")
    export.add_argument("model", help="NAME@VERSION (or NAME: the version in use)")
    export.add_argument("folder", type=Path,
                        help="destination (created; an existing one gets a NAME@VERSION "
                             "sub-folder); with --format bioimageio a folder that receives "
                             "NAME-VERSION.bioimageio.zip, or the zip's path (ending in .zip)")
    export.add_argument("--format", dest="export_format", choices=("folder", "bioimageio"),
                        default="folder",
                        help="folder: card and weights for napari-organelle (default); "
                             "bioimageio: a bioimage.io model zip (rdf.yaml, PyTorch and ONNX "
                             "weights, test tensors, documentation)")
    export.add_argument("--author", dest="authors", action="append", metavar="NAME",
                        help="bioimageio: an author of the model (repeat for several; default: "
                             "the card's, else napari-organelle contributors)")
    export.add_argument("--license", metavar="SPDX",
                        help="bioimageio: licence of the weights (default: the card's, else "
                             "BSD-3-Clause)")

    imported = actions.add_parser("import", help="install an exported version")
    imported.add_argument("folder", type=Path, help="the exported folder")
    imported.add_argument("--name", help="install under this model name")
    imported.add_argument("--activate", action="store_true", help="use it right away")

    compose = actions.add_parser(
        "compose", help="join trained models into one that runs them side by side",
        description="The new model's classes are its members' classes, each predicted by the "
                    "network that learnt it (napari_organelle.models.composite).")
    compose.add_argument("members", nargs="+", metavar="MODEL[:SCALE]",
                         help="the first runs at the new model's pixel size; each other at "
                              "SCALE times coarser pixels (its card's pixel size must agree)")
    compose.add_argument("--name", required=True, help="the new model's name")
    compose.add_argument("--version", required=True, help="the new model's version")
    compose.add_argument("--tile-size", type=int, required=True, metavar="PX",
                         help="tile edge at the new model's pixel size")
    compose.add_argument("--description", default="", help="the card's description")
    compose.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="folder that receives the model")
    compose.add_argument("--tests", metavar="RECIPE",
                         help="score the new model on this recipe's test splits and write its "
                              "MODEL_CARD.md (a recipe file or a bundled recipe's name)")
    compose.add_argument("--data-root", type=Path, metavar="DIR",
                         help="with --tests: the folder holding the shared data sets")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action == "show":
        return _show(args.model, args.json)
    if action == "activate":
        return _activate(args.model)
    if action == "export":
        if args.export_format == "bioimageio":
            return _export_bioimageio(args.model, args.folder, args.authors, args.license)
        if args.authors or args.license:
            from ..errors import InputError

            raise InputError("--author and --license are for --format bioimageio")
        return _export(args.model, args.folder)
    if action == "import":
        return _import(args.folder, args.name, args.activate)
    if action == "compose":
        return _compose(args)
    return _list(args.json)


def _list(as_json: bool) -> int:
    from ..models import list_models
    from ..models.versions import active_version

    models = list_models()
    active = {info.name: active_version(info.name).full_name for info in models}
    if as_json:
        print(json.dumps([{"name": m.name, "version": m.version, "path": str(m.path),
                           "bundled": m.bundled, "modality": m.modality,
                           "classes": list(m.classes), "parent": m.parent,
                           "created": m.created, "active": active[m.name] == m.full_name}
                          for m in models], indent=2))
        return 0
    if not models:
        print("no models installed")
        return 0
    width = max(len(m.full_name) for m in models)
    for m in sorted(models, key=lambda m: m.name):
        mark = "*" if active[m.name] == m.full_name else " "
        origin = "bundled" if m.bundled else f"trained {m.created[:16].replace('T', ' ')}".strip()
        parent = f"  from {m.parent}" if m.parent else ""
        print(f"{mark} {m.full_name:<{width}}  {m.modality:<12}  {', '.join(m.classes):<40}  "
              f"{origin}{parent}")
    return 0


def _show(spec: str, as_json: bool) -> int:
    from ..models import ModelCard, resolve_model

    folder = resolve_model(spec)
    card = ModelCard.load(folder / "card.json")
    if as_json:
        print(json.dumps(card.to_dict(), indent=2))
        return 0
    print(_describe(card))
    print(f"folder:  {folder}")
    return 0


def _activate(spec: str) -> int:
    from ..errors import InputError
    from ..models.versions import set_active

    name, _, version = spec.partition("@")
    if not version:
        raise InputError(f"give the version to use: {name}@VERSION (see napari-organelle models)")
    info = set_active(name, version)
    print(f"{name} now means {info.full_name}")
    return 0


def _export(spec: str, folder: Path) -> int:
    from ..models.versions import export_version

    print(f"exported to {export_version(spec, folder)}")
    return 0


def _export_bioimageio(spec: str, destination: Path, authors: list[str] | None,
                       license: str | None) -> int:
    from ..bioimageio import export_bioimageio

    notes: list[str] = []
    path = export_bioimageio(spec, destination, authors=authors, license=license, notes=notes)
    for note in notes:
        print(f"note: {note}")
    print(f"exported for bioimage.io to {path}")
    return 0


def _import(folder: Path, name: str | None, activate: bool) -> int:
    from ..models import ModelCard
    from ..models.versions import import_version

    info = import_version(folder, name=name, activate=activate)
    card = ModelCard.load(info.path / "card.json")
    original = card.extra.get("lineage", {}).get("imported_from", {}).get("model")
    renamed = f" (was {original} on the other machine)" if original else ""
    print(f"installed {info.full_name}{renamed}")
    return 0


def _compose(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..models import load_model, save_model
    from ..models.composite import compose

    parts = []
    for index, text in enumerate(args.members):
        name, _, scale = text.rpartition(":") if ":" in text else (text, "", "1")
        if not scale.isdigit() or int(scale) < 1 or (index == 0 and int(scale) != 1):
            raise InputError(f"{text}: the scale after ':' must be a whole number >= 1 (the "
                             "first model runs at scale 1)")
        parts.append((load_model(name), int(scale)))
    card, network = compose(parts, args.name, args.version, args.tile_size,
                            args.description or " ".join(p[0].card.description for p in parts))
    folder = save_model((card, network), args.out)
    members = ", ".join(f"{model.card.full_name} ({', '.join(model.card.class_names)}; "
                        f"scale {scale})" for model, scale in parts)
    print(f"wrote {card.full_name} to {folder}: {members}")
    if args.tests:
        from ..models import load_model_folder
        from ..training.recipe import find_recipe
        from ..training.report import evaluate_recipe, write_model_card
        from .train import print_scores

        recipe = json.loads(find_recipe(args.tests).read_text())
        print("scoring it on the test splits of", args.tests, flush=True)
        scores = evaluate_recipe(load_model_folder(folder), recipe, args.data_root)
        print(f"model card: {write_model_card(folder, scores)}")
        print_scores(scores)
    return 0


def _describe(card: ModelCard) -> str:
    lineage: dict[str, Any] = card.extra.get("lineage", {})
    lines = [f"{card.full_name}: {', '.join(card.class_names)} ({card.modality}, "
             f"{card.pixel_size_nm or 'any'} nm/pixel)",
             f"parent:  {card.parent or 'none'}",
             f"created: {card.created}"]
    if card.description:
        lines.append(f"about:   {card.description}")
    if lineage:
        data = ", ".join(f"{d['name']} ({d['role']}: {d['training_images']} training, "
                         f"{d['validation_images']} held out)" for d in lineage.get("data", []))
        lines.append(f"data:    {data}")
        lines.append(f"data hash: {lineage.get('data_manifest_sha256', '?')}")
        timing = lineage.get("time", {})
        lines.append(f"trained: {timing.get('steps')} steps, {timing.get('seconds')} s on "
                     f"{timing.get('device')}, {timing.get('stopped')}; kept step "
                     f"{timing.get('kept_step')}")
        for key, title in (("validation", "validation Dice"),
                           ("replay_validation", "base data Dice")):
            scores = lineage.get("metrics", {}).get(key, {})
            if scores.get("after"):
                lines.append(f"{title} ({len(scores.get('images', []))} images), before -> after:")
                for name, after in scores["after"].items():
                    before = scores.get("before", {}).get(name)
                    shown = "  n/a" if before is None else f"{before:.3f}"
                    lines.append(f"  {name:<16} {shown} -> {after:.3f}")
    for entry in card.training_data:
        lines.append(f"trained on {entry.get('name')}: {entry.get('licence', 'licence unknown')}")
    return "\n".join(lines)

