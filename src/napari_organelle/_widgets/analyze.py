"""The Analyze dock widget: measure organelle Labels layers; tables, plots, skeletons and CSVs.

The widget gathers choices and shows results. It captures the chosen layers
(pixels, pixel size, unit) in an :class:`AnalysisPlan` and runs the core
pipeline, :func:`napari_organelle.analysis.measure_iter` (the one behind
``napari-organelle measure`` too), in a background thread; Export writes the
results with :func:`napari_organelle.analysis.write_measurements`, the files the
command line writes. The pipeline measures:

* **Morphology** of the chosen organelle layers, per object, per layer and,
  given a layer of cells, nuclei or cell boundaries, per cell
  (:func:`~napari_organelle.analysis.measure_morphology`,
  :func:`~napari_organelle.analysis.cell_regions`).
* **Networks** (skeleton, branches, junctions, end points) of tubular
  organelles such as ER and mitochondria
  (:func:`~napari_organelle.analysis.analyze_network`); the skeleton, its
  junctions and end points are added as layers over the organelle.
* **Contacts** of one organelle with another within a distance
  (:func:`~napari_organelle.analysis.measure_contacts`); the contact sites are
  added as a Labels layer.
* **Agreement** of two segmentations, layers or folders of TIFFs
  (:func:`~napari_organelle.analysis.compare_labels`,
  :func:`~napari_organelle.analysis.compare_folders`).

Every measure is in the physical unit of the layers' ``scale`` (µm for layers
made by this plugin), see :func:`layer_length_unit`. Results are shown as one
table at a time, one plot at a time, and written by Export CSV.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    Select,
    Table,
)
from napari.layers import Labels, Layer, Points
from qtpy.QtWidgets import QScrollArea, QSizePolicy

from ..errors import InputError, OrganelleError
from ..progress import Progress
from ._docks import join_organelle_tabs
from ._layers import (
    connect_layer_list,
    full_resolution_data,
    labels_layers,
    result_tag,
    spatial_transform,
    update_or_add_layer,
)
from ._messages import logger
from ._tasks import SingleTaskDock, TaskControls

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..analysis import CellKind, Measurements, NetworkAnalysis

__all__ = [
    "AnalysisPlan",
    "AnalyzeWidget",
    "LayerInput",
    "layer_length_unit",
]

TASK = "Analysis"

#: result tables, in the order the table selector offers them: key (a table of
#: :class:`~napari_organelle.analysis.Measurements`, and its CSV file name) ->
#: title in the selector
TABLE_TITLES: dict[str, str] = {
    "summary": "Summary per organelle",
    "objects": "Objects",
    "per_cell": "Per cell",
    "networks": "Networks",
    "network_components": "Connected networks",
    "branches": "Branches",
    "contacts": "Contacts",
    "contact_sites": "Contact sites",
    "contact_objects": "Objects in contact",
    "agreement": "Agreement",
    "agreement_per_image": "Agreement per image",
}

#: plots: key (also the PNG file name) -> title in the plot selector
PLOT_TITLES: dict[str, str] = {
    "object_sizes": "Object sizes",
    "networks": "Network summary",
    "agreement": "Agreement heatmap",
}

#: rows shown in the dock's table; filling a Qt table cell by cell takes about
#: a second per 30,000 cells, so longer tables are cut (Export CSV writes all)
MAX_TABLE_ROWS = 5000

#: resolution of the plots in the dock: a plot of 4 x 3 inches is 320 x 240 pixels
PLOT_DPI = 80

#: key in a result layer's tag naming what the Analyze widget made it from
MEASUREMENT_KEY = "measurement"

#: every column the object table can have: a layer's ``features`` made only of
#: these were written by an earlier run and may be replaced
_MORPHOLOGY_COLUMNS = frozenset({
    "index", "label", "centroid_0", "centroid_1", "centroid_2", "area", "volume", "perimeter",
    "surface_area", "equivalent_diameter", "major_axis_length", "minor_axis_length",
    "eccentricity", "solidity", "cell",
})

#: words in a layer's name or organelle class that suggest a tubular network
_NETWORK_WORDS = frozenset({"er", "reticulum", "sec61", "mito", "mitochondria", "mitochondrion",
                            "network", "tubules"})

#: words that suggest a layer holds cells, nuclei or cell boundaries
_CELL_WORDS: dict[CellKind, frozenset[str]] = {
    "labels": frozenset({"cells", "cell", "cytoplasm", "whole_cell"}),
    "nuclei": frozenset({"nuclei", "nucleus", "dapi", "hoechst", "nuclear"}),
    "boundaries": frozenset({"cell_boundary", "boundary", "boundaries", "membrane", "membranes",
                             "cellmask"}),
}


# ---------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LayerInput:
    """A Labels layer as captured in the main thread when Measure is clicked.

    Attributes:
        name: the layer's name (the ``organelle`` column of the tables).
        data: its full-resolution array (numpy or dask; not copied, read in
            the worker).
        scale: its pixel size per axis, in :attr:`unit`.
        unit: the length unit of ``scale`` (``"µm"``, ``"px"``...).
        transform: its placement in the world, given to the layers made from it.
        layer: the layer itself, for the main thread only (the worker never
            touches layers).
    """

    name: str
    data: Any
    scale: tuple[float, ...]
    unit: str
    transform: dict[str, Any]
    layer: Labels | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @classmethod
    def from_layer(cls, layer: Layer) -> LayerInput:
        """Capture ``layer``, refusing what the analysis cannot measure.

        Raises:
            InputError: the layer is not a Labels layer, or not 2-D/3-D.
        """
        if not isinstance(layer, Labels):
            kind = type(layer).__name__.lower()
            article = "an" if kind[0] in "aeiou" else "a"
            raise InputError(f"layer '{layer.name}' is {article} {kind} layer, not a Labels layer: "
                             "measurements need label images (segment it first, or right-click "
                             "it > Convert to Labels)")
        data = full_resolution_data(layer)
        if len(data.shape) not in (2, 3):
            raise InputError(f"layer '{layer.name}' is {len(data.shape)}-D {tuple(data.shape)}; "
                             "the analysis measures 2-D images and 3-D stacks")
        return cls(name=layer.name, data=data, scale=tuple(abs(float(s)) for s in layer.scale),
                   unit=layer_length_unit(layer), transform=spatial_transform(layer), layer=layer)


@dataclass(frozen=True)
class AnalysisPlan:
    """Everything a run needs, so the worker never reads the widgets or the viewer.

    :meth:`measurements` hands it to the core pipeline. Lengths
    (``grow_nuclei_by``, ``min_spur_length``, ``merge_junctions_within``,
    ``contact_distance``) are in the unit of the layers they apply to.

    Attributes:
        morphology: layers whose objects to measure.
        cells: optional layer for per-cell summaries of ``morphology``.
        cells_kind: what ``cells`` holds (see
            :data:`~napari_organelle.analysis.CellKind`).
        grow_nuclei_by: how far nuclei grow into cell territories.
        networks: layers to analyse as networks.
        min_spur_length: see :func:`~napari_organelle.analysis.analyze_network`.
        merge_junctions_within: see :func:`~napari_organelle.analysis.analyze_network`.
        contacts: organelles ``(A, B)`` whose contacts to measure (A's side), or None.
        contact_distance: contact distance between pixel centres.
        agreement: ``(proposal, corrected)`` layers to compare, or None.
        agreement_class: the class name of the compared layers (table row).
        agreement_folders: ``(proposal, corrected)`` folders of TIFFs, or None.
    """

    morphology: tuple[LayerInput, ...] = ()
    cells: LayerInput | None = None
    cells_kind: CellKind = "labels"
    grow_nuclei_by: float = 0.0
    networks: tuple[LayerInput, ...] = ()
    min_spur_length: float = 0.0
    merge_junctions_within: float = 0.0
    contacts: tuple[LayerInput, LayerInput] | None = None
    contact_distance: float = 0.0
    agreement: tuple[LayerInput, LayerInput] | None = None
    agreement_class: str = ""
    agreement_folders: tuple[Path, Path] | None = None

    @property
    def sources(self) -> dict[str, LayerInput]:
        """Every layer the plan reads (the cells layer aside), by name."""
        layers = (*self.morphology, *self.networks, *(self.contacts or ()),
                  *(self.agreement or ()))
        return {source.name: source for source in layers}

    def measurements(self) -> Generator[Progress, None, Measurements]:
        """The core pipeline for this plan (:func:`~napari_organelle.analysis.measure_iter`).

        Made in the main thread, run in the worker: the layers' pixels are read
        (a dask array computed) only when it first runs.
        """
        from ..analysis import measure_iter

        sources = self.sources
        cells: dict[str, Any] = {}
        if self.cells is not None:
            cells = {"cells": self.cells.data, "cells_kind": self.cells_kind,
                     "grow_nuclei_by": self.grow_nuclei_by, "cells_name": self.cells.name}
        contacts = [] if self.contacts is None else [(self.contacts[0].name,
                                                      self.contacts[1].name)]
        return measure_iter(
            {name: source.data for name, source in sources.items()},
            {name: source.scale for name, source in sources.items()},
            unit={name: source.unit for name, source in sources.items()},
            morphology=[source.name for source in self.morphology],
            networks=[source.name for source in self.networks],
            min_spur_length=self.min_spur_length,
            merge_junctions_within=self.merge_junctions_within,
            contacts=contacts,
            distance=self.contact_distance if contacts else None,
            agreement=None if self.agreement is None else (self.agreement[0].name,
                                                            self.agreement[1].name),
            agreement_class=self.agreement_class or None,
            agreement_folders=self.agreement_folders,
            **cells,
        )


def layer_length_unit(layer: Layer) -> str:
    """The length unit of a layer's ``scale``, as written in tables and labels.

    The unit napari records for the layer when it is a length (``µm``,
    ``nm``...). Otherwise ``µm`` when the layer is scaled, the convention of
    this plugin's readers and samples, and ``px`` when it is not (its scale is
    1 per axis: measures are in pixels).
    """
    try:
        unit = layer.units[-1]
        if dict(unit.dimensionality) == {"[length]": 1}:
            return format(unit, "~P")
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return "px" if np.allclose(layer.scale, 1.0) else "µm"


# ---------------------------------------------------------------------- widget


class AnalyzeWidget(SingleTaskDock, Container):
    """Measure organelle Labels layers: morphology, networks, contacts, agreement.

    Args:
        viewer: the napari viewer (napari passes it when it opens the widget).

    Attributes:
        viewer: the viewer.
        morphology_check: measure the size and shape of every object.
        morphology_layers: the organelle layers to measure (several may be chosen).
        cells_combo: optional layer of cells, nuclei or cell boundaries for
            per-cell summaries; value is a Labels layer or None.
        cells_kind_combo: what the cells layer holds (:data:`~napari_organelle.analysis.CellKind`).
        grow_spin: how far nuclei grow into cells (layer unit).
        network_check: analyse networks (skeletons).
        network_layers: the layers to analyse as networks (ER, mitochondria).
        min_spur_spin: skeleton spurs shorter than this are removed (layer unit).
        merge_junctions_spin: junctions closer than this count as one (layer unit).
        contacts_check: measure contacts between two organelles.
        contact_a_combo, contact_b_combo: organelles A and B (A's side is measured).
        distance_spin: contact distance between pixel centres (layer unit).
        agreement_check: compare two segmentations.
        agreement_source_combo: ``"layers"`` or ``"folders"``.
        proposal_combo, corrected_combo: the two Labels layers to compare.
        proposal_folder, corrected_folder: the two folders of label TIFFs to compare.
        controls: Measure/Cancel buttons, progress bar and status line.
        run_button, cancel_button, progress_bar, status_label: the controls' widgets.
        table_combo: which result table to show; value is a key of :data:`TABLE_TITLES`.
        table: the shown table (full precision, shown to 4 decimals; at most
            :data:`MAX_TABLE_ROWS` rows).
        table_note: units of the table and whether it was cut.
        plot_combo: which plot to show; value is a key of :data:`PLOT_TITLES`.
        plot_box: holds the plot's canvas, in a scroll area.
        results_box: the table, plot and export widgets, shown once there are results.
        canvas: the shown plot's matplotlib canvas, or None.
        export_folder: where Export CSV writes.
        export_button: writes every table (CSV) and plot (PNG) to :attr:`export_folder`.
        results: what the latest completed run measured, or None before.
        tables: the latest run's tables by key (a property; empty before).
        output_layers: the layers that run added or updated (skeletons,
            junctions, end points, contact sites).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.results: Measurements | None = None
        self.output_layers: list[Layer] = []
        self.canvas: Any = None
        self._figures: dict[str, Figure] = {}
        self._known_layers: set[int] = set()

        labels_choices = self._labels_choices
        self.morphology_check = CheckBox(
            name="morphology", text="Morphology (size and shape of each object)", value=True)
        self.morphology_layers = Select(
            name="morphology_layers", label="Organelles", choices=labels_choices,
            tooltip="The Labels layers whose objects to measure (Ctrl/Shift-click for several)")
        self.cells_combo = ComboBox(
            name="cells", label="Cells", choices=self._cells_choices,
            tooltip="Optional: a layer of cells, nuclei or cell boundaries, to summarize "
                    "each organelle per cell (an object belongs to the cell holding most of it)")
        self.cells_kind_combo = ComboBox(
            name="cells_kind", label="Cells layer holds",
            choices=[("cells (one label each)", "labels"), ("nuclei: grow into cells", "nuclei"),
                     ("cell boundaries (mask)", "boundaries")], value="labels",
            tooltip="Nuclei grow until they meet their neighbours or reach the distance below; "
                    "boundaries enclose cells (cells cut by the image edge are left out)")
        self.grow_spin = _length_spin("grow_nuclei", "Grow nuclei by", 10.0,
                                      "How far each nucleus grows into its cell")
        self.network_check = CheckBox(
            name="networks", text="Networks (skeleton, branches, junctions)", value=False)
        self.network_layers = Select(
            name="network_layers", label="Network layers", choices=labels_choices,
            tooltip="Tubular organelles to skeletonize, e.g. ER and mitochondria")
        self.min_spur_spin = _length_spin(
            "min_spur", "Remove spurs under", 0.0,
            "Skeleton side branches (end point to junction) shorter than this are removed "
            "before measuring; thinning blobby masks leaves such spurs. 0 keeps all")
        self.merge_junctions_spin = _length_spin(
            "merge_junctions", "Merge junctions within", 0.0,
            "Junctions joined by a branch at most this long count as one junction: thinning "
            "a tube often splits a junction in two, about a tube width apart")
        self.contacts_check = CheckBox(
            name="contacts", text="Contacts between two organelles", value=False)
        self.contact_a_combo = ComboBox(
            name="contact_a", label="Organelle A", choices=labels_choices,
            tooltip="Contacts are measured on A's side: A's pixels within the distance of B")
        self.contact_b_combo = ComboBox(name="contact_b", label="Organelle B",
                                        choices=labels_choices)
        self.distance_spin = _length_spin(
            "distance", "Contact distance", 0.1,
            "A pixel of A is in contact when its centre is at most this far from the centre "
            "of a pixel of B; 0 counts overlap only")
        self.agreement_check = CheckBox(
            name="agreement", text="Agreement (proposal vs corrected)", value=False)
        self.agreement_source_combo = ComboBox(
            name="agreement_source", label="Compare",
            choices=[("two Labels layers", "layers"), ("two folders of TIFFs", "folders")],
            value="layers")
        self.proposal_combo = ComboBox(
            name="proposal", label="Proposal", choices=labels_choices,
            tooltip="e.g. the model's segmentation")
        self.corrected_combo = ComboBox(
            name="corrected", label="Corrected", choices=labels_choices,
            tooltip="The reference, e.g. the segmentation after manual correction")
        self.proposal_folder = FileEdit(
            name="proposal_folder", label="Proposal folder", mode="d",
            tooltip="Label TIFFs; each is compared with the file of the same path in the "
                    "corrected folder, the class being its sub-folder or name")
        self.corrected_folder = FileEdit(name="corrected_folder", label="Corrected folder",
                                         mode="d")

        self.controls = TaskControls("Measure", run_tooltip="Measure what is ticked above")
        self.run_button = self.controls.run_button
        self.cancel_button = self.controls.cancel_button
        self.progress_bar = self.controls.progress_bar
        self.status_label = self.controls.status_label
        # two lines at least: a tall dock squeezes a word-wrapped label to less than its text
        lines = self.status_label.native.fontMetrics().lineSpacing()
        self.status_label.native.setMinimumHeight(2 * lines + 4)

        self.table_combo = ComboBox(name="table_choice", label="Table", choices=[],
                                    tooltip="The result table to show")
        self.table = Table(name="table")
        self.table.read_only = True
        self.table.native.setMinimumHeight(180)
        self.table_note = Label(name="table_note", value="")
        self.table_note.native.setWordWrap(True)
        self.plot_combo = ComboBox(name="plot_choice", label="Plot", choices=[])
        self.plot_box = Container(name="plot", labels=False)
        self.plot_box.margins = (0, 0, 0, 0)
        self._plot_scroll = QScrollArea()
        self._plot_scroll.setWidgetResizable(False)  # the plot keeps its size and scrolls
        # ... and does not widen the dock to its own width
        self._plot_scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.plot_box.native.layout().addWidget(self._plot_scroll)
        self.export_folder = FileEdit(
            name="export_folder", label="Export to", mode="d",
            tooltip="Folder for the CSV tables and PNG plots (made if missing; files of the "
                    "same name are replaced)")
        self.export_button = PushButton(name="export", text="Export CSV",
                                        tooltip="Write every result table as CSV and every plot "
                                                "as PNG")

        self._sections: dict[CheckBox, list[Any]] = {
            self.morphology_check: [self.morphology_layers, self.cells_combo],
            self.network_check: [self.network_layers, self.min_spur_spin,
                                 self.merge_junctions_spin],
            self.contacts_check: [self.contact_a_combo, self.contact_b_combo, self.distance_spin],
            self.agreement_check: [self.agreement_source_combo],
        }
        # The choices are one labelled form; the table and plot below it take the
        # dock's full width, so only their selectors are in labelled rows.
        form = Container(name="form", labels=True, widgets=[
            self.morphology_check, self.morphology_layers, self.cells_combo,
            self.cells_kind_combo, self.grow_spin,
            self.network_check, self.network_layers, self.min_spur_spin,
            self.merge_junctions_spin,
            self.contacts_check, self.contact_a_combo, self.contact_b_combo, self.distance_spin,
            self.agreement_check, self.agreement_source_combo, self.proposal_combo,
            self.corrected_combo, self.proposal_folder, self.corrected_folder,
        ])
        self._plot_row = _labelled_row(self.plot_combo)
        self.results_box = Container(name="results_view", labels=False, widgets=[
            _labelled_row(self.table_combo), self.table, self.table_note,
            self._plot_row, self.plot_box,
            _labelled_row(self.export_folder), self.export_button,
        ])
        for box in (form, self.results_box):
            box.margins = (0, 0, 0, 0)
        self.extend([form, self.controls, self.results_box])
        for selector in (self.morphology_layers, self.network_layers):
            selector.native.setMaximumHeight(90)

        for check in self._sections:
            check.changed.connect(self._show_sections)
        for widget in (self.cells_combo, self.cells_kind_combo, self.agreement_source_combo):
            widget.changed.connect(self._show_sections)
        self.cells_combo.changed.connect(self._guess_cells_kind)
        for widget in (self.cells_combo, self.network_layers, self.contact_a_combo):
            widget.changed.connect(self._show_units)
        self.table_combo.changed.connect(self._show_table)
        self.plot_combo.changed.connect(self._show_plot)
        self.run_button.clicked.connect(self.run)
        self.export_button.clicked.connect(self._on_export_clicked)
        self._disconnect_layers = connect_layer_list(viewer, self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect_layers)

        self._on_layers_changed()
        self._show_sections()
        self._show_results_view()
        join_organelle_tabs(self.native)

    # ------------------------------------------------------------------ state

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The latest run's tables, full precision, by key (empty before the first run)."""
        return self.results.tables() if self.results else {}

    # ------------------------------------------------------------------ layers

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        """Labels layers that can be measured: all but those this widget made."""
        return [(layer.name, layer) for layer in labels_layers(self.viewer)
                if not _is_output(layer)]

    def _cells_choices(self, _widget: Any = None) -> list[tuple[str, Labels | None]]:
        return [("none", None), *self._labels_choices()]

    def _on_layers_changed(self, _event: Any = None) -> None:
        """Refresh every layer list; pick sensible defaults for layers not seen before."""
        for widget in (self.morphology_layers, self.network_layers, self.cells_combo,
                       self.contact_a_combo, self.contact_b_combo, self.proposal_combo,
                       self.corrected_combo):
            widget.reset_choices()
        layers = [layer for _, layer in self._labels_choices()]
        new = [layer for layer in layers if id(layer) not in self._known_layers]
        self._known_layers = {id(layer) for layer in layers}
        if not new:
            return
        # New organelle layers are ticked for morphology, and networks for ER and
        # mitochondria; layers of cells or nuclei are left for the Cells choice.
        organelles = [layer for layer in new if _cell_kind_of(layer) is None]
        self.morphology_layers.value = [*self.morphology_layers.value, *organelles]
        tubular = [layer for layer in organelles if _words(layer) & _NETWORK_WORDS]
        self.network_layers.value = [*self.network_layers.value, *tubular]
        if len(layers) >= 2 and self.contact_a_combo.value is self.contact_b_combo.value:
            ranked = sorted(layers, key=lambda layer: not (_words(layer) & _NETWORK_WORDS))
            self.contact_a_combo.value, self.contact_b_combo.value = ranked[0], ranked[1]
        if len(layers) >= 2 and self.proposal_combo.value is self.corrected_combo.value:
            self.proposal_combo.value, self.corrected_combo.value = layers[1], layers[0]
        self._show_units()

    def _guess_cells_kind(self, layer: Labels | None) -> None:
        kind = _cell_kind_of(layer) if layer is not None else None
        if kind is not None:
            self.cells_kind_combo.value = kind

    # ------------------------------------------------------------------ layout

    def _show_sections(self, _value: Any = None) -> None:
        """Show the options of the ticked sections only."""
        for check, widgets in self._sections.items():
            for widget in widgets:
                widget.visible = bool(check.value)
        has_cells = bool(self.morphology_check.value) and self.cells_combo.value is not None
        self.cells_kind_combo.visible = has_cells
        self.grow_spin.visible = has_cells and self.cells_kind_combo.value == "nuclei"
        comparing = bool(self.agreement_check.value)
        folders = self.agreement_source_combo.value == "folders"
        for widget in (self.proposal_combo, self.corrected_combo):
            widget.visible = comparing and not folders
        for widget in (self.proposal_folder, self.corrected_folder):
            widget.visible = comparing and folders

    def _show_units(self, _value: Any = None) -> None:
        """Name the unit of each length setting after the layer it applies to."""
        def unit_of(layer: Layer | None) -> str:
            return layer_length_unit(layer) if layer is not None else "µm"

        networks = self.network_layers.value
        network_unit = unit_of(networks[0] if networks else None)
        self.grow_spin.label = f"Grow nuclei by ({unit_of(self.cells_combo.value)})"
        self.min_spur_spin.label = f"Remove spurs under ({network_unit})"
        self.merge_junctions_spin.label = f"Merge junctions within ({network_unit})"
        self.distance_spin.label = f"Contact distance ({unit_of(self.contact_a_combo.value)})"

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Check the choices and start measuring in the background (the Measure button)."""
        plan = None if self.running else self.controls.checked(self.plan, TASK)
        if plan is None:
            return
        self.controls.start(plan.measurements(), task=TASK,
                            on_returned=partial(self._show_results, plan),
                            cancelled_message="Cancelled: the results were not changed.")

    def plan(self) -> AnalysisPlan:
        """What Measure would do with the current choices, checked without reading pixels.

        Raises:
            InputError: no Labels layer, nothing chosen, layers that are not
                2-D/3-D labels, or layers to compare pixel by pixel (cells,
                contacts, agreement) that differ in shape or pixel size.
        """
        if not self._labels_choices() and not self._comparing_folders():
            raise InputError(_no_labels_message(self.viewer))
        options: dict[str, Any] = {}
        if self.morphology_check.value:
            chosen = self.morphology_layers.value
            if not chosen:
                raise InputError("choose the organelle layers to measure under Morphology")
            options["morphology"] = tuple(LayerInput.from_layer(layer) for layer in chosen)
            if self.cells_combo.value is not None:
                cells = LayerInput.from_layer(self.cells_combo.value)
                for source in options["morphology"]:
                    _check_same_grid(source, cells,
                                     second_role=f"the cells layer ('{cells.name}')")
                options.update(cells=cells, cells_kind=self.cells_kind_combo.value,
                               grow_nuclei_by=float(self.grow_spin.value))
        if self.network_check.value:
            chosen = self.network_layers.value
            if not chosen:
                raise InputError("choose the layers to analyse under Networks")
            options.update(networks=tuple(LayerInput.from_layer(layer) for layer in chosen),
                           min_spur_length=float(self.min_spur_spin.value),
                           merge_junctions_within=float(self.merge_junctions_spin.value))
        if self.contacts_check.value:
            first, second = self._pair(self.contact_a_combo.value, self.contact_b_combo.value,
                                       "Contacts", "organelle A", "organelle B")
            options.update(contacts=(first, second),
                           contact_distance=float(self.distance_spin.value))
        if self.agreement_check.value:
            if self._comparing_folders():
                options["agreement_folders"] = self._agreement_folders()
            else:
                proposal, corrected = self._pair(self.proposal_combo.value,
                                                 self.corrected_combo.value, "Agreement",
                                                 "the proposal", "the corrected layer")
                options.update(agreement=(proposal, corrected),
                               agreement_class=_class_name(proposal, corrected))
        if not options:
            raise InputError("nothing to measure: tick Morphology, Networks, Contacts or "
                             "Agreement")
        return AnalysisPlan(**options)

    def _comparing_folders(self) -> bool:
        return bool(self.agreement_check.value) and self.agreement_source_combo.value == "folders"

    def _pair(self, first: Layer | None, second: Layer | None, section: str, first_role: str,
              second_role: str) -> tuple[LayerInput, LayerInput]:
        """Two layers compared pixel by pixel: both chosen, different, on one pixel grid."""
        if first is None or second is None:
            raise InputError(f"choose {first_role} and {second_role} under {section}")
        if first is second:
            raise InputError(f"choose two different layers under {section}: '{first.name}' is "
                             "chosen twice")
        pair = LayerInput.from_layer(first), LayerInput.from_layer(second)
        _check_same_grid(pair[0], pair[1], f"{first_role} ('{first.name}')",
                         f"{second_role} ('{second.name}')")
        return pair

    def _agreement_folders(self) -> tuple[Path, Path]:
        folders = []
        for widget, role in ((self.proposal_folder, "proposal"),
                             (self.corrected_folder, "corrected")):
            folder = _chosen_path(widget)
            if folder is None:
                raise InputError(f"choose the {role} folder of label TIFFs")
            if not folder.is_dir():
                raise InputError(f"the {role} folder {folder} does not exist")
            folders.append(folder)
        return folders[0], folders[1]

    # ------------------------------------------------------------------ results

    def _show_results(self, plan: AnalysisPlan, results: Measurements) -> None:
        """Add the result layers, fill the table and plot selectors (main thread)."""
        self.results = results
        self._figures = {}
        layers: list[Layer] = []
        sources = plan.sources
        for name, network in results.network_analyses.items():
            layers.extend(self._show_network(sources[name], network))
        for (first, second), contact in results.contact_analyses.items():
            source = sources[first]
            layers.append(update_or_add_layer(
                self.viewer, Labels, contact.sites, name=f"{first}-{second} contact sites",
                tag={"source": source.name, MEASUREMENT_KEY: "contact_sites", "partner": second},
                transform=source.transform))
        self.output_layers = layers
        objects = results.objects
        if objects is not None:
            for source in plan.morphology:
                if source.layer is not None and source.layer in self.viewer.layers:
                    _attach_features(source.layer, objects[objects["organelle"] == source.name])

        for note in results.notes:
            self.controls.report_warning(note)
        self._show_results_view()
        self.controls.set_status(f"Done in {results.seconds:.1f} s: {_describe(results)}.")

    def _show_network(self, source: LayerInput, network: NetworkAnalysis) -> list[Layer]:
        """The skeleton as Labels (a label per network); junctions and end points as Points."""
        # Result layers are found again by their tag (source layer and measurement), so
        # running again updates them, moved to where the source is now, instead of piling up.
        shown = [update_or_add_layer(
            self.viewer, Labels, network.skeleton, name=f"{source.name} skeleton",
            tag={"source": source.name, MEASUREMENT_KEY: "skeleton"},
            transform=source.transform)]
        for measurement, points, colour in (("junctions", network.junctions, "red"),
                                            ("end_points", network.end_points, "yellow")):
            shown.append(update_or_add_layer(
                self.viewer, Points,
                np.asarray(points, dtype=float).reshape(-1, len(source.shape)),
                name=f"{source.name} {measurement.replace('_', ' ')}",
                tag={"source": source.name, MEASUREMENT_KEY: measurement},
                transform=source.transform,
                # sizes are in data pixels: a few pixels wide whatever the scale
                size=3, border_width=0, face_color=colour))
        return shown

    def _show_results_view(self) -> None:
        """Offer the latest run's tables and plots; hide the results part before any run."""
        tables = self.tables
        table_choices = [(title, key) for key, title in TABLE_TITLES.items() if key in tables]
        plot_choices = [(PLOT_TITLES[key], key) for key in self._plot_factories()]
        # filled with their signals blocked, then shown once each
        with self.table_combo.changed.blocked(), self.plot_combo.changed.blocked():
            self.table_combo.choices = table_choices
            self.plot_combo.choices = plot_choices
            if table_choices:
                self.table_combo.value = table_choices[0][1]
            if plot_choices:
                self.plot_combo.value = plot_choices[0][1]
        self.results_box.visible = bool(table_choices)
        self._plot_row.visible = self.plot_box.visible = bool(plot_choices)
        self._show_table(self.table_combo.value if table_choices else None)
        self._show_plot(self.plot_combo.value if plot_choices else None)

    def _show_table(self, key: str | None) -> None:
        table = self.tables.get(key) if key else None
        if table is None:
            self.table.value = None
            return
        shown = table.head(MAX_TABLE_ROWS)
        self.table.value = shown  # magicgui shows numbers to 4 decimals
        if key.startswith("agreement"):
            notes = ["Scores from 0 to 1; nan where undefined (e.g. nothing to find)."]
        else:
            notes = [_units_note(self.results.unit if self.results else "px")]
        if len(table) > len(shown):
            notes.append(f"Showing the first {len(shown):,} of {len(table):,} rows; Export CSV "
                         "writes them all.")
        self.table_note.value = " ".join(notes)

    def _plot_factories(self) -> dict[str, Callable[[], Figure]]:
        """How to draw each plot the latest run has data for (drawn when first shown)."""
        from ..analysis import measurement_figures

        return measurement_figures(self.results) if self.results is not None else {}

    def figure(self, key: str) -> Figure:
        """The plot ``key`` of the latest run (see :data:`PLOT_TITLES`), drawn once and kept.

        Raises:
            KeyError: the latest run has no data for that plot.
        """
        if key not in self._figures:
            self._figures[key] = self._plot_factories()[key]()
        return self._figures[key]

    def _show_plot(self, key: str | None) -> None:
        """Show plot ``key`` at its own size, scrolling when it is wider than the dock.

        Squeezed to the dock's width, a plot of several panels (one per
        organelle, five network measures) would be unreadable.
        """
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        if self.canvas is not None:
            self._plot_scroll.takeWidget()
            self.canvas.deleteLater()
            self.canvas = None
        if not key:
            return
        try:
            figure = self.figure(key)
        except OrganelleError as error:  # e.g. a table without the columns to plot
            self.controls.report_warning(str(error))
            return
        figure.set_dpi(PLOT_DPI)
        width, height = figure.get_size_inches() * PLOT_DPI
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setFixedSize(int(width), int(height))
        self._plot_scroll.setWidget(self.canvas)
        scrollbar = self._plot_scroll.horizontalScrollBar().sizeHint().height()
        self._plot_scroll.setFixedHeight(int(height) + scrollbar + 4)

    # ------------------------------------------------------------------ export

    def export(self, folder: str | Path | None = None) -> list[Path]:
        """Write every table of the latest run as CSV and every plot as PNG.

        The files of ``napari-organelle measure`` (``summary.csv``,
        ``objects.csv``, ``networks.csv``, ``object_sizes.png``...), written by
        the same :func:`~napari_organelle.analysis.write_measurements`.

        Args:
            folder: where to write (made if missing); default :attr:`export_folder`.

        Returns:
            The files written.

        Raises:
            InputError: nothing measured yet, or no folder chosen.
        """
        from ..analysis import write_measurements

        if self.results is None or not self.tables:
            raise InputError("nothing to export yet: measure first")
        target = Path(folder) if folder else _chosen_path(self.export_folder)
        if target is None:
            raise InputError("choose the folder to export to under 'Export to'")
        # the plots are drawn afresh: the shown ones have been resized to fit the dock
        return write_measurements(self.results, target)

    def _on_export_clicked(self) -> None:
        try:
            written = self.export()
        except OrganelleError as error:
            self.controls.report_error(str(error))
            return
        except OSError as error:
            self.controls.report_error(f"could not write the files: {error}")
            return
        self.controls.set_status(f"Wrote {len(written)} files to {written[0].parent}: "
                                 f"{', '.join(path.name for path in written)}.")


# ---------------------------------------------------------------------- helpers


def _labelled_row(widget: Any) -> Container:
    """``widget`` with its label, in a row of its own."""
    row = Container(labels=True, widgets=[widget])
    row.margins = (0, 0, 0, 0)
    return row


def _length_spin(name: str, label: str, value: float, tooltip: str) -> FloatSpinBox:
    """A spin box for a length in the layers' unit (named in the label by ``_show_units``)."""
    spin = FloatSpinBox(name=name, label=f"{label} (µm)", min=0.0, max=1e6, step=0.01,
                        value=value, tooltip=tooltip)
    spin.native.setDecimals(3)  # fluorescence pixels are ~0.05-0.2 µm
    return spin


def _check_same_grid(first: LayerInput, second: LayerInput, first_role: str | None = None,
                     second_role: str | None = None) -> None:
    """Refuse two layers compared pixel by pixel unless they share shape and pixel size."""
    first_role = first_role or f"'{first.name}'"
    second_role = second_role or f"'{second.name}'"
    if first.shape != second.shape:
        raise InputError(f"{first_role} and {second_role} differ in shape ({_shape(first.shape)} "
                         f"vs {_shape(second.shape)}): layers compared pixel by pixel must have "
                         "the same shape")
    if not np.allclose(first.scale, second.scale, rtol=1e-6):
        raise InputError(f"{first_role} and {second_role} differ in pixel size "
                         f"({_pixel_size(first)} vs {_pixel_size(second)}): layers compared pixel "
                         "by pixel must have the same pixel size")


def _pixel_size(source: LayerInput) -> str:
    return " x ".join(f"{size:g}" for size in source.scale) + f" {source.unit}"


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(size) for size in shape)


