"""``napari-organelle measure``: organelle morphology, networks and contacts from label TIFFs.

Measure label images (e.g. the output of ``napari-organelle segment``)::

    napari-organelle measure mito.tif er.tif --names mitochondria er --pixel-size 5 \\
        --network er mitochondria --contacts er:mitochondria --distance 30 --out results

writes ``summary.csv``, ``objects.csv`` (and ``per_cell.csv`` with ``--cells``),
``networks.csv``, ``network_components.csv``, ``branches.csv``, ``contacts.csv``,
``contact_sites.csv``, ``contact_objects.csv`` and the plots ``object_sizes.png``
and ``networks.png`` to ``--out``. The measurements and the files are those of
the Analyze dock (:func:`~napari_organelle.analysis.measure_iter`,
:func:`~napari_organelle.analysis.write_measurements`).

Compare two folders of label TIFFs (proposal vs corrected)::

    napari-organelle measure --compare proposal/ corrected/ --out results

writes ``agreement.csv``, ``agreement_per_image.csv`` and ``agreement.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..analysis import Measurements


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "measure", help="measure organelles (size, shape, networks, contacts) from label TIFFs",
        description="Measure organelle label images and write CSV tables and PNG plots, or compare "
                    "two folders of label images with --compare.")
    parser.add_argument("labels", nargs="*", type=Path, metavar="LABELS.tif",
                        help="label images or masks, one per organelle, all of one shape")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="organelle name of each file (default: the file names)")
    parser.add_argument("--pixel-size", nargs="+", type=float, metavar="NM",
                        help="pixel size in nm: one value, or one per axis (Z Y X); default: "
                             "from the TIFF, else measures are in pixels")
    parser.add_argument("--network", nargs="+", default=[], metavar="NAME",
                        help="organelles to analyse as networks (skeleton, branches, junctions)")
    parser.add_argument("--contacts", nargs="+", default=[], metavar="A:B",
                        help="organelle pairs whose contacts to measure, e.g. er:mitochondria")
    parser.add_argument("--distance", type=float, metavar="NM",
                        help="contact distance between pixel centres, in nm (pixels without a "
                             "pixel size); required with --contacts")
    parser.add_argument("--morphology", nargs="+", metavar="NAME",
                        help="organelles whose objects to measure (default: every file)")
    parser.add_argument("--cells", type=Path, metavar="CELLS.tif",
                        help="image of cells, nuclei or cell boundaries for per-cell summaries "
                             "(see --cells-kind)")
    parser.add_argument("--cells-kind", choices=("labels", "nuclei", "boundaries"),
                        default="labels",
                        help="what --cells holds: cell labels (default), nuclei to grow into "
                             "cells by --grow-nuclei, or a mask of cell boundaries (cells cut by "
                             "the image edge are left out)")
    parser.add_argument("--grow-nuclei", type=float, default=0.0, metavar="NM",
                        help="how far each nucleus grows into its cell (with --cells-kind "
                             "nuclei)")
    parser.add_argument("--min-spur", type=float, default=0.0, metavar="NM",
                        help="remove skeleton spurs shorter than this before network analysis")
    parser.add_argument("--merge-junctions", type=float, default=0.0, metavar="NM",
                        help="count junctions joined by a branch at most this long as one "
                             "(about the tube width)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A_DIR", "B_DIR"),
                        help="instead: score the label TIFFs of A_DIR (proposal) against those of "
                             "B_DIR (corrected), per class")
    parser.add_argument("--out", type=Path, default=Path("measurements"),
                        help="output folder (default: ./measurements)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        if args.labels:
            raise InputError("give either label files or --compare A_DIR B_DIR, not both")
        return _compare(args.compare[0], args.compare[1], args.out)
    if not args.labels:
        raise InputError("give label TIFFs to measure, or --compare A_DIR B_DIR")
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    from ..analysis import measure, write_measurements

    names = args.names or [path.stem for path in args.labels]
    if len(names) != len(args.labels):
        raise InputError(f"--names gives {len(names)} name(s) for {len(args.labels)} file(s)")
    if len(set(names)) != len(names):
        raise InputError(f"organelle names must differ ({', '.join(names)}); set them with --names")
    layers, file_pixel_sizes = {}, []
    for name, path in zip(names, args.labels):
        layers[name], pixel_size = _read_labels(path)
        file_pixel_sizes.append(pixel_size)
    ndim = next(iter(layers.values())).ndim
    scale, unit = _scale(args.pixel_size, file_pixel_sizes, ndim)
    contacts = [_parse_pair(item) for item in args.contacts]
    cells = _read_labels(args.cells)[0] if args.cells else None

    result = measure(layers, scale, morphology=args.morphology, networks=args.network,
                     contacts=contacts, distance=args.distance, cells=cells,
                     cells_kind=args.cells_kind, grow_nuclei_by=args.grow_nuclei,
                     cells_name=args.cells.name if args.cells else None, unit=unit,
                     min_spur_length=args.min_spur, merge_junctions_within=args.merge_junctions)
    written = write_measurements(result, args.out)
    _print_measurements(result, ndim)
    print(f"wrote {', '.join(path.name for path in written)} to {args.out}")
    return 0


def _print_measurements(result: Measurements, ndim: int) -> None:
    """A line per organelle, network and contact pair, then the notes."""
    size, power = ("area", "²") if ndim == 2 else ("volume", "³")
    if result.summary is not None:
        for name, row in result.summary.iterrows():
            print(f"{name}: {_count(row['n_objects'], 'object')}, total {size} "
                  f"{row[f'total_{size}']:.4g} {row['unit']}{power}")
    if result.networks is not None:
        for name, row in result.networks.iterrows():
            print(f"{name} network: length {row['total_length']:.4g} {row['unit']}, "
                  f"{_count(row['n_branches'], 'branch', 'branches')}, "
                  f"{_count(row['n_junctions'], 'junction')}, "
                  f"{_count(row['n_end_points'], 'end point')}, "
                  f"{_count(row['n_networks'], 'connected network')}")
    if result.contacts is not None:
        for _, row in result.contacts.iterrows():
            print(f"contacts {row['a']}-{row['b']} within {row['distance']:g} {row['unit']}: "
                  f"{_count(row['n_sites'], 'site')}, "
                  f"{100 * row['a_contact_fraction']:.1f}% of {row['a']} {size}, "
                  f"{100 * row['a_object_fraction']:.1f}% of {row['a']} objects")
    if result.agreement is not None:
        columns = ["dice", "iou", "precision", "recall", "object_f1"]
        print(result.agreement[columns].to_string(float_format=lambda v: f"{v:.3f}",
                                                  na_rep="n/a"))
    for note in result.notes:
        print(f"note: {note}")


def _compare(proposal_dir: Path, corrected_dir: Path, out: Path) -> int:
    from ..analysis import measure, write_measurements

    result = measure({}, agreement_folders=(proposal_dir, corrected_dir))
    written = write_measurements(result, out)
    _print_measurements(result, 2)
    print(f"wrote {', '.join(path.name for path in written)} to {out}")
    return 0


def _read_labels(path: Path) -> tuple[np.ndarray, float | None]:
    """Pixels and pixel size (nm, or None) of a label TIFF; singleton axes are dropped."""
    from ..io import read_image

    image = read_image(path)
    if "C" in image.axes or "S" in image.axes:
        raise InputError(f"{path.name} has colour or channel axes ({image.axes}); give one label "
                         "image per organelle")
    data = np.asarray(image.data)
    if data.ndim > 2:
        data = np.squeeze(data)
    if data.ndim not in (2, 3):
        raise InputError(f"{path.name} is {data.ndim}-D {data.shape}; measure takes 2-D or 3-D "
                         "label images")
    return data, image.pixel_size_nm


def _scale(pixel_size: list[float] | None, file_sizes: list[float | None], ndim: int
           ) -> tuple[tuple[float, ...] | None, str]:
    """The per-axis pixel size in nm and its unit name, from --pixel-size or the files."""
    if pixel_size:
        if len(pixel_size) not in (1, ndim):
            raise InputError(f"--pixel-size takes 1 or {ndim} values for {ndim}-D images, "
                             f"not {len(pixel_size)}")
        sizes = tuple(pixel_size) * (ndim if len(pixel_size) == 1 else 1)
        return sizes, "nm"
    known = {size for size in file_sizes if size}
    if len(known) > 1:
        listed = ", ".join(f"{size:g} nm" for size in sorted(known))
        raise InputError(f"the files have different pixel sizes ({listed}); set one with "
                         "--pixel-size")
    if known:
        size = known.pop()
        if ndim == 3:
            print(f"note: the files give a pixel size of {size:g} nm but no section thickness; "
                  "assuming cubic voxels (set --pixel-size Z Y X to correct)")
        return (size,) * ndim, "nm"
    print("note: no pixel size given or found in the files; measures are in pixels")
    return None, "px"


def _count(number: float, singular: str, plural: str | None = None) -> str:
    number = int(number)
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def _parse_pair(item: str) -> tuple[str, str]:
    first, separator, second = item.partition(":")
    if not separator or not first or not second:
        raise InputError(f"--contacts takes A:B pairs such as er:mitochondria, not {item!r}")
    return first, second

