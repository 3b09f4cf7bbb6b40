"""Guess whether an image is electron or fluorescence microscopy, to pick a default model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: The modalities models are trained for.
MODALITIES = ("em", "fluorescence")


def guess_modality(image: Any, n_channels: int = 1) -> str:
    """``fluorescence`` or ``em``, from what the pixels look like.

    Fluorescence images are mostly dark background with bright structures, so
    their median sits near the low end of the intensity range; EM images are
    dense grey texture with a median in the middle. Several channels also
    point to fluorescence.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> guess_modality(rng.normal(128, 30, (64, 64)).clip(0, 255).astype(np.uint8))
        'em'
        >>> dark = np.zeros((64, 64), np.uint16); dark[20:30, 20:30] = 3000
        >>> guess_modality(dark)
        'fluorescence'
    """
    if n_channels > 1:
        return "fluorescence"
    array = np.asarray(image[tuple(slice(None, None, max(1, s // 512)) for s in image.shape)],
                       dtype=np.float32)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return "em"
    low, median, high = np.percentile(array, [1, 50, 99.8])
    if high <= low:
        return "em"
    return "fluorescence" if (median - low) / (high - low) < 0.2 else "em"


def image_modality(image: Any, metadata: Mapping[str, Any] | None = None,
                   n_channels: int = 1) -> str:
    """The modality an image declares in its metadata, else the one its pixels suggest.

    Readers and this package's sample data write ``metadata["modality"]``; a
    declared value always wins over :func:`guess_modality`, which looks at
    the pixels only when nothing is declared.

    Examples:
        >>> flat = np.full((32, 32), 120, np.uint8)
        >>> image_modality(flat, {"modality": "fluorescence"})
        'fluorescence'
        >>> image_modality(flat, {"modality": "EM (FIB-SEM)"})
        'em'
        >>> image_modality(flat)
        'em'
    """
    declared = metadata.get("modality") if isinstance(metadata, Mapping) else None
    if isinstance(declared, str):
        lowered = declared.strip().lower()
        if lowered.startswith("fluo"):
            return "fluorescence"
        if lowered == "em" or lowered.startswith(("em ", "em(", "electron")):
            return "em"
    return guess_modality(image, n_channels)
