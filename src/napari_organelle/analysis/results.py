"""Write :class:`~napari_organelle.analysis.Measurements` to a folder: CSV tables and PNG plots.

:func:`write_measurements` is the one writer behind the Analyze dock's Export
and ``napari-organelle measure``, so both write the same files, named after the
tables (``summary.csv``, ``objects.csv``, ``per_cell.csv``, ``networks.csv``,
``network_components.csv``, ``branches.csv``, ``contacts.csv``,
``contact_sites.csv``, ``contact_objects.csv``, ``agreement.csv``,
``agreement_per_image.csv``) and plots (``object_sizes.png``,
``networks.png``, ``agreement.png``). :func:`measurement_figures` draws the
plots, for a GUI to show.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .agreement import agreement_heatmap
from .measurements import Measurements
from .plots import network_summary_figure, size_histogram_figure

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "PNG_DPI", "measurement_figures", "write_measurements"]

#: the plots, in the order they are shown and written (also their PNG file names)
PLOTS = ("object_sizes", "networks", "agreement")

#: resolution of the written plots
PNG_DPI = 120


def measurement_figures(result: Measurements) -> dict[str, Callable[[], Figure]]:
    """How to draw each plot ``result`` has data for, by name (see :data:`PLOTS`).

    A plot is drawn when its function is called, so a GUI draws only the one
    it shows.

    Examples:
        >>> import numpy as np
        >>> from napari_organelle.analysis import measure
        >>> mask = np.zeros((20, 20), np.uint8); mask[5, 2:18] = 1
        >>> figures = measurement_figures(measure({"er": mask}, networks=["er"]))
        >>> list(figures), len(figures["networks"]().axes)
        (['object_sizes', 'networks'], 5)
    """
    unit = "" if result.unit == "px" else result.unit
    figures: dict[str, Callable[[], Figure]] = {}
    if result.objects is not None:
        figures["object_sizes"] = partial(size_histogram_figure, result.objects, unit=unit)
    if result.networks is not None:
        figures["networks"] = partial(network_summary_figure, result.networks, unit=unit)
    if result.agreement is not None:
        title = ("Agreement (proposal vs corrected)" if result.compared is None
                 else f"Agreement: {result.compared[0]} vs {result.compared[1]}")
        figures["agreement"] = partial(agreement_heatmap, result.agreement, title=title)
    return figures


def write_measurements(result: Measurements, folder: str | Path, *, plots: bool = True
                       ) -> list[Path]:
    """Write every table of ``result`` as CSV and, with ``plots``, every plot as PNG.

    Tables are written in full precision, with their index when it is named
    (``organelle``, ``class``); files of the same name are replaced.

    Args:
        result: what :func:`~napari_organelle.analysis.measure_iter` measured.
        folder: where to write (made if missing).
        plots: also draw and write the plots.

    Returns:
        The files written: tables in the order of
        :data:`~napari_organelle.analysis.measurements.TABLES`, then plots.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from napari_organelle.analysis import measure
        >>> mito = np.zeros((20, 20), np.uint8); mito[2:6, 2:6] = 1
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     written = write_measurements(measure({"mito": mito}, 5.0, unit="nm"), folder)
        ...     print(open(f"{folder}/summary.csv").read().splitlines()[1][:22])
        mito,nm,1,400.0,0.04,4
        >>> [path.name for path in written]
        ['summary.csv', 'objects.csv', 'object_sizes.png']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, table in result.tables().items():
        path = folder / f"{key}.csv"
        table.to_csv(path, index=table.index.name is not None)
        written.append(path)
    if plots:
        for key, draw in measurement_figures(result).items():
            path = folder / f"{key}.png"
            draw().savefig(path, dpi=PNG_DPI)
            written.append(path)
    return written
