"""Ground-truth organelle generators behind one entry point.

:func:`generate_organelle` makes any class in
:data:`~napari_organelle.simulation.organelle.CLASS_NAMES` inside a
:class:`~napari_organelle.simulation.cells.CellLayout`. Each class has a
parameter dataclass with typical defaults and a ``random(rng)`` constructor
that spans the range seen across cell types and conditions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cells import CellLayout, CellParams, generate_cells, membrane_density, nucleus_density
from .er import ERParams, generate_er
from .golgi import GolgiParams, generate_golgi
from .grid import Grid
from .mitochondria import MitochondriaParams, generate_mitochondria
from .organelle import CLASS_NAMES, OrganelleGeometry
from .vesicles import (
    LipidDropletParams,
    LysosomeParams,
    generate_lipid_droplets,
    generate_lysosomes,
)

__all__ = [
    "PARAMETER_TYPES",
    "default_params",
    "generate_cells",
    "generate_organelle",
    "random_params",
]

#: parameter dataclass of each generator; nuclei and cell boundaries are shaped by "cells"
PARAMETER_TYPES: dict[str, type] = {
    "cells": CellParams,
    "mitochondria": MitochondriaParams,
    "er": ERParams,
    "lysosomes": LysosomeParams,
    "lipid_droplets": LipidDropletParams,
    "golgi": GolgiParams,
}

_GENERATORS = {
    "mitochondria": generate_mitochondria,
    "er": generate_er,
    "lysosomes": generate_lysosomes,
    "lipid_droplets": generate_lipid_droplets,
    "golgi": generate_golgi,
}


def default_params(name: str) -> Any:
    """Typical parameters for ``name`` (``None`` for classes shaped by the cell layout)."""
    kind = PARAMETER_TYPES.get(name)
    return kind() if kind is not None else None


def random_params(name: str, rng: np.random.Generator) -> Any:
    """Parameters for ``name`` drawn from their wide ranges (``None`` for layout-shaped classes)."""
    kind = PARAMETER_TYPES.get(name)
    return kind.random(rng) if kind is not None else None


def generate_organelle(
    name: str, rng: np.random.Generator, layout: CellLayout, fine: Grid, params: Any = None
) -> OrganelleGeometry:
    """Ground truth of one class: labels on ``layout.grid``, emission density on ``fine``.

    Args:
        name: a class from :data:`CLASS_NAMES`.
        rng: random source (use one per class to keep classes independent).
        layout: cells and nuclei to place the organelle in.
        fine: density grid; must cover the same area as ``layout.grid``.
        params: the class's parameter dataclass; defaults when ``None``.
    """
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown organelle {name!r}; expected one of {', '.join(CLASS_NAMES)}")
    if name == "nuclei":
        _, nuclei_fine = layout.label_cells_on(fine)
        return OrganelleGeometry(
            "nuclei", layout.nuclei.copy(), nucleus_density(rng, layout, fine, nuclei_fine)
        )
    if name == "cell_boundary":
        cells_fine, _ = layout.label_cells_on(fine)
        return OrganelleGeometry(
            "cell_boundary",
            layout.membrane.astype(np.uint8),
            membrane_density(rng, fine, cells_fine),
        )
    if params is None:
        params = default_params(name)
    return _GENERATORS[name](rng, layout, params, fine)
