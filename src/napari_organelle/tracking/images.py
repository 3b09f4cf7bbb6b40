"""Label movies straight from images: segment each time point with a model, then track."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..progress import Progress


def segment_movie(images: Any, model: Any, organelle: str, *,
                  pixel_size_nm: float | None = None,
                  progress: Callable[[Progress], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  **options: Any) -> NDArray[np.integer]:
    """Instance labels ``(T, Y, X)`` (or ``(T, Z, Y, X)``) of one organelle in a time-lapse.

    Uses the core :func:`napari_organelle.inference.segment` (plane by plane for
    ``(T, Y, X)``; one 3-D stack per time point for ``(T, Z, Y, X)``).

    Args:
        images: ``(T, Y, X)`` or ``(T, Z, Y, X)`` intensities (one channel).
        model: a loaded model or its name (e.g. ``"fluo-organelles"``).
        organelle: the instance class to track, e.g. ``"mitochondria"``.
        pixel_size_nm: the images' pixel size (rescaled to the model's).
        progress: called with segmentation progress.
        should_stop: polled; True stops with :class:`~napari_organelle.errors.Cancelled`.
        **options: further options of :func:`~napari_organelle.inference.segment_iter`.

    Raises:
        InputError: the images are not a 3-D or 4-D single-channel movie.
    """
    from ..inference import segment

    data = np.asarray(images) if not hasattr(images, "chunks") else images
    if data.ndim not in (3, 4):
        raise InputError(f"tracking from images takes a (T, Y, X) or (T, Z, Y, X) movie; this "
                         f"one is {data.ndim}-D {tuple(data.shape)}")
    if data.shape[0] < 2:
        raise InputError(f"tracking needs at least 2 frames; this movie has {data.shape[0]}")
    volume = data.ndim == 4
    result = segment(data, model, progress=progress, should_stop=should_stop,
                     classes=[organelle], pixel_size_nm=pixel_size_nm, volume=volume,
                     axes="TZYX" if volume else None, **options)
    if organelle not in result.labels:
        raise InputError(f"the model gave no {organelle!r} labels (it has "
                         f"{', '.join(result.labels) or 'none'})")
    return np.asarray(result.labels[organelle])
