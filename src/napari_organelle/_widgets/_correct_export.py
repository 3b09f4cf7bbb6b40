"""The export panel of the Correct dock: the store's samples as an nnU-Net v2 or TIFF data set.

The export runs in a background thread (:class:`~._tasks.TaskControls`) and
reads the store by its path, so the dock stays responsive; excluded samples
and older versions are left out (see :mod:`napari_organelle.store.export`).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, LineEdit, SpinBox

from ..errors import InputError, OrganelleError
from ..progress import Progress
from ..store import ExportResult, export_nnunet, export_tiff
from ._correct_samples import StoreFolder
from ._tasks import TaskControls

__all__ = ["NNUNET", "TIFF", "ExportPanel"]

#: Export formats (values of ExportPanel.format_combo).
NNUNET = "nnunet"
TIFF = "tiff"


class ExportPanel(Container):
    """Export the store's current, non-excluded samples for training.

    Args:
        store: the store folder (shared with the rest of the dock).

    Attributes:
        store: the store folder.
        format_combo: :data:`NNUNET` or :data:`TIFF`.
        folder_edit: nnU-Net's raw folder, or the folder to put the TIFF data
            set in.
        dataset_name_edit: the data set's name (its folder for TIFF pairs).
        dataset_id_spin: the nnU-Net dataset ID; 0 picks the first free one
            from 500 (shown for nnU-Net only).
        licence_edit: the licence of the exported data.
        controls: Export/Cancel buttons, progress bar and status line.
        button: starts the export (``controls.run_button``).
        last_export: the result of the latest completed export, or None.
    """

    def __init__(self, store: StoreFolder) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self.store = store
        self.last_export: ExportResult | None = None
        self.format_combo = ComboBox(
            name="export_format", label="Format",
            choices=[("nnU-Net v2", NNUNET), ("TIFF pairs", TIFF)], value=NNUNET)
        self.folder_edit = FileEdit(
            name="export_folder", label="Output folder", mode="d", value="",
            tooltip="nnU-Net: its raw folder ($nnUNet_raw), the data set goes in "
                    "DatasetNNN_<name>; TIFF: the data set goes in <folder>/<name>")
        self.dataset_name_edit = LineEdit(name="dataset_name", label="Dataset name",
                                          value="Organelles")
        self.dataset_id_spin = SpinBox(name="dataset_id", label="Dataset ID", min=0, max=999,
                                       value=0, tooltip="nnU-Net dataset ID; 0 takes the first "
                                                        "free one from 500")
        self.licence_edit = LineEdit(name="licence", label="Licence", value="",
                                     tooltip="e.g. CC-BY-4.0; recorded in the dataset card")
        self.controls = TaskControls("Export", run_tooltip="Export the store's current, "
                                                           "non-excluded samples")
        self.button = self.controls.run_button
        options = Container(name="export_box", labels=True, widgets=[
            self.format_combo, self.folder_edit, self.dataset_name_edit,
            self.dataset_id_spin, self.licence_edit])
        self.extend([options, self.controls])

        self.format_combo.changed.connect(self._show_choices)
        self.button.clicked.connect(self.export)
        self._show_choices()

    @property
    def running(self) -> bool:
        """An export is in progress."""
        return self.controls.running

    def _show_choices(self, _value: object = None) -> None:
        self.dataset_id_spin.visible = self.format_combo.value == NNUNET

    def export(self) -> None:
        """Export the store's current, non-excluded samples in the background (Export button)."""
        if self.controls.running:
            return
        try:
            work, task = self._export_work()
        except OrganelleError as error:
            self.controls.report_error(str(error))
            return
        self.controls.start(work, task=task, on_returned=self._on_exported,
                            cancelled_message="Cancelled: nothing was exported.")

    def _export_work(self) -> tuple[Generator[Progress, None, ExportResult], str]:
        store = self.store.existing()
        folder_text = str(self.folder_edit.line_edit.value).strip()
        if not folder_text:
            raise InputError("choose the output folder for the export")
        folder = Path(folder_text).expanduser().absolute()
        name = str(self.dataset_name_edit.value).strip()
        licence = str(self.licence_edit.value).strip() or None
        if self.format_combo.value == NNUNET:
            dataset_id = int(self.dataset_id_spin.value) or None
            return (export_nnunet(store.path, folder, dataset_id=dataset_id, name=name,
                                  licence=licence), "nnU-Net export")
        if not name or Path(name).name != name or name in (".", ".."):
            raise InputError(f"the dataset name {name!r} must be a plain folder name")
        # The path, not the open store: the export reads it in its own thread.
        return export_tiff(store.path, folder / name, licence=licence), "TIFF export"

    def _on_exported(self, result: ExportResult) -> None:
        self.last_export = result
        skipped = (f"; {len(result.skipped)} sample(s) skipped (see dataset_card.md)"
                   if result.skipped else "")
        self.controls.set_status(f"Exported {result.cases} case(s) to {result.path}"
                                 f"{skipped}.")
