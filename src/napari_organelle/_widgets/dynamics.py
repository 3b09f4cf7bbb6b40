"""Dynamics dock: track a label time-lapse, show tracks and fission/fusion events.

A small container (its own dock, and meant to be included as the Dynamics
section of the Analyze dock): choose a Labels layer ``(T, Y, X)`` or ``(T, Z,
Y, X)``, press Track, and it adds a Tracks layer (with the fission/fusion graph)
and a Points layer of events (magenta rings: fission; cyan: fusion), shows the
counts, and exports the tables as CSV. The work is the core's
:func:`napari_organelle.tracking.track_iter`, run by :class:`TaskControls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Labels

from ..errors import InputError
from ..tracking import TrackingResult, track_iter, write_tracking
from ..tracking.layers import layer_tuples
from ._tasks import SingleTaskDock, TaskControls


class DynamicsWidget(SingleTaskDock, Container):
    """Track organelles over time in a Labels layer.

    Args:
        viewer: the napari viewer.

    Attributes:
        labels_combo: the Labels layer to track (time is its first axis).
        max_distance_spin: largest jump of objects that do not overlap, in pixels.
        max_gap_spin: frames an object may be missing.
        min_overlap_spin: overlap share for a daughter (fission) or a fused object.
        frame_interval_spin: seconds between frames (0: speeds per frame).
        controls: Track/Cancel buttons, progress bar and status line.
        summary_label: counts of the latest run.
        export_folder, export_button: where and how to write the CSV tables.
        result: the latest :class:`~napari_organelle.tracking.TrackingResult`, or None.
        output_layers: the Tracks and Points layers of the latest run.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.result: TrackingResult | None = None
        self.output_layers: list[Any] = []
        self.labels_combo = ComboBox(label="labels (T, [Z,] Y, X)", choices=self._choices,
                                     nullable=True)
        self.max_distance_spin = FloatSpinBox(label="max jump (px)", value=10.0, min=0.0,
                                              max=10_000.0)
        self.max_gap_spin = SpinBox(label="max gap (frames)", value=2, min=0, max=100)
        self.min_overlap_spin = FloatSpinBox(label="event overlap", value=0.2, min=0.01,
                                             max=1.0, step=0.05)
        self.frame_interval_spin = FloatSpinBox(label="frame interval (s)", value=0.0, min=0.0,
                                                max=1e6, tooltip="0: unknown, speeds per frame")
        self.controls = TaskControls("Track", run_tooltip="link the objects frame to frame")
        self.summary_label = Label(value="")
        self.export_folder = FileEdit(label="export to", mode="d", value=Path.cwd() / "tracks")
        self.export_button = PushButton(text="Export CSV", enabled=False)
        options = Container(widgets=[self.labels_combo, self.max_distance_spin,
                                     self.max_gap_spin, self.min_overlap_spin,
                                     self.frame_interval_spin])
        self.extend([options, self.controls, self.summary_label, self.export_folder,
                     self.export_button])
        self.controls.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)

    def _choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Labels) and layer.ndim >= 3
                and layer not in self.output_layers]

    def _refresh(self, _event: Any = None) -> None:
        self.labels_combo.reset_choices()

    def run(self, _value: Any = None) -> None:
        """Start tracking the chosen layer in the background."""
        layer = self.labels_combo.value
        if layer is None:
            self.controls.report_error("choose a Labels layer whose first axis is time")
            return
        work = self.controls.checked(lambda: self._work(layer), "Tracking")
        if work is not None:
            self.controls.start(work, task="Tracking",
                                on_returned=lambda result: self._show(layer, result))

    def _work(self, layer: Labels):
        if layer.multiscale:
            raise InputError(f"'{layer.name}' is multiscale; track a single-resolution layer")
        spatial = tuple(float(s) for s in layer.scale[1:])
        scaled = not np.allclose(spatial, 1.0)
        interval = self.frame_interval_spin.value or None
        return track_iter(np.asarray(layer.data), max_distance=self.max_distance_spin.value,
                          max_gap=self.max_gap_spin.value,
                          min_overlap=self.min_overlap_spin.value,
                          scale=spatial if scaled else None, frame_interval=interval)

    def _show(self, layer: Labels, result: TrackingResult) -> None:
        for old in self.output_layers:
            if old in self.viewer.layers:
                self.viewer.layers.remove(old)
        self.output_layers = []
        for data, kwargs, kind in layer_tuples(result, name=layer.name, scale=layer.scale,
                                               translate=layer.translate):
            if kind == "points" and not len(data):
                continue
            add = self.viewer.add_tracks if kind == "tracks" else self.viewer.add_points
            self.output_layers.append(add(data, **kwargs))
        self.result = result
        self.export_button.enabled = True
        kinds = [event.kind for event in result.events]
        speed = result.track_table["mean_speed"].mean()
        self.summary_label.value = (
            f"{len(result.track_table)} tracks, {kinds.count('fission')} fission(s), "
            f"{kinds.count('fusion')} fusion(s); mean speed {speed:.3g} "
            f"{result.unit}/{result.time_unit}")
        self.controls.report_info("Tracking done.")

    def export(self, _value: Any = None) -> list[Path]:
        """Write the latest result's tables as CSV to :attr:`export_folder`."""
        if self.result is None:
            return []
        written = write_tracking(self.result, Path(self.export_folder.value))
        self.controls.report_info(f"Wrote {len(written)} CSV files to {self.export_folder.value}")
        return written
