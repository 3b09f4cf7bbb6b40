"""Image statistics that say how much a simulated image looks like a real one.

The simulator is judged against real live-cell images by numbers, never by
training on them. Every statistic here is a plain function of one 2-D image:

* :func:`intensity_histogram` and :func:`histogram_intersection` /
  :func:`wasserstein` compare grey-value distributions (after the percentile
  normalisation the models use);
* :func:`radial_power_spectrum`, :func:`spectral_slope` and
  :func:`spectral_peak` describe texture and sharpness: how power falls from
  coarse structure to fine detail and noise, and periodic patterns;
* :func:`noise_sigma`, :func:`background_noise_sigma`, :func:`contrast` and
  :func:`signal_to_noise` measure noise and contrast;
* :func:`saturated_fractions`, :func:`grey_levels` and :func:`blockiness`
  detect the digitisation artefacts of real files: clipping, 8-bit
  quantisation and JPEG's 8 x 8 blocks;
* :func:`describe` gathers them all for one image.

Nothing here imports Qt, napari or torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "HISTOGRAM_BINS",
    "HISTOGRAM_RANGE",
    "background_noise_sigma",
    "blockiness",
    "contrast",
    "describe",
    "foreground_mask",
    "grey_levels",
    "histogram_intersection",
    "intensity_histogram",
    "noise_sigma",
    "object_diameters",
    "radial_power_spectrum",
    "saturated_fractions",
    "signal_to_noise",
    "spectral_peak",
    "spectral_slope",
    "wasserstein",
]

#: bins of :func:`intensity_histogram` over :data:`HISTOGRAM_RANGE`
HISTOGRAM_BINS = 64
#: grey-value range of :func:`intensity_histogram` for percentile-normalised images
HISTOGRAM_RANGE = (-0.1, 1.2)
#: MAD to standard deviation for Gaussian noise
_MAD_TO_SIGMA = 1.4826
#: Immerkaer's noise-estimation kernel: a difference of Laplacians that cancels
#: constant, linear and quadratic intensity; white noise of sigma s gives 6 s
_NOISE_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def intensity_histogram(image: np.ndarray, bins: int = HISTOGRAM_BINS,
                        value_range: tuple[float, float] = HISTOGRAM_RANGE) -> np.ndarray:
    """Fraction of pixels per grey-value bin; values outside the range count in the end bins.

    Args:
        image: a (normalised) image of any shape.
        bins: number of equal bins.
        value_range: ``(low, high)`` edges of the first and last bin.

    Returns:
        float64 array of ``bins`` fractions summing to 1.

    Examples:
        >>> h = intensity_histogram(np.array([0.0, 0.0, 0.5, 2.0]), bins=4, value_range=(0, 1))
        >>> h.tolist()
        [0.5, 0.0, 0.25, 0.25]
    """
    low, high = value_range
    values = np.clip(np.asarray(image, dtype=np.float64).ravel(), low, high)
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    return counts / max(values.size, 1)


def histogram_intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Shared mass of two histograms (1 = identical, 0 = disjoint), each rescaled to sum 1.

    Examples:
        >>> histogram_intersection(np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))
        0.5
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.minimum(a / max(a.sum(), 1e-12), b / max(b.sum(), 1e-12)).sum())


def wasserstein(a: np.ndarray, b: np.ndarray, max_samples: int = 200_000, seed: int = 0) -> float:
    """Earth mover's distance between the grey values of two images (or pools of pixels).

    Larger sets are subsampled (seeded) to ``max_samples`` values each, which
    changes the distance by far less than the gaps it is used to measure.

    Examples:
        >>> round(wasserstein(np.zeros(100), np.full(50, 0.25)), 3)
        0.25
    """
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(seed)
    samples = []
    for values in (a, b):
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size > max_samples:
            values = rng.choice(values, max_samples, replace=False)
        samples.append(values)
    return float(wasserstein_distance(*samples))


def radial_power_spectrum(image: np.ndarray, window: bool = True
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum, in units where white noise of variance v has power v.

    The mean is removed and, by default, a separable Hann window tapers the
    borders so that the image edges do not add a spurious cross of power.
    Frequencies are binned in rings one frequency step (``1 / min(shape)``
    cycles per pixel) wide, from that step up to 0.5 (Nyquist).

    Args:
        image: 2-D image.
        window: taper the image with a Hann window first.

    Returns:
        ``(frequency, power)``: ring centres in cycles per pixel and the mean
        power in each ring. Divide the frequency by the pixel size in um for
        cycles per um.

    Examples:
        >>> noise = np.random.default_rng(0).normal(0.0, 2.0, (128, 128))
        >>> f, p = radial_power_spectrum(noise)
        >>> bool(abs(np.median(p) - 4.0) < 0.4), float(f[-1]) <= 0.5
        (True, True)
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"radial_power_spectrum needs a 2-D image, not shape {image.shape}")
    ny, nx = image.shape
    image = image - image.mean()
    if window:
        taper = np.outer(np.hanning(ny), np.hanning(nx))
        image = image * taper
        norm = float((taper**2).sum())
    else:
        norm = float(ny * nx)
    power = np.abs(np.fft.fft2(image)) ** 2 / norm
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.fftfreq(nx)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    step = 1.0 / min(ny, nx)
    ring = np.rint(radius / step).astype(np.int64)
    n_rings = int(np.floor(0.5 / step))
    keep = (ring >= 1) & (ring <= n_rings)
    sums = np.bincount(ring[keep], weights=power[keep], minlength=n_rings + 1)[1:]
    counts = np.bincount(ring[keep], minlength=n_rings + 1)[1:]
    frequency = np.arange(1, n_rings + 1) * step
    return frequency, sums / np.maximum(counts, 1)


def spectral_slope(frequency: np.ndarray, power: np.ndarray,
                   band: tuple[float, float] = (0.02, 0.25)) -> float:
    """Slope of log10 power against log10 frequency inside ``band`` (cycles per pixel).

    0 for white noise; about -2 for an image of sharp-edged blobs or Brownian
    texture; steeper for blurred images. A band below the noise floor (up to
    0.25 cycles per pixel by default) measures structure and blur, not noise.

    Examples:
        >>> f = np.linspace(0.01, 0.5, 50)
        >>> round(spectral_slope(f, 3.0 * f**-2.0), 6)
        -2.0
    """
    frequency = np.asarray(frequency, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    inside = (frequency >= band[0]) & (frequency <= band[1]) & (power > 0)
    if inside.sum() < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log10(frequency[inside]), np.log10(power[inside]), 1)
    return float(slope)


def spectral_peak(frequency: np.ndarray, power: np.ndarray, band: tuple[float, float] = (0.05, 0.5),
                  width: int = 9) -> tuple[float, float]:
    """The strongest narrow peak of a spectrum: periodic patterns such as SIM or scan stripes.

    Each ring's log10 power is compared with the running median of the
    ``width`` rings around it; the largest excess inside ``band`` (cycles per
    pixel) is returned with its frequency. White noise gives about 0.1
    decades; a visible stripe pattern a decade or more.

    Returns:
        ``(excess in decades, frequency in cycles per pixel)``.

    Examples:
        >>> rng = np.random.default_rng(7)
        >>> stripes = np.sin(2 * np.pi * 0.3 * np.arange(256))[None, :] * np.ones((256, 1))
        >>> f, p = radial_power_spectrum(rng.normal(size=(256, 256)) + 0.5 * stripes)
        >>> excess, where = spectral_peak(f, p)
        >>> bool(excess > 1.0), round(where, 2)
        (True, 0.3)
    """
    frequency = np.asarray(frequency, dtype=np.float64)
    log_power = np.log10(np.maximum(np.asarray(power, dtype=np.float64), 1e-30))
    baseline = ndi.median_filter(log_power, size=width, mode="nearest")
    excess = np.where((frequency >= band[0]) & (frequency <= band[1]), log_power - baseline,
                      -np.inf)
    index = int(np.argmax(excess))
    if not np.isfinite(excess[index]):
        return float("nan"), float("nan")
    return float(excess[index]), float(frequency[index])


def noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of pixel noise, from the MAD of a high-pass residual.

    The residual is the image convolved with Immerkaer's kernel (a difference
    of two Laplacians, blind to smooth intensity up to quadratic terms),
    scaled so that white noise keeps its sigma; the median absolute deviation
    then ignores the few large residuals at edges of structures. Noise that
    was smoothed away (blurred, JPEG-compressed) is not seen.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> ramp = np.add.outer(np.arange(200.0), np.arange(200.0))
        >>> bool(abs(noise_sigma(ramp + rng.normal(0.0, 3.0, ramp.shape)) - 3.0) < 0.15)
        True
    """
    image = np.asarray(image, dtype=np.float64)
    residual = ndi.convolve(image, _NOISE_KERNEL, mode="reflect")[1:-1, 1:-1] / 6.0
    return float(_MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual))))


