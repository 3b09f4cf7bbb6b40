"""The Correct dock widget: turn an annotator's corrections into training data.

An annotator segments an image (the Segment widget), corrects the Labels
layers with napari's brush, eraser and fill tools, and tells this widget what
was checked: the whole image, what the view shows, or areas drawn in a Shapes
layer, in the current plane or in chosen planes of a stack. **Save corrections**
writes one sample per plane to the training store; pixels outside the
reviewed area are stored as *ignore*, so a partial correction never teaches
the model that unchecked structures are background.

The widget only composes; the work is in its parts:

* :mod:`._correct_regions`: the reviewed pixels (current view, Shapes areas,
  plane lists);
* :mod:`._correct_plan`: :func:`~._correct_plan.build_save_plan` turns the
  choices made here (:class:`~._correct_plan.SaveChoices`) into a
  :class:`~._correct_plan.SavePlan` in the main thread, so the layers cannot
  change under it; the training store (:mod:`napari_organelle.store`)
  validates, hashes and writes it in a background thread;
* :class:`~._correct_samples.SamplesPanel`: the store's samples; load any of
  them back into the viewer, exclude or restore them;
* :class:`~._correct_export.ExportPanel`: export the store for training
  (nnU-Net v2 or TIFF pairs).

Counting the pixels an annotator changed needs the model's original
prediction, which painting overwrites. A result layer may carry it in
``layer.metadata[PROPOSAL_KEY]`` (its foreground, packed eight pixels a byte
along the last axis by :func:`~._layers.pack_proposal`); without it the
changed pixels of that class are recorded as unknown.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit
from napari.layers import Image, Labels, Shapes

from ..store import SaveResult, default_store_path
from ..store.provenance import current_user
from ._correct_export import ExportPanel
from ._correct_plan import (
    ALL_PLANES,
    CURRENT_PLANE,
    CURRENT_VIEW,
    LISTED_PLANES,
    NOT_REVIEWED_ROLE,
    PLANE_CHOICES,
    REGIONS,
    SHAPES,
    WHOLE_IMAGE,
    ClassLayer,
    SaveChoices,
    SavePlan,
    belongs_to,
    build_save_plan,
    guess_class_name,
    guess_objects,
    plane_axes,
    run_save_plan,
)
from ._correct_queue import QueuePanel
from ._correct_regions import parse_plane_list, shapes_region, visible_region
from ._correct_samples import SHOW_ALL, SHOW_CURRENT, SHOW_EXCLUDED, SamplesPanel, StoreFolder
from ._docks import join_organelle_tabs
from ._layers import (
    PROPOSAL_KEY,
    connect_layer_list,
    full_resolution_data,
    labels_layers,
    layer_choices,
    pack_proposal,
    result_tag,
)
from ._messages import sentence
from ._tasks import TaskControls

__all__ = [
    "ALL_PLANES",
    "CURRENT_PLANE",
    "CURRENT_VIEW",
    "LISTED_PLANES",
    "NOT_REVIEWED_ROLE",
    "PROPOSAL_KEY",
    "SHAPES",
    "SHOW_ALL",
    "SHOW_CURRENT",
    "SHOW_EXCLUDED",
    "WHOLE_IMAGE",
    "CorrectWidget",
    "LabelLayerRow",
    "pack_proposal",
    "parse_plane_list",
    "shapes_region",
    "visible_region",
]

SAVE_TASK = "Saving corrections"

# How a Labels layer encodes its class (values of LabelLayerRow.kind_combo).
MASK = "mask"
OBJECTS = "objects"


class LabelLayerRow(Container):
    """One Labels layer in the widget: use it or not, its class name, mask or objects.

    The class name and the kind start as guessed from the layer
    (:func:`guess_class_name`, :func:`guess_objects`) and follow it (a rename, labels
    painted into a new layer) until the annotator changes them
    (:meth:`follow_layer`).

    Attributes:
        layer: the Labels layer.
        use_check: save this layer (its text is the layer's name).
        class_edit: the class the layer holds, as named in the store.
        kind_combo: ``mask`` (0/1) or ``objects`` (one id per object).
        class_edited: the annotator typed the class name.
        kind_edited: the annotator chose the kind.
    """

    def __init__(self, layer: Labels, *, use: bool, class_name: str, objects: bool) -> None:
        super().__init__(layout="horizontal", labels=False)
        self.margins = (0, 0, 0, 0)
        self.layer = layer
        self.class_edited = False
        self.kind_edited = False
        self.use_check = CheckBox(text=layer.name, value=use,
                                  tooltip=f"Save the labels of layer '{layer.name}'")
        self.class_edit = LineEdit(value=class_name,
                                   tooltip="The organelle this layer holds, as named in the "
                                           "store (e.g. 'er', 'mitochondria')")
        self.kind_combo = ComboBox(choices=[MASK, OBJECTS], value=OBJECTS if objects else MASK,
                                   tooltip="mask: 0 = background, 1 = the organelle; "
                                           "objects: each object has its own label")
        self.class_edit.min_width = 80  # a long layer name must not squeeze the class away
        self.extend([self.use_check, self.class_edit, self.kind_combo])
        self._following = False
        self.class_edit.changed.connect(self._on_class_edited)
        self.kind_combo.changed.connect(self._on_kind_edited)

    @property
    def selected(self) -> bool:
        """The layer is to be saved."""
        return bool(self.use_check.value)

    def follow_layer(self) -> None:
        """Guess the class name and kind again from the layer, unless the annotator set them.

        A Labels layer made with napari's button starts empty and unnamed;
        renamed ``synapses`` and painted with labels 1, 2, 3 it is class
        ``synapses``, saved as objects.
        """
        self._following = True
        try:
            if not self.class_edited:
                self.class_edit.value = guess_class_name(self.layer)
            if not self.kind_edited:
                self.kind_combo.value = OBJECTS if guess_objects(self.layer) else MASK
        finally:
            self._following = False

    def keep_choices_of(self, old: LabelLayerRow) -> None:
        """Take over what the annotator set in ``old``, the row of the same layer."""
        self.use_check.value = old.selected
        self._following = True
        try:
            self.class_edit.value = old.class_edit.value
            self.kind_combo.value = old.kind_combo.value
        finally:
            self._following = False
        self.class_edited, self.kind_edited = old.class_edited, old.kind_edited

    def class_layer(self) -> ClassLayer:
        """The layer with its class, as typed (checked by :func:`build_save_plan`)."""
        return ClassLayer(self.layer, str(self.class_edit.value).strip(),
                          self.kind_combo.value == OBJECTS)

    def _on_class_edited(self, _value: Any = None) -> None:
        if not self._following:
            self.class_edited = True

    def _on_kind_edited(self, _value: Any = None) -> None:
        if not self._following:
            self.kind_edited = True


class CorrectWidget(Container):
    """Save corrected labels as training samples; browse, load and export the store.

    Args:
        viewer: the napari viewer (napari passes it when it opens the widget).

    Attributes:
        viewer: the viewer.
        image_combo: the image layer that was corrected.
        layers_box: one :class:`LabelLayerRow` per Labels layer.
        layer_rows: those rows, top layer first.
        region_combo: what was reviewed: whole image, current view, or areas
            in a Shapes layer.
        shapes_combo: the Shapes layer with the reviewed areas.
        planes_combo: for stacks: the current plane, all planes, or listed planes.
        planes_edit: the listed planes (``0-4, 7``), along the stack's last
            non-spatial axis (e.g. Z of a T, Z, Y, X stack).
        annotator_edit: who corrected; recorded with every sample.
        store_edit: the training store folder.
        store_folder: the store in that folder (shared by the panels).
        save_controls: Save/Cancel buttons, progress bar and status line.
        save_button: saves the corrections (``save_controls.run_button``).
        queue_check: shows the "Annotate next" queue (folded at first).
        queue_panel: the queue of regions to correct (:class:`QueuePanel`).
        samples_check: shows the samples panel (shown at first).
        samples_panel: the store's samples (:class:`SamplesPanel`).
        export_check: shows the export panel (folded at first).
        export_panel: the export for training (:class:`ExportPanel`).
        last_save: the results of the latest completed save (one per sample).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.last_save: list[SaveResult] = []
        self.layer_rows: list[LabelLayerRow] = []

        # -- what was corrected
        self.image_combo = ComboBox(name="image", label="Image", choices=layer_choices(viewer),
                                    tooltip="The image layer the labels were corrected on")
        self.layers_box = Container(name="label_layers", label="Labels", labels=False,
                                    tooltip="Tick the corrected Labels layers and name the "
                                            "organelle each holds")
        self.region_combo = ComboBox(
            name="reviewed", label="Reviewed", choices=list(REGIONS), value=WHOLE_IMAGE,
            tooltip="Where you checked the labels; everywhere else is saved as 'ignore', "
                    "so it teaches neither organelle nor background")
        self.shapes_combo = ComboBox(name="shapes", label="Shapes layer",
                                     choices=layer_choices(viewer, Shapes),
                                     tooltip="Rectangles, polygons or ellipses around the "
                                             "areas you reviewed")
        self.planes_combo = ComboBox(
            name="planes", label="Planes", choices=list(PLANE_CHOICES), value=CURRENT_PLANE,
            tooltip="Which planes (or time points) of the stack you reviewed; each is saved "
                    "as its own sample")
        self.planes_edit = LineEdit(name="plane_list", label="Plane list", value="",
                                    tooltip="e.g. '0-4, 7' (ranges include both ends)")
        correction = Container(name="correction", labels=True, widgets=[
            self.image_combo, self.layers_box, self.region_combo, self.shapes_combo,
            self.planes_combo, self.planes_edit])

        # -- where it goes
        self.annotator_edit = LineEdit(name="annotator", label="Annotator",
                                       value=current_user() or "",
                                       tooltip="Your name, recorded with every sample")
        self.store_edit = FileEdit(name="store", label="Store folder", mode="d",
                                   value=default_store_path(),
                                   tooltip="The training store: an existing one, or an empty "
                                           "folder (created at the first save)")
        self.store_folder = StoreFolder(lambda: self.store_path)
        self.save_controls = TaskControls(
            "Save corrections", run_tooltip="Save each reviewed plane as a training sample")
        self.save_button = self.save_controls.run_button
        saving = Container(name="saving", labels=True,
                           widgets=[self.annotator_edit, self.store_edit])

        # -- where to correct next
        self.queue_panel = QueuePanel(viewer, lambda: self.image_combo.value,
                                      on_region=self._review_region)
        self.queue_check = _section_toggle("Annotate next", shown=False)

        # -- the store's samples and the export; both fold away, so the dock fits a laptop
        self.samples_panel = SamplesPanel(viewer, self.store_folder,
                                          on_loaded=self._on_sample_loaded)
        self.export_panel = ExportPanel(self.store_folder)
        self.samples_check = _section_toggle("Samples in the store", shown=True)
        self.export_check = _section_toggle("Export for training", shown=False)
        self.extend([
            self.queue_check, self.queue_panel,
            _heading("Correction"), correction,
            _heading("Training store"), saving, self.save_controls,
            self.samples_check, self.samples_panel,
            self.export_check, self.export_panel,
        ])
        layout = self.native.layout()
        layout.setStretchFactor(self.samples_panel.native, 1)  # spare height: the table...
        layout.addStretch()  # ...or, while it is folded away, below everything

        self.image_combo.changed.connect(self._on_image_changed)
        self.region_combo.changed.connect(self._show_choices)
        self.planes_combo.changed.connect(self._show_choices)
        self.store_edit.changed.connect(self.samples_panel.refresh)
        self.samples_check.changed.connect(self._show_choices)
        self.export_check.changed.connect(self._show_choices)
        self.queue_check.changed.connect(self._show_choices)
        self.save_button.clicked.connect(self.save)
        self._disconnect_layers = connect_layer_list(viewer, self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect_layers)

        self._rebuild_rows(keep_choices=False)
        self._show_choices()
        self.samples_panel.refresh()
        join_organelle_tabs(self.native)

    @property
    def running(self) -> bool:
        """A save or an export is in progress."""
        return self.save_controls.running or self.export_panel.running

    @property
    def store_path(self) -> Path:
        """The chosen store folder (the default one when the field is empty)."""
        text = str(self.store_edit.line_edit.value).strip()
        return Path(text).expanduser().absolute() if text else default_store_path()

    # ------------------------------------------------------------------ layout

    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image_combo.reset_choices()
        self.shapes_combo.reset_choices()
        self._rebuild_rows(keep_choices=True)
        self._show_choices()

    def _on_image_changed(self, _value: Any = None) -> None:
        self._rebuild_rows(keep_choices=False)
        self._show_choices()
        self.queue_panel.follow_image(self.image_combo.value)

    def _review_region(self, shapes: Shapes) -> None:
        """The queue went to a region: it is what the annotator reviews, in this plane."""
        self.shapes_combo.reset_choices()
        self.region_combo.value = SHAPES
        self.shapes_combo.value = shapes
        self.planes_combo.value = CURRENT_PLANE
        self._show_choices()

    def _on_sample_loaded(self, image: Image) -> None:
        """A loaded sample becomes the corrected image, reviewed as a whole."""
        self.image_combo.value = image
        # Its unreviewed pixels are in the 'not reviewed' layer; shapes drawn on the
        # source image do not fit the loaded crop.
        self.region_combo.value = WHOLE_IMAGE

    def _rebuild_rows(self, keep_choices: bool) -> None:
        """One row per Labels layer, ticked by default when it belongs to the image.

        With ``keep_choices``, rows of layers that were already listed keep
        what the annotator chose.
        """
        previous = {row.layer.name: row for row in self.layer_rows} if keep_choices else {}
        image = self.image_combo.value
        self.layers_box.clear()
        self.layer_rows = []
        for layer in labels_layers(self.viewer):
            if (result_tag(layer) or {}).get("role") == NOT_REVIEWED_ROLE:
                continue  # shown with a loaded sample, not a class
            old = previous.get(layer.name)
            if old is not None and old.layer == layer:
                row = LabelLayerRow(layer, use=old.selected, class_name="", objects=False)
                row.keep_choices_of(old)
                row.follow_layer()  # renamed, perhaps
            else:
                row = LabelLayerRow(layer, use=belongs_to(layer, image),
                                    class_name=guess_class_name(layer),
                                    objects=guess_objects(layer))
            self.layer_rows.append(row)
            self.layers_box.append(row)
        if not self.layer_rows:
            self.layers_box.append(Label(value="No Labels layer: segment the image first, "
                                               "or add a Labels layer and paint"))

    def _show_choices(self, _value: Any = None) -> None:
        image = self.image_combo.value
        stack = image is not None and not image.rgb and full_resolution_data(image).ndim > 2
        self.shapes_combo.visible = self.region_combo.value == SHAPES
        self.planes_combo.visible = stack
        self.planes_edit.visible = stack and self.planes_combo.value == LISTED_PLANES
        if stack:
            axis = plane_axes(image)[-1:] or "the last stack axis"
            self.planes_edit.tooltip = f"Planes along {axis}, e.g. '0-4, 7'"
        self.queue_panel.visible = bool(self.queue_check.value)
        self.samples_panel.visible = bool(self.samples_check.value)
        self.export_panel.visible = bool(self.export_check.value)

    # ------------------------------------------------------------------ saving

    def choices(self) -> SaveChoices:
        """What the annotator chose in the widget, for :func:`build_save_plan`.

        Rows the annotator left as guessed are guessed again first, from what the
        layers hold now (labels painted since the row was made).
        """
        for row in self.layer_rows:
            if row.selected:
                row.follow_layer()
        return SaveChoices(
            image=self.image_combo.value,
            class_layers=[row.class_layer() for row in self.layer_rows if row.selected],
            store_path=self.store_path,
            region=self.region_combo.value,
            shapes=self.shapes_combo.value,
            planes=self.planes_combo.value,
            plane_list=str(self.planes_edit.value),
            annotator=str(self.annotator_edit.value),
        )

    def plan_save(self) -> SavePlan:
        """What Save would write with the current choices (see :func:`build_save_plan`).

        Raises:
            InputError: a choice that cannot be saved, explained.
        """
        return build_save_plan(self.viewer, self.choices())

    def save(self) -> None:
        """Check the choices and save the corrections in the background (the Save button)."""
        controls = self.save_controls
        plan = None if controls.running else controls.checked(self.plan_save, SAVE_TASK)
        if plan is None:
            return
        controls.start(
            run_save_plan(plan), task=SAVE_TASK, on_returned=partial(self._on_saved, plan),
            on_finished=self.samples_panel.refresh,
            cancelled_message="Cancelled: samples saved before the cancel are kept.")

    def _on_saved(self, plan: SavePlan, results: list[SaveResult]) -> None:
        """Tell the annotator what was saved (main thread)."""
        self.last_save = results
        new = [result.sample for result in results if not result.duplicate]
        duplicates = [result.sample for result in results if result.duplicate]
        for record in duplicates:
            excluded = " (it is excluded from training: select it and Restore)" \
                if record.excluded else ""
            self.save_controls.report_info(
                f"Already saved as sample {record.id}{excluded}; nothing new was written.")
        parts = []
        if len(new) == 1:
            # The store's path is in the Store folder field: keep the status short.
            parts.append(f"Saved sample {new[0].id} (version {new[0].version}).")
        elif new:
            parts.append(f"Saved {len(new)} samples.")
        if duplicates:
            ids = ", ".join(record.id for record in duplicates)
            parts.append(f"Already saved, unchanged: {ids}.")
        parts.extend(sentence(note) + "." for note in plan.notes)
        if (new and self.queue_panel.regions and self.region_combo.value == SHAPES
                and self.shapes_combo.value is self.queue_panel.reviewed_layer):
            following = self.queue_panel.go_to_next()
            parts.append(f"Next: {following.describe()}." if following else
                         "That was the last queued region.")
        self.save_controls.set_status(" ".join(parts))


def _heading(text: str) -> Label:
    """A bold section title."""
    return Label(value=f"<b>{text}</b>")


def _section_toggle(text: str, shown: bool) -> CheckBox:
    """A bold section title that shows or hides its section."""
    toggle = CheckBox(text=text, value=shown, tooltip=f"Show or hide '{text}'")
    toggle.native.setStyleSheet("font-weight: bold")
    return toggle
