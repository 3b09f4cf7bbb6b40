"""The Correct dock's "Annotate next" queue: where to correct first, one region at a time.

**Suggest** ranks the tiles of the corrected image (every plane of a stack) by
the model's uncertainty, spread out so the queue is not ten neighbouring tiles
(:func:`napari_organelle.suggest.suggest_iter`, in a background thread).
**Go to region** shows the chosen one: the viewer moves to its plane, centres
and zooms on it, and draws it as a rectangle in a *reviewed region* Shapes
layer, which the Correct dock then takes as the reviewed area. After a Save,
the queue moves on to the next region by itself.

Qt stays in the widgets; the ranking is the core's (the CLI's ``suggest`` uses
the same function).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from napari.layers import Image, Shapes

from ..errors import InputError
from ..models import ModelInfo, list_models
from ..progress import Progress
from ..suggest import TILE, Region
from ._layers import (
    full_resolution_data,
    layer_pixel_size_nm,
    result_tag,
    spatial_transform,
    update_or_add_layer,
)
from ._tasks import TaskControls, connect_model_list

__all__ = ["REVIEWED_ROLE", "QueuePanel"]

SUGGEST_TASK = "Ranking regions"
#: ``role`` in the tag of the Shapes layer holding the region under review
REVIEWED_ROLE = "reviewed region"
#: canvas size assumed when zooming on a region, when the viewer does not say it
CANVAS_PIXELS = 600


class QueuePanel(Container):
    """Rank regions to correct, and walk the viewer through them.

    Args:
        viewer: the viewer.
        image: returns the image layer being corrected (the Correct dock's choice).
        on_region: called with the Shapes layer after the viewer went to a region
            (the Correct dock selects it as the reviewed area).

    Attributes:
        model_combo: the model whose uncertainty ranks the regions.
        count_spin: regions in the queue; tile_spin: their edge in pixels.
        controls: the Suggest button, progress and status.
        queue_combo: the ranked regions; value is a :class:`~napari_organelle.suggest.Region`.
        goto_button: goes to the region chosen in :attr:`queue_combo`.
        regions: the current queue.
        reviewed_layer: the Shapes layer of the region under review, once there is one.
    """

    def __init__(self, viewer: napari.viewer.Viewer, image: Callable[[], Image | None],
                 on_region: Callable[[Shapes], None] | None = None) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self._image = image
        self._on_region = on_region
        self.regions: list[Region] = []
        self.reviewed_layer: Shapes | None = None
        self._queued_layer: Image | None = None
        self.model_combo = ComboBox(name="queue_model", label="Model", choices=self._models,
                                    tooltip="The model whose uncertainty ranks the regions "
                                            "(the one you will fine-tune)")
        self.count_spin = SpinBox(name="queue_count", label="Regions", min=1, max=500,
                                  value=10, tooltip="How many regions to queue")
        self.tile_spin = SpinBox(name="queue_tile", label="Region size (px)", min=32,
                                 max=4096, step=32, value=TILE,
                                 tooltip="Edge of the square regions, in image pixels")
        self.controls = TaskControls(
            "Suggest regions", run_tooltip="Rank the image's regions by the model's "
                                           "uncertainty (4 flips per tile: 4x a segmentation)")
        self.queue_combo = ComboBox(name="queue", label="Next", choices=self._queue_choices,
                                    tooltip="Regions to correct, most useful first")
        self.goto_button = PushButton(name="goto", text="Go to region",
                                      tooltip="Show this region and mark it as the reviewed "
                                              "area")
        self.extend([self.model_combo, self.count_spin, self.tile_spin, self.controls,
                     self.queue_combo, self.goto_button])
        self.controls.run_button.clicked.connect(self.suggest)
        self.goto_button.clicked.connect(self.go_to_selected)
        self.native.destroyed.connect(connect_model_list(lambda *_: self.refresh_models()))
        self._show_queue()

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.controls.running

    def refresh_models(self) -> None:
        self.model_combo.reset_choices()

    def _models(self, _widget: Any = None) -> list[tuple[str, ModelInfo]]:
        return [(info.full_name, info) for info in list_models()]

    def _queue_choices(self, _widget: Any = None) -> list[tuple[str, Region]]:
        return [(region.describe(), region) for region in self.regions]

    def _show_queue(self) -> None:
        self.queue_combo.reset_choices()
        self.queue_combo.visible = self.goto_button.visible = bool(self.regions)

    def follow_image(self, layer: Image | None) -> None:
        """Choose the model that made the image's result layers, when it is installed."""
        if layer is None:
            return
        for other in self.viewer.layers:
            tag = result_tag(other) or {}
            if tag.get("source") == layer.name and tag.get("model"):
                for _, info in self._models():
                    if info.full_name == tag["model"]:
                        self.model_combo.value = info
                        return

    # ------------------------------------------------------------------ ranking

    def suggest(self) -> None:
        """Rank the regions of the chosen image in the background (the Suggest button)."""
        work = None if self.running else self.controls.checked(self._plan, SUGGEST_TASK)
        if work is None:
            return
        layer = self._image()
        self.controls.start(work, task=SUGGEST_TASK,
                            on_returned=partial(self._show_regions, layer),
                            cancelled_message="Cancelled: the queue is unchanged.")

    def _plan(self) -> Generator[Progress, None, list[Region]]:
        from ..suggest import suggest_iter

        layer = self._image()
        if layer is None:
            raise InputError("choose the image to correct first")
        info = self.model_combo.value
        if info is None:
            raise InputError("no model to rank regions with: install or train one")
        if layer.rgb:
            raise InputError("the queue ranks grey-level or single-channel images, not RGB")
        data = full_resolution_data(layer)
        return suggest_iter([(layer.name, data)], info.path, int(self.count_spin.value),
                            tile=int(self.tile_spin.value),
                            pixel_size_nm=layer_pixel_size_nm(layer))

    def _show_regions(self, layer: Image, regions: list[Region]) -> None:
        self.regions = regions
        self._queued_layer = layer
        self._show_queue()
        if regions:
            self.queue_combo.value = regions[0]
            best = regions[0]
            self.controls.set_status(f"{len(regions)} regions queued; the first is "
                                     f"{best.describe().split('. ', 1)[1]}.")
            self.go_to(best)
        else:
            self.controls.set_status("Nothing to queue: the image has no region to rank.")

    # ------------------------------------------------------------------ walking

    def go_to_selected(self) -> None:
        """Show the region chosen in the list (the Go to region button)."""
        region = self.queue_combo.value
        if region is not None:
            try:
                self.go_to(region)
            except InputError as error:
                self.controls.report_error(str(error))

    def go_to_next(self) -> Region | None:
        """After a save: the region after the current one, shown; None at the end."""
        current = self.queue_combo.value
        if current is None or current not in self.regions:
            return None
        position = self.regions.index(current) + 1
        if position >= len(self.regions):
            self.controls.set_status("The queue is done: suggest again after fine-tuning.")
            return None
        following = self.regions[position]
        self.queue_combo.value = following
        try:
            self.go_to(following)
        except InputError as error:  # after a save: say so, never a traceback
            self.controls.report_error(str(error))
            return None
        return following

    def go_to(self, region: Region) -> Shapes:
        """Move the viewer to ``region`` and mark it as the reviewed area; returns the layer."""
        layer = self._queued_layer or self._image()
        if layer is None or layer not in self.viewer.layers:
            raise InputError("the queued image is no longer open: suggest regions again")
        y0, x0, y1, x1 = region.box
        plane = tuple(region.plane)
        corners = np.array([[*plane, y0, x0], [*plane, y0, x1], [*plane, y1, x1],
                            [*plane, y1, x0]], dtype=float)
        # Rectangle edges on pixel borders: pixel i covers [i - 0.5, i + 0.5].
        corners[:, -2:] -= 0.5
        self.reviewed_layer = update_or_add_layer(
            self.viewer, Shapes, [corners], tag={"source": layer.name, "role": REVIEWED_ROLE},
            transform=spatial_transform(layer), name=REVIEWED_ROLE,
            shape_type="rectangle", edge_color="yellow", face_color="transparent",
            edge_width=max(2.0, (y1 - y0) / 100))
        self._move_camera(layer, region)
        if self._on_region is not None:
            self._on_region(self.reviewed_layer)
        self.controls.set_status(f"Reviewing region {region.describe()}.")
        return self.reviewed_layer

    def _move_camera(self, layer: Image, region: Region) -> None:
        y0, x0, y1, x1 = region.box
        centre = np.array([*region.plane, (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2], dtype=float)
        world = np.asarray(layer.data_to_world(centre), dtype=float)
        ndim = self.viewer.dims.ndim
        offset = ndim - len(world)
        step = list(self.viewer.dims.point)
        for axis, value in enumerate(world[:-2]):
            step[offset + axis] = value
        self.viewer.dims.point = step
        camera = self.viewer.scene.camera
        camera.center = tuple(world[-2:])
        scale = np.abs(np.asarray(layer.scale[-2:], dtype=float))
        extent = max((y1 - y0) * scale[0], (x1 - x0) * scale[1])
        size = tuple(getattr(getattr(self.viewer, "canvas", None), "size", ()) or ())
        pixels = min(size) if len(size) == 2 and min(size) > 0 else CANVAS_PIXELS
        camera.zoom = 0.8 * pixels / extent  # the region fills most of the canvas