def foreground_mask(image: np.ndarray, smooth_sigma: float = 1.0) -> np.ndarray:
    """Pixels above Otsu's threshold of the lightly smoothed image (the stained structures).

    Examples:
        >>> image = np.zeros((20, 20)); image[5:15, 5:15] = 1.0
        >>> int(foreground_mask(image, smooth_sigma=0).sum())
        100
    """
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float64)
    smoothed = ndi.gaussian_filter(image, smooth_sigma) if smooth_sigma > 0 else image
    if smoothed.max() <= smoothed.min():
        return np.zeros(image.shape, dtype=bool)
    return smoothed > threshold_otsu(smoothed)


def object_diameters(mask: np.ndarray, min_area: int = 16) -> np.ndarray:
    """Equivalent diameters (px) of the connected parts of ``mask`` of ``min_area`` px or more.

    Applied to :func:`foreground_mask`, the sizes of the stained objects in
    pixels: what a model sees, whatever the pixel size.

    Examples:
        >>> mask = np.zeros((40, 40), bool); mask[2:12, 2:12] = True; mask[20, 20] = True
        >>> object_diameters(mask).round(2).tolist()
        [11.28]
    """
    labels, count = ndi.label(np.asarray(mask, dtype=bool))
    if count == 0:
        return np.zeros(0)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas >= min_area]
    return np.sqrt(4.0 * areas / np.pi)


