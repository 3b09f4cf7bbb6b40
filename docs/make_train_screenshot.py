"""Re-make ``docs/images/train-widget.png``: the Train dock adding a class painted from scratch.

Three em-drosophila-vnc *train* sections (``../shared/data``) get a new, empty Labels
layer called ``synapses``, painted with the data set's own synapse masks (what an
annotator paints by hand), and are saved by the Correct dock to a training store.
The Train dock then shows the store's new class as a row (kind and colour) and
fine-tunes the bundled ``em-organelles`` for a few steps, with the live plot. Needs a
display::

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_train_screenshot.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from make_queue_screenshot import wait  # a sibling script: run from docs/ or its parent

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SECTIONS = ["00", "04", "08"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "images" / "train-widget.png")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="train-screenshot-"))
    # The run registers a model version: in a home of its own, never the user's.
    os.environ["NAPARI_ORGANELLE_HOME"] = str(work / "home")
    import napari
    import numpy as np
    import tifffile
    from qtpy.QtWidgets import QApplication
    from skimage.measure import label

    from napari_organelle._widgets.correct import CorrectWidget
    from napari_organelle._widgets.train import TrainWidget

    folder = args.data_root / "em-drosophila-vnc" / "train"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 860)
    app = QApplication.instance()
    correct = CorrectWidget(viewer)
    viewer.window.add_dock_widget(correct, name="Correct")
    correct.store_edit.value = work / "synapse-store"
    for stem in SECTIONS:
        viewer.layers.clear()
        image = viewer.add_image(tifffile.imread(folder / "images" / f"{stem}.tif"),
                                 name=f"vnc {stem}", scale=(0.0046, 0.0046),
                                 units=("micrometer", "micrometer"))
        painted = viewer.add_labels(np.zeros(image.data.shape, np.uint16), name="synapses",
                                    scale=image.scale, units=("micrometer", "micrometer"))
        painted.data = label(tifffile.imread(folder / "masks" / "synapses" / f"{stem}.tif") == 1
                             ).astype(np.uint16)
        wait(app, lambda: False, 0.3)
        correct.image_combo.value = image
        correct.save_button.native.click()
        wait(app, lambda: correct.running, 0.3)
        if correct.save_controls.last_error:
            raise SystemExit(f"saving failed: {correct.save_controls.last_error}")
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    train.data_list.value = [work / "synapse-store"]
    if "synapses" not in train.new_class_rows:
        raise SystemExit(f"no new-class row for synapses: {list(train.new_class_rows)}")
    train.name_edit.value = "em-organelles-synapses"
    train.max_steps_spin.value = args.steps
    train.validate_every_spin.value = 10
    train.crop_spin.value = 192
    train.start()
    wait(app, lambda: train.running, 2.0)
    if train.controls.last_error:
        raise SystemExit(f"training failed: {train.controls.last_error}")
    viewer.window.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out}: {train.controls.status_label.value}")
    viewer.close()


if __name__ == "__main__":
    main()
