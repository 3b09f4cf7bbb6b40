"""``napari-organelle suggest IMAGES... --model M --n K``: the "annotate next" queue.

Segments each image with uncertainty maps (four flips per tile) and writes the
``K`` regions where corrections should start, best first, none next to another
(:mod:`napari_organelle.suggest`)::

    napari-organelle suggest images/*.tif --model em-organelles --n 8 --out queue.csv

A folder of small images ranks the images (one region each); a large image, its
tiles; a stack, the tiles of its planes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "suggest", help="rank image regions by where corrections help the model most",
        description="Segment images with test-time-augmentation uncertainty and write the "
                    "regions to annotate next, most uncertain first, spread out.")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="images (TIFF, PNG...) or folders of them")
    parser.add_argument("--model", required=True, help="model name, name@version or folder")
    parser.add_argument("--n", type=int, default=10, metavar="K", help="regions (default 10)")
    parser.add_argument("--tile", type=int, default=256, metavar="PX",
                        help="region edge in pixels (default 256)")
    parser.add_argument("--spacing", type=int, default=1, metavar="TILES",
                        help="no two regions of a plane closer than this many tiles "
                             "(default 1: never neighbours)")
    parser.add_argument("--classes", nargs="+", help="classes whose uncertainty counts "
                                                     "(default: all)")
    parser.add_argument("--pixel-size", type=float, metavar="NM",
                        help="pixel size in nm (default: from each file)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=Path("suggestions.csv"),
                        help="where the ranked list goes: .csv or .json "
                             "(default suggestions.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def _image_files(paths: list[Path]) -> list[Path]:
    from ..io import PLAIN_SUFFIXES, TIFF_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix.lower() in (*TIFF_SUFFIXES, *PLAIN_SUFFIXES)
                                and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path} does not exist")
    if not files:
        raise InputError("no images found in " + ", ".join(map(str, paths)))
    return files


def run(args: argparse.Namespace) -> int:
    from ..io import read_image
    from ..models import load_model
    from ..progress import run as run_work
    from ..suggest import suggest_iter, write_suggestions
    from .segment import _printer

    if args.n < 1:
        raise InputError(f"--n must be at least 1, not {args.n}")
    model = load_model(args.model)
    files = _image_files(args.images)
    images = []
    pixel_sizes = set()
    for path in files:
        image = read_image(path)
        if image.channel_axis is not None and model.card.in_channels == 1:
            raise InputError(f"{path.name} has channels ({image.axes}): give one channel per "
                             "file for a one-channel model")
        images.append((str(path), image.data))
        pixel_sizes.add(args.pixel_size or image.pixel_size_nm)
    if len(pixel_sizes) > 1:
        raise InputError("the images have different pixel sizes "
                         f"({', '.join(str(p) for p in sorted(pixel_sizes, key=str))}); "
                         "rank images of one pixel size at a time, or give --pixel-size")
    work = suggest_iter(images, model, args.n, tile=args.tile, spacing=args.spacing,
                        classes=args.classes, pixel_size_nm=pixel_sizes.pop(),
                        device=args.device)
    regions = run_work(work, None if args.quiet else _printer("suggest"))
    if not args.quiet:
        print(file=sys.stderr)
    write_suggestions(args.out, regions, model=model.card.full_name)
    for region in regions:
        print(f"{region.describe()}  {Path(region.source).name}")
    print(f"{len(regions)} regions -> {args.out}")
    return 0
