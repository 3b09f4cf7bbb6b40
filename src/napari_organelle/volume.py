"""3-D objects in Z stacks: one id per organelle through the whole volume.

Plane by plane, a mitochondrion crossing 165 FIB-SEM sections is 165 unrelated
objects. In volume mode (:func:`napari_organelle.inference.segment_iter` with
``volume=True``, ``napari-organelle segment --3d``, the Segment dock's *Link
objects across Z (3-D)*), the network still runs plane by plane (it is a 2-D
model), but the instance classes are labelled in 3-D and the semantic classes
are returned as the stacked 3-D masks.

The method, and why
    Each instance class's per-plane masks are stacked into one boolean volume,
    which is labelled by 3-D connected components (face connectivity) and
    split where two objects touch by a 3-D watershed on the distance
    transform, measured in physical units: :func:`scipy.ndimage.distance_transform_edt`
    with ``sampling=(z_anisotropy, 1, 1)`` (Z step / pixel size), so a neck
    is judged by its real width on anisotropic stacks too. It is the same
    code that labels 2-D planes (:func:`napari_organelle.postprocess.label_instances`).

    The alternative, labelling each plane in 2-D and linking the 2-D objects of
    neighbouring planes by overlap (IoU with Hungarian or greedy matching),
    was not chosen: an object that the 2-D watershed cuts in two in one plane
    and not in the next (common: a neck seen obliquely) must then be merged
    again by a rule of its own, every threshold on the overlap breaks objects
    that are thin or oblique in Z, and a branch or a join has no answer in a
    one-to-one matching. Labelling the volume sees each object whole, splits
    only at real 3-D necks and needs no matching threshold; its extra cost is
    one integer volume per instance class (below).

Gap closing
    A section that is missing, blank or badly predicted would cut every object
    through it. After labelling, two objects that face each other across a gap
    of one plane (background in plane ``z`` where both planes ``z - 1`` and
    ``z + 1`` are foreground) are given one id (:func:`link_across_gaps`).
    The gap stays background, so the masks (and every pixel score) are
    unchanged, and the watershed never sees it (filling it first would make a
    false neck where an oblique object crosses it). On isotropic data a real
    one-voxel gap between two organelles is impossible (two membranes are
    thicker than that); on thick sections it is rare beside a missed
    detection. Objects are removed for size before they are linked, so the two
    halves of a tiny object cut by a gap must each be large enough.

Z-consensus (optional, ``z_consensus=True``, ``--z-consensus``)
    Each plane's probabilities are averaged with those of the planes above and
    below before thresholding, weighted by a Gaussian of one pixel in physical
    units: a neighbour weighs ``exp(-a**2 / 2)`` of the centre plane for a
    Z step of ``a`` pixels (0.61 on isotropic FIB-SEM, i.e. weights 0.27,
    0.45, 0.27; 0.14 at ``a = 2``; nothing on thick sections, where the
    neighbouring section shows other structures). It smooths the flicker of a
    2-D model from plane to plane; see docs/segmenting.md for what it does on
    em-lucchi-pp.

Memory
    Planes are predicted one at a time, as in 2-D. Held at once: the output
    label images (as in 2-D), one boolean mask volume per instance class of the
    volume being labelled (1 byte per voxel; for a T x Z stack one Z stack at a
    time), the integer labels while they are made (2 or 4 bytes per voxel),
    and with z-consensus three planes of 8-bit probabilities. No float
    array of the volume's size is ever made: the watershed's distance map is
    computed per connected component inside its bounding box, and components
    whose box exceeds :data:`MAX_SPLIT_VOXELS` are left whole.

Smallest object
    The model card's minimum size is an area in pixels (2-D). In 3-D the
    smallest object kept is a ball whose equator has that area
    (:func:`min_object_voxels`): crumbs of an object in one plane stay part of
    it, and isolated specks through a few planes go.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from .errors import InputError
from .postprocess import NECK_RATIO, label_instances

__all__ = [
    "MAX_MARKER_VOXELS",
    "MAX_SPLIT_VOXELS",
    "ZConsensus",
    "consensus_weight",
    "label_volume",
    "link_across_gaps",
    "min_object_voxels",
    "read_z_step_nm",
    "write_volume_tiff",
    "z_position",
]

#: A connected component whose bounding box holds more voxels than this is not
#: split (its float64 distance map and watershed would need about 40 bytes per
#: voxel: some 650 MB at this size).
MAX_SPLIT_VOXELS = 1 << 24
#: In a larger bounding box the watershed's markers are found on a coarser grid (h-maxima
#: sorts every voxel of the box; see :func:`~napari_organelle.postprocess.label_instances`).
MAX_MARKER_VOXELS = 1 << 20


def z_position(axes: str | None, n_leading: int) -> int | None:
    """Which of an image's leading (non-Y/X, non-channel) axes is Z, if any.

    Args:
        axes: one letter per axis of the image as given (``"ZYX"``,
            ``"TZCYX"``, ``"YXS"``; ``C`` and ``S`` are channels), or None when
            the axes are not known.
        n_leading: how many leading axes the image has (the axes iterated
            plane by plane, before Y and X).

    Returns:
        The position of Z among the leading axes; None when ``axes`` names no Z.
        Without ``axes``, the last leading axis (napari's order: T, Z, Y, X).

    Raises:
        InputError: if ``axes`` does not fit the image.

    Examples:
        >>> z_position("ZYX", 1), z_position("TZCYX", 2), z_position("TYX", 1)
        (0, 1, None)
        >>> z_position(None, 2)
        1
    """
    if axes is None:
        return n_leading - 1 if n_leading else None
    leading = "".join(a for a in axes.upper() if a not in "CSYX")
    if len(leading) != n_leading:
        raise InputError(f"the axes {axes!r} do not fit an image with {n_leading} axis/axes "
                         "before Y and X")
    return leading.index("Z") if "Z" in leading else None


def min_object_voxels(min_area_px: float, anisotropy: float = 1.0) -> int:
    """The smallest 3-D object kept: a ball whose equator has the 2-D minimum area.

    Args:
        min_area_px: the smallest object's area in pixels (the model card's
            ``min_size_px``, at the image's resolution).
        anisotropy: the Z step divided by the pixel size.

    Returns:
        The number of voxels of that ball (0 when there is no minimum).

    Examples:
        >>> min_object_voxels(100)        # r = 5.6 px: 4/3 * 100 * 5.6
        752
        >>> min_object_voxels(100, anisotropy=10)
        75
        >>> min_object_voxels(0)
        0
    """
    if min_area_px <= 0:
        return 0
    radius = math.sqrt(min_area_px / math.pi)
    return max(1, int(round(4.0 / 3.0 * min_area_px * radius / anisotropy)))


def consensus_weight(anisotropy: float = 1.0) -> float:
    """Weight of the planes above and below (the centre plane weighs 1) in z-consensus.

    A Gaussian of one pixel in physical units, evaluated one Z step away.

    Examples:
        >>> round(consensus_weight(1.0), 3), round(consensus_weight(2.0), 3)
        (0.607, 0.135)
        >>> consensus_weight(10.0) < 1e-20
        True
    """
    return float(math.exp(-0.5 * float(anisotropy) ** 2))


class ZConsensus:
    """Smooth 8-bit probability planes along Z as they arrive, holding three planes.

    Push plane ``z``'s probabilities; plane ``z - 1`` comes back smoothed
    (its weighted mean with planes ``z - 2`` and ``z``); :meth:`flush` returns
    the last plane. A blank plane (None) is returned as None and left out of
    its neighbours' means, as are the missing neighbours of the first and last
    planes.

    Args:
        anisotropy: the Z step divided by the pixel size (sets the weight,
            :func:`consensus_weight`).

    Examples:
        >>> smoother = ZConsensus(anisotropy=1.0)
        >>> planes = [np.full((1, 2, 2), v, np.uint8) for v in (0, 200, 0)]
        >>> smoother.push(0, planes[0])
        []
        >>> [(z, int(p[0, 0, 0])) for z, p in smoother.push(1, planes[1])]
        [(0, 76)]
        >>> [(z, int(p[0, 0, 0])) for z, p in smoother.push(2, planes[2])]
        [(1, 90)]
        >>> [(z, int(p[0, 0, 0])) for z, p in smoother.flush()]
        [(2, 76)]
    """

    def __init__(self, anisotropy: float = 1.0) -> None:
        self.weight = consensus_weight(anisotropy)
        self._previous: tuple[int, np.ndarray | None] | None = None
        self._current: tuple[int, np.ndarray | None] | None = None

    def push(self, z: int, probabilities: np.ndarray | None
             ) -> list[tuple[int, np.ndarray | None]]:
        """Add plane ``z`` (uint8 ``(K, Y, X)`` or None); return the planes now complete."""
        ready = []
        if self._current is not None:
            ready.append(self._smooth(self._previous, self._current, (z, probabilities)))
        self._previous, self._current = self._current, (z, probabilities)
        return ready

    def flush(self) -> list[tuple[int, np.ndarray | None]]:
        """Return the last plane (smoothed with the one before it) and start afresh."""
        ready = []
        if self._current is not None:
            ready.append(self._smooth(self._previous, self._current, None))
        self._previous = self._current = None
        return ready

    def _smooth(self, before: tuple[int, np.ndarray | None] | None,
                centre: tuple[int, np.ndarray | None],
                after: tuple[int, np.ndarray | None] | None
                ) -> tuple[int, np.ndarray | None]:
        z, probabilities = centre
        if probabilities is None:
            return z, None
        neighbours = [other[1] for other in (before, after)
                      if other is not None and other[1] is not None and abs(other[0] - z) == 1]
        if not neighbours or self.weight < 1e-6:
            return z, probabilities
        total = probabilities.astype(np.float32)
        for plane in neighbours:
            total += self.weight * plane.astype(np.float32)
        total *= 1.0 / (1.0 + self.weight * len(neighbours))
        total += 0.5
        np.clip(total, 0, 255, out=total)
        return z, total.astype(np.uint8)


def link_across_gaps(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give one id to objects that face each other across a gap of one plane.

    A gap voxel is background in plane ``z`` and foreground in planes ``z - 1``
    and ``z + 1``; the objects found there above and below are merged. The gap
    itself stays background, and the labelling (and its watershed) never sees
    it, so a gap cannot create a false neck.

    Args:
        labels: ``(Z, Y, X)`` labels of ``mask``.
        mask: the ``(Z, Y, X)`` boolean mask they label.

    Returns:
        The labels with linked objects merged and the ids compact (``labels``
        itself when nothing was linked).

    Examples:
        >>> labels = np.zeros((3, 1, 3), np.uint16)
        >>> labels[0], labels[2] = 1, 2
        >>> labels[1, 0, 1] = 3                # an unrelated object in the gap plane
        >>> link_across_gaps(labels, labels > 0)[:, 0].tolist()
        [[1, 1, 1], [0, 2, 0], [1, 1, 1]]
    """
    pairs = []
    for z in range(1, mask.shape[0] - 1):
        gap = mask[z - 1] & mask[z + 1]
        gap &= ~mask[z]
        if gap.any():
            below, above = labels[z - 1][gap], labels[z + 1][gap]
            linked = (below > 0) & (above > 0) & (below != above)
            if linked.any():
                pairs.append(np.unique(np.stack([below[linked], above[linked]]), axis=1))
    if not pairs:
        return labels
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate(pairs, axis=1).astype(np.int64)
    n_ids = int(labels.max()) + 1
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), (edges[0], edges[1])),
                       shape=(n_ids, n_ids))
    _, component = connected_components(graph, directed=False)
    # Number the merged objects 1..N in the order of their smallest id; 0 stays 0.
    _, first = np.unique(component, return_index=True)
    order = np.argsort(first)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    lookup = rank[component]
    dtype = np.uint16 if lookup.max() <= np.iinfo(np.uint16).max else np.uint32
    return lookup.astype(dtype)[labels]


