"""The measurement pipeline: morphology, networks, contacts and agreement of organelle layers.

:func:`measure_iter` is the one pipeline behind the plugin's Analyze dock and
``napari-organelle measure``: a generator that yields a
:class:`~napari_organelle.progress.Progress` after each step and returns the
:class:`Measurements`. :func:`measure` runs it to the end;
:func:`~napari_organelle.analysis.results.write_measurements` writes its
tables and plots, for the dock's Export and the command line alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..progress import Progress, run
from ._common import Scale, as_labels, as_scale
from .agreement import compare_folders, compare_labels
from .cells import CellKind, cell_regions
from .contacts import ContactAnalysis, measure_contacts
from .morphology import measure_morphology
from .networks import NetworkAnalysis, analyze_network

__all__ = ["TABLES", "Measurements", "measure", "measure_iter"]

#: the result tables, in the order they are shown and written; each is also the
#: name of a :class:`Measurements` attribute and of its CSV file
TABLES = (
    "summary",
    "objects",
    "per_cell",
    "networks",
    "network_components",
    "branches",
    "contacts",
    "contact_sites",
    "contact_objects",
    "agreement",
    "agreement_per_image",
)


@dataclass(frozen=True)
class Measurements:
    """Everything :func:`measure_iter` measured; a table is None when its step did not run.

    Organelle tables carry an ``organelle`` column (``summary`` and
    ``networks``: index), contact tables ``a`` and ``b`` (the pair); lengths
    are in the unit named in the ``unit`` column of ``summary``, ``networks``
    and ``contacts``.

    Attributes:
        summary: one row per organelle measured (index ``organelle``).
        objects: one row per object of every organelle measured.
        per_cell: one row per (organelle, cell), when cells were given.
        networks: one row per organelle analysed as a network (index
            ``organelle``), the columns of the network summary.
        network_components: one row per connected network.
        branches: one row per branch.
        contacts: one row per organelle pair (columns ``a``, ``b``, ``unit``,
            then the contact summary).
        contact_sites: one row per contact site of every pair.
        contact_objects: one row per object of both organelles of every pair
            (``organelle`` says which), with its contact measures.
        agreement: scores of the comparison, one row per class (index
            ``class``).
        agreement_per_image: scores per (image, class), for folders.
        network_analyses: the full network analysis per organelle (skeleton
            image, junction and end-point coordinates).
        contact_analyses: the full contact analysis per pair ``(a, b)``
            (contact-site label image...).
        unit: length unit of the first organelle measured (``"px"`` for
            pixels), used by the plots.
        compared: names of the two segmentations compared (proposal,
            corrected), or None.
        notes: what the user should know (empty layers, cells not found,
            classes on one side only).
        seconds: how long the measurements took.
    """

    summary: pd.DataFrame | None = None
    objects: pd.DataFrame | None = None
    per_cell: pd.DataFrame | None = None
    networks: pd.DataFrame | None = None
    network_components: pd.DataFrame | None = None
    branches: pd.DataFrame | None = None
    contacts: pd.DataFrame | None = None
    contact_sites: pd.DataFrame | None = None
    contact_objects: pd.DataFrame | None = None
    agreement: pd.DataFrame | None = None
    agreement_per_image: pd.DataFrame | None = None
    network_analyses: dict[str, NetworkAnalysis] = field(default_factory=dict)
    contact_analyses: dict[tuple[str, str], ContactAnalysis] = field(default_factory=dict)
    unit: str = "px"
    compared: tuple[str, str] | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables that were measured, by name (see :data:`TABLES`), in that order."""
        tables = {key: getattr(self, key) for key in TABLES}
        return {key: table for key, table in tables.items() if table is not None}

    @property
    def skeletons(self) -> dict[str, NDArray[np.int32]]:
        """The skeleton label image of each organelle analysed as a network."""
        return {name: analysis.skeleton for name, analysis in self.network_analyses.items()}


