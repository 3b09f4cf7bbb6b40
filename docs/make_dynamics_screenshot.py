"""Re-make ``docs/images/dynamics-widget.png``: the Dynamics dock on a real iSIM movie.

The movie (fluo-mito-fission-isim event01, 56 nm) is segmented with the bundled
fluorescence model, then tracked in the dock; the screenshot shows the frame of
the first fission. Run with a display::

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_dynamics_screenshot.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "fluo-mito-fission-isim"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movie", default="event01")
    parser.add_argument("--out", type=Path, default=HERE / "images" / "dynamics-widget.png")
    args = parser.parse_args()

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_organelle._widgets.dynamics import DynamicsWidget
    from napari_organelle.tracking.images import segment_movie

    images = tifffile.imread(DATA / "movies" / f"{args.movie}.tif")
    labels = segment_movie(images, "fluo-organelles", "mitochondria", pixel_size_nm=56)
    scale = (1, 0.056, 0.056)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 860)
    viewer.add_image(images, name=args.movie, scale=scale, colormap="gray")
    layer = viewer.add_labels(labels, name="mitochondria", scale=scale, opacity=0.35)
    widget = DynamicsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dynamics")
    widget.labels_combo.value = layer
    widget.frame_interval_spin.value = 5.0
    widget.run()
    app = QApplication.instance()
    while widget.running:
        app.processEvents()
        time.sleep(0.05)
    if widget.result is None:
        raise SystemExit(f"tracking failed: {widget.controls.last_error}")
    fissions = [e.t for e in widget.result.events if e.kind == "fission"]
    viewer.dims.set_current_step(0, fissions[0] if fissions else 0)
    end = time.perf_counter() + 1.5
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.window.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out}: {widget.summary_label.value}")
    viewer.close()


if __name__ == "__main__":
    main()