def label_volume(
    mask: np.ndarray,
    min_size: int = 0,
    anisotropy: float = 1.0,
    *,
    split_touching: bool = True,
    close_gaps: bool = True,
    neck_ratio: float = NECK_RATIO,
    max_split_voxels: int | None = MAX_SPLIT_VOXELS,
) -> np.ndarray:
    """Label the 3-D objects of a ``(Z, Y, X)`` mask (see the module notes for the method).

    Args:
        mask: boolean or 0/1 volume, Z first.
        min_size: objects with fewer voxels are removed (see
            :func:`min_object_voxels` to derive it from a 2-D area).
        anisotropy: the Z step divided by the pixel size (1: isotropic).
        split_touching: split objects that touch at a narrow 3-D neck.
        close_gaps: link objects across a gap of one plane (the gap's voxels
            are not labelled).
        neck_ratio: see :func:`~napari_organelle.postprocess.label_instances`.
        max_split_voxels: components with a larger bounding box are not split.

    Returns:
        uint16 (or uint32) labels, one id per 3-D object.

    Examples:
        A tube through five planes is one object, a missing plane in it
        included; a blob in other planes is another:

        >>> mask = np.zeros((5, 20, 20), bool)
        >>> mask[:, 4:8, 4:8] = True
        >>> mask[2] = False                      # a blank section
        >>> mask[3:5, 12:18, 12:18] = True
        >>> labels = label_volume(mask)
        >>> int(labels.max()), len(np.unique(labels[:, 5, 5]))
        (2, 2)
        >>> bool((labels[2] == 0).all())          # the gap itself stays empty
        True
    """
    if not 0 < anisotropy < math.inf:
        raise InputError(f"the Z anisotropy must be a positive number, not {anisotropy}")
    volume = np.asarray(mask)
    if volume.ndim != 3:
        raise InputError(f"a volume needs three axes (Z, Y, X), not {volume.shape}")
    if volume.dtype != bool:
        volume = volume.astype(bool)
    labels = label_instances(volume, min_size=min_size, split_touching=split_touching,
                             neck_ratio=neck_ratio, sampling=(float(anisotropy), 1.0, 1.0),
                             max_split_size=max_split_voxels, max_marker_size=MAX_MARKER_VOXELS)
    return link_across_gaps(labels, volume) if close_gaps else labels


