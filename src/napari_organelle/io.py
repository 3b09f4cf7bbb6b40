"""Read images with their pixel size and axes; write label TIFFs atomically."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from .durable import atomic_path
from .errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

_UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "µm": 1e3, "um": 1e3, "micron": 1e3,
               "micrometer": 1e3, "\\u00B5m": 1e3, "mm": 1e6, "millimeter": 1e6, "pm": 1e-3,
               "m": 1e9, "angstrom": 0.1, "å": 0.1, "cm": 1e7, "centimeter": 1e7}


@dataclass
class ImageFile:
    """An image read from disk.

    Attributes:
        data: the pixels, in the file's axis order (possibly memory-mapped).
        axes: one letter per axis (``TCZYX`` subset; ``S`` for RGB samples).
        pixel_size_nm: the XY pixel size when the file records it.
        path: where it came from.
    """

    data: np.ndarray
    axes: str
    pixel_size_nm: float | None
    path: Path

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def rgb(self) -> bool:
        return self.axes.endswith("S")


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read a TIFF/OME-TIFF (with pixel size and axes), PNG or JPEG.

    Raises:
        InputError: the file is missing, unreadable, or of an unknown type.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path)
        if suffix in PLAIN_SUFFIXES:
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
            axes = "YXS" if data.ndim == 3 else "YX"
            return ImageFile(data, axes, None, path)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure gets one clear message
        raise InputError(f"cannot read {path.name}: {error}") from None
    raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; "
                     "use TIFF, OME-TIFF, PNG or JPEG")


def _read_tiff(path: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        data = series.asarray()
        pixel_size = _ome_pixel_size(tif) or _imagej_pixel_size(tif) or _resolution_pixel_size(tif)
    # tifffile names unknown leading axes Q/I; treat them as planes to iterate.
    axes = "".join(a if a in "TCZYXS" else "Z" for a in axes)
    if axes.count("Z") > 1:
        axes = axes.replace("Z", "T", axes.count("Z") - 1)
    return ImageFile(data, axes, pixel_size, path)


def _ome_pixel_size(tif: Any) -> float | None:
    if not tif.ome_metadata:
        return None
    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            return _to_nm(float(element.attrib["PhysicalSizeX"]), unit)
    return None


def _imagej_pixel_size(tif: Any) -> float | None:
    metadata = tif.imagej_metadata
    if not metadata:
        return None
    unit = metadata.get("unit")
    x_resolution = tif.pages[0].tags.get("XResolution")
    if not unit or x_resolution is None:
        return None
    numerator, denominator = x_resolution.value
    if not numerator:
        return None
    return _to_nm(denominator / numerator, unit)


def _resolution_pixel_size(tif: Any) -> float | None:
    page = tif.pages[0]
    x_resolution = page.tags.get("XResolution")
    unit_tag = page.tags.get("ResolutionUnit")
    if x_resolution is None or unit_tag is None:
        return None
    numerator, denominator = x_resolution.value
    unit = int(unit_tag.value)
    # TIFF resolution is pixels per inch (2) or per centimetre (3); 1 = no unit.
    if not numerator or unit not in (2, 3) or numerator / denominator in (72, 96, 300):
        return None  # screen DPI defaults say nothing about the specimen
    per_unit_nm = 2.54e7 if unit == 2 else 1e7
    return per_unit_nm * denominator / numerator


def _to_nm(value: float, unit: str) -> float | None:
    factor = _UNIT_TO_NM.get(unit.strip().lower().replace("\\u00b5", "µ"))
    if factor is None and re.fullmatch(r"(micro|µ)n?", unit.strip().lower()):
        factor = 1e3
    if factor is None or value <= 0:
        return None
    return value * factor


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None = None,
               axes: str | None = None) -> Path:
    """Write a TIFF atomically (temporary file, then rename), compressed, with pixel size.

    The pixel size is written as ImageJ calibration (µm), which Fiji, napari and
    this package read back.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {}
    options: dict[str, Any] = {"compression": "zlib"}
    imagej = data.dtype in (np.uint8, np.uint16, np.float32) and data.ndim <= 5
    if pixel_size_nm:
        micrometres = pixel_size_nm / 1e3
        options["resolution"] = (1.0 / micrometres, 1.0 / micrometres)
        metadata["unit"] = "um"
    if axes:
        metadata["axes"] = axes
    with atomic_path(path) as temporary:
        if imagej:
            options.pop("compression")  # ImageJ cannot read compressed hyperstacks
            tifffile.imwrite(temporary, data, imagej=True, metadata=metadata, **options)
        else:
            tifffile.imwrite(temporary, data, **options)
    return path
