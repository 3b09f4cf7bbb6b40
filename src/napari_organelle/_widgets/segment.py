"""The Segment dock widget: pick an image, a model and organelles, get one Labels layer each.

The widget only gathers choices and shows results; the segmentation itself is
:func:`napari_organelle.inference.segment_iter`, run in a background thread by
:class:`~napari_organelle._widgets._tasks.TaskControls` so the viewer stays
responsive and the run can be cancelled.

Two ways of choosing what to segment, set by the model:

* **One image** (EM models, and any model reading several channels at once):
  an image layer and the organelles to find in it.
* **Channels** (one-channel fluorescence models): napari opens a multichannel
  image as one layer per channel, and each dye shows one organelle, so each
  channel layer is given the organelle it shows (or none), and each assigned
  layer is segmented for that organelle only.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from qtpy.QtCore import Qt

from ..blockwise import needs_blockwise
from ..devices import available_devices
from ..errors import InputError, ModelError, OrganelleError
from ..image_input import prepare_image
from ..inference import SegmentationResult, checked_tile_size
from ..modality import image_modality
from ..models import ModelCard, ModelInfo, list_models
from ..models.evidence import class_evidence
from ..models.io import CARD_FILE, WEIGHTS_FILE
from ..models.versions import active_version
from ..progress import Progress
from ._docks import join_organelle_tabs
from ._layers import (
    add_or_update_labels,
    connect_layer_list,
    full_resolution_data,
    image_layers,
    layer_choices,
    layer_pixel_size_nm,
    spatial_transform,
    update_or_add_layer,
    warm_up_labels_display,
    warm_up_labels_display_soon,
)
from ._tasks import (
    PROGRESS_STEPS,
    SingleTaskDock,
    TaskControls,
    connect_model_list,
    import_in_background,
    scaled_progress,
    wait_for_background_imports,
)

__all__ = ["SegmentJob", "SegmentOutcome", "SegmentPlan", "SegmentWidget", "run_segment_plan"]

TASK = "Segmentation"

#: Words in a channel layer's name (dyes, markers) that say which organelle it shows.
CHANNEL_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "nuclei": ("nuclei", "nucleus", "nuclear", "dapi", "hoechst", "h2b", "draq5"),
    "mitochondria": ("mitochondria", "mitochondrion", "mito", "mitotracker", "tom20",
                     "tomm20", "tmrm"),
    "er": ("er", "sec61", "calnexin", "calreticulin", "kdel"),
    "golgi": ("golgi", "giantin", "gm130", "galt"),
    "lysosomes": ("lysosomes", "lysosome", "lysotracker", "lamp1"),
    "lipid_droplets": ("lipid", "droplets", "bodipy", "lipidtox"),
}

NOT_SEGMENTED = "not segmented"

_MODALITY_NAMES = {"em": "an EM image", "fluorescence": "a fluorescence image"}


@dataclass(frozen=True)
class SegmentJob:
    """One image to segment, captured in the main thread when Run is clicked.

    Attributes:
        source: name of the image layer (recorded in the result layers).
        data: its full-resolution array (numpy or dask; not copied).
        rgb: napari shows the layer as RGB (the last axis is colour).
        classes: organelles to take from this image.
        transform: the layer's placement in the world, given to its labels.
        modality: ``em`` or ``fluorescence`` when the layer's metadata says so.
        blockwise_out: for an image too large to segment in memory, the OME-Zarr
            it was opened from: the labels are written blockwise into its
            ``labels`` group and shown lazily. None: segment in memory.
        levels: the layer's pyramid (blockwise jobs read the level nearest the
            model's pixel size).
        pixel_size_nm: the layer's pixel size (level 0), when known.
    """

    source: str
    data: Any
    rgb: bool
    classes: tuple[str, ...]
    transform: dict[str, Any]
    modality: str | None = None
    blockwise_out: str | None = None
    levels: tuple[Any, ...] = ()
    pixel_size_nm: float | None = None


@dataclass(frozen=True)
class SegmentPlan:
    """Everything a run needs, so the thread never reads the widgets or the viewer.

    Attributes:
        model: the model to run.
        jobs: images to segment, one per layer.
        options: keyword arguments for :func:`~napari_organelle.inference.segment_iter`
            (device, tile size, overlap, TTA, pixel size).
        keep_previous: add new numbered layers instead of updating the last results.
    """

    model: ModelInfo
    jobs: tuple[SegmentJob, ...]
    options: dict[str, Any]
    keep_previous: bool = False


def run_segment_plan(plan: SegmentPlan) -> Generator[Progress, None, list[SegmentOutcome]]:
    """Segment every job of ``plan`` in turn, yielding progress over the whole plan.

    Runs in the worker thread: loads the model (cached by the core) and calls
    :func:`~napari_organelle.inference.segment_iter` once per job. Everything
    that reads every pixel of a result (object counts for the status line,
    napari's first-time labels set-up) is done here too, so adding the layers
    on the main thread keeps the viewer responsive.

    Returns:
        Each job with its result and a description of what was found, in order.
    """
    from ..inference import segment_iter
    from ..models import load_model

    yield Progress(0, 0, f"loading {plan.model.full_name}")  # no total: duration unknown
    wait_for_background_imports()  # the dock's imports, if still running
    model = load_model(plan.model.path)
    results = []
    count = len(plan.jobs)
    for index, job in enumerate(plan.jobs):
        prefix = f"{job.source}, " if count > 1 else ""
        if job.blockwise_out:
            work = _segment_blockwise(job, model, plan.options)
            outcome = yield from scaled_progress(work, index / count, (index + 1) / count,
                                                 prefix)
            results.append(outcome)
            continue
        work = segment_iter(job.data, model, classes=list(job.classes), rgb=job.rgb,
                            **plan.options)
        result = yield from scaled_progress(work, index / count, (index + 1) / count, prefix)
        amounts = {name: _describe_amount(labels, result.classes[name].kind)
                   for name, labels in result.labels.items()}
        results.append(SegmentOutcome(job, result, amounts))
    yield Progress(PROGRESS_STEPS, PROGRESS_STEPS, "preparing the display")
    warm_up_labels_display((_first_level(labels).dtype, outcome.result.classes[name])
                           for outcome in results for name, labels in outcome.result.labels.items())
    return results


def _segment_blockwise(job: SegmentJob, model: Any, options: Mapping[str, Any]
                       ) -> Generator[Progress, None, SegmentOutcome]:
    """Segment a layer too large for memory block by block into its OME-Zarr's labels.

    Reads the pyramid level nearest the model's pixel size (blocks are not
    rescaled) and returns the written labels as lazy arrays, so nothing the size
    of the image is ever in memory. A cancelled run leaves finished blocks in
    the work folder, and running again resumes it.
    """
    from ..blockwise import segment_blockwise_iter
    from ..ngff import nearest_level, read_labels

    base_nm = options.get("pixel_size_nm") or job.pixel_size_nm
    spatial = len(job.transform["scale"])
    full = _spatial_shape(job.levels[0], job.rgb, spatial)
    factors = [[a / b for a, b in zip(full, _spatial_shape(level, job.rgb, spatial))]
               for level in job.levels]
    level = nearest_level([base_nm * f[-1] if base_nm else None for f in factors],
                          model.card.pixel_size_nm)
    scale = [float(s) * f for s, f in zip(job.transform["scale"], factors[level])]
    work = segment_blockwise_iter(
        job.levels[level], model, job.blockwise_out, classes=list(job.classes), rgb=job.rgb,
        pixel_size_nm=base_nm * factors[level][-1] if base_nm else None, scale=scale,
        volume=bool(options.get("volume")), z_anisotropy=options.get("z_anisotropy"),
        tile_size=options.get("tile_size"), overlap=options.get("overlap", 0.25),
        tta=bool(options.get("tta")), device=options.get("device", "auto"))
    done = yield from work
    if options.get("uncertainty"):
        done.notes.append("uncertainty maps are not made for images segmented block by block")
    written = read_labels(done.out)
    labels = {name: (written[name].levels if len(written[name].levels) > 1
                     else written[name].levels[0]) for name in done.classes}
    result = SegmentationResult(labels=labels, classes=dict(done.classes),
                                model=model.card.full_name, device=options.get("device", "auto"),
                                seconds=done.seconds, settings=dict(done.settings),
                                notes=list(done.notes))
    where = f"written to {Path(done.out).name}/labels"
    amounts = {name: (f"{done.object_counts[name]} objects, {where}"
                      if name in done.object_counts else where) for name in done.classes}
    transform = {**job.transform, "scale": tuple(scale)}
    return SegmentOutcome(job, result, amounts, transform)


def _spatial_shape(array: Any, rgb: bool, ndim: int) -> tuple[int, ...]:
    shape = tuple(array.shape[:-1] if rgb else array.shape)
    return shape[-ndim:]


def _first_level(labels: Any) -> Any:
    """The full-resolution array of labels that may be a pyramid (a list of levels)."""
    return labels[0] if isinstance(labels, (list, tuple)) else labels


class SegmentOutcome(NamedTuple):
    """One job's result, as the worker hands it to the main thread."""

    job: SegmentJob
    result: SegmentationResult
    #: per class, what was found for the status line (``12 objects``, ``31% of pixels``)
    amounts: dict[str, str]
    #: where the labels go in the world, when not at the source layer's (a coarser level)
    transform: dict[str, Any] | None = None


