"""The Train dock widget: fine-tune a model on a lab's corrections, watch it learn, keep it.

A lab lead picks the base model, the training data (training stores of
corrections and/or data sets in the shared layout) and a time budget, then
presses Start. Classes the data annotates that the base model lacks (e.g. a
Labels layer an annotator painted from scratch and saved with the Correct
dock) are listed under "New classes", one row each: tick it to learn it, as
objects or a mask (as saved, by default) and in the colour its layers will
have (:func:`napari_organelle.training.finetune.new_classes` finds them).
Training runs :func:`napari_organelle.training.finetune.finetune_iter` in napari's thread
worker (no extra processes), so the viewer stays usable; the dock plots the
training loss and the validation Dice per class as it goes. At the end (or
on Cancel, which keeps the best model so far) the result is kept as a new
version of the model, and a table compares the base and the new model on the
held-out validation images. "Use this model" makes it the version in use;
the versions list rolls back to an older one, and "Export for bioimage.io…"
writes the chosen version as a bioimage.io model zip
(:func:`napari_organelle.bioimageio.export_bioimageio`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ListEdit,
    PushButton,
    SpinBox,
    Table,
)
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QAbstractItemView, QFileDialog, QSizePolicy, QStyledItemDelegate

from ..bioimageio import SUFFIX as BIOIMAGEIO_SUFFIX
from ..bioimageio import export_bioimageio_iter
from ..devices import available_devices
from ..errors import InputError, OrganelleError
from ..models import ORGANELLE_COLORS, ClassSpec, ModelCard, ModelInfo, list_models
from ..models.io import CARD_FILE
from ..models.versions import active_version, list_versions, set_active
from ..progress import Progress
from ..training.finetune import (
    DataClass,
    FinetuneResult,
    FinetuneSettings,
    default_work_dir,
    finetune_iter,
    new_classes,
    register_run,
)
from ._docks import join_organelle_tabs
from ._messages import logger
from ._tasks import SingleTaskDock, TaskControls, connect_model_list, model_list_events
from ._training_plot import TrainingPlot

__all__ = ["COLORS", "MASK", "OBJECTS", "NewClassRow", "TrainWidget"]

TASK = "Training"
EXPORT_TASK = "Export for bioimage.io"
NO_LIMIT = 0

# How a new class is learnt (the words of the Correct dock), and the ClassSpec kind.
OBJECTS = "objects"
MASK = "mask"
_KINDS = ((OBJECTS, "instance"), (MASK, "semantic"))

#: Colours offered for a new class (name, hex); the organelles' usual colours come first.
COLORS: tuple[tuple[str, str], ...] = (
    ("orange", "#ff7f0e"), ("green", "#2ca02c"), ("blue", "#1f77b4"), ("yellow", "#e6c619"),
    ("red", "#d62728"), ("purple", "#9467bd"), ("cyan", "#17becf"), ("pink", "#e377c2"),
    ("brown", "#8c564b"), ("olive", "#bcbd22"), ("grey", "#7f7f7f"), ("white", "#ffffff"),
)


class NewClassRow(Container):
    """A class of the training data that the base model lacks: learn it or not, kind, colour.

    Args:
        item: the class, as found in the data.
        color: the colour chosen at first (hex).

    Attributes:
        item: the class, as found in the data (name, kind as saved, folders).
        use_check: learn it as a new class (its text is the class name).
        kind_combo: ``instance`` (shown as "objects") or ``semantic`` ("mask").
        color_combo: the hex colour of its layers (shown by name, with a swatch).
    """

    def __init__(self, item: DataClass, color: str) -> None:
        super().__init__(layout="horizontal", labels=False)
        self.margins = (0, 0, 0, 0)
        self.item = item
        where = ", ".join(item.sources)
        self.use_check = CheckBox(text=item.name, value=True,
                                  tooltip=f"Learn '{item.name}' as a new class (annotated in "
                                          f"{where})")
        self.kind_combo = ComboBox(choices=list(_KINDS), value=item.kind,
                                   tooltip="objects: each object gets its own label (touching "
                                           "ones split); mask: one 0/1 mask")
        choices = list(COLORS) if color in dict(COLORS).values() else \
            [(color, color), *COLORS]
        self.color_combo = ComboBox(choices=choices, value=color,
                                    tooltip="Its colour: of its masks in the Segment dock, and "
                                            "of its line in the plot (objects get a colour "
                                            "each)")
        combo = self.color_combo.native
        for index, (_name, hex_color) in enumerate(choices):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(hex_color))
            combo.setItemIcon(index, QIcon(swatch))
        self.extend([self.use_check, self.kind_combo, self.color_combo])

    @property
    def selected(self) -> bool:
        """The class is to be learnt."""
        return bool(self.use_check.value)

    def class_spec(self) -> ClassSpec:
        """The new model class as chosen in the row."""
        return ClassSpec(self.item.name, self.kind_combo.value, color=self.color_combo.value)


class TrainWidget(SingleTaskDock, Container):
    """Fine-tune a model in the background with a live plot; keep the result as a version.

    Args:
        viewer: the napari viewer (napari passes it when it opens the widget).

    Attributes:
        viewer: the viewer.
        base_combo: the model to start from (value: a ModelInfo).
        data_list: training stores and/or data set folders.
        new_classes_box: one :class:`NewClassRow` per class of the data the base model lacks.
        new_class_rows: those rows, by class name.
        minutes_spin: time budget in minutes.
        name_edit: model name the result is kept under (a new version of it).
        advanced_check: shows :attr:`advanced_widgets`.
        replay_spin, val_fraction_spin, max_steps_spin, batch_spin, crop_spin,
        validate_every_spin, device_combo: advanced settings (0: automatic).
        controls: Start/Cancel buttons, progress bar and status line.
        plot: the live loss and Dice plot.
        results_table: base vs new model per class on the validation images.
        use_button: makes the trained version the one in use.
        versions_combo: versions of the model named in :attr:`name_edit`.
        rollback_button: makes the version chosen in :attr:`versions_combo` the one in use.
        export_button: asks for a file and writes the chosen version as a bioimage.io zip
            (:meth:`export_selected_version`).
        last_result: the latest run's result (None before).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.last_result: FinetuneResult | None = None
        self._settings: FinetuneSettings | None = None
        self._name_edited = False

        self.base_combo = ComboBox(name="base", label="Base model", choices=self._model_choices,
                                   tooltip="The model to start from")
        self.data_list = ListEdit(
            name="data", label="Training data", value=[], annotation=list[Path],
            options={"mode": "d"},
            tooltip="Training stores (your saved corrections) and/or data set folders "
                    "(train/images, train/masks/<class>); + adds a folder")
        self.new_classes_box = Container(
            name="new_classes", label="New classes", labels=False,
            tooltip="Classes your training data annotates that the base model lacks: tick "
                    "the ones to learn, as objects or a mask, and choose their colour")
        self.new_class_rows: dict[str, NewClassRow] = {}
        self.minutes_spin = SpinBox(name="minutes", label="Time budget (min)", min=1, max=1440,
                                    value=10, tooltip="Training stops after this long and "
                                    "keeps the best model")
        self.name_edit = LineEdit(name="name", label="Save as",
                                  tooltip="Model name; each run adds a new version of it")
        self.advanced_check = CheckBox(name="advanced", text="Advanced settings", value=False)
        self.replay_spin = FloatSpinBox(
            name="replay", label="Replay share", min=0.0, max=0.9, step=0.05, value=0.0,
            tooltip="Share of each batch from the base model's own training data, against "
                    "forgetting (needs that data on this machine)")
        self.val_fraction_spin = FloatSpinBox(
            name="val_fraction", label="Validation share", min=0.0, max=0.5, step=0.05,
            value=0.2, tooltip="Share of each source's images held out (whole images)")
        self.max_steps_spin = SpinBox(name="max_steps", label="Max steps", min=0, max=10**7,
                                      value=NO_LIMIT, tooltip="0: no limit besides the time")
        self.batch_spin = SpinBox(name="batch_size", label="Batch size", min=0, max=256,
                                  value=0, tooltip="0: 4 on a CPU, 8 on a GPU")
        self.crop_spin = SpinBox(name="crop", label="Crop (px)", min=32, max=2048, step=32,
                                 value=256)
        self.validate_every_spin = SpinBox(
            name="validate_every", label="Validate every", min=0, max=10**6, value=0,
            tooltip="Steps between validations; 0: 20 on a CPU, 100 on a GPU")
        self.device_combo = ComboBox(name="device", label="Device",
                                     choices=["auto", *available_devices()], value="auto")
        self.advanced_widgets = [self.replay_spin, self.val_fraction_spin, self.max_steps_spin,
                                 self.batch_spin, self.crop_spin, self.validate_every_spin,
                                 self.device_combo]
        self.controls = TaskControls("Start training",
                                     run_tooltip="Fine-tune in the background")
        self.start_button = self.controls.run_button
        self.cancel_button = self.controls.cancel_button
        self.cancel_button.tooltip = "Stop now; the best model so far is kept as a version"
        status = self.controls.status_label.native
        # Two full-width lines, so the plot below never squeezes the status out of sight.
        status.setMinimumHeight(2 * status.fontMetrics().lineSpacing() + 4)
        status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.plot_box = Container(name="plot", label="Progress", labels=False)
        self.plot = TrainingPlot(_theme_colors(viewer))
        self.plot_box.native.layout().addWidget(self.plot.canvas)
        self.results_label = Label(name="results_label", label="Result", value="")
        self.results_label.native.setWordWrap(True)
        self.results_table = Table(name="results", label="Base vs new", value=_empty_table())
        table = self.results_table.native
        table.setMinimumHeight(100)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Show the numbers as written here (magicgui's delegate prints 0.098 as 9.800e-02).
        table.setItemDelegate(QStyledItemDelegate(table))
        self.use_button = PushButton(name="use", text="Use this model", enabled=False,
                                     tooltip="Make the new version the one used by name")
        self.versions_combo = ComboBox(name="versions", label="Versions",
                                       choices=self._version_choices,
                                       tooltip="Versions of the model named in 'Save as'")
        self.rollback_button = PushButton(name="rollback", text="Use selected version",
                                          tooltip="Roll back (or forward) to this version")
        self.export_button = PushButton(
            name="export_bioimageio", text="Export for bioimage.io…",
            tooltip="Write the selected version as a bioimage.io model zip (weights, test "
                    "images, documentation) to share or upload")
        version_buttons = Container(widgets=[self.rollback_button, self.export_button],
                                    layout="horizontal", labels=False)
        version_buttons.margins = (0, 0, 0, 0)

        self.extend([self.base_combo, self.data_list, self.new_classes_box, self.minutes_spin,
                     self.name_edit, self.advanced_check, *self.advanced_widgets, self.controls,
                     self.plot_box, self.results_label, self.results_table, self.use_button,
                     self.versions_combo, version_buttons])
        self._show_advanced(False)

        self.base_combo.changed.connect(self._on_base_changed)
        self.data_list.changed.connect(self.refresh_new_classes)
        self.name_edit.changed.connect(self._on_name_edited)
        self.advanced_check.changed.connect(self._show_advanced)
        self.start_button.clicked.connect(self.start)
        self.use_button.clicked.connect(self.use_trained_model)
        self.rollback_button.clicked.connect(self.use_selected_version)
        self.export_button.clicked.connect(self.choose_export_file)
        self.native.destroyed.connect(connect_model_list(self.refresh_models))
        self._on_base_changed(self.base_combo.value)
        join_organelle_tabs(self.native)

    # ------------------------------------------------------------------ state

    def refresh_models(self, _in_use: ModelInfo | None = None) -> None:
        """Look for models and versions again (after any dock trained or chose one)."""
        self.base_combo.reset_choices()
        self.versions_combo.reset_choices()

    def refresh_new_classes(self, _value: Any = None) -> None:
        """List the data's classes that the base model lacks, keeping the choices made."""
        previous = dict(self.new_class_rows)
        self.new_classes_box.clear()
        self.new_class_rows = {}
        info: ModelInfo | None = self.base_combo.value
        data = self._data_paths()
        found: list[DataClass] = []
        used: set[str] = set()
        if info is not None and data:
            try:
                card = ModelCard.load(Path(info.path) / CARD_FILE)
                found = new_classes(card, data)
            except OrganelleError as error:
                logger.info("new classes not listed: %s", error)
            else:
                used = {spec.color for spec in card.classes}
        for item in found:
            old = previous.get(item.name)
            row = NewClassRow(item, old.color_combo.value if old else _free_color(item.name, used))
            if old is not None:
                row.use_check.value = old.selected
                row.kind_combo.value = old.kind_combo.value
            used.add(row.color_combo.value)
            self.new_class_rows[item.name] = row
            self.new_classes_box.append(row)
        if not found:
            text = ("none: the training data has no class the base model lacks" if data else
                    "choose the training data first")
            self.new_classes_box.append(Label(value=text))

    def chosen_new_classes(self) -> list[ClassSpec]:
        """The new classes ticked under "New classes", with their kind and colour."""
        return [row.class_spec() for row in self.new_class_rows.values() if row.selected]

    def _data_paths(self) -> list[Path]:
        return [Path(p) for p in self.data_list.value if str(p) not in ("", ".")]

    # ------------------------------------------------------------------ running

    def settings(self) -> FinetuneSettings:
        """The run that Start would begin, checked without reading any image.

        Raises:
            InputError: no model, no data, or a bad name.
        """
        info: ModelInfo | None = self.base_combo.value
        if info is None:
            raise InputError("no base model: install one or train one from a recipe")
        data = self._data_paths()
        settings = FinetuneSettings(
            base=str(info.path), data=data, name=self.name_edit.value.strip(),
            add_classes=self.chosen_new_classes(),
            minutes=float(self.minutes_spin.value),
            iterations=int(self.max_steps_spin.value) or None,
            val_fraction=float(self.val_fraction_spin.value),
            replay=float(self.replay_spin.value),
            device=self.device_combo.value,
            # One core stays with the viewer, so it keeps responding on a small CPU.
            threads=max(1, (os.cpu_count() or 2) - 1),
            batch_size=int(self.batch_spin.value) or None,
            crop=int(self.crop_spin.value),
            validate_every=int(self.validate_every_spin.value) or None)
        settings.check()
        return settings

    def start(self) -> None:
        """Check the choices and start training in the background (the Start button)."""
        settings = None if self.running else self.controls.checked(self.settings, TASK)
        if settings is None:
            return
        self._settings = settings
        self.last_result = None
        self.use_button.enabled = False
        self.results_label.value = ""
        self.results_table.value = _empty_table()
        self.plot.reset(self._class_colors(settings))
        worker = self.controls.start(
            finetune_iter(settings), task=TASK, on_returned=self._show_result,
            on_finished=self._on_finished,
            cancelled_message="Cancelled: keeping the best model so far…")
        worker.yielded.connect(self._on_report)

    def _on_report(self, report: object) -> None:
        if isinstance(report, Progress) and report.data:
            self.plot.add(report.data)

    def _on_finished(self) -> None:
        """After a cancel, keep the best checkpoint as a version (main thread, a file copy)."""
        settings = self._settings
        if not self.controls.cancelled or settings is None:
            return
        work_dir = Path(settings.work_dir) if settings.work_dir else default_work_dir(
            settings.name)
        try:
            result = register_run(work_dir, "cancelled")
        except OrganelleError as error:  # cancelled before the run folder existed
            logger.info("nothing to keep after cancelling: %s", error)
            self.controls.set_status("Cancelled before training started: nothing was kept.")
            return
        self._show_result(result)

    def _show_result(self, result: FinetuneResult) -> None:
        """Fill the table and the versions list (main thread)."""
        self.last_result = result
        self.plot.redraw()
        model_list_events.changed.emit(None)  # refreshes this dock's lists too
        if result.version is None:
            self.controls.set_status(f"Training {result.stopped} before the first checkpoint: "
                                     "nothing was kept.")
            return
        self.results_table.value = _results_table(result)
        self._choose_version(result.version)
        self.use_button.enabled = True
        n_val = len(result.validation_images)
        summary = (f"on {n_val} held-out image{'s' if n_val != 1 else ''}" if n_val else
                   "no held-out images (3 or more images per source are needed)")
        notes = " ".join(f"Note: {note}." for note in result.notes)
        self.results_label.value = f"{result.version.full_name}, {summary}. {notes}".strip()
        self.controls.set_status(f"Kept {result.version.full_name} ({result.stopped}); "
                                 "'Use this model' makes it the one in use.")

    # ------------------------------------------------------------------ versions

    def use_trained_model(self) -> None:
        """Make the version just trained the one in use (the 'Use this model' button)."""
        result = self.last_result
        if result is None or result.version is None:
            return
        self._activate(result.version)

    def use_selected_version(self) -> None:
        """Make the version chosen in the versions list the one in use (rollback)."""
        info = self.versions_combo.value
        if info is None:
            self.controls.report_error("no version chosen")
            return
        self._activate(info)

    def choose_export_file(self) -> None:
        """Ask where to write the chosen version for bioimage.io, then export it (the button)."""
        info = self.versions_combo.value
        if info is None:
            self.controls.report_error("no version chosen")
            return
        path = self._ask_save_path(Path.home() / f"{info.name}-{info.version}{BIOIMAGEIO_SUFFIX}")
        if path is not None:
            self.export_selected_version(path)

    def export_selected_version(self, path: str | os.PathLike) -> None:
        """Write the version chosen in the versions list as a bioimage.io zip at ``path``.

        Runs in the background with the dock's progress bar (not while training);
        the status line says where the zip went.

        Args:
            path: the zip (``.zip`` is added when missing).
        """
        info = self.versions_combo.value
        if info is None:
            self.controls.report_error("no version chosen")
            return
        if self.running:
            self.controls.report_error("wait until the running task ends (or cancel it)")
            return
        path = Path(path)
        if path.suffix.lower() != ".zip":
            path = path.with_name(path.name + ".zip")
        notes: list[str] = []

        def done(written: Path) -> None:
            extra = " ".join(f"Note: {note}." for note in notes)
            self.controls.set_status(f"Exported {info.full_name} for bioimage.io to "
                                     f"{written}. {extra}".strip())

        self.controls.start(export_bioimageio_iter(info.path, path, notes=notes),
                            task=EXPORT_TASK, on_returned=done)

    def _ask_save_path(self, suggested: Path) -> Path | None:
        """A file chosen in a save dialog, or None when cancelled (tests replace this)."""
        chosen, _ = QFileDialog.getSaveFileName(self.native, "Export for bioimage.io",
                                                str(suggested), "bioimage.io model (*.zip)")
        return Path(chosen) if chosen else None

    def _activate(self, info: ModelInfo) -> None:
        try:
            set_active(info.name, info.version)
        except OrganelleError as error:
            self.controls.report_error(str(error))
            return
        model_list_events.changed.emit(info)  # refreshes this dock's lists too
        self._choose_version(info)
        self.controls.set_status(f"{info.name} now means {info.full_name}.")

    def _choose_version(self, info: ModelInfo) -> None:
        found = _find(self.versions_combo.choices, info)
        if found is not None:
            self.versions_combo.value = found

    # ------------------------------------------------------------------ choices

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, ModelInfo]]:
        return [(f"{info.full_name} ({info.modality})", info) for info in list_models()]

    def _version_choices(self, _widget: Any = None) -> list[tuple[str, ModelInfo]]:
        name = self.name_edit.value.strip() if hasattr(self, "name_edit") else ""
        if not name:
            return []
        try:
            active = active_version(name).full_name
        except OrganelleError:
            return []
        return [(_version_label(info, info.full_name == active), info)
                for info in reversed(list_versions(name))]

    def _on_base_changed(self, info: ModelInfo | None) -> None:
        if info is None:
            self.refresh_new_classes()
            self.controls.set_status("No model installed: train one from a recipe first "
                                     "(napari-organelle train --recipe ...).")
            return
        if not self._name_edited:
            # Fine-tuning a lab's own model continues its versions; a bundled one
            # starts a lab copy, so the bundled model itself never changes.
            self.name_edit.changed.disconnect(self._on_name_edited)
            self.name_edit.value = f"{info.name}-lab" if info.bundled else info.name
            self.name_edit.changed.connect(self._on_name_edited)
        self.versions_combo.reset_choices()
        self.refresh_new_classes()
        self.controls.set_status(f"Fine-tunes {info.full_name} ({', '.join(info.classes)}).")

    def _on_name_edited(self, _value: str) -> None:
        self._name_edited = True
        self.versions_combo.reset_choices()

    def _show_advanced(self, shown: bool) -> None:
        for widget in self.advanced_widgets:
            widget.visible = bool(shown)

    def _class_colors(self, settings: FinetuneSettings) -> dict[str, str]:
        colors = {spec.name: spec.color for spec in settings.add_classes}
        try:
            card = ModelCard.load(Path(settings.base) / CARD_FILE)
            colors.update({spec.name: spec.color for spec in card.classes})
        except OrganelleError:
            pass
        return colors


