"""Content hashes that identify sources and detect duplicate samples."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np

from ..durable import sha256_file

__all__ = ["content_sha256", "sample_key", "sha256_array", "sha256_file", "sha256_json"]


def sha256_array(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and pixels (C order).

    Dtype and shape are part of the hash so that e.g. a uint8 and a uint16
    image with the same bytes, or a transposed image, do not collide.
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(array_hashes: Mapping[str, str]) -> str:
    """One hash for a sample's pixels: image, labels and instances together.

    Provenance is deliberately left out: saving the same pixels twice (say after
    reopening the file) is a duplicate even if the time stamp differs.
    """
    return sha256_json(dict(array_hashes))


def sample_key(source_sha256: str, plane: tuple[int, ...], crop: tuple[int, ...] | None) -> str:
    """16 hex digits naming *what* was annotated: which source, plane and crop.

    Saving the same (source, plane, crop) again makes a new version under the
    same key. The source is identified by content, not path, so moving or
    renaming the file does not start a new sample.
    """
    where = {
        "source": source_sha256,
        "plane": list(plane),
        "crop": None if crop is None else list(crop),
    }
    return sha256_json(where)[:16]
