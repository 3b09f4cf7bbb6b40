"""``napari-organelle measure``: organelle morphology, networks and contacts from label TIFFs.

Measure label images (e.g. the output of ``napari-organelle segment``)::

    napari-organelle measure mito.tif er.tif --names mitochondria er --pixel-size 5 \\
        --network er mitochondria --contacts er:mitochondria --distance 30 --out results

writes ``objects.csv``, ``summary.csv`` (and ``per_cell.csv`` with ``--cells``),
``networks.csv``, ``network_components.csv``, ``branches.csv``, ``contacts.csv``
and the plots ``object_sizes.png`` and ``networks.png`` to ``--out``.

Compare two folders of label TIFFs (proposal vs corrected)::

    napari-organelle measure --compare proposal/ corrected/ --out results

writes ``agreement.csv``, ``agreement_per_image.csv`` and ``agreement.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

from ..errors import InputError


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
    parser.add_argument("--cells", type=Path, metavar="CELLS.tif",
                        help="cell or nucleus label image for per-cell summaries")
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
    from ..analysis import measure, network_summary_figure, size_histogram_figure

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

    result = measure(layers, scale, networks=args.network, contacts=contacts, distance=args.distance,
                     cells=cells, unit=unit, min_spur_length=args.min_spur,
                     merge_junctions_within=args.merge_junctions)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_csv(result.objects, out / "objects.csv", index=False),
        _write_csv(result.summary, out / "summary.csv"),
    ]
    if result.per_cell is not None:
        written.append(_write_csv(result.per_cell, out / "per_cell.csv", index=False))
    if len(result.networks):
        written += [
            _write_csv(result.networks, out / "networks.csv"),
            _write_csv(result.network_components, out / "network_components.csv", index=False),
            _write_csv(result.branches, out / "branches.csv", index=False),
        ]
    if len(result.contacts):
        written.append(_write_csv(result.contacts, out / "contacts.csv", index=False))
    plot_unit = "" if unit == "px" else unit
    written.append(_save(size_histogram_figure(result.objects, unit=plot_unit), out / "object_sizes.png"))
    if len(result.networks):
        written.append(_save(network_summary_figure(result.networks, unit=plot_unit), out / "networks.png"))

    size = "area" if ndim == 2 else "volume"
    for name, row in result.summary.iterrows():
        print(f"{name}: {_count(row['n_objects'], 'object')}, total {size} {row[f'total_{size}']:.4g} "
              f"{unit}{'²' if ndim == 2 else '³'}")
    for name, row in result.networks.iterrows():
        print(f"{name} network: length {row['total_length']:.4g} {unit}, "
              f"{_count(row['n_branches'], 'branch', 'branches')}, {_count(row['n_junctions'], 'junction')}, "
              f"{_count(row['n_end_points'], 'end point')}, {_count(row['n_networks'], 'connected network')}")
    for _, row in result.contacts.iterrows():
        print(f"contacts {row['a']}-{row['b']} within {row['distance']:g} {unit}: "
              f"{_count(row['n_sites'], 'site')}, "
              f"{100 * row['a_contact_fraction']:.1f}% of {row['a']} {size}, "
              f"{100 * row['a_object_fraction']:.1f}% of {row['a']} objects")
    print(f"wrote {', '.join(path.name for path in written)} to {out}")
    return 0


def _compare(proposal_dir: Path, corrected_dir: Path, out: Path) -> int:
    from ..analysis import agreement_heatmap, compare_folders

    agreement = compare_folders(proposal_dir, corrected_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_csv(agreement.table, out / "agreement.csv"),
        _write_csv(agreement.per_image, out / "agreement_per_image.csv", index=False),
        _save(agreement_heatmap(agreement.table, title=f"{proposal_dir.name} vs {corrected_dir.name}"),
              out / "agreement.png"),
    ]
    columns = ["dice", "iou", "precision", "recall", "object_f1"]
    print(agreement.table[columns].to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    for note in agreement.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(path.name for path in written)} to {out}")
    return 0


def _read_labels(path: Path) -> tuple[np.ndarray, float | None]:
    """Pixels and pixel size (nm, or None) of a label TIFF; singleton axes are dropped."""
    from ..io import read_image

    image = read_image(path)
    if "C" in image.axes or "S" in image.axes:
        raise InputError(f"{path.name} has colour or channel axes ({image.axes}); give one label image "
                         "per organelle")
    data = np.asarray(image.data)
    if data.ndim > 2:
        data = np.squeeze(data)
    if data.ndim not in (2, 3):
        raise InputError(f"{path.name} is {data.ndim}-D {data.shape}; measure takes 2-D or 3-D label images")
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
        raise InputError(f"the files have different pixel sizes ({', '.join(f'{s:g} nm' for s in sorted(known))}); "
                             "set one with --pixel-size")
    if known:
        size = known.pop()
        if ndim == 3:
            print(f"note: the files give a pixel size of {size:g} nm but no section thickness; assuming "
                  "cubic voxels (set --pixel-size Z Y X to correct)")
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


def _write_csv(table: pd.DataFrame, path: Path, index: bool = True) -> Path:
    table.to_csv(path, index=index)
    return path


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=120)
    return path
