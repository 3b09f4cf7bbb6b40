"""``napari-organelle models``: list the models on this machine."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list bundled and trained models")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import list_models

    models = list_models()
    if args.json:
        print(json.dumps([{"name": m.name, "version": m.version, "path": str(m.path),
                           "bundled": m.bundled, "modality": m.modality,
                           "classes": list(m.classes), "parent": m.parent} for m in models],
                         indent=2))
        return 0
    if not models:
        print("no models installed")
        return 0
    width = max(len(m.full_name) for m in models)
    for m in models:
        origin = "bundled" if m.bundled else f"trained {m.created[:16]}"
        print(f"{m.full_name:<{width}}  {m.modality:<12}  {', '.join(m.classes):<50}  {origin}")
    return 0
