"""Random-number plumbing shared by the simulator.

Every generator in the simulator takes a :class:`numpy.random.Generator`.
Organelles draw from their own child generator keyed by name, so that asking
for fewer organelles (or adding a new kind) does not change the geometry of
the others for the same seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy import ndimage as ndi

#: anything :func:`as_rng` accepts
SeedLike = Union[int, np.random.Generator, np.random.SeedSequence, None]


def as_rng(seed: SeedLike) -> np.random.Generator:
    """Return ``seed`` itself when it is a generator, otherwise a new generator seeded by it."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def child_rng(base_seed: int, *keys: str | int) -> np.random.Generator:
    """A generator determined only by ``base_seed`` and ``keys``.

    ``zlib.crc32`` (not :func:`hash`) turns names into integers because it is
    stable across interpreter runs.
    """
    words = [int(base_seed) & 0xFFFFFFFF, (int(base_seed) >> 32) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(key.encode()) if isinstance(key, str) else int(key) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(words))


def draw_base_seed(rng: np.random.Generator) -> int:
    """One 63-bit integer from ``rng``, used to key the child generators of one scene."""
    return int(rng.integers(0, 2**63 - 1))


@dataclass(frozen=True)
class Range:
    """A closed interval that random parameters are drawn from.

    Attributes:
        low: smallest value.
        high: largest value.
        log: draw uniformly in log space (for scale parameters such as
            photon counts or sizes that span decades).
    """

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.high < self.low:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log-uniform range needs a positive lower bound")

    def draw(self, rng: np.random.Generator) -> float:
        """One value from the range."""
        if self.log:
            return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def interpolate_axis(
    values: np.ndarray, sample_positions: np.ndarray, n_out: int, axis: int
) -> np.ndarray:
    """Linear interpolation along one axis from samples at ``sample_positions`` onto indices
    0..n_out-1.

    Positions outside the sampled span take the nearest end value. Written as
    a gather and a blend rather than a matrix product, so it never waits on
    BLAS threads.
    """
    positions = np.asarray(sample_positions, dtype=float)
    out = np.clip(np.arange(n_out, dtype=float), positions[0], positions[-1])
    right = np.clip(np.searchsorted(positions, out, side="right"), 1, max(len(positions) - 1, 1))
    left = right - 1
    if len(positions) == 1:
        return np.repeat(values, n_out, axis=axis)
    span = positions[right] - positions[left]
    t = ((out - positions[left]) / np.where(span > 0, span, 1.0)).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = n_out
    t = t.reshape(shape)
    return np.take(values, left, axis=axis) * (1.0 - t) + np.take(values, right, axis=axis) * t


def upsample_linear(
    coarse: np.ndarray, factor: int, offset: float, shape: tuple[int, int]
) -> np.ndarray:
    """Linear interpolation of a coarse 2-D array whose sample ``i`` sits at fine index
    ``offset + i * factor``."""
    rows = interpolate_axis(
        coarse.astype(np.float32), offset + factor * np.arange(coarse.shape[0]), shape[0], 0
    )
    return interpolate_axis(
        rows, offset + factor * np.arange(coarse.shape[1]), shape[1], 1
    ).astype(np.float32)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], correlation_px: float
) -> np.ndarray:
    """2-D Gaussian random field with zero mean, unit standard deviation and the given
    correlation length.

    The field is synthesised on a grid coarser by about ``correlation_px / 1.2``
    and interpolated up, so long correlation lengths cost no more than short ones.

    Args:
        rng: random source.
        shape: output shape (Y, X).
        correlation_px: standard deviation of the smoothing kernel in pixels.

    Returns:
        float32 array of ``shape``.
    """
    correlation_px = max(float(correlation_px), 0.5)
    factor = max(1, int(round(correlation_px / 1.2)))
    sigma = correlation_px / factor
    pad = int(np.ceil(3.0 * sigma)) + 1  # keeps the periodic filter's wrap-around out of the result
    coarse_shape = tuple(-(-n // factor) + 2 * pad for n in shape)
    field = ndi.gaussian_filter(
        rng.standard_normal(coarse_shape, dtype=np.float32), sigma, mode="wrap"
    )
    if factor == 1:
        field = field[pad : pad + shape[0], pad : pad + shape[1]]
    elif max(coarse_shape) <= 160:
        field = upsample_linear(field, factor, -pad * factor, shape)
    else:
        field = np.repeat(np.repeat(field, factor, axis=0), factor, axis=1)
        field = ndi.uniform_filter(field, factor, mode="nearest")
        offset = pad * factor
        field = field[offset : offset + shape[0], offset : offset + shape[1]]
    field = field - field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32, copy=False)
