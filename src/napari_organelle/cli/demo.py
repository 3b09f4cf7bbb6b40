"""``napari-organelle demo``: the quick start's main job.

With a display it opens napari with the plugin's Segment widget and the
simulated live-cell sample; headless it runs the same segmentation on the same
sample and says where the results went.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo",
                                   help="open napari with a sample (or segment it headless)")
    parser.add_argument("--headless", action="store_true", help="no window: segment the sample")
    parser.add_argument("--sample", choices=("live_cell", "em"), default="live_cell")
    parser.add_argument("--out", type=Path, default=Path("napari-organelle-demo"),
                        help="where headless results go (default ./napari-organelle-demo)")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.headless:
        return _headless(args)
    import napari

    from .._widgets._docks import open_demo

    open_demo(napari.Viewer(title="napari-organelle demo"), args.sample)
    napari.run()
    return 0


def _headless(args: argparse.Namespace) -> int:
    from ..errors import OrganelleError
    from ..inference import segment
    from ..io import write_tiff
    from ..models import default_model_name, load_model

    if args.sample == "live_cell":
        from ..simulation.sample import sample_live_cell

        image, channel_names, pixel_size = sample_live_cell(seed=0)
        modality = "fluorescence"
    else:
        from ..simulation.sample import sample_em_like

        image, pixel_size = sample_em_like(seed=0)
        channel_names, modality = [], "em"
    name = default_model_name(modality)
    if name is None:
        raise OrganelleError(f"no bundled {modality} model is installed")
    model = load_model(name)
    options = {}
    if channel_names:
        options = {"channel_axis": 0, "channel_classes": {
            index: [channel] for index, channel in enumerate(channel_names)
            if channel in model.card.class_names}}
    result = segment(image, model, pixel_size_nm=pixel_size, device=args.device, **options)
    out = args.out.resolve()
    write_tiff(out / "sample.tif", image, pixel_size_nm=pixel_size,
               axes="CYX" if image.ndim == 3 else "YX")
    for class_name, labels in result.labels.items():
        write_tiff(out / f"{class_name}.tif", labels, pixel_size_nm=pixel_size)
    summary = result.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Segmented the simulated {args.sample.replace('_', '-')} sample with {result.model} "
          f"on {result.device} in {result.seconds:.1f} s.")
    for class_name in result.labels:
        count = summary["object_counts"].get(class_name)
        detail = (f"{count} objects" if count is not None
                  else f"{100 * summary['foreground_fraction'][class_name]:.1f}% of pixels")
        print(f"  {class_name:<16} {detail:<20} {out / (class_name + '.tif')}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"Results are in {out} (sample.tif, one label TIFF per organelle, summary.json).")
    return 0