# --------------------------------------------------------------------------- files


def read_z_step_nm(path: str | os.PathLike) -> float | None:
    """The Z step of a TIFF stack in nm (OME ``PhysicalSizeZ`` or ImageJ ``spacing``).

    Returns:
        The step, or None when the file does not record one (or is not a TIFF).

    Examples:
        >>> import tempfile, tifffile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = Path(folder.name) / "stack.tif"
        >>> tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True,
        ...                  metadata={"axes": "ZYX", "spacing": 0.05, "unit": "um"})
        >>> read_z_step_nm(path)
        50.0
        >>> folder.cleanup()
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    from .io import _to_nm

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.ome_metadata:
                try:
                    root = ElementTree.fromstring(tif.ome_metadata)
                except ElementTree.ParseError:
                    root = None
                for element in root.iter() if root is not None else ():
                    if element.tag.endswith("Pixels") and "PhysicalSizeZ" in element.attrib:
                        unit = element.attrib.get("PhysicalSizeZUnit", "µm")
                        return _rounded(_to_nm(float(element.attrib["PhysicalSizeZ"]), unit))
            metadata = tif.imagej_metadata or {}
            spacing = metadata.get("spacing")
            if spacing:
                return _rounded(_to_nm(float(spacing), str(metadata.get("unit") or "µm")))
    except (OSError, ValueError, TypeError, tifffile.TiffFileError):
        return None
    return None


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.12g}")


def write_volume_tiff(path: str | os.PathLike, labels: np.ndarray,
                      pixel_size_nm: float | None, z_step_nm: float | None,
                      axes: str = "ZYX") -> Path:
    """Write a 3-D (or T x Z) label volume as one TIFF with its pixel size and Z step.

    uint8/uint16 volumes are written as ImageJ hyperstacks (calibration in µm,
    ``spacing`` = the Z step), which Fiji, napari and this package read back;
    uint32 volumes (more than 65535 objects) as OME-TIFF with
    ``PhysicalSizeX/Y/Z``. Written atomically, like every output.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = write_volume_tiff(Path(folder.name) / "m.tif", np.ones((4, 8, 8), np.uint16),
        ...                          pixel_size_nm=5.0, z_step_nm=40.0)
        >>> read_z_step_nm(path)
        40.0
        >>> folder.cleanup()
    """
    import tifffile

    from .durable import atomic_path
    from .io import write_tiff

    if not z_step_nm:
        return write_tiff(path, labels, pixel_size_nm=pixel_size_nm, axes=axes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    with atomic_path(path) as temporary:
        if labels.dtype in (np.uint8, np.uint16):
            metadata: dict[str, Any] = {"axes": axes, "spacing": z_step_nm / 1e3, "unit": "um"}
            if pixel_size_nm:
                options["resolution"] = (1e3 / pixel_size_nm, 1e3 / pixel_size_nm)
            tifffile.imwrite(temporary, labels, imagej=True, metadata=metadata, **options)
        else:
            metadata = {"axes": axes, "PhysicalSizeZ": z_step_nm, "PhysicalSizeZUnit": "nm"}
            if pixel_size_nm:
                metadata.update(PhysicalSizeX=pixel_size_nm, PhysicalSizeXUnit="nm",
                                PhysicalSizeY=pixel_size_nm, PhysicalSizeYUnit="nm")
            tifffile.imwrite(temporary, labels, ome=True, metadata=metadata,
                             compression="zlib")
    return path