def measure_iter(
    layers: Mapping[str, ArrayLike],
    scale: float | Scale | Mapping[str, float | Scale | None] | None = None,
    *,
    morphology: Sequence[str] | None = None,
    networks: Sequence[str] = (),
    contacts: Sequence[tuple[str, str]] = (),
    distance: float | None = None,
    cells: ArrayLike | None = None,
    cells_kind: CellKind = "labels",
    grow_nuclei_by: float = 0.0,
    cells_name: str | None = None,
    unit: str | Mapping[str, str] | None = None,
    min_spur_length: float = 0.0,
    merge_junctions_within: float = 0.0,
    agreement: tuple[str, str] | None = None,
    agreement_class: str | None = None,
    agreement_folders: tuple[str | Path, str | Path] | None = None,
) -> Generator[Progress, None, Measurements]:
    """Measure organelle layers step by step, yielding progress; returns :class:`Measurements`.

    One step per organelle measured, network, contact pair and comparison.
    Pixels are read (e.g. a dask array computed) when the generator first
    runs, so a GUI can build it in its main thread and run it in a worker.

    Args:
        layers: organelle name -> label image or mask. Layers compared pixel
            by pixel (a contact pair, the cells and the organelles measured
            per cell, an agreement pair) must share shape and pixel size.
        scale: pixel size per axis (or one number), for every layer or as a
            mapping organelle name -> pixel size; None = pixels.
        morphology: organelles whose objects to measure (default: every
            layer; ``()`` for none).
        networks: organelles to analyse as networks (skeleton, branches, junctions).
        contacts: organelle pairs ``(a, b)`` whose contacts to measure (A's side).
        distance: contact distance in the units of ``scale`` (required with
            ``contacts``).
        cells: optional image of cells, nuclei or cell boundaries, for
            per-cell summaries of ``morphology`` (see
            :func:`~napari_organelle.analysis.cell_regions`).
        cells_kind: what ``cells`` holds: ``"labels"``, ``"nuclei"`` or
            ``"boundaries"``.
        grow_nuclei_by: how far nuclei grow into cells, in the units of
            ``scale`` (with ``cells_kind="nuclei"``).
        cells_name: what to call the cells in notes and messages.
        unit: name of the length unit, for every layer or per organelle
            (default ``"px"`` without a scale).
        min_spur_length: see :func:`~napari_organelle.analysis.analyze_network`.
        merge_junctions_within: see :func:`~napari_organelle.analysis.analyze_network`.
        agreement: two layers ``(proposal, corrected)`` to compare
            (:func:`~napari_organelle.analysis.compare_labels`).
        agreement_class: the class (table row) of that comparison (default:
            the corrected layer's name).
        agreement_folders: instead, two folders of label TIFFs ``(proposal,
            corrected)`` to compare (:func:`~napari_organelle.analysis.compare_folders`).

    Raises:
        InputError: for nothing to measure, unknown organelle names, layers
            compared pixel by pixel that differ in shape or pixel size, images
            that are not labels, or contacts without a distance.

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
        >>> list(result.tables())
        ['summary', 'objects', 'networks', 'network_components', 'branches', 'contacts', \
'contact_sites', 'contact_objects']
    """
    started = time.perf_counter()
    morphology = list(layers) if morphology is None else list(morphology)
    networks = list(networks)
    pairs: list[tuple[str, str]] = []
    for pair in contacts:
        if isinstance(pair, str) or len(pair) != 2:
            raise InputError(f"a contact pair needs two organelles, not {pair!r}")
        pairs.append((pair[0], pair[1]))
    if not (morphology or networks or pairs or agreement or agreement_folders):
        raise InputError("there is nothing to measure: give at least one organelle layer")
    _check_names("morphology", morphology, layers)
    _check_names("network", networks, layers)
    for pair in pairs:
        _check_names("contact", pair, layers)
    if agreement is not None:
        if agreement_folders is not None:
            raise InputError("compare two layers or two folders, not both")
        if len(agreement) != 2:
            raise InputError(f"a comparison needs two segmentations, not {agreement!r}")
        _check_names("agreement", agreement, layers)
    if pairs and distance is None:
        raise InputError("measuring contacts needs a contact distance")

    measured = {*morphology, *networks, *(name for pair in pairs for name in pair)}
    used = measured | set(agreement or ())
    images: dict[str, NDArray[np.integer]] = {}
    arrays: dict[str, NDArray] = {}
    spacings: dict[str, tuple[float, ...]] = {}
    notes: list[str] = []
    for name in (name for name in layers if name in used):
        arrays[name] = np.asarray(layers[name])
        if name in measured:
            images[name] = as_labels(arrays[name], name=name)
            spacings[name] = as_scale(_scale_of(scale, name), images[name].ndim)
        if arrays[name].size and not arrays[name].any():
            notes.append(f"Layer '{name}' is empty (no labelled pixels): its measures are zero "
                         "or n/a.")
    for a, b in pairs:
        _check_same_grid(images, spacings, a, b)
    cell_image = None
    if cells is not None and morphology:
        described = f"the cells ('{cells_name}')" if cells_name else "the cells"
        cell_image = as_labels(cells, name=described)
        for name in morphology:
            _check_same_grid(images, spacings, name, described,
                             (cell_image.shape, spacings[morphology[0]]))
        cell_image = cell_regions(cell_image, cells_kind, spacings[morphology[0]], grow_nuclei_by)
        if not cell_image.any():
            notes.append(_no_cells_note(cells_name, cells_kind))
            cell_image = None

    def unit_of(name: str) -> str:
        if isinstance(unit, Mapping):
            if name in unit:
                return unit[name]
        elif unit:
            return unit
        return "px" if _scale_of(scale, name) is None else ""

    total = len(morphology) + len(networks) + len(pairs)
    total += int(agreement is not None or agreement_folders is not None)
    done = 0

    def step(message: str) -> Progress:
        nonlocal done
        done += 1
        return Progress(done, total, message)

    tables: dict[str, list[pd.DataFrame]] = {}

    def add(key: str, table: pd.DataFrame, *first: str) -> None:
        columns = [*first, *(column for column in table.columns if column not in first)]
        tables.setdefault(key, []).append(table[columns])

    for name in morphology:
        result = measure_morphology(images[name], spacings[name], cells=cell_image)
        add("objects", result.objects.assign(organelle=name), "organelle")
        add("summary", result.summary.assign(organelle=name, unit=unit_of(name)),
            "organelle", "unit")
        if result.per_cell is not None:
            add("per_cell", result.per_cell.reset_index().assign(organelle=name), "organelle")
        yield step(f"morphology of {name}")

    network_analyses = {}
    for name in networks:
        network = analyze_network(images[name], spacings[name], min_spur_length=min_spur_length,
                                  merge_junctions_within=merge_junctions_within)
        network_analyses[name] = network
        add("networks", pd.DataFrame([{"organelle": name, "unit": unit_of(name),
                                       **network.summary}]))
        add("network_components", network.networks.reset_index().assign(organelle=name),
            "organelle")
        add("branches", network.branches.assign(organelle=name), "organelle")
        yield step(f"network of {name}")

    contact_analyses = {}
    for a, b in pairs:
        contact = measure_contacts(images[a], images[b], float(distance),  # type: ignore[arg-type]
                                   spacings[a])
        contact_analyses[(a, b)] = contact
        add("contacts", pd.DataFrame([{"a": a, "b": b, "unit": unit_of(a), **contact.summary}]))
        add("contact_sites", contact.site_table.reset_index().assign(a=a, b=b), "a", "b")
        for side, objects in ((a, contact.objects_a), (b, contact.objects_b)):
            add("contact_objects", objects.assign(a=a, b=b, organelle=side), "a", "b", "organelle")
        yield step(f"contacts {a}-{b}")

    compared = None
    if agreement is not None:
        proposal, corrected = agreement
        class_name = agreement_class or corrected
        scores = compare_labels({class_name: arrays[proposal]}, {class_name: arrays[corrected]})
        tables["agreement"] = [scores.table]
        notes.extend(scores.notes)
        compared = (proposal, corrected)
        yield step(f"agreement of {proposal} and {corrected}")
    elif agreement_folders is not None:
        folders = (Path(agreement_folders[0]), Path(agreement_folders[1]))
        scores = compare_folders(*folders)
        tables["agreement"] = [scores.table]
        tables["agreement_per_image"] = [scores.per_image]
        notes.extend(scores.notes)
        compared = (folders[0].name, folders[1].name)
        yield step("agreement of the folders")

    joined = {key: parts[0] if len(parts) == 1 and key.startswith("agreement")
              else pd.concat(parts, ignore_index=True) for key, parts in tables.items()}
    for key in ("summary", "networks"):
        if key in joined:
            joined[key] = joined[key].set_index("organelle")
    first = next(iter([*morphology, *networks, *(a for a, _ in pairs)]), None)
    return Measurements(
        **joined,
        network_analyses=network_analyses,
        contact_analyses=contact_analyses,
        unit=unit_of(first) if first is not None else "px",
        compared=compared,
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
    )


