"""``napari-organelle segment``: segment image files headless, one TIFF per organelle."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..progress import Progress
from .segment_zarr import add_zarr_options, run_zarr


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment images into one label TIFF per organelle",
        description="Segment images; writes OUT/<image stem>/<class>.tif and summary.json.")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="TIFF/OME-TIFF, PNG or JPEG files, or OME-Zarr folders (segmented "
                             "blockwise on dask, labels written as OME-Zarr)")
    parser.add_argument("--model", help="model name, name@version or folder (default: the "
                        "bundled model for the image's modality)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--tile", type=int, default=None, help="tile edge in pixels (x32)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    parser.add_argument("--tta", action="store_true", help="average over flips (slower)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <class>_uncertainty.tif: the entropy (0-1 bits) of the "
                             "probabilities averaged over 4 flips (turns on --tta: 4x slower)")
    parser.add_argument("--classes", nargs="+", help="classes to segment (default: all)")
    parser.add_argument("--channels", nargs="+", metavar="INDEX=CLASS",
                        help="fluorescence: which organelle each channel shows, e.g. 0=nuclei "
                             "1=mitochondria")
    parser.add_argument("--pixel-size", type=float, metavar="NM",
                        help="pixel size in nm (overrides the file's)")
    parser.add_argument("--3d", dest="volume", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="Z stacks: link objects across Z into 3-D objects and write each "
                             "class as one 3-D TIFF with the Z step (--no-3d: plane by plane, "
                             "ids unique per plane). Default: on for images whose axes include "
                             "Z (a TIFF stack's unnamed leading axis counts as Z), off for "
                             "time-lapses and 2-D images")
    parser.add_argument("--z-step", type=float, metavar="NM",
                        help="distance between Z planes in nm (overrides the file's OME "
                             "PhysicalSizeZ or ImageJ spacing; default: isotropic)")
    parser.add_argument("--z-consensus", action="store_true",
                        help="in 3-D: average each plane's probabilities with the planes above "
                             "and below before thresholding (for near-isotropic volumes)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for the network (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_zarr_options(parser)
    parser.set_defaults(func=run)


def parse_channel_map(items: list[str] | None) -> dict[int, list[str]] | None:
    """``["0=nuclei", "1=mitochondria"]`` -> ``{0: ["nuclei"], 1: ["mitochondria"]}``."""
    if not items:
        return None
    mapping: dict[int, list[str]] = {}
    for item in items:
        index, _, name = item.partition("=")
        if not index.strip().isdigit() or not name.strip():
            raise InputError(f"--channels takes INDEX=CLASS pairs such as 0=nuclei, not {item!r}")
        mapping.setdefault(int(index), []).append(name.strip())
    return mapping


def run(args: argparse.Namespace) -> int:
    from ..inference import segment
    from ..io import read_image, write_tiff
    from ..modality import guess_modality
    from ..models import default_model_name, load_model
    from ..ngff import is_ngff
    from ..volume import read_z_step_nm, write_volume_tiff

    channel_map = parse_channel_map(args.channels)
    if args.z_step is not None and not args.z_step > 0:
        raise InputError(f"--z-step must be a positive number of nanometres, not {args.z_step}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.out.suffix != ".zarr":
        args.out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for path in args.images:
        if is_ngff(path) or path.suffix == ".zarr":
            summaries.append(run_zarr(args, path, len(args.images)))
            continue
        image = read_image(path)
        model_name = args.model
        if model_name is None:
            n_channels = (image.data.shape[image.channel_axis]
                          if image.channel_axis is not None else 1)
            modality = guess_modality(image.data, n_channels)
            model_name = default_model_name(modality)
            if model_name is None:
                raise InputError(f"no bundled {modality} model is installed; pass --model")
        model = load_model(model_name)
        pixel_size = args.pixel_size or image.pixel_size_nm
        channel_axis = image.channel_axis
        classes_map = channel_map
        if channel_axis is not None and classes_map is None and model.card.in_channels == 1:
            raise InputError(f"{path.name} has channels ({image.axes}); say which organelle each "
                             "shows with --channels 0=nuclei 1=mitochondria ...")
        z_step = args.z_step or read_z_step_nm(path)
        started = time.perf_counter()
        result = segment(image.data, model, progress=None if args.quiet else _printer(path.name),
                         classes=args.classes, channel_axis=channel_axis,
                         channel_classes=classes_map, rgb=image.rgb, pixel_size_nm=pixel_size,
                         tile_size=args.tile, overlap=args.overlap, tta=args.tta,
                         device=args.device, volume=args.volume, axes=image.axes,
                         z_anisotropy=z_step / pixel_size if z_step and pixel_size else None,
                         z_consensus=args.z_consensus, uncertainty=args.uncertainty)
        in_3d = bool(result.settings.get("volume"))
        if in_3d and not (z_step and pixel_size):
            result.notes.append("the Z step or the pixel size is unknown: the stack was taken "
                                "as isotropic (give --z-step NM and --pixel-size NM)")
        if not args.quiet:
            print(file=sys.stderr)
        folder = args.out / path.stem
        spatial_axes = "".join(a for a in image.axes if a not in "CS")
        for name, labels in result.labels.items():
            axes = spatial_axes if len(spatial_axes) == labels.ndim else None
            if in_3d:
                write_volume_tiff(folder / f"{name}.tif", labels, pixel_size, z_step,
                                  axes=axes or "ZYX")
            else:
                write_tiff(folder / f"{name}.tif", labels, pixel_size_nm=pixel_size, axes=axes)
        for name, values in result.uncertainty.items():
            axes = spatial_axes if len(spatial_axes) == values.ndim else None
            write_tiff(folder / f"{name}_uncertainty.tif", values, pixel_size_nm=pixel_size,
                       axes=axes)
        summary = {"image": str(path), "output": str(folder), "pixel_size_nm": pixel_size,
                   **({"z_step_nm": z_step} if in_3d else {}),
                   **result.summary(), "seconds_total": round(time.perf_counter() - started, 3)}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        summaries.append(summary)
        counts = ", ".join(f"{n} {name}" for name, n in summary["object_counts"].items())
        if counts and in_3d:
            counts += " in 3-D"
        print(f"{path.name}: {', '.join(result.labels)} -> {folder}"
              f"{f' ({counts})' if counts else ''} in {result.seconds:.1f} s on {result.device}")
        for note in result.notes:
            print(f"  note: {note}")
    if args.out.suffix != ".zarr":
        (args.out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


def _printer(label: str):
    def show(progress: Progress) -> None:
        print(f"\r{label}: {100 * progress.fraction:5.1f}% {progress.message:<30}", end="",
              file=sys.stderr, flush=True)

    return show