def contrast(image: np.ndarray, smooth_sigma: float = 1.0) -> float:
    """Mean of the pixels above Otsu (:func:`foreground_mask`) minus the median of those below.

    Examples:
        >>> image = np.zeros((20, 20)); image[5:15, 5:15] = 4.0
        >>> contrast(image + 1.0, smooth_sigma=0)
        4.0
    """
    image = np.asarray(image, dtype=np.float64)
    foreground = foreground_mask(image, smooth_sigma)
    if not foreground.any() or foreground.all():
        return 0.0
    return float(image[foreground].mean() - np.median(image[~foreground]))


def background_noise_sigma(image: np.ndarray, smooth_sigma: float = 3.0,
                           margin: int = 3) -> float:
    """Noise of the background at all but coarse scales: a second opinion on :func:`noise_sigma`.

    The MAD-based sigma of ``image - gaussian(image, smooth_sigma)`` over the
    pixels below Otsu's threshold and at least ``margin`` pixels from any
    pixel above it. Unlike the finest-scale residual of :func:`noise_sigma` it
    still sees noise that JPEG compression or smoothing blurred into blotches
    a few pixels wide (for white noise it reads its sigma, within 1 %).

    Examples:
        >>> rng = np.random.default_rng(6)
        >>> image = np.zeros((128, 128)); image[40:80, 40:80] = 10.0
        >>> bool(0.95 < background_noise_sigma(image + rng.normal(0, 1, image.shape)) < 1.05)
        True
    """
    image = np.asarray(image, dtype=np.float64)
    background = ~foreground_mask(image)
    if margin > 0:
        background = ~ndi.binary_dilation(~background, iterations=margin)
    if background.sum() < 16:
        return float("nan")
    residual = (image - ndi.gaussian_filter(image, smooth_sigma))[background]
    return float(_MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual))))


