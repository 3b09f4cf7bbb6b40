"""Quantify segmented organelles: morphology, networks, contacts, agreement of segmentations.

Everything here works on plain NumPy label images or masks (2-D or 3-D) and a
per-axis pixel size ``scale`` (a napari layer's ``scale``), returns pandas
DataFrames in physical units, and imports neither Qt nor napari.
:func:`measure_iter` runs them all as one pipeline (the Analyze dock's and
``napari-organelle measure``'s), :func:`write_measurements` writes its results.

Examples:
    >>> import numpy as np
    >>> from napari_organelle.analysis import measure_morphology
    >>> labels = np.zeros((10, 10), np.uint8); labels[2:5, 2:5] = 1
    >>> measure_morphology(labels, scale=(0.1, 0.1)).objects["area"].round(4).tolist()
    [0.09]
"""

from __future__ import annotations

from .agreement import Agreement, agreement_heatmap, compare_folders, compare_labels
from .cells import CELL_KINDS, CellKind, cell_regions
from .contacts import ContactAnalysis, distance_to, measure_contacts
from .measurements import TABLES, Measurements, measure, measure_iter
from .morphology import (
    Morphology,
    measure_morphology,
    object_properties,
    summarize_by_cell,
    summarize_objects,
)
from .networks import NetworkAnalysis, analyze_network, skeletonize_mask
from .plots import network_summary_figure, size_histogram_figure
from .results import PLOTS, measurement_figures, write_measurements

__all__ = [
    "CELL_KINDS",
    "PLOTS",
    "TABLES",
    "Agreement",
    "CellKind",
    "ContactAnalysis",
    "Measurements",
    "Morphology",
    "NetworkAnalysis",
    "agreement_heatmap",
    "analyze_network",
    "cell_regions",
    "compare_folders",
    "compare_labels",
    "distance_to",
    "measure",
    "measure_contacts",
    "measure_iter",
    "measure_morphology",
    "measurement_figures",
    "network_summary_figure",
    "object_properties",
    "size_histogram_figure",
    "skeletonize_mask",
    "summarize_by_cell",
    "summarize_objects",
    "write_measurements",
]
