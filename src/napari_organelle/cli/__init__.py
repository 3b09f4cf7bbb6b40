"""The ``napari-organelle`` command line: headless and batch work on the same core as the plugin.

Each sub-command lives in its own module that defines ``add_parser(subparsers)``
and ``run(args) -> int``; :data:`COMMANDS` lists them in the order ``--help``
shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import OrganelleError

#: sub-command module names under ``napari_organelle.cli``
COMMANDS = ("segment", "suggest", "models", "evaluate", "train", "store", "export", "measure",
            "track", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-organelle",
        description="Segment organelles in EM and fluorescence images, headless.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                continue  # sub-command not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-organelle`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OrganelleError as error:
        print(f"napari-organelle {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"napari-organelle {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