def signal_to_noise(image: np.ndarray, smooth_sigma: float = 1.0,
                    sigma: float | None = None) -> float:
    """Contrast of the stained structures over the pixel noise.

    :func:`contrast` divided by ``sigma`` (by default :func:`noise_sigma`).
    Scale-free, so raw and normalised images agree.

    Examples:
        >>> rng = np.random.default_rng(2)
        >>> clean = np.zeros((64, 64)); clean[16:48, 16:48] = 10.0
        >>> noisy = clean + rng.normal(0, 2, clean.shape)
        >>> quiet = clean + rng.normal(0, 1, clean.shape)
        >>> 4 < signal_to_noise(noisy) < 6 < 8 < signal_to_noise(quiet) < 12
        True
    """
    image = np.asarray(image, dtype=np.float64)
    signal = contrast(image, smooth_sigma)
    if signal == 0.0:
        return 0.0
    sigma = noise_sigma(image) if sigma is None else sigma
    return float(signal / sigma) if sigma > 0 else float("inf")


def saturated_fractions(raw: np.ndarray) -> tuple[float, float]:
    """Fractions of pixels at the image's minimum and at its maximum value.

    In a raw camera image noise spreads the extremes over single pixels;
    large fractions mean values were clipped (at zero, or at the top of an
    8-bit range).

    Examples:
        >>> saturated_fractions(np.array([0, 0, 3, 7, 255, 255, 255, 255]))
        (0.25, 0.5)
    """
    raw = np.asarray(raw)
    if raw.size == 0:
        return 0.0, 0.0
    return float(np.mean(raw == raw.min())), float(np.mean(raw == raw.max()))


def grey_levels(raw: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.8)) -> int:
    """Distinct raw values between two percentiles: the grey levels the normalised image uses.

    An 8-bit image whose structures span a third of its range has fewer than
    100; a 16-bit camera image usually thousands.

    Examples:
        >>> grey_levels(np.repeat(np.arange(10), 100), (0, 100))
        10
    """
    raw = np.asarray(raw)
    low, high = np.percentile(raw, percentiles)
    values = raw[(raw >= low) & (raw <= high)]
    return int(np.unique(values).size)