def measure(
    layers: Mapping[str, ArrayLike],
    scale: float | Scale | Mapping[str, float | Scale | None] | None = None,
    **options: Any,
) -> Measurements:
    """Run :func:`measure_iter` to the end (same arguments) and return its :class:`Measurements`.

    Examples:
        >>> import numpy as np
        >>> lysosomes = np.zeros((20, 20), np.uint8); lysosomes[2:6, 2:6] = 1
        >>> row = measure({"lysosomes": lysosomes}, 0.1, unit="µm").summary.loc["lysosomes"]
        >>> row["unit"], round(float(row["total_area"]), 4)
        ('µm', 0.16)
    """
    return run(measure_iter(layers, scale, **options))


def _scale_of(scale: float | Scale | Mapping[str, float | Scale | None] | None, name: str
              ) -> float | Scale | None:
    """The pixel size of organelle ``name`` in a ``scale`` argument of :func:`measure_iter`."""
    if not isinstance(scale, Mapping):
        return scale
    if name not in scale:
        raise InputError(f"no pixel size is given for {name!r}")
    return scale[name]


def _check_names(what: str, names: Sequence[str], images: Mapping[str, object]) -> None:
    unknown = [name for name in names if name not in images]
    if unknown:
        raise InputError(
            f"{what} organelle(s) {', '.join(map(repr, unknown))} not among the layers "
            f"({', '.join(map(repr, images))})"
        )


