"""Sample images for napari's File > Open Sample, made by the simulator (no downloads, no
licences)."""

from __future__ import annotations

import numpy as np

from .cells import CellParams
from .em import simulate_em
from .microscope import MicroscopeSettings
from .scene import simulate_cell

#: channels of :func:`sample_live_cell`, in order
LIVE_CELL_CHANNELS: tuple[str, ...] = ("nuclei", "mitochondria", "er", "lysosomes")
#: pixel size of :func:`sample_live_cell`, nm (a 60x/1.4 oil objective on a confocal,
#: Nyquist-sampled)
LIVE_CELL_PIXEL_SIZE_NM = 90.0


def sample_live_cell(seed: int = 0) -> tuple[np.ndarray, list[str], float]:
    """A 4-channel live-cell confocal image (Hoechst, MitoTracker, Sec61b, LysoTracker) of a
    few cells.

    Args:
        seed: the same seed always gives the same image.

    Returns:
        ``(image, channel_names, pixel_size_nm)`` with ``image`` uint16 of
        shape (4, 512, 512).
    """
    microscope = MicroscopeSettings(
        modality="confocal",
        numerical_aperture=1.4,
        pinhole_airy_units=1.0,
        out_of_focus_fraction=0.04,
        defocus_fraction=0.25,
        peak_photons=150.0,
        background_fraction=0.015,
        illumination_falloff=0.12,
        illumination_roughness=0.03,
        detector="pmt",
        gain_adu_per_electron=3000.0 / 150.0,
        offset_adu=60.0,
        read_noise_electrons=0.3,
        excess_noise_factor=1.4,
        bit_depth=12,
    )
    cell = simulate_cell(
        seed,
        shape=(512, 512),
        pixel_size_nm=LIVE_CELL_PIXEL_SIZE_NM,
        organelles=LIVE_CELL_CHANNELS,
        microscope=microscope,
        params={"cells": CellParams(n_cells=3, cell_radius_nm=15000.0)},
    )
    image, names = cell.stack(LIVE_CELL_CHANNELS)
    return image, names, cell.pixel_size_nm


def sample_em_like(seed: int = 0) -> tuple[np.ndarray, float]:
    """A 512 x 512 EM-looking section (membranes, mitochondria with cristae, vesicles) at 5 nm
    per pixel.

    Returns:
        ``(image, pixel_size_nm)`` with ``image`` uint8 of shape (512, 512).
    """
    em = simulate_em(seed, shape=(512, 512), pixel_size_nm=5.0)
    return em.image, em.pixel_size_nm
