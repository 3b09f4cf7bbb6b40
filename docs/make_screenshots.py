"""Re-make the Segment screenshots in ``docs/images`` with the bundled models.

Opens a real napari viewer, segments with the Segment dock exactly as a user
would (bundled model, default settings) and saves the window:

- ``segment-em.png``: a test image of em-epfl-hippocampus (``../shared/data``,
  never trained on) segmented by ``em-organelles``; ``segment-em-hela.png``: the
  same for a test section of em-hela-sbfsem-mito (a HeLa cell with its nucleus);
- ``segment-widget.png``: the simulated live-cell sample (four channels)
  segmented by ``fluo-organelles``, one channel layer per organelle.

Needs a display::

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshots.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def segment_and_save(viewer, widget, out: Path) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    widget.run()
    while widget.running:
        app.processEvents()
        time.sleep(0.05)
    if widget.controls.last_error:
        raise SystemExit(f"segmentation failed: {widget.controls.last_error}")
    settle(app)
    viewer.window.screenshot(str(out), canvas_only=False)
    print(f"saved {out}: {widget.status_label.value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args()

    import napari
    import tifffile

    from napari_organelle._sample_data import sample_live_cell
    from napari_organelle._widgets.segment import SegmentWidget
    from napari_organelle.models import list_models

    bundled = {info.name: info for info in list_models() if info.bundled}

    # EM: held-out test images of data sets the EM model was trained on (neuropil; a HeLa cell)
    for set_name, file_name, label, pixel_um, out_name in (
            ("em-epfl-hippocampus", "testing0001.tif", "epfl test 0001", 0.005, "segment-em.png"),
            ("em-hela-sbfsem-mito", "z116.tif", "HeLa test z116", 0.010,
             "segment-em-hela.png")):
        image_path = args.data_root / set_name / "test" / "images" / file_name
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1400, 860)
        viewer.add_image(tifffile.imread(image_path), name=label,
                         scale=(pixel_um, pixel_um), units=("micrometer", "micrometer"))
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Segment")
        widget.model_combo.value = bundled["em-organelles"]
        segment_and_save(viewer, widget, args.out / out_name)
        viewer.close()

    # fluorescence: the plugin's simulated live-cell sample, one layer per channel
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 860)
    for data, options, _kind in sample_live_cell():
        viewer.add_image(data, **options)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.model_combo.value = bundled["fluo-organelles"]
    segment_and_save(viewer, widget, args.out / "segment-widget.png")
    viewer.close()


if __name__ == "__main__":
    main()
