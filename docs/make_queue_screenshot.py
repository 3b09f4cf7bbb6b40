"""Re-make ``docs/images/correct-queue.png``: the Correct dock's annotate-next queue.

A held-out test section of em-hela-sbfsem-mito (``../shared/data``) is segmented by the
bundled ``em-organelles`` with uncertainty maps (Segment dock), then the Correct dock's
"Annotate next" queue ranks its tiles and goes to the first one, as an annotator would
see it. Needs a display::

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_queue_screenshot.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def wait(app, busy, settle: float = 1.0) -> None:
    """Process Qt events while ``busy()``, then for ``settle`` seconds more (to draw)."""
    while busy():
        app.processEvents()
        time.sleep(0.05)
    end = time.perf_counter() + settle
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "images" / "correct-queue.png")
    args = parser.parse_args()

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_organelle._widgets.correct import CorrectWidget
    from napari_organelle._widgets.segment import SegmentWidget
    from napari_organelle.models import list_models

    bundled = {info.name: info for info in list_models() if info.bundled}
    image_path = args.data_root / "em-hela-sbfsem-mito" / "test" / "images" / "z116.tif"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 860)
    image = viewer.add_image(tifffile.imread(image_path), name="HeLa z116",
                             scale=(0.01, 0.01), units=("micrometer", "micrometer"))
    app = QApplication.instance()
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.model_combo.value = bundled["em-organelles"]
    segment.class_checkboxes["cell_boundary"].value = False
    segment.uncertainty_check.value = True
    segment.run()
    wait(app, lambda: segment.running)
    if segment.controls.last_error:
        raise SystemExit(f"segmentation failed: {segment.controls.last_error}")
    correct = CorrectWidget(viewer)
    viewer.window.add_dock_widget(correct, name="Correct")
    correct.image_combo.value = image
    correct.queue_check.value = True
    queue = correct.queue_panel
    queue.count_spin.value, queue.tile_spin.value = 6, 256
    queue.suggest()
    wait(app, lambda: queue.running)
    if queue.controls.last_error:
        raise SystemExit(f"ranking failed: {queue.controls.last_error}")
    viewer.scene.camera.zoom *= 0.6  # show some context around the region
    wait(app, lambda: False)
    viewer.window.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out}: {queue.controls.status_label.value}")
    viewer.close()


if __name__ == "__main__":
    main()
