"""Where a training sample came from, and how much the annotator changed."""

from __future__ import annotations

import dataclasses
import getpass
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from ..durable import utc_now
from ..errors import InputError

T = TypeVar("T")

#: (y0, x0, y1, x1), half-open, in pixels of the source plane
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Provenance:
    """Everything needed to trace a sample back to its origin.

    Attributes:
        source_path: the image file the sample was cut from, if any.
        source_sha256: SHA-256 of that file; filled in by the store (from the
            file if it exists, else from the saved image's pixels) when empty.
        source_sha256_of: what ``source_sha256`` was computed from: ``"file"``
            (the file's bytes) or ``"pixels"`` (see
            :func:`~napari_organelle.store.hashing.sha256_array`); None if the
            caller supplied the hash.
        image_layer: name of the napari image layer.
        label_layers: napari labels layer name per class.
        plane: indices along the source's non-spatial axes (time, z, ...) of
            the saved 2-D plane, outermost first; ``()`` for a 2-D source.
        plane_axes: the names of those axes, e.g. ``"TZ"`` (informative).
        crop: ``(y0, x0, y1, x1)`` of the saved image within the source plane,
            or None when the whole plane was saved.
        pixel_size_nm: ``(y, x)`` pixel size in nanometres, if known.
        model_name: the model whose proposal was corrected (None: drawn from scratch).
        model_version: that model's version.
        annotator: who corrected it (default: the operating-system user).
        time: ISO 8601 time of the correction (default: now, UTC).
        changed_pixels: per class, pixels the annotator changed versus the
            model proposal inside the reviewed region (see :func:`changed_pixels`).
        extra: any other JSON-serialisable facts (modality, stain, ...).
    """

    source_path: str | None = None
    source_sha256: str | None = None
    source_sha256_of: str | None = None
    image_layer: str | None = None
    label_layers: dict[str, str] = field(default_factory=dict)
    plane: tuple[int, ...] = ()
    plane_axes: str = ""
    crop: Box | None = None
    pixel_size_nm: tuple[float, float] | None = None
    model_name: str | None = None
    model_version: str | None = None
    annotator: str | None = None
    time: str | None = None
    changed_pixels: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | Provenance | None) -> Provenance:
        """Build from a dict (as :meth:`to_dict` makes it and the manifest stores it).

        The field types are checked and normalised (lists become tuples, a
        single pixel size a ``(y, x)`` pair); missing keys take their defaults,
        so samples saved before a field existed still load. Keys that are not
        fields go into :attr:`extra`, so nothing the caller recorded is lost.
        A :class:`Provenance` is checked the same way, None gives the defaults.

        Raises:
            InputError: a field has a value of the wrong kind.

        Examples:
            >>> details = Provenance.from_dict({"plane": [3], "pixel_size_nm": 4.6, "stain": "Os"})
            >>> details.plane, details.pixel_size_nm, details.extra
            ((3,), (4.6, 4.6), {'stain': 'Os'})
            >>> Provenance.from_dict(details.to_dict()) == details
            True
        """
        if values is None:
            return cls()
        if isinstance(values, Provenance):
            values = values.to_dict()
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        try:
            extra = dict(known.pop("extra", None) or {})
            extra.update({k: v for k, v in values.items() if k not in names})
            extra = {str(k): _plain(v) for k, v in extra.items()}
            return cls(
                source_path=_optional_str(known.get("source_path")),
                source_sha256=_optional_str(known.get("source_sha256")),
                source_sha256_of=_optional_str(known.get("source_sha256_of")),
                image_layer=_optional_str(known.get("image_layer")),
                label_layers=_str_dict(known.get("label_layers"), str),
                plane=tuple(_index(i) for i in known.get("plane") or ()),
                plane_axes=str(known.get("plane_axes") or ""),
                crop=_box(known.get("crop")),
                pixel_size_nm=_pixel_size(known.get("pixel_size_nm")),
                model_name=_optional_str(known.get("model_name")),
                model_version=_optional_str(known.get("model_version")),
                annotator=_optional_str(known.get("annotator")),
                time=_optional_str(known.get("time")),
                changed_pixels=_str_dict(known.get("changed_pixels"), int),
                extra=extra,
            )
        except (TypeError, ValueError) as error:
            raise InputError(f"invalid provenance: {error}") from None

    @property
    def model(self) -> str | None:
        """``name@version`` of the model whose proposal was corrected (the bare name
        without a version); None when drawn from scratch.

        Examples:
            >>> Provenance(model_name="em-lab", model_version="2").model
            'em-lab@2'
        """
        if not self.model_name:
            return None
        return f"{self.model_name}@{self.model_version}" if self.model_version else self.model_name

    @property
    def source_name(self) -> str:
        """The source file's name, else the image layer's name, else ``""`` (for listings)."""
        if self.source_path:
            return PurePath(self.source_path).name
        return self.image_layer or ""

    def cut_from(self, original: Provenance) -> Provenance:
        """This provenance, for a sample cut out of the stored sample ``original``.

        The new sample takes the original's source (path and hash), plane and
        pixel size, and its crop is moved into the original's source plane,
        so saving a loaded sample again makes a new version of that sample
        rather than a new sample.

        Examples:
            >>> original = Provenance(source_path="cell.tif", plane=(2,), crop=(10, 20, 50, 60))
            >>> again = Provenance(image_layer="sample 1", crop=(5, 5, 15, 25)).cut_from(original)
            >>> again.source_path, again.plane, again.crop
            ('cell.tif', (2,), (15, 25, 25, 45))
        """
        inherited: dict[str, Any] = {
            name: getattr(original, name)
            for name in ("source_path", "source_sha256", "source_sha256_of", "pixel_size_nm")
            if getattr(original, name) is not None}
        crop = self.crop
        if original.crop is not None:
            y0, x0 = original.crop[:2]
            crop = original.crop if crop is None else (y0 + crop[0], x0 + crop[1],
                                                       y0 + crop[2], x0 + crop[3])
        return dataclasses.replace(self, plane=original.plane, plane_axes=original.plane_axes,
                                   crop=crop, **inherited)

    def completed(self) -> Provenance:
        """A copy with the annotator and time filled in when missing."""
        return dataclasses.replace(
            self,
            annotator=self.annotator or current_user(),
            time=self.time or utc_now(),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        values = dataclasses.asdict(self)
        for name in ("plane", "crop", "pixel_size_nm"):
            if values[name] is not None:
                values[name] = list(values[name])
        return values


def changed_pixels(
    proposal: ArrayLike, corrected: ArrayLike, region: ArrayLike | None = None
) -> int:
    """Count the pixels whose class membership the annotator changed.

    Args:
        proposal: the model's mask (or instance labels) for one class.
        corrected: the annotator's mask (or instance labels) for that class.
        region: optional boolean mask; only pixels inside it are counted (the
            store passes the reviewed region: outside it nothing was corrected).

    Returns:
        Pixels that are foreground in one and background in the other
        (instance ids are compared as foreground/background, not by id).

    Raises:
        InputError: the arrays have different shapes.

    Examples:
        >>> changed_pixels([[0, 1], [1, 1]], [[1, 1], [0, 1]])
        2
    """
    before = np.asarray(proposal) != 0
    after = np.asarray(corrected) != 0
    if before.shape != after.shape:
        raise InputError(f"proposal has shape {before.shape} but the correction has {after.shape}")
    changed = before != after
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != changed.shape:
            raise InputError(f"region has shape {region.shape}, the masks {changed.shape}")
        changed &= region
    return int(np.count_nonzero(changed))


def split_model(full_name: Any) -> tuple[str | None, str | None]:
    """``"name@version"`` as ``(name, version)``; a bare name has no version.

    Examples:
        >>> split_model("em-lab@3"), split_model("em-organelles"), split_model(None)
        (('em-lab', '3'), ('em-organelles', None), (None, None))
    """
    if not isinstance(full_name, str) or not full_name.strip():
        return None, None
    name, sep, version = full_name.strip().rpartition("@")
    return (name, version or None) if sep and name else (full_name.strip(), None)


def current_user() -> str | None:
    """The operating-system login name, or None where there is none (some containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no login name (containers)
        return None


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, tuples and paths as the JSON values they stand for."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _str_dict(values: Any, convert: Callable[[Any], T]) -> dict[str, T]:
    return {str(k): convert(v) for k, v in dict(values or {}).items()}


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _index(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ValueError(f"plane indices must be non-negative integers, got {value!r}")
    return int(value)


def _box(value: Any) -> Box | None:
    if value is None:
        return None
    y0, x0, y1, x1 = (_index(v) for v in value)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"crop {value!r} must be (y0, x0, y1, x1) with y1 > y0 and x1 > x0")
    return (y0, x0, y1, x1)


def _pixel_size(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    sizes = (value, value) if np.isscalar(value) else tuple(value)
    if len(sizes) != 2 or not all(math.isfinite(float(s)) and float(s) > 0 for s in sizes):
        raise ValueError(f"pixel_size_nm must be a positive number or (y, x) pair, got {value!r}")
    return (float(sizes[0]), float(sizes[1]))
