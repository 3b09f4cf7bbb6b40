"""What an organelle generator returns, and the class names the project uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph import NetworkGraph

#: every ground-truth class the simulator makes, in display order
CLASS_NAMES: tuple[str, ...] = (
    "nuclei",
    "mitochondria",
    "er",
    "lysosomes",
    "lipid_droplets",
    "golgi",
    "cell_boundary",
)
#: classes labelled object by object (int32 instance labels)
INSTANCE_CLASSES: frozenset[str] = frozenset(
    {"nuclei", "mitochondria", "lysosomes", "lipid_droplets"}
)
#: classes labelled as one foreground (uint8 0/1 masks)
SEMANTIC_CLASSES: frozenset[str] = frozenset({"er", "golgi", "cell_boundary"})
#: classes with a centre-line graph in the truth
NETWORK_CLASSES: frozenset[str] = frozenset({"er", "mitochondria"})


@dataclass
class OrganelleGeometry:
    """Ground truth of one organelle class in one scene.

    Attributes:
        name: class name (one of :data:`CLASS_NAMES`).
        labels: on the world grid; int32 instance labels for instance classes,
            uint8 0/1 for semantic ones.
        density: float32 emission density on the fine grid: projected thickness
            of dye-filled volume in nm, times per-object brightness.
        graph: centre lines for network classes, else ``None``.
        truth: extra known quantities (e.g. ER sheet area) keyed by name.
    """

    name: str
    labels: np.ndarray
    density: np.ndarray
    graph: NetworkGraph | None = None
    truth: dict[str, Any] = field(default_factory=dict)