def _check_same_grid(images: Mapping[str, NDArray], spacings: Mapping[str, tuple[float, ...]],
                     first: str, second: str,
                     grid: tuple[tuple[int, ...], tuple[float, ...]] | None = None) -> None:
    """Refuse two images compared pixel by pixel unless they share shape and pixel size.

    ``grid`` is the second image's (shape, pixel size) when it is not among ``images``.
    """
    shape, spacing = grid if grid is not None else (images[second].shape, spacings[second])
    second = second if grid is not None else repr(second)
    if images[first].shape != shape:
        raise InputError(f"{first!r} and {second} differ in shape: {images[first].shape} vs "
                         f"{shape}")
    if len(spacings[first]) != len(spacing) or not all(
            math.isclose(x, y, rel_tol=1e-6) for x, y in zip(spacings[first], spacing)):
        raise InputError(f"{first!r} and {second} differ in pixel size: {spacings[first]} vs "
                         f"{spacing}")


def _no_cells_note(name: str | None, kind: CellKind) -> str:
    if kind == "boundaries":
        where = f" in '{name}'" if name else ""
        return (f"The cell boundaries{where} enclose no cell away from the image edge; "
                "the per-cell table is left out.")
    what = f"Layer '{name}'" if name else "The cells image"
    return f"{what} has no cells; the per-cell table is left out."