def _class_name(proposal: LayerInput, corrected: LayerInput) -> str:
    """The row name of a layer comparison: the organelle the layers were tagged with, or a name."""
    for source in (corrected, proposal):
        tag = result_tag(source.layer) if source.layer is not None else None
        if tag and isinstance(tag.get("class"), str):
            return tag["class"]
    return corrected.name


def _chosen_path(widget: FileEdit) -> Path | None:
    """The path typed or picked in a FileEdit, or None when it is blank."""
    text = widget.line_edit.value.strip()
    return Path(text).expanduser() if text else None


def _is_output(layer: Layer) -> bool:
    """The layer was made by this widget (a skeleton, contact sites...)."""
    tag = result_tag(layer)
    return bool(tag) and MEASUREMENT_KEY in tag


def _words(layer: Layer) -> set[str]:
    """Lower-case words of a layer's name and of the organelle it was segmented as."""
    tag = result_tag(layer) or {}
    text = f"{layer.name} {tag.get('class', '')}".lower()
    words = set(re.split(r"[^a-z0-9_]+", text))
    return words | {part for word in words for part in word.split("_")}


def _cell_kind_of(layer: Layer) -> CellKind | None:
    """What a layer's name or class says it holds: cells, nuclei, boundaries, or None."""
    words = _words(layer)
    for kind in ("boundaries", "nuclei", "labels"):
        if words & _CELL_WORDS[kind]:  # type: ignore[index]
            return kind  # type: ignore[return-value]
    return None


