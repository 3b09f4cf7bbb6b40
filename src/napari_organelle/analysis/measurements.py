"""Measure several organelle layers at once: morphology, networks and contacts, with progress.

:func:`measure_iter` is the long-running entry point shared by the plugin's
measurement widget and ``napari-organelle measure``: a generator that yields a
:class:`~napari_organelle.progress.Progress` after each step and returns the
:class:`Measurements`. :func:`measure` runs it to the end.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..progress import Progress, run
from ._common import Scale, as_labels, as_scale
from .contacts import measure_contacts
from .morphology import measure_morphology
from .networks import analyze_network

__all__ = ["Measurements", "measure", "measure_iter"]


@dataclass(frozen=True)
class Measurements:
    """Everything measured by :func:`measure_iter`; tables carry an ``organelle`` column or index.

    Attributes:
        objects: one row per object of every organelle.
        summary: one row per organelle (index ``organelle``).
        per_cell: one row per (organelle, cell), or None without cells.
        networks: one row per organelle analysed as a network (index
            ``organelle``), the columns of the network summary.
        network_components: one row per connected network.
        branches: one row per branch.
        contacts: one row per organelle pair (columns ``a``, ``b``, then the
            contact summary).
        skeletons: network label image per organelle analysed.
        contact_sites: contact-site label image per pair ``(a, b)``.
        unit: length unit of every physical measure (``"px"`` for pixels).
    """

    objects: pd.DataFrame
    summary: pd.DataFrame
    per_cell: pd.DataFrame | None = None
    networks: pd.DataFrame = field(default_factory=pd.DataFrame)
    network_components: pd.DataFrame = field(default_factory=pd.DataFrame)
    branches: pd.DataFrame = field(default_factory=pd.DataFrame)
    contacts: pd.DataFrame = field(default_factory=pd.DataFrame)
    skeletons: dict[str, NDArray[np.int32]] = field(default_factory=dict)
    contact_sites: dict[tuple[str, str], NDArray[np.int32]] = field(default_factory=dict)
    unit: str = "px"


def measure_iter(
    layers: Mapping[str, ArrayLike],
    scale: float | Scale | None = None,
    *,
    networks: Sequence[str] = (),
    contacts: Sequence[tuple[str, str]] = (),
    distance: float | None = None,
    cells: ArrayLike | None = None,
    unit: str | None = None,
    min_spur_length: float = 0.0,
    merge_junctions_within: float = 0.0,
) -> Generator[Progress, None, Measurements]:
    """Measure organelle layers step by step, yielding progress; returns :class:`Measurements`.

    Args:
        layers: organelle name -> label image or mask, all of one shape.
        scale: pixel size per axis (or one number); None = pixels.
        networks: organelles to analyse as networks (skeleton, branches, junctions).
        contacts: organelle pairs ``(a, b)`` whose contacts to measure (A's side).
        distance: contact distance in the units of ``scale`` (required with
            ``contacts``).
        cells: optional cell label image for per-cell summaries.
        unit: name of the length unit for the tables (default ``"px"``
            without a scale).
        min_spur_length: see :func:`~napari_organelle.analysis.analyze_network`.
        merge_junctions_within: see :func:`~napari_organelle.analysis.analyze_network`.

    Raises:
        InputError: for unknown organelle names, images of different shapes,
            or contacts without a distance.

    Examples:
        >>> import numpy as np
        >>> from napari_organelle.progress import run
        >>> mito = np.zeros((30, 30), np.uint8); mito[5:10, 5:20] = 1
        >>> er = np.zeros_like(mito); er[12, 2:28] = 1
        >>> steps = []
        >>> result = run(measure_iter({"mito": mito, "er": er}, 10.0, networks=["er"],
        ...                           contacts=[("er", "mito")], distance=30.0, unit="nm"),
        ...              on_progress=steps.append)
        >>> [step.message for step in steps]
        ['morphology of mito', 'morphology of er', 'network of er', 'contacts er-mito']
        >>> float(result.networks.loc["er", "total_length"]), int(result.contacts.loc[0, "n_sites"])
        (250.0, 1)
    """
    if not layers:
        raise InputError("there is nothing to measure: give at least one organelle layer")
    images = {name: as_labels(image, name=name) for name, image in layers.items()}
    shapes = {image.shape for image in images.values()}
    if len(shapes) > 1 and (networks or contacts or cells is not None):
        described = ", ".join(f"{name} {image.shape}" for name, image in images.items())
        raise InputError(f"the organelle layers differ in shape: {described}")
    _check_names("network", networks, images)
    for pair in contacts:
        if len(pair) != 2:
            raise InputError(f"a contact pair needs two organelles, not {pair!r}")
        _check_names("contact", pair, images)
    if contacts and distance is None:
        raise InputError("measuring contacts needs a contact distance")
    ndim = next(iter(images.values())).ndim
    spacing = as_scale(scale, ndim)
    unit = unit or ("px" if scale is None else "")

    total = len(images) + len(networks) + len(contacts)
    done = 0
    object_tables, summaries, cell_tables = [], [], []
    for name, image in images.items():
        morphology = measure_morphology(image, as_scale(scale, image.ndim), cells=cells)
        object_tables.append(morphology.objects.assign(organelle=name))
        summaries.append(morphology.summary.assign(organelle=name))
        if morphology.per_cell is not None:
            cell_tables.append(morphology.per_cell.reset_index().assign(organelle=name))
        done += 1
        yield Progress(done, total, f"morphology of {name}")

    network_rows, components, branches, skeletons = [], [], [], {}
    for name in networks:
        analysis = analyze_network(images[name], spacing, min_spur_length=min_spur_length,
                                   merge_junctions_within=merge_junctions_within)
        network_rows.append({"organelle": name, **analysis.summary})
        components.append(analysis.networks.reset_index().assign(organelle=name))
        branches.append(analysis.branches.assign(organelle=name))
        skeletons[name] = analysis.skeleton
        done += 1
        yield Progress(done, total, f"network of {name}")

    contact_rows, sites = [], {}
    for a, b in contacts:
        analysis = measure_contacts(images[a], images[b], float(distance), spacing)  # type: ignore[arg-type]
        contact_rows.append({"a": a, "b": b, **analysis.summary})
        sites[(a, b)] = analysis.sites
        done += 1
        yield Progress(done, total, f"contacts {a}-{b}")

    def first(column: str, tables: list[pd.DataFrame]) -> pd.DataFrame:
        if not tables:
            return pd.DataFrame()
        table = pd.concat(tables, ignore_index=True)
        return table[[column, *(c for c in table.columns if c != column)]]

    summary = first("organelle", summaries).set_index("organelle")
    summary.insert(0, "unit", unit)
    network_table = pd.DataFrame(network_rows)
    if len(network_table):
        network_table = network_table.set_index("organelle")
        network_table.insert(0, "unit", unit)
    contact_table = pd.DataFrame(contact_rows)
    if len(contact_table):
        contact_table.insert(2, "unit", unit)
    return Measurements(
        objects=first("organelle", object_tables),
        summary=summary,
        per_cell=first("organelle", cell_tables) if cell_tables else None,
        networks=network_table,
        network_components=first("organelle", components),
        branches=first("organelle", branches),
        contacts=contact_table,
        skeletons=skeletons,
        contact_sites=sites,
        unit=unit,
    )


def measure(layers: Mapping[str, ArrayLike], scale: float | Scale | None = None, **options) -> Measurements:
    """Run :func:`measure_iter` to the end (same arguments) and return its :class:`Measurements`."""
    return run(measure_iter(layers, scale, **options))


def _check_names(what: str, names: Sequence[str], images: Mapping[str, object]) -> None:
    unknown = [name for name in names if name not in images]
    if unknown:
        raise InputError(
            f"{what} organelle(s) {', '.join(map(repr, unknown))} not among the layers "
            f"({', '.join(map(repr, images))})"
        )
