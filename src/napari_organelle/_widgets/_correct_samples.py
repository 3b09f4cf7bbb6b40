"""The samples panel of the Correct dock: the store's samples in a table; load, exclude, restore.

:class:`StoreFolder` is the training store in the folder the dock names,
read lazily and never created by reading; the samples panel and the export
panel share one. :class:`SamplesPanel` lists the store's samples, loads any of
them back into the viewer (its image, one layer per class, and the pixels that
were not reviewed), and excludes or restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, Table
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

from ..errors import OrganelleError, StoreError
from ..models import ClassSpec
from ..store import Provenance, SampleRecord, TrainingStore
from ..store.layout import STORE_FILE
from . import _messages
from ._correct_plan import NOT_REVIEWED_ROLE
from ._layers import labels_colormap, update_or_add_layer
from ._messages import describe_error, logger, sentence

if TYPE_CHECKING:
    from pathlib import Path

    import napari

__all__ = [
    "SAMPLE_COLUMNS",
    "SHOW_ALL",
    "SHOW_CURRENT",
    "SHOW_EXCLUDED",
    "SamplesPanel",
    "StoreFolder",
    "table_row",
]

# Which samples the table lists (values of SamplesPanel.show_combo).
SHOW_CURRENT = "current versions"
SHOW_EXCLUDED = "current versions and excluded"
SHOW_ALL = "all versions"

SAMPLE_COLUMNS = ("sample", "version", "source", "plane", "crop", "classes", "annotator",
                  "saved", "excluded")


class StoreFolder:
    """The training store in the folder the dock names; reading it never creates it.

    Args:
        path: gives the chosen folder (read each time: the annotator may
            change it).
    """

    def __init__(self, path: Callable[[], Path]) -> None:
        self._path = path
        self._store: TrainingStore | None = None

    @property
    def path(self) -> Path:
        """The chosen store folder."""
        return self._path()

    def open(self) -> TrainingStore | None:
        """The training store in the folder, or None if there is none yet.

        Raises:
            StoreError: the folder holds a damaged store, one written by a newer
                napari-organelle, or something that is not a store.
        """
        path = self.path
        if not (path / STORE_FILE).is_file():
            self._store = None
            if path.is_dir() and any(path.iterdir()):
                raise StoreError(f"{path} is not a training store (it has no {STORE_FILE}) "
                                 "and is not empty; pick an empty folder or an existing store")
            return None
        if self._store is None or self._store.path != path:
            self._store = None
            self._store = TrainingStore(path)
        return self._store

    def existing(self) -> TrainingStore:
        """The training store in the folder.

        Raises:
            StoreError: there is none yet, or it cannot be read.
        """
        store = self.open()
        if store is None:
            raise StoreError(f"there is no training store at {self.path} yet: save "
                             "corrections first, or choose the store folder")
        return store


class SamplesPanel(Container):
    """The store's samples, one table row each, and the buttons that act on the selected ones.

    Args:
        viewer: the viewer samples are loaded into.
        store: the store folder (shared with the rest of the dock).
        on_loaded: called with a loaded sample's image layer (the dock then
            makes it the corrected image).

    Attributes:
        viewer: the viewer.
        store: the store folder.
        show_combo: which samples the table lists.
        table: the store's samples, one row each.
        load_button, exclude_button, restore_button, refresh_button: act on
            the selected samples (refresh re-reads the store).
        exclude_reason_edit: why samples are excluded (recorded in the store).
        status: the outcome of the latest listing, load, exclude or restore.
        sample_ids: the sample id of each row of the table.
    """

    def __init__(self, viewer: napari.viewer.Viewer, store: StoreFolder,
                 on_loaded: Callable[[Image], Any] | None = None) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self.viewer = viewer
        self.store = store
        self.sample_ids: list[str] = []
        self._on_loaded = on_loaded

        self.show_combo = ComboBox(name="show", label="Show",
                                   choices=[SHOW_CURRENT, SHOW_EXCLUDED, SHOW_ALL],
                                   value=SHOW_CURRENT)
        self.exclude_reason_edit = LineEdit(name="exclude_reason", label="Exclude reason",
                                            value="", tooltip="Optional; kept in the store")
        self.table = Table(name="samples",
                           value={"data": [], "index": [], "columns": SAMPLE_COLUMNS})
        self.table.read_only = True
        table = self.table.native
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setMinimumHeight(120)
        # The table takes only the height left over, so on a short screen it shrinks
        # rather than squeezing the wrapped status lines.
        table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.load_button = PushButton(name="load", text="Load",
                                      tooltip="Add the selected samples to the viewer")
        self.exclude_button = PushButton(name="exclude", text="Exclude",
                                         tooltip="Leave the selected samples out of training "
                                                 "(reversible: nothing is deleted)")
        self.restore_button = PushButton(name="restore", text="Restore",
                                         tooltip="Use excluded samples for training again")
        self.refresh_button = PushButton(name="refresh", text="Refresh",
                                         tooltip="Read the store again")
        self.status = Label(name="samples_status", value="")
        self.status.native.setWordWrap(True)
        # Qt sizes a wrapped label for one line when space is short; keep two.
        self.status.native.setMinimumHeight(
            2 * self.status.native.fontMetrics().lineSpacing() + 4)
        buttons = Container(layout="horizontal", labels=False, widgets=[
            self.load_button, self.exclude_button, self.restore_button, self.refresh_button])
        buttons.margins = (0, 0, 0, 0)
        options = Container(name="samples_box", labels=True,
                            widgets=[self.show_combo, self.exclude_reason_edit])
        self.extend([options, self.table, buttons, self.status])
        self.native.layout().setStretchFactor(table, 1)  # spare height goes to the table

        self.show_combo.changed.connect(self.refresh)
        self.load_button.clicked.connect(self.load_selected)
        self.exclude_button.clicked.connect(self.exclude_selected)
        self.restore_button.clicked.connect(self.restore_selected)
        self.refresh_button.clicked.connect(self.refresh)
        table.doubleClicked.connect(self._on_table_double_clicked)

    # ------------------------------------------------------------------ the table

    @property
    def selected_sample_ids(self) -> list[str]:
        """Ids of the samples selected in the table, top row first."""
        rows = sorted(index.row() for index in
                      self.table.native.selectionModel().selectedRows())
        return [self.sample_ids[row] for row in rows if row < len(self.sample_ids)]

    def select_samples(self, sample_ids: Sequence[str]) -> None:
        """Select these samples in the table (others are deselected)."""
        table = self.table.native
        table.clearSelection()
        mode = table.selectionMode()
        table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, sample_id in enumerate(self.sample_ids):
            if sample_id in sample_ids:
                table.selectRow(row)
        table.setSelectionMode(mode)

    def refresh(self, _value: Any = None) -> None:
        """List the store's samples in the table (the Refresh button)."""
        try:
            store = self.store.open()
            records = self._listed_records(store) if store is not None else []
        except OrganelleError as error:
            self._fill_table([])
            self.status.value = f"Error: {sentence(str(error))}"
            return
        self._fill_table(records)
        if store is None:
            self.status.value = (f"No training store at {self.store.path} yet: the first save "
                                 "creates it.")
        else:
            hidden = "" if self.show_combo.value != SHOW_CURRENT else " (excluded ones hidden)"
            count = f"{len(records)} sample{'s' if len(records) != 1 else ''}"
            self.status.value = f"{count} in the store{hidden}."

    def _listed_records(self, store: TrainingStore) -> list[SampleRecord]:
        choice = self.show_combo.value
        current = store.samples(include_excluded=choice != SHOW_CURRENT)
        if choice != SHOW_ALL:
            return current
        return [version for record in current for version in store.history(record.key)]

    def _fill_table(self, records: Sequence[SampleRecord]) -> None:
        self.sample_ids = [record.id for record in records]
        rows = [table_row(record) for record in records]
        self.table.value = {"data": rows, "index": list(range(1, len(rows) + 1)),
                            "columns": SAMPLE_COLUMNS}

    def _on_table_double_clicked(self, _index: Any) -> None:
        self.load_selected()

    # ------------------------------------------------------------------ actions

    def load_selected(self) -> None:
        """Add the selected samples to the viewer (the Load button)."""
        self._for_selected("load", self.load_sample)

    def exclude_selected(self) -> None:
        """Leave the selected samples out of training (the Exclude button)."""
        reason = str(self.exclude_reason_edit.value).strip()
        self._for_selected("exclude",
                           lambda sample_id: self.store.existing().exclude(sample_id, reason))

    def restore_selected(self) -> None:
        """Use the selected excluded samples for training again (the Restore button)."""
        self._for_selected("restore", lambda sample_id: self.store.existing().restore(sample_id))

    def _for_selected(self, action: str, act: Callable[[str], Any]) -> None:
        """Apply ``act`` to each selected sample; stop at the first error and report it."""
        ids = self.selected_sample_ids
        if not ids:
            self._report_error(f"select the sample(s) to {action} in the table first")
            return
        done: list[str] = []
        error_message = None
        try:
            for sample_id in ids:
                act(sample_id)
                done.append(sample_id)
        except OrganelleError as error:
            error_message = str(error)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            logger.exception("%s failed", action)
            error_message = describe_error(error, action.capitalize())
        if action != "load":
            self.refresh()
            self.select_samples(ids)
        if error_message is not None:
            self._report_error(error_message)
            return
        past = {"load": "Loaded", "exclude": "Excluded", "restore": "Restored"}[action]
        self.status.value = f"{past} {', '.join(done)}."

    def _report_error(self, message: str) -> None:
        message = sentence(message)
        _messages.show_error(message)
        self.status.value = f"Error: {message}"

    def load_sample(self, sample_id: str) -> list[Layer]:
        """Show a stored sample in the viewer: its image, one layer per class, what was not
        reviewed.

        The layers are tagged so that saving them again (after more
        corrections) makes a new version of the same sample, and pixels left
        in the 'not reviewed' layer stay ignored; erase parts of that layer
        to mark them reviewed. Loading a sample that is already shown puts
        the stored pixels back into its layers (the viewer's undo brings the
        edits back) rather than adding copies. The dock's ``on_loaded`` is
        then called with the image layer.

        Returns:
            The image layer, the class layers, and the 'not reviewed' layer
            when part of the sample was not reviewed.

        Raises:
            InputError: no sample has this id.
            StoreError: the store or the sample's files cannot be read.
        """
        store = self.store.existing()
        record = store.get(sample_id)
        image, labels, ignore, stored = store.load(sample_id)
        instances = store.load_instances(sample_id)
        provenance = Provenance.from_dict(stored)
        short = f"sample {sample_id}"
        metadata: dict[str, Any] = {}
        if provenance.pixel_size_nm is not None:
            metadata["pixel_size_nm"] = list(provenance.pixel_size_nm)
        modality = provenance.extra.get("modality")
        if isinstance(modality, str) and modality:
            metadata["modality"] = modality
        image_layer = update_or_add_layer(
            self.viewer, Image, image, name=short, match={"sample": sample_id},
            tag={"sample": sample_id, "provenance": provenance.to_dict()}, metadata=metadata)
        shown: list[Layer] = [image_layer]
        model = {"model": provenance.model} if provenance.model else {}
        for name in record.classes:
            objects = name in instances
            spec = ClassSpec(name, "instance" if objects else "semantic")
            colormap = labels_colormap(spec)
            layer = update_or_add_layer(
                self.viewer, Labels, instances[name] if objects else labels[name],
                name=f"{name} ({short})", match={"sample": sample_id, "class": name},
                tag={"source": image_layer.name, "class": name, "kind": spec.kind,
                     "sample": sample_id, **model},
                **({"colormap": colormap} if colormap is not None else {}))
            if not objects:
                layer.selected_label = 1  # painting then adds to the mask
            shown.append(layer)
        unreviewed = np.logical_or.reduce(list(ignore.values())) if ignore else None
        if unreviewed is not None and unreviewed.any():
            shown.append(update_or_add_layer(
                self.viewer, Labels, unreviewed.astype(np.uint8),
                name=f"not reviewed ({short})", match={"sample": sample_id,
                                                       "role": NOT_REVIEWED_ROLE},
                tag={"source": image_layer.name, "sample": sample_id, "role": NOT_REVIEWED_ROLE},
                opacity=0.5,
                colormap=DirectLabelColormap(color_dict={None: "gray", 0: "transparent"})))
        if self._on_loaded is not None:
            self._on_loaded(image_layer)
        return shown


def table_row(record: SampleRecord) -> list[str]:
    """The table's cells for one sample (the columns of :data:`SAMPLE_COLUMNS`)."""
    provenance = Provenance.from_dict(record.provenance)
    plane = ", ".join(str(i) for i in provenance.plane) or "-"
    crop = provenance.crop
    crop_text = "-" if not crop else f"{crop[0]}:{crop[2]}, {crop[1]}:{crop[3]}"
    return [record.id, str(record.version), provenance.source_name, plane, crop_text,
            ", ".join(record.classes), provenance.annotator or "",
            record.saved.replace("T", " ").replace("+00:00", " UTC"),
            "yes" if record.excluded else "no"]
