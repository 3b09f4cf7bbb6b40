"""A live plot of a training run for the Train dock: loss, and validation Dice per class.

It is fed the ``data`` of the training progress reports (see
:func:`napari_organelle.training.trainer.train_iter`) in the main thread and
redraws at most every :data:`REDRAW_SECONDS`, and at every validation, so a
fast GPU run does not spend its time drawing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

__all__ = ["REDRAW_SECONDS", "TrainingPlot"]

#: Shortest time between two redraws for loss updates alone.
REDRAW_SECONDS = 1.0


class TrainingPlot:
    """Training loss (top) and validation Dice per class (bottom) against the step.

    Dashed lines are the base model's Dice on the same validation images;
    dotted lines are Dice on held-out images of the base model's own training
    data (with replay), where a drop means forgetting.

    Args:
        colors: background, axes and text colours (napari theme).

    Attributes:
        canvas: the Qt widget to put in a layout.
        loss: ``(step, loss)`` points so far.
        dice: per class, ``(step, Dice)`` at each validation.
        monitor: per class, ``(step, Dice)`` on the base model's data.
        before: per class, the base model's Dice.
        draws: how many times the figure was drawn (for tests and throttling).
    """

    def __init__(self, colors: Mapping[str, str] | None = None) -> None:
        self.colors = {"background": "#262930", "text": "#f0f1f2", "grid": "#414851",
                       **(colors or {})}
        self.figure = Figure(figsize=(4.2, 3.8), facecolor=self.colors["background"],
                             layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(260)
        self.loss_axes, self.dice_axes = self.figure.subplots(2, 1, sharex=True)
        self.loss: list[tuple[int, float]] = []
        self.dice: dict[str, list[tuple[int, float]]] = {}
        self.monitor: dict[str, list[tuple[int, float]]] = {}
        self.before: dict[str, float] = {}
        self.class_colors: dict[str, str] = {}
        self.draws = 0
        self._last_draw = 0.0
        self.reset({})

    def reset(self, class_colors: Mapping[str, str]) -> None:
        """Forget the previous run; ``class_colors`` gives each class its line colour."""
        self.class_colors = dict(class_colors)
        self.loss, self.dice, self.monitor, self.before = [], {}, {}, {}
        self.redraw()

    def add(self, data: Mapping[str, Any]) -> None:
        """Take one training report's ``data`` and redraw if it is time."""
        if "before" in data:
            self.before = _finite(data["before"])
            self.redraw()
            return
        if "loss" not in data:
            return
        step = int(data["step"])
        self.loss.append((step, float(data["loss"])))
        validated = False
        for key, series in (("val", self.dice), ("monitor", self.monitor)):
            for name, value in _finite(data.get(key, {})).items():
                series.setdefault(name, []).append((step, value))
                validated = True
        if validated or time.monotonic() - self._last_draw >= REDRAW_SECONDS:
            self.redraw()

    def redraw(self) -> None:
        """Draw everything again (cheap: a few hundred points)."""
        loss_axes, dice_axes = self.loss_axes, self.dice_axes
        for axes in (loss_axes, dice_axes):
            axes.clear()
            self._style(axes)
        loss_axes.set_ylabel("training loss")
        if self.loss:
            steps, values = zip(*self.loss, strict=True)
            loss_axes.plot(steps, values, color=self.colors["text"], linewidth=1.2)
        dice_axes.set_ylabel("validation Dice")
        dice_axes.set_xlabel("step")
        dice_axes.set_ylim(0, 1)
        for name, points in self.dice.items():
            steps, values = zip(*points, strict=True)
            dice_axes.plot(steps, values, marker="o", markersize=3, linewidth=1.5,
                           color=self._color(name), label=name)
        for name, value in self.before.items():
            dice_axes.axhline(value, linestyle="--", linewidth=1, color=self._color(name),
                              alpha=0.8)
        for name, points in self.monitor.items():
            steps, values = zip(*points, strict=True)
            dice_axes.plot(steps, values, linestyle=":", linewidth=1.2, color=self._color(name))
        if self.dice or self.monitor:
            handles, labels = dice_axes.get_legend_handles_labels()
            legend = dice_axes.legend(handles, labels, loc="best", fontsize=7,
                                      frameon=False, labelcolor=self.colors["text"])
            legend.set_title("dashed: base model" + ("; dotted: base data" if self.monitor
                                                     else ""),
                             prop={"size": 7})
            legend.get_title().set_color(self.colors["text"])
        self.canvas.draw_idle()
        self.draws += 1
        self._last_draw = time.monotonic()

    def _style(self, axes: Any) -> None:
        axes.set_facecolor(self.colors["background"])
        axes.tick_params(colors=self.colors["text"], labelsize=7)
        axes.yaxis.label.set_color(self.colors["text"])
        axes.xaxis.label.set_color(self.colors["text"])
        axes.yaxis.label.set_size(8)
        axes.xaxis.label.set_size(8)
        axes.grid(True, color=self.colors["grid"], linewidth=0.5)
        for spine in axes.spines.values():
            spine.set_color(self.colors["grid"])

    def _color(self, name: str) -> str:
        return self.class_colors.get(name, self.colors["text"])


def _finite(scores: Mapping[str, Any]) -> dict[str, float]:
    """Scores that are numbers (NaN means the class is not in the validation images)."""
    return {name: float(value) for name, value in scores.items()
            if isinstance(value, (int, float)) and not math.isnan(value)}
