"""Check an image before segmenting it, and say clearly what is wrong with it.

Axes convention (napari's): the last two axes are Y and X. Every axis before
them (time, Z, or both) is iterated plane by plane. Channels are either an
explicit ``channel_axis`` or, for RGB(A) images, the last axis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np

from .errors import InputError

MIN_EDGE = 16
MAX_SPATIAL_DIMS = 4  # T, Z, Y, X


@dataclass
class PreparedImage:
    """An image in canonical order ``(*leading, C, Y, X)`` with its checks done.

    Attributes:
        data: numpy or dask array, canonical order; never copied as a whole.
        leading_shape: shape of the iterated axes (T and/or Z); ``()`` for 2-D.
        notes: things the user should know (converted RGB, filled NaNs...).
    """

    data: Any
    leading_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[-3])

    @property
    def plane_shape(self) -> tuple[int, int]:
        return int(self.data.shape[-2]), int(self.data.shape[-1])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (*self.leading_shape, *self.plane_shape)

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64)) if self.leading_shape else 1

    def plane_indices(self) -> Iterator[tuple[int, ...]]:
        return product(*(range(n) for n in self.leading_shape))

    def plane(self, index: tuple[int, ...]) -> np.ndarray:
        """The ``(C, Y, X)`` plane at ``index``, computed if the data is lazy."""
        plane = self.data[index]
        if hasattr(plane, "compute"):
            plane = plane.compute()
        return np.asarray(plane)


def prepare_image(
    image: Any,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    keep_rgb: bool = False,
) -> PreparedImage:
    """Validate an array for segmentation and put it in ``(*leading, C, Y, X)`` order.

    Args:
        image: numpy or dask array (anything with ``shape``, ``dtype`` and
            numpy indexing), 2-D to 4-D plus optional channels.
        channel_axis: axis that holds channels, if any.
        rgb: the last axis holds RGB(A) colour. None: guess (last axis of 3 or
            4 on an image of 3 or more dimensions with uint8 data).
        keep_rgb: keep three colour channels (for a 3-channel model) instead
            of requiring grey.

    Raises:
        InputError: wrong type or dtype, too few or too many dimensions, an
            image smaller than 16 x 16, colour RGB for a greyscale model.

    Examples:
        >>> prepared = prepare_image(np.zeros((5, 64, 64), dtype=np.uint16))
        >>> prepared.leading_shape, prepared.n_channels, prepared.plane_shape
        ((5,), 1, (64, 64))
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        try:
            image = np.asarray(image)
        except Exception:  # noqa: BLE001 - anything unconvertible gets the same message
            raise InputError(f"cannot read a {type(image).__name__} as an image array") from None
    dtype = np.dtype(image.dtype)
    if dtype.kind == "b":
        raise InputError("this is a binary mask, not an image: choose the image layer, "
                         "not a Labels or mask layer")
    if dtype.kind not in "uif":
        raise InputError(f"cannot segment data of type {dtype}; expected integer or float pixels")
    notes: list[str] = []
    ndim = len(image.shape)
    if ndim < 2:
        raise InputError(f"an image needs at least 2 dimensions (Y, X); this one has {ndim}")

    if rgb is None:
        rgb = channel_axis is None and ndim >= 3 and image.shape[-1] in (3, 4) and dtype == np.uint8
    if rgb:
        if image.shape[-1] not in (3, 4):
            raise InputError("an RGB image needs 3 or 4 values in its last axis, "
                             f"not {image.shape[-1]}")
        colour = image[..., :3]
        if keep_rgb:
            image, channel_axis = colour, ndim - 1
        else:
            sample = np.asarray(_subsample(colour))
            if not (np.array_equal(sample[..., 0], sample[..., 1])
                    and np.array_equal(sample[..., 0], sample[..., 2])):
                raise InputError(
                    "this is a colour RGB image and the model reads one channel; split the colours "
                    "(napari: right-click the layer > Split RGB) and segment the channel that "
                    "shows the organelles")
            image = image[..., 0]
            notes.append("RGB image with equal colours: segmented as greyscale")
            channel_axis = None

    if channel_axis is not None:
        ndim = len(image.shape)
        if not -ndim <= channel_axis < ndim:
            raise InputError(f"channel axis {channel_axis} does not exist in a {ndim}-D image")
        image = _moveaxis(image, channel_axis, -3)
    else:
        image = image[..., None, :, :]

    spatial = len(image.shape) - 1
    if spatial > MAX_SPATIAL_DIMS:
        raise InputError(
            f"{spatial}-D data{' (plus channels)' if channel_axis is not None else ''} is more "
            "than napari-organelle handles (up to T, Z, Y, X); if one axis holds channels, open "
            "the image with channel_axis set (napari splits it into one layer per channel)")
    height, width = image.shape[-2:]
    if height < MIN_EDGE or width < MIN_EDGE:
        raise InputError(f"the image is {height} x {width} pixels; segmentation needs at least "
                         f"{MIN_EDGE} x {MIN_EDGE}")
    if 0 in image.shape:
        raise InputError(f"the image is empty (shape {tuple(image.shape)})")
    return PreparedImage(data=image, leading_shape=tuple(int(n) for n in image.shape[:-3]),
                         notes=notes)


def _moveaxis(array: Any, source: int, destination: int) -> Any:
    if isinstance(array, np.ndarray):
        return np.moveaxis(array, source, destination)
    import dask.array as da

    return da.moveaxis(array, source, destination)


def _subsample(array: Any, max_pixels: int = 1 << 20) -> Any:
    """A strided view of at most about ``max_pixels`` pixels of the last two axes."""
    height, width = array.shape[-3:-1] if array.ndim >= 3 else array.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))
    index = (Ellipsis, slice(None, None, step), slice(None, None, step), slice(None))
    return array[index]


def plane_statistics(plane: np.ndarray, low: float, high: float,
                     max_pixels: int = 1 << 21) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-channel percentiles of a ``(C, Y, X)`` plane, from a strided subsample.

    Returns:
        ``(lows, highs, has_nonfinite)``; ``lows``/``highs`` are float32 per
        channel, ``nan`` where a channel has no finite pixel.
    """
    height, width = plane.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))
    sample = plane[:, ::step, ::step].astype(np.float32)
    has_nonfinite = False
    if sample.dtype.kind == "f" and plane.dtype.kind == "f":
        finite = np.isfinite(sample)
        has_nonfinite = not finite.all() or not np.isfinite(plane).all()
    lows = np.full(plane.shape[0], np.nan, dtype=np.float32)
    highs = np.full(plane.shape[0], np.nan, dtype=np.float32)
    for channel, values in enumerate(sample):
        values = values[np.isfinite(values)] if has_nonfinite else values.ravel()
        if values.size:
            lows[channel], highs[channel] = np.percentile(values, [low, high])
    return lows, highs, has_nonfinite