# ---------------------------------------------------------------------- helpers


def _free_color(name: str, used: set[str]) -> str:
    """The organelle's usual colour, else the first offered colour no other class has."""
    usual = ORGANELLE_COLORS.get(name)
    if usual:
        return usual
    return next((color for _name, color in COLORS if color not in used), COLORS[0][1])


def _results_table(result: FinetuneResult) -> dict[str, Any]:
    """Rows per class: base and new Dice on the validation images (and on base data)."""
    classes = result.card.class_names if result.card else sorted(result.after)
    columns = ["base", "new", "change"]
    with_monitor = bool(result.monitor_after)
    if with_monitor:
        columns += ["base data: base", "base data: new"]
    rows, index = [], []
    for name in classes:
        before, after = result.before.get(name), result.after.get(name)
        if before is None and after is None and name not in result.monitor_after:
            continue
        row = [_fmt(before), _fmt(after),
               f"{after - before:+.3f}" if before is not None and after is not None else ""]
        if with_monitor:
            row += [_fmt(result.monitor_before.get(name)), _fmt(result.monitor_after.get(name))]
        rows.append(row)
        index.append(name)
    if not rows:
        return {"data": [["—"] * len(columns)], "index": ["no validation images"],
                "columns": columns}
    return {"data": rows, "index": index, "columns": columns}


def _empty_table() -> dict[str, Any]:
    return {"data": [], "index": [], "columns": ["base", "new", "change"]}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _version_label(info: ModelInfo, active: bool) -> str:
    when = info.created[:16].replace("T", " ") if info.created else ""
    origin = "bundled" if info.bundled else when
    return f"{info.full_name}  {origin}{'  (in use)' if active else ''}"


def _find(choices: tuple[Any, ...], info: ModelInfo) -> ModelInfo | None:
    return next((choice for choice in choices
                 if isinstance(choice, ModelInfo) and choice.full_name == info.full_name), None)


def _theme_colors(viewer: napari.viewer.Viewer) -> dict[str, str]:
    """The viewer theme's colours, so the plot matches the dock."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return {"background": theme.background.as_hex(), "text": theme.text.as_hex(),
                "grid": theme.primary.as_hex()}
    except (AttributeError, KeyError, ValueError):
        return {}
