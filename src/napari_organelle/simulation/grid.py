"""The pixel grid that ties physical coordinates (nm) to array indices.

Geometry is generated in nanometres so that the pixel size can be chosen (and
randomised) freely. A :class:`Grid` says where pixel centres lie. The simulator
works on a *world* grid that is the image grid plus a margin, so that objects
cut by the image border are generated whole and blurred with their
neighbours, exactly as a camera crops a larger specimen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A 2-D grid of square pixels.

    Attributes:
        shape: (rows, columns).
        pixel_size_nm: edge length of one pixel.
        origin_nm: (y, x) position of the outer corner of pixel (0, 0); pixel
            (i, j) covers ``origin + [i, i + 1) * pixel_size`` in y and likewise in x.
    """

    shape: tuple[int, int]
    pixel_size_nm: float
    origin_nm: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.pixel_size_nm <= 0:
            raise ValueError(f"pixel_size_nm must be positive, not {self.pixel_size_nm}")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"a grid needs two positive dimensions, not {self.shape}")

    @property
    def extent_nm(self) -> tuple[float, float]:
        """(height, width) of the grid in nm."""
        return (self.shape[0] * self.pixel_size_nm, self.shape[1] * self.pixel_size_nm)

    @property
    def bounds_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper (y, x) corners in nm."""
        low = np.asarray(self.origin_nm, dtype=float)
        return low, low + np.asarray(self.extent_nm)

    def axes_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates along y and x."""
        y = self.origin_nm[0] + (np.arange(self.shape[0]) + 0.5) * self.pixel_size_nm
        x = self.origin_nm[1] + (np.arange(self.shape[1]) + 0.5) * self.pixel_size_nm
        return y, x

    def to_pixels(self, points_nm: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinates (pixel centres at integers) of (..., 2) points in nm."""
        return (
            np.asarray(points_nm, dtype=float) - np.asarray(self.origin_nm)
        ) / self.pixel_size_nm - 0.5

    def to_index(self, points_nm: np.ndarray) -> np.ndarray:
        """Index of the pixel containing each point, clipped to the grid; shape (..., 2) int."""
        index = np.floor(
            (np.asarray(points_nm, dtype=float) - np.asarray(self.origin_nm)) / self.pixel_size_nm
        ).astype(np.intp)
        # np.minimum/np.maximum in place: np.clip's Python overhead dominates for small inputs
        for axis in (0, 1):
            column = index[..., axis]
            np.maximum(column, 0, out=column)
            np.minimum(column, self.shape[axis] - 1, out=column)
        return index

    def contains(self, points_nm: np.ndarray) -> np.ndarray:
        """Whether each (..., 2) point lies on the grid."""
        low, high = self.bounds_nm
        points = np.asarray(points_nm, dtype=float)
        return np.all((points >= low) & (points < high), axis=-1)

    def sample(self, image: np.ndarray, points_nm: np.ndarray) -> np.ndarray:
        """Value of a grid-shaped ``image`` at the pixel containing each point (nearest pixel)."""
        index = self.to_index(points_nm)
        return image[index[..., 0], index[..., 1]]

    def padded(self, pad_px: int) -> Grid:
        """The same pixels with ``pad_px`` more on every side."""
        return Grid(
            (self.shape[0] + 2 * pad_px, self.shape[1] + 2 * pad_px),
            self.pixel_size_nm,
            (
                self.origin_nm[0] - pad_px * self.pixel_size_nm,
                self.origin_nm[1] - pad_px * self.pixel_size_nm,
            ),
        )

    def refined(self, factor: int) -> Grid:
        """The same area cut into ``factor`` x ``factor`` sub-pixels per pixel."""
        return Grid(
            (self.shape[0] * factor, self.shape[1] * factor),
            self.pixel_size_nm / factor,
            self.origin_nm,
        )

    def crop_slices(self, inner: Grid) -> tuple[slice, slice]:
        """Slices of this grid's arrays that cover ``inner`` (same pixel size, aligned)."""
        if not np.isclose(inner.pixel_size_nm, self.pixel_size_nm):
            raise ValueError("grids must share a pixel size to crop one from the other")
        offset = np.rint(
            (np.asarray(inner.origin_nm) - np.asarray(self.origin_nm)) / self.pixel_size_nm
        ).astype(int)
        return (
            slice(int(offset[0]), int(offset[0]) + inner.shape[0]),
            slice(int(offset[1]), int(offset[1]) + inner.shape[1]),
        )


def bin_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor`` x ``factor`` blocks (a camera pixel integrating its
    area)."""
    if factor == 1:
        return image
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)
