"""Sliding-window prediction with Gaussian blending, in bounded memory.

A plane is cut into overlapping square tiles. Each tile's prediction is
weighted by a Gaussian that is highest in the tile centre, where the network
sees the most context, so overlapping tiles blend without seams.

Unlike a whole-image accumulator (MONAI's ``sliding_window_inference`` keeps a
float32 sum and a count map the size of the output), tiles are processed one
row of tiles at a time into a strip buffer only one tile high. As soon as no
later tile can touch a row of pixels, those rows are normalised and written out
as 8-bit probabilities. Memory is therefore ``classes x tile x width`` floats
plus the 8-bit output, whatever the image height.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

import numpy as np

from .progress import Progress

BatchPredictor = Callable[[np.ndarray], np.ndarray]
"""Maps float32 tiles ``(B, C, T, T)`` to class probabilities ``(B, K, T, T)`` in [0, 1]."""


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels; the last tile ends flush.

    Examples:
        >>> tile_starts(1000, 512, 384)
        [0, 384, 488]
        >>> tile_starts(512, 512, 384)
        [0]
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def gaussian_weight(tile: int, sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights for one tile: a Gaussian with sigma = ``sigma_scale * tile``.

    The minimum is clamped above zero so border pixels of the image, which only
    ever fall on tile edges, still get a defined value.
    """
    centre = (tile - 1) / 2.0
    sigma = sigma_scale * tile
    axis = np.exp(-0.5 * ((np.arange(tile) - centre) / sigma) ** 2)
    weight = np.outer(axis, axis).astype(np.float32)
    weight /= weight.max()
    return np.maximum(weight, max(float(weight[weight > 0].min()), 1e-4))


def predict_plane(
    plane: np.ndarray,
    predict_batch: BatchPredictor,
    n_classes: int,
    tile: int = 512,
    overlap: float = 0.25,
    batch_size: int = 4,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    thresholds: Sequence[float] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Predict one plane tile by tile; yields progress, returns uint8 probabilities or masks.

    Args:
        plane: ``(C, Y, X)`` raw image (any numeric dtype).
        predict_batch: runs the network on a batch of normalised tiles.
        n_classes: number of output channels ``K``.
        tile: tile edge in pixels (a multiple of 32 for U-Nets).
        overlap: fraction of a tile shared with its neighbour, in [0, 0.9].
        batch_size: tiles per forward pass.
        normalize: maps a raw ``(C, T, T)`` tile to float32 network input;
            applying it per tile keeps the whole plane from being copied to float.
        thresholds: one probability per class; when given, each finished row of
            the strip is thresholded as it is written and the result is the
            0/1 masks, so no probability image is ever held (for a caller that
            only needs masks, it halves the peak memory of mask + probabilities).

    Returns:
        ``(K, Y, X)`` uint8 array: probabilities scaled to 0..255, or 0/1 masks
        (``probability >= threshold``) when ``thresholds`` is given.
    """
    if not 0 <= overlap < 0.9:
        raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")
    if thresholds is not None and len(thresholds) != n_classes:
        raise ValueError(f"{len(thresholds)} thresholds for {n_classes} classes")
    channels, height, width = plane.shape
    pad_y, pad_x = max(0, tile - height), max(0, tile - width)
    if pad_y or pad_x:
        # Smaller than one tile: reflect-pad (cheap, the plane is small) rather
        # than shrinking the tile, which would change the network's context.
        mode = "reflect" if height > pad_y and width > pad_x else "symmetric"
        plane = np.pad(plane, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)
    padded_h, padded_w = plane.shape[1:]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    ys = tile_starts(padded_h, tile, stride)
    xs = tile_starts(padded_w, tile, stride)
    weight = gaussian_weight(tile)
    normalize = normalize or (lambda raw: raw.astype(np.float32))

    output = np.zeros((n_classes, height, width), dtype=np.uint8)
    strip = np.zeros((n_classes, tile, padded_w), dtype=np.float32)
    strip_weight = np.zeros((tile, padded_w), dtype=np.float32)
    total, done = len(ys) * len(xs), 0

    for row, y in enumerate(ys):
        for first in range(0, len(xs), batch_size):
            batch_xs = xs[first:first + batch_size]
            batch = np.stack([normalize(plane[:, y:y + tile, x:x + tile]) for x in batch_xs])
            probabilities = predict_batch(batch)
            for x, probability in zip(batch_xs, probabilities):
                strip[:, :, x:x + tile] += probability * weight
                strip_weight[:, x:x + tile] += weight
            done += len(batch_xs)
            yield Progress(done, total, "tiles")
        # Rows above the next tile row will receive no more contributions.
        next_y = ys[row + 1] if row + 1 < len(ys) else y + tile
        finished = next_y - y
        _write_rows(output, strip[:, :finished], strip_weight[:finished], y, height, width,
                    thresholds)
        strip[:, : tile - finished] = strip[:, finished:]
        strip[:, tile - finished:] = 0
        strip_weight[: tile - finished] = strip_weight[finished:]
        strip_weight[tile - finished:] = 0
    return output


def _write_rows(output: np.ndarray, rows: np.ndarray, row_weight: np.ndarray, y: int,
                height: int, width: int, thresholds: Sequence[float] | None = None) -> None:
    stop = min(y + rows.shape[1], height)
    if stop <= y:
        return  # rows of padding only
    count = stop - y
    if thresholds is not None:
        weight = row_weight[:count, :width]
        for channel, threshold in enumerate(thresholds):
            # weighted sum >= threshold * weight: the blended probability, without dividing
            np.greater_equal(rows[channel, :count, :width], threshold * weight,
                             out=output[channel, y:stop].view(bool))
        return
    blended = rows[:, :count, :width] / row_weight[None, :count, :width]
    np.multiply(blended, 255.0, out=blended)
    np.add(blended, 0.5, out=blended)
    np.clip(blended, 0, 255, out=blended)
    output[:, y:stop] = blended.astype(np.uint8)
