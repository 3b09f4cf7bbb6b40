"""Physics-based simulator of fluorescence (and EM-like) images of cells, with known ground truth.

Four uses:

* **Training data** for the fluorescence U-Net: :func:`training_sample`
  images one organelle class through a randomly drawn microscope
  (:meth:`MicroscopeSettings.random`) at a random pixel size.
* **Sample data** for napari: :func:`sample_live_cell` and :func:`sample_em_like`.
* **EM training data** with known masks: :func:`simulate_em` (neuropil) and
  :func:`simulate_em_cell` (cultured cells and hepatocytes under TEM, SBF-SEM or FIB-SEM
  contrast).
* **Known-truth tests** of measurements: :func:`simulate_cell` returns labels,
  centre-line graphs (:class:`NetworkGraph`) with their true lengths,
  junctions and end points, and organelle contact areas.

Geometry is generated in nanometres inside cells (:mod:`.cells`) by one
module per organelle (:mod:`.er`, :mod:`.mitochondria`, :mod:`.vesicles`,
:mod:`.golgi`), rendered by :mod:`.render` and imaged by :mod:`.microscope`.
Nothing here imports Qt or napari.
"""

from __future__ import annotations

from .cells import CellLayout, CellParams, StarShape, generate_cells
from .contacts import (
    DEFAULT_CONTACT_PAIRS,
    ContactStats,
    contact_mask,
    contact_stats,
    organelle_contacts,
)
from .em import SimulatedEM, simulate_em
from .em_cells import EM_CELL_CLASSES, SimulatedEMCell, simulate_em_cell
from .er import ERParams
from .geometry import PARAMETER_TYPES, default_params, generate_organelle, random_params
from .golgi import GolgiParams
from .graph import NetworkGraph, NetworkStats
from .grid import Grid
from .microscope import MODALITIES, Microscope, MicroscopeSettings, gaussian_psf, psf_sigma_nm
from .mitochondria import MitochondriaParams
from .organelle import (
    CLASS_NAMES,
    INSTANCE_CLASSES,
    NETWORK_CLASSES,
    SEMANTIC_CLASSES,
    OrganelleGeometry,
)
from .sample import LIVE_CELL_CHANNELS, sample_em_like, sample_live_cell
from .scene import (
    DYES,
    PIXEL_SIZE_RANGE,
    Dye,
    SimulatedCell,
    auto_oversample,
    simulate_cell,
    training_sample,
)
from .vesicles import LipidDropletParams, LysosomeParams

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_CONTACT_PAIRS",
    "DYES",
    "EM_CELL_CLASSES",
    "INSTANCE_CLASSES",
    "LIVE_CELL_CHANNELS",
    "MODALITIES",
    "NETWORK_CLASSES",
    "PARAMETER_TYPES",
    "PIXEL_SIZE_RANGE",
    "SEMANTIC_CLASSES",
    "CellLayout",
    "CellParams",
    "ContactStats",
    "Dye",
    "ERParams",
    "GolgiParams",
    "Grid",
    "LipidDropletParams",
    "LysosomeParams",
    "Microscope",
    "MicroscopeSettings",
    "MitochondriaParams",
    "NetworkGraph",
    "NetworkStats",
    "OrganelleGeometry",
    "SimulatedCell",
    "SimulatedEM",
    "SimulatedEMCell",
    "StarShape",
    "auto_oversample",
    "contact_mask",
    "contact_stats",
    "default_params",
    "gaussian_psf",
    "generate_cells",
    "generate_organelle",
    "organelle_contacts",
    "psf_sigma_nm",
    "random_params",
    "sample_em_like",
    "sample_live_cell",
    "simulate_cell",
    "simulate_em",
    "simulate_em_cell",
    "training_sample",
]
