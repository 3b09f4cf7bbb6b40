"""``napari-organelle track``: tracks, fission and fusion from label movies or images.

Track a label time-lapse (``T, Y, X`` or ``T, Z, Y, X``), e.g. from ``segment``::

    napari-organelle track mito_labels.tif --pixel-size 56 --frame-interval 5 --out tracks

or segment a raw movie with a model first (plane by plane), then track::

    napari-organelle track movie.tif --model fluo-organelles --organelle mitochondria

writes ``tracks.csv`` (per object and frame), ``track_summary.csv`` (per track),
``events.csv`` (fission and fusion), ``graph.csv`` (napari Tracks graph) and,
with ``--save-labels``, ``labels_by_track.tif`` (objects coloured by track) to
``--out``/<movie name>. See :mod:`napari_organelle.tracking`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "track", help="track organelles over time (tracks, gaps, fission, fusion) to CSV",
        description="Link the objects of label time-lapses frame to frame (or of images, "
                    "segmented first with --model), detect fission and fusion, and write CSV "
                    "tables.")
    parser.add_argument("movies", nargs="+", type=Path, metavar="MOVIE.tif",
                        help="label movies (T, Y, X) / (T, Z, Y, X); images with --model")
    parser.add_argument("--model", help="segment the movies with this model first "
                                        "(e.g. fluo-organelles)")
    parser.add_argument("--organelle", default="mitochondria",
                        help="instance class to segment and track with --model "
                             "(default: mitochondria)")
    parser.add_argument("--pixel-size", type=float, metavar="NM",
                        help="pixel size in nm (default: from the TIFF); tables are then in um")
    parser.add_argument("--z-step", type=float, metavar="NM",
                        help="Z step in nm for (T, Z, Y, X) movies (default: the pixel size)")
    parser.add_argument("--frame-interval", type=float, metavar="S",
                        help="seconds between frames (default: speeds per frame)")
    parser.add_argument("--max-distance", type=float, default=10.0, metavar="PX",
                        help="largest jump, in pixels, for objects that do not overlap "
                             "(default 10)")
    parser.add_argument("--max-gap", type=int, default=2, metavar="FRAMES",
                        help="frames an object may be missing (default 2; 0: no gap closing)")
    parser.add_argument("--min-overlap", type=float, default=0.2, metavar="SHARE",
                        help="share of a new (ending) object on its parent (child) for a "
                             "fission (fusion), default 0.2")
    parser.add_argument("--min-event-area", type=float, default=0.0, metavar="PX",
                        help="drop events in which an object smaller than this (pixels) takes "
                             "part: segmentation fragments (default 0)")
    parser.add_argument("--save-labels", action="store_true",
                        help="also write labels_by_track.tif (and labels.tif with --model)")
    parser.add_argument("--out", type=Path, default=Path("tracks"),
                        help="output folder (default: ./tracks)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import read_image, write_tiff
    from ..progress import run as drive
    from ..tracking import relabel_by_track, track_iter, write_tracking

    if args.pixel_size is not None and not args.pixel_size > 0:
        raise InputError(f"--pixel-size must be positive, not {args.pixel_size}")
    if args.frame_interval is not None and not args.frame_interval > 0:
        raise InputError(f"--frame-interval must be positive, not {args.frame_interval}")
    for path in args.movies:
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        image = read_image(path)
        data = np.asarray(image.data)
        if image.axes.endswith("S") or ("C" in image.axes
                                        and data.shape[image.axes.index("C")] > 1):
            raise InputError(f"{path.name} has colour or channel axes ({image.axes}); give one "
                             "organelle's movie")
        if data.ndim > 3:
            data = np.squeeze(data)  # planar "samples" of a short movie are its frames
        pixel_nm = args.pixel_size or image.pixel_size_nm
        started = time.perf_counter()
        segmented = None
        if args.model:
            from ..tracking.images import segment_movie
            from .segment import _printer

            segmented = segment_movie(data, args.model, args.organelle, pixel_size_nm=pixel_nm,
                                      progress=None if args.quiet else _printer(path.name))
            if not args.quiet:
                print(file=sys.stderr)
            data = segmented
        scale = None
        if pixel_nm:
            xy = pixel_nm / 1000
            scale = (xy, xy) if data.ndim == 3 else ((args.z_step or pixel_nm) / 1000, xy, xy)
        result = drive(track_iter(data, max_distance=args.max_distance, max_gap=args.max_gap,
                                  min_overlap=args.min_overlap,
                                  min_event_area=args.min_event_area, scale=scale,
                                  frame_interval=args.frame_interval),
                       None if args.quiet else _status(path.name))
        if not args.quiet:
            print(file=sys.stderr)
        folder = args.out / path.stem
        write_tracking(result, folder)
        if args.save_labels:
            write_tiff(folder / "labels_by_track.tif",
                       relabel_by_track(data, result).astype(np.uint32), pixel_size_nm=pixel_nm)
            if segmented is not None:
                write_tiff(folder / "labels.tif", segmented, pixel_size_nm=pixel_nm)
        kinds = result.event_table["kind"].value_counts().to_dict()
        print(f"{path.name}: {len(result.track_table)} tracks, {kinds.get('fission', 0)} "
              f"fission(s), {kinds.get('fusion', 0)} fusion(s) over {data.shape[0]} frames -> "
              f"{folder} in {time.perf_counter() - started:.1f} s")
        for note in result.notes:
            print(f"  note: {note}")
    return 0


def _status(label: str):
    def show(progress) -> None:
        print(f"\r{label}: {100 * progress.fraction:5.1f}% {progress.message:<30}", end="",
              file=sys.stderr, flush=True)

    return show