def _no_labels_message(viewer: napari.viewer.Viewer) -> str:
    others = [layer.name for layer in viewer.layers if not _is_output(layer)]
    if not others:
        return ("there are no Labels layers to measure: segment an image first (Segment "
                "widget) or open label images")
    listed = ", ".join(f"'{name}'" for name in others[:3])
    verb = "is not a Labels layer" if len(others) == 1 else "are not Labels layers"
    return (f"there are no Labels layers to measure ({listed} {verb}): segment an image first "
            "(Segment widget), or right-click a layer > Convert to Labels")


def _units_note(unit: str) -> str:
    if unit == "px":
        return "Lengths in pixels, areas in pixels² (volumes pixels³)."
    return f"Lengths in {unit}, areas in {unit}² (volumes {unit}³)."


def _attach_features(layer: Labels, objects: pd.DataFrame) -> None:
    """Give a measured layer its object table as ``features``: napari shows them under the cursor.

    Features the user (or another plugin) gave the layer are kept: only empty
    features, or ones an earlier run wrote, are replaced.
    """
    current = layer.features
    if len(current.columns) and not set(current.columns) <= _MORPHOLOGY_COLUMNS:
        logger.info("layer %r has its own features; the object table is not attached", layer.name)
        return
    features = objects.drop(columns="organelle").rename(columns={"label": "index"})
    layer.features = features.reset_index(drop=True)


def _describe(results: Measurements) -> str:
    """A few words about what was measured, for the status line (the tables say the rest)."""
    tables = results.tables()
    parts = []
    if "summary" in tables:
        parts.append(_count(tables["summary"]["n_objects"].sum(), "object"))
    if "networks" in tables:
        parts.append(_count(tables["networks"]["n_junctions"].sum(), "junction"))
    if "contacts" in tables:
        parts.append(_count(tables["contacts"]["n_sites"].sum(), "contact site"))
    if "agreement" in tables:
        dice = tables["agreement"]["dice"]
        parts.append(f"Dice {dice.iloc[0]:.3f}" if len(dice) == 1
                     else f"agreement of {_count(len(dice), 'class', 'classes')}")
    return "; ".join(parts) or "nothing measured"


def _count(number: float, singular: str, plural: str | None = None) -> str:
    number = int(number)
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"