def blockiness(image: np.ndarray, block: int = 8, aligned: bool = True) -> float:
    """Gradient energy across ``block`` x ``block`` block boundaries over that elsewhere.

    Squared differences of neighbouring pixels are averaged per column (for
    horizontal neighbours) and per row (vertical), grouped by position modulo
    ``block``. About 1 for an image without blocks; JPEG at low quality
    raises it well above 1, because each 8 x 8 block is coded on its own.

    Args:
        image: 2-D image.
        block: block size (8 for JPEG).
        aligned: the grid starts at pixel 0 (an uncropped JPEG); otherwise the
            phase with the most energy is taken, which reads slightly above 1
            even for an image without blocks.

    Returns:
        The ratio (``nan`` for an image smaller than two blocks or without gradients).

    Examples:
        >>> rng = np.random.default_rng(3)
        >>> noise = rng.normal(0.0, 0.1, (64, 64))
        >>> tiles = np.kron(rng.normal(size=(8, 8)), np.ones((8, 8))) + noise
        >>> bool(blockiness(tiles) > 10), bool(abs(blockiness(noise) - 1.0) < 0.2)
        (True, True)
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 2 * block:
        return float("nan")
    energy = np.zeros(block)
    counts = np.zeros(block)
    for axis in (0, 1):
        diff = np.diff(image, axis=axis) ** 2
        profile = diff.mean(axis=1 - axis)  # one value per boundary position along ``axis``
        phase = np.arange(profile.size) % block
        energy += np.bincount(phase, weights=profile, minlength=block)
        counts += np.bincount(phase, minlength=block)
    energy = energy / np.maximum(counts, 1)
    boundary = block - 1 if aligned else int(np.argmax(energy))
    inside = np.delete(energy, boundary).mean()
    return float(energy[boundary] / inside) if inside > 0 else float("nan")


def describe(raw: np.ndarray, normalized: np.ndarray,
             pixel_size_nm: float | None = None) -> dict[str, Any]:
    """All realism statistics of one image.

    Args:
        raw: the image as stored (camera values, 8-bit file values).
        normalized: the same image after the models' percentile normalisation.
        pixel_size_nm: pixel size, when known, to give frequencies per um.

    Returns:
        dict of scalars and arrays:

        * ``snr`` and ``snr_background``: :func:`contrast` over
          :func:`noise_sigma` and over :func:`background_noise_sigma`, which
          are also given (as ``noise_sigma``, ``background_noise_sigma``, in
          normalised units);
        * ``spectral_slope``, ``high_frequency_power`` (share of the
          ring-averaged power above 0.25 cycles per pixel) and the
          :func:`spectral_peak` as ``spectral_peak_decades`` and
          ``spectral_peak_frequency``;
        * ``background_fraction`` (below Otsu), ``object_diameter_px``
          (median, of foreground objects of 16 px or more), ``objects_per_mpx``;
        * ``saturated_low`` / ``saturated_high``, ``grey_levels``,
          ``distinct_values``, ``blockiness`` (of the raw image), ``mean``;
        * arrays ``histogram``, ``frequency`` (cycles per pixel), ``power``,
          and ``frequency_per_um`` when the pixel size is known.

    Examples:
        >>> rng = np.random.default_rng(5)
        >>> raw = rng.poisson(20.0, (64, 64)).astype(np.uint16)
        >>> stats = describe(raw, raw / 40.0)
        >>> sorted(k for k, v in stats.items() if np.isscalar(v))[:4]
        ['background_fraction', 'background_noise_sigma', 'blockiness', 'distinct_values']
    """
    normalized = np.asarray(normalized, dtype=np.float64)
    frequency, power = radial_power_spectrum(normalized)
    low, high = saturated_fractions(raw)
    foreground = foreground_mask(normalized)
    sigma = noise_sigma(normalized)
    background_sigma = background_noise_sigma(normalized)
    diameters = object_diameters(foreground)
    peak, peak_frequency = spectral_peak(frequency, power)
    total = float(power.sum())
    stats: dict[str, Any] = {
        "mean": float(normalized.mean()),
        "snr": signal_to_noise(normalized, sigma=sigma),
        "snr_background": signal_to_noise(normalized, sigma=background_sigma),
        "noise_sigma": sigma,
        "background_noise_sigma": background_sigma,
        "spectral_slope": spectral_slope(frequency, power),
        "spectral_peak_decades": peak,
        "spectral_peak_frequency": peak_frequency,
        "high_frequency_power": float(power[frequency > 0.25].sum() / total) if total > 0 else 0.0,
        "background_fraction": float(1.0 - foreground.mean()),
        "object_diameter_px": float(np.median(diameters)) if diameters.size else 0.0,
        "objects_per_mpx": float(diameters.size / normalized.size * 1e6),
        "saturated_low": low,
        "saturated_high": high,
        "grey_levels": grey_levels(raw),
        "distinct_values": int(np.unique(np.asarray(raw)).size),
        "blockiness": blockiness(np.asarray(raw, dtype=np.float64)),
        "histogram": intensity_histogram(normalized),
        "frequency": frequency,
        "power": power,
    }
    if pixel_size_nm:
        stats["frequency_per_um"] = frequency / (pixel_size_nm / 1000.0)
    return stats
