"""Figures of measurement tables, built on :class:`matplotlib.figure.Figure` (no pyplot: safe
headless and in threads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import InputError

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["network_summary_figure", "size_histogram_figure"]


def size_histogram_figure(objects: pd.DataFrame, *, unit: str = "", bins: int = 30) -> Figure:
    """Histogram of object sizes, one panel per organelle.

    Args:
        objects: object table with an ``area`` or ``volume`` column and
            optionally an ``organelle`` column (one panel per value).
        unit: length unit for the axis label (e.g. ``"nm"``); sizes are in
            unit squared (cubed in 3-D).
        bins: histogram bins; sizes spanning more than a decade use
            logarithmic bins.

    Examples:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"organelle": ["mito"] * 3 + ["er"], "area": [1.0, 2.0, 2.5, 9.0]})
        >>> figure = size_histogram_figure(table, unit="um")
        >>> [axes.get_title() for axes in figure.axes]
        ['mito (n = 3)', 'er (n = 1)']
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    size = "area" if "area" in objects else "volume" if "volume" in objects else None
    if size is None:
        raise InputError("the object table has no 'area' or 'volume' column")
    groups = (list(objects.groupby("organelle", sort=False)) if "organelle" in objects
              else [("objects", objects)])
    groups = groups or [("objects", objects)]
    figure = Figure(figsize=(4.0 * len(groups), 3.2), layout="constrained")
    power = "²" if size == "area" else "³"
    for index, (name, table) in enumerate(groups):
        axes = figure.add_subplot(1, len(groups), index + 1)
        sizes = table[size].to_numpy(dtype=float)
        sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
        if len(sizes):
            edges: int | np.ndarray = bins
            if sizes.max() > 10 * sizes.min():
                edges = np.geomspace(sizes.min(), sizes.max(), bins + 1)
                axes.set_xscale("log")
            axes.hist(sizes, bins=edges, color="tab:blue", edgecolor="white", linewidth=0.5)
            if not isinstance(edges, np.ndarray):
                axes.ticklabel_format(axis="x", useOffset=False)
        else:
            axes.text(0.5, 0.5, "no objects", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(f"{name} (n = {len(sizes)})")
        axes.set_xlabel(f"{size} ({unit}{power})" if unit else f"{size} (pixels)")
        axes.set_ylabel("objects")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def network_summary_figure(networks: pd.DataFrame, *, unit: str = "") -> Figure:
    """Bar charts of network summaries: total length, branches, junctions, end points, mean
    branch length.

    Args:
        networks: one row per organelle (index: organelle name) with the
            columns of :attr:`~napari_organelle.analysis.networks.NetworkAnalysis.summary`.
        unit: length unit for the axis labels.

    Examples:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"total_length": [120.0], "n_branches": [12], "n_junctions": [4],
        ...                       "n_end_points": [8], "mean_branch_length": [10.0]}, index=["er"])
        >>> len(network_summary_figure(table, unit="um").axes)
        5
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    length_unit = f" ({unit})" if unit else " (pixels)"
    panels = {
        "total_length": "total length" + length_unit,
        "n_branches": "branches",
        "n_junctions": "junctions",
        "n_end_points": "end points",
        "mean_branch_length": "mean branch length" + length_unit,
    }
    panels = {column: title for column, title in panels.items() if column in networks}
    if not panels:
        raise InputError("the network table has none of the summary columns")
    figure = Figure(figsize=(2.6 * len(panels), 3.2), layout="constrained")
    names = [str(index) for index in networks.index]
    for index, (column, title) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1)
        axes.bar(names, networks[column].to_numpy(dtype=float), color="tab:green")
        axes.set_title(title, fontsize=10)
        axes.tick_params(axis="x", rotation=45)
        if column.startswith("n_"):
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure
