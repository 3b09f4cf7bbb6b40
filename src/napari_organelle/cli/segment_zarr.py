"""``napari-organelle segment image.ome.zarr --out results.ome.zarr``: blockwise, on dask.

Called by :mod:`napari_organelle.cli.segment` for OME-Zarr inputs. Runs
:func:`napari_organelle.blockwise.segment_blockwise_iter` on a LocalCluster
(default), an existing cluster (``--scheduler``) or in this process (``--local``),
and writes one NGFF labels image per organelle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_zarr_options(parser: argparse.ArgumentParser) -> None:
    """The options that only apply to OME-Zarr inputs (blockwise segmentation)."""
    group = parser.add_argument_group(
        "OME-Zarr inputs (blockwise, larger than memory, on dask.distributed)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address (tcp://host:8786) or scheduler file; "
                            "default: start a LocalCluster on this machine")
    group.add_argument("--workers", type=int, metavar="N",
                       help="LocalCluster workers (default: one per 4 cores, within memory)")
    group.add_argument("--threads-per-worker", type=int, metavar="N",
                       help="blocks each LocalCluster worker segments at once (default 1; "
                            "the worker's cores are shared among them)")
    group.add_argument("--local", action="store_true",
                       help="no cluster: segment the blocks one after the other in this process")
    group.add_argument("--block", type=int, nargs="+", metavar="PX",
                       help="block edge (or one per axis, Z Y X); rounded up to the chunks; "
                            "default 1024, or 32 512 512 in 3-D")
    group.add_argument("--halo", type=int, nargs="+", metavar="PX",
                       help="context around each block (default: the tile size; 8 planes in "
                            "Z); objects up to this size come out exactly as in memory")
    group.add_argument("--level", type=int, metavar="N",
                       help="pyramid level to segment (default: the one nearest the model's "
                            "pixel size, else 0)")
    group.add_argument("--ngff-version", choices=("0.4", "0.5"), default="0.5",
                       help="NGFF version of a new output (an existing OME-Zarr keeps its own)")
    group.add_argument("--keep-work", action="store_true",
                       help="keep the work folder (block files, log) after success")


def output_root(source: Path, out: Path, n_inputs: int) -> Path:
    """Where the labels go: ``--out`` itself when it ends in ``.zarr`` (or is the source),
    else ``OUT/<image name>.ome.zarr``.

    Examples:
        >>> output_root(Path("big.ome.zarr"), Path("results.ome.zarr"), 1).name
        'results.ome.zarr'
        >>> output_root(Path("data/big.ome.zarr"), Path("out"), 2).as_posix()
        'out/big.ome.zarr'
    """
    if out.suffix == ".zarr":
        if n_inputs > 1 and out.resolve() != source.resolve():
            raise InputError("several OME-Zarr images and one --out .zarr: give an output "
                             "folder instead (each image gets OUT/<name>.ome.zarr)")
        return out
    stem = source.name.removesuffix(".zarr").removesuffix(".ome")
    return out / f"{stem}.ome.zarr"


def choose_level(image: Any, model_nm: float | None, level: int | None) -> int:
    """The pyramid level to segment: the one asked for, else the nearest the model's pixels."""
    if level is not None:
        if not 0 <= level < len(image.levels):
            raise InputError(f"--level {level}: {image.path.name} has levels 0 to "
                             f"{len(image.levels) - 1}")
        return level
    from ..ngff import nearest_level

    return nearest_level([image.axis_nm("X", index) for index in range(len(image.levels))],
                         model_nm)


def run_zarr(args: argparse.Namespace, path: Path, n_inputs: int) -> dict[str, Any]:
    """Segment one OME-Zarr image blockwise; returns its summary."""
    from ..blockwise import segment_blockwise_iter
    from ..models import load_model
    from ..ngff import read_ngff
    from ..progress import run

    image = read_ngff(path)
    if getattr(args, "uncertainty", False):
        raise InputError("--uncertainty is not available for OME-Zarr inputs (blockwise "
                         "segmentation writes labels only); segment a crop as TIFF instead")
    if not args.model:
        raise InputError("OME-Zarr inputs need --model (the modality is not guessed from a "
                         "lazy image)")
    model = load_model(args.model)
    level = choose_level(image, model.card.pixel_size_nm, args.level)
    data, axes = image.levels[level], image.axes
    scale = [s for s, letter in zip(image.scales[level], axes) if letter not in "CT"]
    classes = args.classes
    if args.channels:
        from .segment import parse_channel_map

        mapping = parse_channel_map(args.channels)
        if len(mapping) != 1 or "C" not in axes:
            raise InputError("blockwise segmentation reads one channel: give one "
                             "--channels INDEX=CLASS ... for an image with a C axis")
        (channel, names), = mapping.items()
        data = data[tuple(channel if a == "C" else slice(None) for a in axes)]
        axes = axes.replace("C", "")
        classes = [*names, *(classes or [])]
    pixel_nm = args.pixel_size or image.axis_nm("X", level)
    z_nm = args.z_step or image.axis_nm("Z", level)
    out = output_root(path, args.out, n_inputs)
    executor = None
    if not args.local:
        from ..distributed import connect

        executor = connect(args.scheduler, workers=args.workers,
                           threads=args.threads_per_worker)
        where = args.scheduler or "a LocalCluster"
        print(f"{path.name}: running on {where}; dashboard: {executor.dashboard}",
              file=sys.stderr, flush=True)
    started = time.perf_counter()
    work = segment_blockwise_iter(
        data, model if executor is None else args.model,  # workers load it once each
        out, classes=classes, channel_axis=axes.index("C") if "C" in axes else None,
        axes=axes, pixel_size_nm=pixel_nm, scale=scale, volume=args.volume,
        z_anisotropy=z_nm / pixel_nm if z_nm and pixel_nm else None, tile_size=args.tile,
        overlap=args.overlap, tta=args.tta, device=args.device,
        block_size=_one_or_many(args.block), halo=_one_or_many(args.halo), executor=executor,
        version=args.ngff_version, keep_work=args.keep_work)
    from .segment import _printer

    result = run(work, None if args.quiet else _printer(path.name))
    if not args.quiet:
        print(file=sys.stderr)
    summary = {"image": str(path), "output": str(out), "level": level,
               "pixel_size_nm": pixel_nm, **result.summary(),
               "seconds_total": round(time.perf_counter() - started, 3)}
    out_summary = Path(str(out) + ".summary.json")
    out_summary.write_text(json.dumps(summary, indent=2) + "\n")
    counts = ", ".join(f"{n} {name}" for name, n in result.object_counts.items())
    print(f"{path.name}: {', '.join(result.classes)} -> {out}/labels"
          f"{f' ({counts})' if counts else ''} in {result.seconds:.1f} s, {result.blocks} "
          f"blocks ({result.skipped} done before)")
    for note in result.notes:
        print(f"  note: {note}")
    return summary


def _one_or_many(values: list[int] | None) -> int | list[int] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)
