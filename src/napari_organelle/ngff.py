"""OME-Zarr (NGFF 0.4 and 0.5) in and out: lazy multiscale images, label pyramids.

Reading gives one lazy dask array per pyramid level with the axes and the
physical pixel sizes of the metadata; nothing is loaded until a chunk is
computed. NGFF 0.4 is Zarr v2 (``.zattrs``), NGFF 0.5 is Zarr v3 (``zarr.json``,
metadata under ``"ome"``); ``zarr`` 3 reads both.

Writing stores results as NGFF *labels*: ``<image>/labels/<class>`` next to the
source image (or in a new OME-Zarr), one multiscale labels image per organelle,
chunked, with a pyramid downsampled by nearest neighbour (ids are never
blended) and the class name, kind and colour in ``image-label``. The pixels are
written chunk by chunk (idempotent: writing a chunk again gives the same
bytes) and a labels image is listed in ``labels/`` only once its pyramid and
metadata are complete, so a reader never sees a half-written result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: metres per unit name of the NGFF spec (UDUNITS-2), as nanometres
_UNIT_NM = {"angstrom": 0.1, "attometer": 1e-9, "centimeter": 1e7, "decimeter": 1e8,
            "exameter": 1e27, "femtometer": 1e-6, "foot": 3.048e8, "gigameter": 1e18,
            "hectometer": 1e11, "inch": 2.54e7, "kilometer": 1e12, "megameter": 1e15,
            "meter": 1e9, "micrometer": 1e3, "mile": 1.609344e12, "millimeter": 1e6,
            "nanometer": 1.0, "parsec": 3.0857e25, "petameter": 1e24, "picometer": 1e-3,
            "terameter": 1e21, "yard": 9.144e8, "yoctometer": 1e-15, "yottameter": 1e33,
            "zeptometer": 1e-12, "zettameter": 1e30, "µm": 1e3, "um": 1e3, "nm": 1.0,
            "mm": 1e6, "m": 1e9}

ZARR_SUFFIXES = (".zarr", ".ome.zarr")


@dataclass
class NgffImage:
    """A multiscale OME-Zarr image, opened lazily.

    Attributes:
        levels: one dask array per resolution, full resolution first.
        axes: one upper-case letter per axis (``"CZYX"``, ``"TCZYX"``...).
        scales: per level, the physical size of a pixel along each axis (in
            the axis' unit; 1.0 where the metadata says nothing).
        units: per axis, the unit name (``""`` when not given).
        version: ``"0.4"`` or ``"0.5"`` (what the metadata says).
        path: the image group's folder.
        name: the multiscale's name, if any.
        channel_names: from ``omero`` metadata, if any.
    """

    levels: list[Any]
    axes: str
    scales: list[list[float]]
    units: list[str]
    version: str
    path: Path
    name: str = ""
    channel_names: list[str] = field(default_factory=list)

    @property
    def data(self) -> Any:
        """The full-resolution level."""
        return self.levels[0]

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def zarr_format(self) -> int:
        return 3 if self.version.startswith("0.5") else 2

    def axis_nm(self, letter: str, level: int = 0) -> float | None:
        """The pixel size along a spatial axis in nanometres, None when unknown."""
        if letter not in self.axes:
            return None
        index = self.axes.index(letter)
        factor = _UNIT_NM.get(self.units[index].lower()) if self.units[index] else None
        return float(self.scales[level][index]) * factor if factor else None

    @property
    def pixel_size_nm(self) -> float | None:
        """The X pixel size of the full-resolution level in nm (None: no length unit)."""
        return self.axis_nm("X")

    @property
    def z_step_nm(self) -> float | None:
        return self.axis_nm("Z")


def is_ngff(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding an OME-Zarr multiscale image (0.4 or 0.5)."""
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        return bool(_multiscales(_read_attrs(path))[0])
    except (InputError, OSError, ValueError):
        return False


def nearest_level(pixel_sizes_nm: Sequence[float | None], model_nm: float | None) -> int:
    """The pyramid level whose pixel size is nearest the model's (0 when either is unknown).

    Blockwise segmentation does not rescale, so it reads the level nearest the
    model's pixels (the CLI's default ``--level``, and the Segment dock's choice).

    Examples:
        >>> nearest_level([4.0, 8.0, 16.0], 7.0)
        1
        >>> nearest_level([4.0, 8.0], None), nearest_level([None, None], 8.0)
        (0, 0)
    """
    if not model_nm or not pixel_sizes_nm or not all(pixel_sizes_nm):
        return 0
    return min(range(len(pixel_sizes_nm)),
               key=lambda index: abs(float(pixel_sizes_nm[index]) / model_nm - 1))


def read_ngff(path: str | os.PathLike) -> NgffImage:
    """Open an OME-Zarr image lazily: every level, its axes and pixel sizes.

    Args:
        path: the image's folder (``image.ome.zarr``), NGFF 0.4 or 0.5.

    Raises:
        InputError: the folder is missing or is not an OME-Zarr multiscale image.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "cells.ome.zarr"
        >>> write_ngff_image(root, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
        ...                  axes="YX", pixel_size_nm=5.0, chunks=32, n_levels=2)
        >>> image = read_ngff(root)
        >>> image.axes, [level.shape for level in image.levels], image.pixel_size_nm
        ('YX', [(64, 64), (32, 32)], 5.0)
    """
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    attrs = _read_attrs(path)
    multiscales, version = _multiscales(attrs)
    if not multiscales:
        raise InputError(f"{path.name} is not an OME-Zarr image: its metadata has no "
                         "'multiscales' (open the image group, not the plate or a labels folder)")
    first = multiscales[0]
    group = zarr.open_group(str(path), mode="r")
    axes_meta = first.get("axes") or []
    letters, units = [], []
    for axis in axes_meta:
        if isinstance(axis, str):  # NGFF 0.3
            letters.append(axis.upper())
            units.append("")
        else:
            letters.append(str(axis.get("name", "?"))[:1].upper())
            units.append(str(axis.get("unit") or ""))
    levels, scales = [], []
    global_scale = _scale_of(first.get("coordinateTransformations"), len(letters))
    for dataset in first.get("datasets", []):
        try:
            array = group[dataset["path"]]
        except KeyError:
            raise InputError(f"{path.name}: level {dataset['path']!r} named in the metadata "
                             "is missing") from None
        levels.append(da.from_zarr(array))
        scale = _scale_of(dataset.get("coordinateTransformations"), array.ndim)
        scales.append([s * g for s, g in zip(scale, global_scale or [1.0] * array.ndim)])
    if not levels:
        raise InputError(f"{path.name}: the OME-Zarr metadata lists no resolution levels")
    if not letters:  # NGFF 0.1/0.2: always TCZYX
        letters = list("TCZYX"[-levels[0].ndim:])
        units = [""] * len(letters)
    if len(letters) != levels[0].ndim:
        raise InputError(f"{path.name}: {len(letters)} axes in the metadata for a "
                         f"{levels[0].ndim}-D array")
    channel_names = [str(c.get("label", "")) for c in
                     (attrs.get("omero") or {}).get("channels", [])]
    return NgffImage(levels=levels, axes="".join(letters), scales=scales, units=units,
                     version=version, path=path, name=str(first.get("name", "")),
                     channel_names=channel_names)


def _read_attrs(path: Path) -> dict[str, Any]:
    """The group attributes of a Zarr v2 or v3 folder, ``"ome"`` namespace unwrapped."""
    import json

    v3 = path / "zarr.json"
    v2 = path / ".zattrs"
    try:
        if v3.is_file():
            attrs = json.loads(v3.read_text()).get("attributes", {}) or {}
        elif v2.is_file():
            attrs = json.loads(v2.read_text())
        else:
            raise InputError(f"{path.name} is not a Zarr folder (no zarr.json or .zattrs)")
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the metadata of {path.name}: {error}") from None
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = dict(attrs["ome"])
        ome.setdefault("_version", ome.get("version", "0.5"))
        return ome
    return attrs


def _multiscales(attrs: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    multiscales = attrs.get("multiscales") or []
    version = attrs.get("_version") or (multiscales[0].get("version") if multiscales else None)
    return multiscales, str(version or "0.4")


def _scale_of(transforms: Sequence[dict[str, Any]] | None, ndim: int) -> list[float]:
    for transform in transforms or []:
        if transform.get("type") == "scale" and "scale" in transform:
            return [float(s) for s in transform["scale"]]
    return [1.0] * ndim


# --------------------------------------------------------------------------- writing


def _axes_metadata(axes: str, units: Sequence[str] | None = None) -> list[dict[str, str]]:
    kinds = {"T": "time", "C": "channel"}
    result = []
    for index, letter in enumerate(axes):
        entry = {"name": letter.lower(), "type": kinds.get(letter, "space")}
        unit = (units[index] if units else "") or ("nanometer" if letter in "ZYX" else "")
        if unit:
            entry["unit"] = unit
        result.append(entry)
    return result


def _multiscale_metadata(axes: str, scales: list[list[float]], version: str, name: str,
                         units: Sequence[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "axes": _axes_metadata(axes, units),
        "datasets": [{"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [float(s) for s in scale]}]}
            for level, scale in enumerate(scales)],
    }
    if version == "0.4":
        entry["version"] = "0.4"
    return entry


def _write_group_attrs(group: Any, attrs: dict[str, Any], version: str) -> None:
    if version == "0.5":
        group.attrs.update({"ome": {"version": "0.5", **attrs}})
    else:
        group.attrs.update(attrs)


def _level_scales(axes: str, base: Sequence[float], n_levels: int,
                  downsample: str = "YX") -> list[list[float]]:
    return [[s * (2 ** level if letter in downsample else 1) for s, letter in zip(base, axes)]
            for level in range(n_levels)]


def _chunks_for(shape: tuple[int, ...], axes: str, chunks: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(chunks, int):
        return tuple(min(n, chunks) if letter in "ZYX" else 1 for n, letter in zip(shape, axes))
    return tuple(min(n, int(c)) for n, c in zip(shape, chunks))


def write_ngff_image(path: str | os.PathLike, data: Any, axes: str,
                     pixel_size_nm: float | None = None, z_step_nm: float | None = None,
                     chunks: int | Sequence[int] = 256, n_levels: int = 1,
                     version: str = "0.5") -> None:
    """Write an image (numpy or dask) as an OME-Zarr multiscale image.

    Levels after the first take every second pixel in Y and X (enough for
    viewing and tests; a microscope's own, smoothed pyramid is better).

    Args:
        path: the new ``.ome.zarr`` folder (replaced if it exists).
        data: the pixels, axes as ``axes`` says.
        axes: one letter per axis, e.g. ``"ZYX"``.
        pixel_size_nm: the X/Y pixel size; z_step_nm: the Z step.
        chunks: chunk edge for spatial axes (1 for T/C), or one per axis.
        n_levels: pyramid levels.
        version: ``"0.4"`` (Zarr v2) or ``"0.5"`` (Zarr v3).
    """
    import dask.array as da
    import zarr

    if version not in ("0.4", "0.5"):
        raise InputError(f"OME-Zarr version must be 0.4 or 0.5, not {version}")
    axes = axes.upper()
    root = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    array = da.asarray(data)
    base = [(pixel_size_nm or 1.0) if letter in "YX" else
            (z_step_nm or pixel_size_nm or 1.0) if letter == "Z" else 1.0 for letter in axes]
    for level in range(n_levels):
        level_chunks = _chunks_for(array.shape, axes, chunks)
        target = root.create_array(str(level), shape=array.shape, chunks=level_chunks,
                                   dtype=array.dtype)
        da.store(array.rechunk(level_chunks), target, lock=False)
        index = tuple(slice(None, None, 2) if letter in "YX" else slice(None) for letter in axes)
        array = array[index]
    _write_group_attrs(root, {"multiscales": [_multiscale_metadata(
        axes, _level_scales(axes, base, n_levels), version, Path(path).name)]}, version)


@dataclass
class LabelsTarget:
    """Where a labels image goes and how it is laid out (made by :func:`create_labels`).

    Attributes:
        root: the OME-Zarr folder holding the ``labels`` group.
        name: the labels image's name (the class name).
        shape, chunks, dtype: of the full-resolution array.
        axes, scale: spatial axes and full-resolution pixel sizes.
        version: NGFF version written.
    """

    root: str
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    axes: str
    scale: list[float]
    version: str

    @property
    def array_path(self) -> str:
        return os.path.join(self.root, "labels", self.name, "0")

    def open(self, mode: str = "r+") -> Any:
        """The full-resolution zarr array (for a worker to write its blocks into)."""
        import zarr

        return zarr.open_array(self.array_path, mode=mode)


def create_labels(root: str | os.PathLike, name: str, shape: tuple[int, ...],
                  chunks: Sequence[int], dtype: Any, axes: str, scale: Sequence[float],
                  version: str = "0.5", resume: bool = True) -> LabelsTarget:
    """Create (or reopen, to resume) the full-resolution array of one labels image.

    The array is filled with zeros (unwritten chunks read as 0). An existing array
    of the same shape, chunks and dtype is kept when ``resume`` is True, so a
    rerun only writes the blocks that are missing.

    Raises:
        InputError: ``root`` exists and is not a Zarr group of the same format.
    """
    import zarr

    root = Path(root)
    zarr_format = 3 if version == "0.5" else 2
    if root.exists() and not (root / ("zarr.json" if zarr_format == 3 else ".zgroup")).exists():
        raise InputError(f"{root} exists and is not a Zarr v{zarr_format} group (OME-Zarr "
                         f"{version}); choose a new --out folder")
    group = zarr.open_group(str(root), mode="a", zarr_format=zarr_format)
    labels = group.require_group("labels")
    image = labels.require_group(name)
    chunks = tuple(int(c) for c in chunks)
    target = LabelsTarget(root=str(root), name=name, shape=tuple(int(n) for n in shape),
                          chunks=chunks, dtype=str(np.dtype(dtype)), axes=axes.upper(),
                          scale=[float(s) for s in scale], version=version)
    existing = image.get("0")
    if (resume and existing is not None and tuple(existing.shape) == target.shape
            and tuple(existing.chunks) == chunks and str(existing.dtype) == target.dtype):
        return target
    image.create_array("0", shape=target.shape, chunks=chunks, dtype=target.dtype,
                       fill_value=0, overwrite=True)
    return target


def finish_labels(target: LabelsTarget, color: str | Sequence[float] | None = None,
                  kind: str = "instance", n_levels: int | None = None,
                  source_image: bool = True) -> None:
    """Build the pyramid of a written labels image and publish its metadata.

    Levels are nearest-neighbour 2x downsamplings in Y and X (a label keeps its id)
    until the plane is smaller than one chunk. The labels image is added to
    ``labels/``'s list last, so readers only see finished results.

    Args:
        target: from :func:`create_labels`, with level 0 fully written.
        color: the class colour (hex or RGB(A) 0..1), stored in ``image-label``.
        kind: ``"instance"`` (ids) or ``"semantic"`` (0/1 mask).
        n_levels: pyramid levels in all (default: until smaller than a chunk).
        source_image: the root group is the source image (``image-label.source``).
    """
    import dask.array as da
    import zarr

    group = zarr.open_group(target.root, mode="a")
    image = group["labels"][target.name]
    level = da.from_zarr(image["0"])
    yx = [i for i, letter in enumerate(target.axes) if letter in "YX"]
    if n_levels is None:
        n_levels = 1
        size = [target.shape[i] for i in yx]
        while min(size) > 2 * max(target.chunks[i] for i in yx) and n_levels < 8:
            size = [(n + 1) // 2 for n in size]
            n_levels += 1
    for index in range(1, n_levels):
        step = tuple(slice(None, None, 2) if i in yx else slice(None)
                     for i in range(len(target.axes)))
        level = level[step]
        chunks = _chunks_for(level.shape, target.axes, target.chunks)
        array = image.create_array(str(index), shape=level.shape, chunks=chunks,
                                   dtype=target.dtype, fill_value=0, overwrite=True)
        da.store(level.rechunk(chunks), array, lock=False)
        level = da.from_zarr(array)
    rgba = _rgba(color)
    image_label: dict[str, Any] = {
        "version": target.version,
        "colors": ([{"label-value": 1, "rgba": rgba}] if kind == "semantic" and rgba else []),
        "properties": ([{"label-value": 1, "class": target.name}] if kind == "semantic"
                       else []),
    }
    if source_image:
        image_label["source"] = {"image": "../../"}
    attrs = {"multiscales": [_multiscale_metadata(
                target.axes, _level_scales(target.axes, target.scale, n_levels),
                target.version, target.name)],
             "image-label": image_label}
    _write_group_attrs(image, attrs, target.version)
    # napari-organelle's own record: what the ids mean (instance ids have no colours).
    image.attrs.update({"napari-organelle": {"class": target.name, "kind": kind,
                                             "color": _hex(rgba)}})
    labels = group["labels"]
    try:
        current = _read_attrs(Path(target.root) / "labels").get("labels", [])
    except InputError:  # a new labels group without attributes yet
        current = []
    names = [*current, target.name] if target.name not in current else list(current)
    _write_group_attrs(labels, {"labels": names}, target.version)


def read_labels(root: str | os.PathLike) -> dict[str, NgffImage]:
    """The labels images of an OME-Zarr (those listed in ``labels/``), opened lazily."""
    root = Path(root)
    folder = root / "labels"
    if not folder.is_dir():
        return {}
    try:
        names = _read_attrs(folder).get("labels", [])
    except InputError:  # a labels group with nothing finished in it yet
        return {}
    return {name: read_ngff(folder / name) for name in names}


def labels_metadata(image: NgffImage) -> dict[str, Any]:
    """The ``napari-organelle`` and ``image-label`` metadata of a labels image."""
    import json

    path = image.path
    raw = (json.loads((path / "zarr.json").read_text()).get("attributes", {})
           if (path / "zarr.json").exists() else json.loads((path / ".zattrs").read_text()))
    ome = raw.get("ome", raw)
    return {"image-label": ome.get("image-label", {}),
            **raw.get("napari-organelle", {})}


def _rgba(color: str | Sequence[float] | None) -> list[int] | None:
    if color is None:
        return None
    if isinstance(color, str):
        text = color.lstrip("#")
        if len(text) in (6, 8):
            values = [int(text[i:i + 2], 16) for i in range(0, len(text), 2)]
            return values + [255] * (4 - len(values))
        return None
    values = [float(v) for v in color]
    scale = 255 if max(values) <= 1.0 else 1
    values = [int(round(v * scale)) for v in values]
    return values + [255] * (4 - len(values))


def _hex(rgba: list[int] | None) -> str | None:
    return "#" + "".join(f"{v:02x}" for v in rgba[:3]) if rgba else None