class SegmentWidget(SingleTaskDock, Container):
    """Segment organelles in image layers with a model; one Labels layer per organelle.

    Args:
        viewer: the napari viewer (napari passes it when it opens the widget).

    Attributes:
        viewer: the viewer.
        image_combo: the image layer to segment (one-image mode).
        model_combo: installed models, and those loaded from files; value is a
            :class:`~napari_organelle.models.ModelInfo` or None.
        model_file: loads a model that is not installed (its ``model.safetensors``
            or ``card.json``).
        device_combo: ``auto`` or a device of this machine.
        classes_box: one checkbox per organelle of the model (one-image mode); its
            tooltip says how the class was tested, and a class learnt and tested on
            simulated images only reads ``er (simulation only)``
            (:func:`~napari_organelle.models.evidence.class_evidence`).
        class_checkboxes: those checkboxes, by class name.
        channels_box: one organelle choice per image layer (channel mode).
        channel_combos: those choices, by layer name; value is a class name or None.
        keep_previous_check: add numbered layers (``mitochondria [run 2]``)
            instead of updating the previous results.
        volume_check: link objects across Z into 3-D objects (shown for
            stacks; ticked for Z stacks, i.e. unless the axis is named time).
        advanced_check: shows :attr:`advanced_widgets`.
        advanced_widgets: tile size, overlap, test-time augmentation, pixel size.
        tile_size_spin, overlap_spin, tta_check, uncertainty_check, pixel_size_spin: those
            settings;
            a pixel size of 0 means unknown (the image is not rescaled).
        controls: Run/Cancel buttons, progress bar and status line.
        run_button, cancel_button, progress_bar, status_label: the controls' widgets.
        last_result: the latest completed run, all jobs merged; None before.
        last_layers: the Labels layers that run added or updated.
        last_uncertainty_layers: its uncertainty maps (Image layers), when asked for.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.last_result: SegmentationResult | None = None
        self.last_layers: list[Labels] = []
        self.last_uncertainty_layers: list[Image] = []
        self._card: ModelCard | None = None
        self._cards: dict[Path, ModelCard] = {}
        self._models_from_files: list[ModelInfo] = []
        # The model follows the chosen layer's modality until the user picks one by hand.
        self.model_chosen_by_hand = False
        self._choosing_model = False

        self.image_combo = ComboBox(
            name="image", label="Image", choices=layer_choices(viewer, Image),
            tooltip="The image layer to segment")
        self.model_combo = ComboBox(
            name="model", label="Model", choices=self._model_choices,
            tooltip="Installed models; load another one with 'Model file'")
        self.model_file = FileEdit(
            name="model_file", label="Model file", mode="r",
            filter="napari-organelle model (*.safetensors card.json)",
            tooltip="Load a model that is not installed: choose the model.safetensors (or "
                    "card.json) in its folder")
        self.device_combo = ComboBox(
            name="device", label="Device", choices=["auto", *available_devices()], value="auto",
            tooltip="auto: the GPU if there is one, else the CPU")
        self.classes_box = Container(name="classes", label="Organelles", labels=False)
        self.class_checkboxes: dict[str, CheckBox] = {}
        self.channels_box = Container(name="channels", label="Channels", labels=True,
                                      tooltip="Which organelle each channel layer shows")
        self.channel_combos: dict[str, ComboBox] = {}
        self.keep_previous_check = CheckBox(
            name="keep_previous", text="Keep previous results", value=False,
            tooltip="Add new numbered layers (e.g. 'mitochondria [run 2]') instead of "
                    "updating the layers of the last run")
        self.volume_check = CheckBox(
            name="volume", text="Link objects across Z (3-D)", value=False, visible=False,
            tooltip="Z stacks: each object gets one id through the planes (3-D objects, split "
                    "where they touch in 3-D, using the layer's Z scale); untick to segment "
                    "plane by plane")
        self.advanced_check = CheckBox(name="advanced", text="Advanced settings", value=False)
        self.tile_size_spin = SpinBox(
            name="tile_size", label="Tile size (px)", min=32, max=4096, step=32, value=512,
            tooltip="Edge of the square tiles the image is cut into (a multiple of 32); "
                    "smaller tiles need less memory")
        self.overlap_spin = FloatSpinBox(
            name="overlap", label="Tile overlap", min=0.0, max=0.75, step=0.05, value=0.25,
            tooltip="Fraction of each tile shared with its neighbours; more overlap, "
                    "fewer seams, slower")
        self.tta_check = CheckBox(
            name="tta", text="Test-time augmentation (4x slower)", value=False,
            tooltip="Average the predictions of flipped copies of each tile")
        self.pixel_size_spin = FloatSpinBox(
            name="pixel_size", label="Pixel size (nm)", min=0.0, max=1e6, step=0.5, value=0.0)
        # In the main container rather than a nested one, so labels line up.
        self.uncertainty_check = CheckBox(
            name="uncertainty", text="Uncertainty maps (4x slower)", value=False,
            tooltip="Also add an image layer per organelle showing where the model is unsure "
                    "(entropy of the predictions of four flips, 0-1): where to correct first")
        self.advanced_widgets = [self.tile_size_spin, self.overlap_spin, self.tta_check,
                                 self.uncertainty_check,
                                 self.pixel_size_spin]
        self.controls = TaskControls("Run", run_tooltip="Segment the chosen organelles")
        self.run_button = self.controls.run_button
        self.cancel_button = self.controls.cancel_button
        self.progress_bar = self.controls.progress_bar
        self.status_label = self.controls.status_label

        self.extend([
            self.image_combo, self.model_combo, self.model_file, self.device_combo,
            self.classes_box, self.channels_box, self.keep_previous_check, self.volume_check,
            self.advanced_check, *self.advanced_widgets, self.controls,
        ])
        self._show_advanced(False)

        self.image_combo.changed.connect(self._suggest_pixel_size)
        self.image_combo.changed.connect(self._follow_layer)
        self.model_combo.changed.connect(self._on_model_changed)
        self.model_combo.changed.connect(self._on_model_picked)
        self.model_file.changed.connect(self._on_model_file_changed)
        self.advanced_check.changed.connect(self._show_advanced)
        self.run_button.clicked.connect(self.run)
        self._disconnect_layers = connect_layer_list(viewer, self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect_layers)
        self.native.destroyed.connect(connect_model_list(self.refresh_models))
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.native.destroyed.connect(
            lambda *_: viewer.layers.selection.events.active.disconnect(self._on_active_layer))

        self._on_model_changed(self.model_combo.value)
        self._follow_layer(self._default_layer())
        join_organelle_tabs(self.native)
        self._suggest_pixel_size()
        # Before the first Run: napari's first-Labels set-up, and what running a model
        # imports (the network library; ONNX Runtime, the CPU backend).
        warm_up_labels_display_soon()
        import_in_background(("segmentation_models_pytorch", "onnxruntime"))

    # ------------------------------------------------------------------ state

    @property
    def card(self) -> ModelCard | None:
        """The card of the chosen model, or None when no model is chosen."""
        return self._card

    @property
    def fluorescence_mode(self) -> bool:
        """Channel layers are assigned organelles (one-channel fluorescence models)."""
        card = self._card
        return card is not None and card.modality == "fluorescence" and card.in_channels == 1

    @property
    def selected_classes(self) -> list[str]:
        """Organelles ticked in one-image mode, in the model's order."""
        return [name for name, box in self.class_checkboxes.items() if box.value]

    @property
    def channel_assignments(self) -> dict[str, str | None]:
        """In channel mode, the organelle chosen for each image layer (None: not segmented)."""
        return {name: combo.value for name, combo in self.channel_combos.items()}

    # ------------------------------------------------------------------ models

    def refresh_models(self, in_use: ModelInfo | None = None) -> None:
        """Look for installed models again (e.g. after training a new version).

        Args:
            in_use: a version that was just made the one in use (Train dock's
                "Use this model" or a rollback); it becomes the chosen model, so
                the next run segments with it.
        """
        self.model_combo.reset_choices()
        if in_use is None:
            return
        for choice in self.model_combo.choices:
            if isinstance(choice, ModelInfo) and choice.path == in_use.path:
                self.model_combo.value = choice
                return

    def load_model_file(self, path: str | Path) -> ModelInfo:
        """Add a model that is not installed to the model list, and choose it.

        Args:
            path: the model's folder, its ``model.safetensors`` or its ``card.json``.

        Raises:
            ModelError: the path is not a model, or its card is unreadable.
        """
        location = _model_location(Path(path))
        card = ModelCard.load(_card_path(location))
        info = ModelInfo(card.name, card.version, location, False, card.modality,
                         tuple(card.class_names), card.parent, card.created)
        self._cards[location] = card
        known = [choice for choice in self.model_combo.choices
                 if isinstance(choice, ModelInfo) and choice.path == location]
        if not known:
            self._models_from_files.append(info)
            self.refresh_models()
        self.model_combo.value = known[0] if known else info
        return self.model_combo.value

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, ModelInfo]]:
        models = list_models()
        installed = {info.path for info in models}
        in_use = {_active_path(info.name) for info in models}
        models.sort(key=lambda info: info.path not in in_use)  # stable: the version in use first
        models += [info for info in self._models_from_files if info.path not in installed]
        counts = Counter(info.name for info in models)
        labels = [f"{info.full_name} ({info.modality})"
                  + ("  (in use)" if info.path in in_use and counts[info.name] > 1 else "")
                  for info in models]
        return [(label if labels.count(label) == 1 else f"{label} [{info.path}]", info)
                for label, info in zip(labels, models)]

    def _on_model_file_changed(self, value: Any) -> None:
        path = Path(value) if value else None
        # The line edit reports every keystroke: act only once the text names a model.
        if path is None or not path.exists() or (path.is_dir() and not (path / CARD_FILE).exists()):
            return
        try:
            info = self.load_model_file(path)
        except OrganelleError as error:
            self.controls.report_error(str(error))
            return
        self.controls.set_status(f"Loaded {info.full_name} from {info.path}")

    def _on_model_changed(self, info: ModelInfo | None) -> None:
        self._card = None
        if info is not None:
            try:
                self._card = self._read_card(info)
            except OrganelleError as error:
                self.controls.report_error(str(error))
        card = self._card
        self._rebuild_class_checkboxes()
        self._rebuild_channel_rows()
        self._show_mode()
        if card is None:
            if info is None:
                self.controls.set_status("No model installed: load one with 'Model file' "
                                         "(its model.safetensors or card.json).")
            return
        self.tile_size_spin.value = card.tile_size
        trained_at = (f"The model was trained at {card.pixel_size_nm:g} nm per pixel; images "
                      "with a known, different pixel size are rescaled to it."
                      if card.pixel_size_nm else "The model does not rescale images.")
        self.pixel_size_spin.tooltip = ("The image's pixel size in nanometres; 0 = unknown. "
                                        + trained_at)
        what = ", ".join(card.class_names)
        self.controls.set_status(f"{card.full_name} ({card.modality}) segments {what}.")

    def _on_model_picked(self, _info: Any = None) -> None:
        if not self._choosing_model:
            self.model_chosen_by_hand = True

    def choose_model_for(self, layer: Image | None) -> ModelInfo | None:
        """Choose the model that suits ``layer``'s modality (metadata, else pixels).

        The version in use of the first model of that modality is chosen; the
        choice is left alone when no installed model fits.

        Returns:
            The model chosen now, or None when nothing changed.
        """
        if layer is None:
            return None
        modality = layer_modality(layer)
        current = self.model_combo.value
        if isinstance(current, ModelInfo) and current.modality == modality:
            return None
        for choice in self.model_combo.choices:
            if isinstance(choice, ModelInfo) and choice.modality == modality:
                self._choosing_model = True
                try:
                    self.model_combo.value = choice
                finally:
                    self._choosing_model = False
                return choice
        return None

    def _follow_layer(self, layer: Any = None) -> None:
        """The model follows the layer the user works on, unless they chose one by hand."""
        if self.model_chosen_by_hand or not isinstance(layer, Image):
            return
        if self.choose_model_for(layer) is not None and not self.fluorescence_mode:
            self.image_combo.value = layer

    def _on_active_layer(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if not isinstance(layer, Image):
            return
        if not self.fluorescence_mode and layer in [v for _, v in self._image_choices()]:
            self.image_combo.value = layer  # follows through _follow_layer
        else:
            self._follow_layer(layer)

    def _image_choices(self) -> list[tuple[str, Image]]:
        return [(c.name, c) for c in self.image_combo.choices if isinstance(c, Image)]

    def _default_layer(self) -> Image | None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        value = self.image_combo.value
        return value if isinstance(value, Image) else None

    def _read_card(self, info: ModelInfo) -> ModelCard:
        card = self._cards.get(info.path)
        if card is None:
            card = self._cards[info.path] = ModelCard.load(_card_path(info.path))
        return card

    # ------------------------------------------------------------------ layout

    def _show_mode(self) -> None:
        channels = self.fluorescence_mode
        self.image_combo.visible = not channels
        self.classes_box.visible = not channels
        self.channels_box.visible = channels

    def _show_advanced(self, shown: bool) -> None:
        for widget in self.advanced_widgets:
            widget.visible = bool(shown)

    def _rebuild_class_checkboxes(self) -> None:
        self.classes_box.clear()
        self.class_checkboxes = {}
        if self._card is None:
            return
        evidence = class_evidence(self._card)
        for spec in self._card.classes:
            kind = ("separate objects" if spec.kind == "instance" else "one mask")
            known = evidence[spec.name]
            # The mark is only in the text: the boxes are found by class name.
            box = CheckBox(name=f"class_{spec.name}", text=spec.name + known.mark, value=True,
                           tooltip=f"{spec.name}: {kind}; {known.describe()}")
            self.class_checkboxes[spec.name] = box
            self.classes_box.append(box)

    def _rebuild_channel_rows(self) -> None:
        """One organelle choice per image layer, keeping choices already made."""
        previous = self.channel_assignments
        self.channels_box.clear()
        self.channel_combos = {}
        if not self.fluorescence_mode:
            return
        class_names = self._card.class_names if self._card else []
        evidence = class_evidence(self._card) if self._card else {}
        for layer in image_layers(self.viewer):
            choice = previous.get(layer.name)
            if choice not in class_names:
                choice = _guess_class(layer, class_names)
            combo = ComboBox(
                name=f"channel_{len(self.channel_combos)}", label=layer.name,
                choices=[(NOT_SEGMENTED, None),
                         *((name + evidence[name].mark, name) for name in class_names)],
                value=choice, tooltip=f"The organelle that layer '{layer.name}' shows")
            for index, name in enumerate(class_names, start=1):  # how each class was tested
                combo.native.setItemData(index, f"{name}: {evidence[name].describe()}",
                                         Qt.ItemDataRole.ToolTipRole)
            combo.changed.connect(self._suggest_pixel_size)
            self.channel_combos[layer.name] = combo
            self.channels_box.append(combo)

    def _on_layers_changed(self, _event: Any = None) -> None:
        had_image = self.image_combo.value is not None
        self.image_combo.reset_choices()
        if not had_image:  # the dock was opened before any image: choose for the first one
            self._follow_layer(self._default_layer())
        if self.fluorescence_mode:
            self._rebuild_channel_rows()

    def _suggest_pixel_size(self, _value: Any = None) -> None:
        """Show the pixel size the chosen layer declares (0 when it does not say)."""
        layer = None
        if self.fluorescence_mode:
            layers = {layer.name: layer for layer in image_layers(self.viewer)}
            assigned = [name for name, value in self.channel_assignments.items() if value]
            layer = layers.get(assigned[0]) if assigned else None
        else:
            layer = self.image_combo.value
        if layer is not None:
            self.pixel_size_spin.value = layer_pixel_size_nm(layer) or 0.0
        # Stacks offer 3-D objects, on by default unless the stacked axis is time.
        self.volume_check.visible = layer is not None and layer.ndim >= 3
        self.volume_check.value = layer is not None and _is_z_stack(layer)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Check the choices and start segmenting in the background (the Run button)."""
        plan = None if self.running else self.controls.checked(self.plan, TASK)
        if plan is None:
            return
        card = self._card
        for job in plan.jobs:
            if card is not None and job.modality and job.modality != card.modality:
                self.controls.report_warning(
                    f"'{job.source}' is {_MODALITY_NAMES.get(job.modality, job.modality)} and "
                    f"{card.full_name} is {_MODALITY_NAMES.get(card.modality, card.modality)} "
                    "model: expect poor results, or choose another model")
        self.controls.start(
            run_segment_plan(plan), task=TASK,
            on_returned=partial(self._show_results, plan),
            cancelled_message="Cancelled: no layers were added or changed.")

    def plan(self) -> SegmentPlan:
        """What Run would do with the current choices, checked without reading pixels.

        Raises:
            InputError: no model, no image layer, no organelle chosen, or an
                image that cannot be segmented (colour RGB, too small, 5-D...).
            ModelError: the model's card cannot be read.
        """
        info = self.model_combo.value
        card = self._card
        if info is None or card is None:
            raise InputError("no model chosen: install one, or load one with 'Model file' "
                             "(its model.safetensors or card.json)")
        if not image_layers(self.viewer):
            raise InputError(_no_image_message(self.viewer))
        if self.fluorescence_mode:
            jobs = self._channel_jobs(card)
        else:
            layer = self.image_combo.value
            if layer is None:
                raise InputError("choose the image layer to segment")
            classes = self.selected_classes
            if not classes:
                raise InputError("no organelle chosen: tick at least one under Organelles")
            jobs = [self._job(layer, classes, card)]
        tile = checked_tile_size(card, int(self.tile_size_spin.value))
        options = {
            "device": self.device_combo.value,
            "tile_size": tile,
            "overlap": float(self.overlap_spin.value),
            "tta": bool(self.tta_check.value),
            "uncertainty": bool(self.uncertainty_check.value),
            "pixel_size_nm": float(self.pixel_size_spin.value) or None,
            "volume": False,
        }
        scale = jobs[0].transform["scale"]
        if self.volume_check.value and len(scale) >= 3:
            # The core labels in 3-D; the layer's Z scale over its X scale is the anisotropy.
            options.update(volume=True, z_anisotropy=abs(float(scale[-3]) / float(scale[-1])))
        return SegmentPlan(model=info, jobs=tuple(jobs), options=options,
                           keep_previous=bool(self.keep_previous_check.value))

    def _channel_jobs(self, card: ModelCard) -> list[SegmentJob]:
        assigned = {name: value for name, value in self.channel_assignments.items() if value}
        if not assigned:
            raise InputError("say which organelle each channel shows: choose one for at least "
                             "one layer under Channels")
        by_class: dict[str, list[str]] = {}
        for layer_name, class_name in assigned.items():
            by_class.setdefault(class_name, []).append(layer_name)
        for class_name, layer_names in by_class.items():
            if len(layer_names) > 1:
                raise InputError(f"{class_name} is assigned to {' and '.join(layer_names)}: "
                                 "choose the one channel that shows it")
        layers = {layer.name: layer for layer in image_layers(self.viewer)}
        return [self._job(layers[name], [class_name], card)
                for name, class_name in assigned.items() if name in layers]

    def _job(self, layer: Image, classes: Sequence[str], card: ModelCard) -> SegmentJob:
        data = full_resolution_data(layer)
        try:
            # Cheap checks (shape, dtype, colour) now, so mistakes are reported at once.
            prepare_image(data, rgb=bool(layer.rgb), keep_rgb=card.in_channels == 3)
        except InputError as error:
            raise InputError(f"layer '{layer.name}': {error}") from None
        modality = layer.metadata.get("modality") if isinstance(layer.metadata, Mapping) else None
        blockwise_out = None
        volume = bool(self.volume_check.value) and layer.ndim >= 3
        if not isinstance(data, np.ndarray) and needs_blockwise(
                data, card, classes, rgb=bool(layer.rgb), volume=volume):
            blockwise_out = _ngff_folder(layer)
            if blockwise_out is None:
                raise InputError(
                    f"layer '{layer.name}' is too large to segment in memory and was not "
                    "opened from an OME-Zarr, where its labels could be written block by "
                    "block: save it as OME-Zarr and open that, or segment a crop")
        return SegmentJob(source=layer.name, data=data, rgb=bool(layer.rgb),
                          classes=tuple(classes), transform=spatial_transform(layer),
                          modality=modality if isinstance(modality, str) else None,
                          blockwise_out=blockwise_out,
                          levels=tuple(layer.data) if layer.multiscale else (data,),
                          pixel_size_nm=layer_pixel_size_nm(layer))

    def _show_results(self, plan: SegmentPlan, results: list[SegmentOutcome]) -> Iterator[None]:
        """Add or update one Labels layer per organelle and image (main thread).

        One layer per step (:meth:`TaskControls.start` runs each step in its own
        turn of the event loop): napari needs 0.2-1 s of the main thread to add
        a 2048 x 2048 Labels layer under software OpenGL (its Qt controls, its
        vispy visuals and overlays), so the viewer draws and answers between layers
        instead of freezing for all of them at once.
        """
        layers: list[Labels] = []
        maps: list[Image] = []
        notes: list[str] = []
        found: list[str] = []
        nothing: list[str] = []
        absent: list[str] = []
        evidence = class_evidence(self._card) if self._card else {}
        pixel_size = plan.options.get("pixel_size_nm")
        for job, result, amounts, transform in results:
            provenance = {"model": result.model}
            if pixel_size:
                provenance["pixel_size_nm"] = pixel_size
            for class_name, labels in result.labels.items():
                spec = result.classes[class_name]
                layers.append(add_or_update_labels(
                    self.viewer, labels, spec=spec, source=job.source,
                    transform=transform or job.transform, provenance=provenance,
                    keep_previous=plan.keep_previous))
                yield
                where = class_name if len(results) == 1 else f"{class_name} in {job.source}"
                amount = amounts[class_name]
                if amount:
                    found.append(f"{where}: {amount}")
                elif evidence.get(class_name) is not None and evidence[class_name].mark:
                    absent.append(where)  # learnt from simulation: may just not be there
                else:
                    nothing.append(where)
            for class_name, values in result.uncertainty.items():
                maps.append(show_uncertainty(self.viewer, values, class_name, job.source,
                                             transform or job.transform))
                yield
            notes.extend(note for note in result.notes if note not in notes)
        self.last_layers = layers
        self.last_uncertainty_layers = maps
        self.last_result = _merge_results([outcome.result for outcome in results])

        for note in notes:
            self.controls.report_warning(note)
        if nothing or (absent and not found):
            self.controls.report_warning(
                f"Nothing was found for {', '.join(nothing + absent)}. Check that the model "
                "suits the image (EM or fluorescence, pixel size under Advanced settings).")
        elif absent:
            # Simulation-only classes (nuclei in neuropil): absence is often the right answer.
            self.controls.report_info(f"No {', '.join(absent)} found in this image.")
        summary = "; ".join(found) if found else "nothing found"
        result = self.last_result
        self.controls.set_status(f"Done in {result.seconds:.1f} s on {result.device}: "
                                 f"{summary}.")


# ---------------------------------------------------------------------- helpers


def show_uncertainty(viewer: napari.viewer.Viewer, values: np.ndarray, class_name: str,
                     source: str, transform: Mapping[str, Any]) -> Image:
    """Add (or update) the uncertainty map of one class as an Image layer over its labels."""
    tag = {"source": source, "class": class_name, "role": "uncertainty"}
    return update_or_add_layer(
        viewer, Image, values, tag=tag, transform=transform,
        name=f"{class_name} uncertainty", colormap="inferno", contrast_limits=(0.0, 1.0),
        blending="additive", opacity=0.6)


def _ngff_folder(layer: Image) -> str | None:
    """The writable OME-Zarr folder ``layer`` was opened from (by any reader), or None."""
    from ..ngff import is_ngff

    metadata = layer.metadata if isinstance(layer.metadata, Mapping) else {}
    for candidate in (metadata.get("path"), getattr(layer.source, "path", None)):
        if (isinstance(candidate, str) and is_ngff(candidate)
                and os.access(candidate, os.W_OK)):
            return candidate
    return None


def _active_path(name: str) -> Path | None:
    try:
        return active_version(name).path
    except ModelError:
        return None


def _model_location(path: Path) -> Path:
    """The folder (or loose weights file) to load for a path the user chose."""
    if path.is_dir():
        if not (path / CARD_FILE).exists():
            raise ModelError(f"{path} is not a model folder: it has no {CARD_FILE}")
        return path
    if path.name in (CARD_FILE, WEIGHTS_FILE):
        return path.parent
    if path.suffix == ".safetensors":
        return path
    raise ModelError(f"{path.name} is not a model file: choose the {WEIGHTS_FILE} or "
                     f"{CARD_FILE} in a model folder")


def _card_path(location: Path) -> Path:
    """Where the card of a model folder or loose weights file is (as the core looks for it)."""
    if location.is_dir() or location.suffix != ".safetensors":
        return location / CARD_FILE
    beside = location.with_name(CARD_FILE)
    return beside if beside.exists() else location.with_suffix(".json")


def layer_modality(layer: Image) -> str:
    """``em`` or ``fluorescence``: what the layer's metadata declares, else what one plane suggests.

    Only one plane is looked at (stacks and dask arrays stay unread), and a
    layer whose image is one of several channel layers counts as fluorescence.
    """
    data = full_resolution_data(layer)
    plane_axes = 3 if layer.rgb else 2
    plane = np.asarray(data[(0,) * (data.ndim - plane_axes)] if data.ndim > plane_axes else data)
    if layer.rgb:  # colour pictures of EM are common: judge the grey values
        plane = plane[..., :3].mean(axis=-1)
    return image_modality(plane, layer.metadata)


def _guess_class(layer: Image, class_names: Sequence[str]) -> str | None:
    """The organelle a channel layer shows, if it says so or its name suggests exactly one.

    ``layer.metadata["organelle"]`` (set by this package's sample data and
    readers) wins; otherwise dye and marker names count (``DAPI`` -> nuclei).
    """
    declared = layer.metadata.get("organelle") if isinstance(layer.metadata, Mapping) else None
    if declared in class_names:
        return declared
    lowered = layer.name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    matches = []
    for name in class_names:
        hints = CHANNEL_NAME_HINTS.get(name, ())
        if words & {name.lower(), *hints} or (len(name) > 3 and name.lower() in lowered):
            matches.append(name)
    return matches[0] if len(matches) == 1 else None


def _is_z_stack(layer: Image) -> bool:
    """A layer with an axis before Y and X that its axis labels do not call time."""
    leading = [str(label).strip().lower() for label in layer.axis_labels[:layer.ndim - 2]]
    return any(label not in ("t", "time", "frame", "frames") for label in leading)


def _no_image_message(viewer: napari.viewer.Viewer) -> str:
    others = [layer.name for layer in viewer.layers]
    if not others:
        return "there is no image to segment: open one first (File > Open Files)"
    return (f"there is no image layer to segment ({', '.join(repr(n) for n in others[:3])} "
            f"{'is not an image layer' if len(others) == 1 else 'are not image layers'}): "
            "open an image first")


def _describe_amount(labels: np.ndarray, kind: str) -> str:
    """``12 objects`` or ``31% of pixels``; empty when nothing was found."""
    if kind == "instance":
        count = int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
        return f"{count} object{'s' if count != 1 else ''}" if count else ""
    fraction = np.count_nonzero(labels) / labels.size
    if not fraction:
        return ""
    return f"{fraction:.0%} of pixels" if fraction >= 0.01 else "<1% of pixels"


def _merge_results(results: list[SegmentationResult]) -> SegmentationResult:
    """One result holding every job's labels (each class comes from one job)."""
    first = results[0]
    notes: list[str] = []
    for result in results:
        notes.extend(note for note in result.notes if note not in notes)
    return SegmentationResult(
        labels={name: labels for result in results for name, labels in result.labels.items()},
        classes={name: spec for result in results for name, spec in result.classes.items()},
        model=first.model,
        device=first.device,
        seconds=sum(result.seconds for result in results),
        settings=dict(first.settings),
        notes=notes,
    )
