"""Realism statistics: each one moves the way its artefact says it must."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_organelle.simulation.realism import (
    background_noise_sigma,
    blockiness,
    describe,
    foreground_mask,
    grey_levels,
    histogram_intersection,
    intensity_histogram,
    noise_sigma,
    object_diameters,
    radial_power_spectrum,
    saturated_fractions,
    signal_to_noise,
    spectral_peak,
    spectral_slope,
    wasserstein,
)


def blobs(shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A smooth specimen-like test image: blurred random spots on a dim background, in [0, 1]."""
    rng = np.random.default_rng(seed)
    spots = (rng.random(shape) < 0.004).astype(np.float64)
    image = ndi.gaussian_filter(spots, 3.0)
    return 0.1 + 0.9 * image / image.max()


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """8-bit image through a JPEG encode/decode round trip."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer))


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    noise = np.random.default_rng(0).normal(0.0, 1.5, (512, 512))
    frequency, power = radial_power_spectrum(noise)
    assert frequency[0] == pytest.approx(1 / 512) and frequency[-1] == pytest.approx(0.5)
    assert abs(spectral_slope(frequency, power)) < 0.1
    # flat: low and high halves agree, and the level is the variance
    low, high = power[frequency < 0.25].mean(), power[frequency >= 0.25].mean()
    assert high / low == pytest.approx(1.0, abs=0.1)
    assert np.median(power) == pytest.approx(1.5**2, rel=0.1)


def test_blur_steepens_the_spectrum_and_removes_high_frequencies():
    noise = np.random.default_rng(1).normal(size=(256, 256))
    f, sharp = radial_power_spectrum(noise)
    _, blurred = radial_power_spectrum(ndi.gaussian_filter(noise, 2.0))
    assert spectral_slope(f, blurred) < spectral_slope(f, sharp) - 1.0
    assert blurred[f > 0.3].mean() < 1e-3 * sharp[f > 0.3].mean()


def test_a_stripe_pattern_is_a_spectral_peak_and_noise_is_not():
    rng = np.random.default_rng(8)
    noise = rng.normal(size=(256, 256))
    excess, _ = spectral_peak(*radial_power_spectrum(noise))
    assert excess < 0.2
    yy, xx = np.mgrid[:256, :256]
    # SIM-like residual stripes at three orientations, each at 0.4 cycles per pixel
    stripes = sum(np.cos(2 * np.pi * 0.4 * (np.cos(a) * xx + np.sin(a) * yy))
                  for a in (0.1, 0.1 + 2 * np.pi / 3, 0.1 + 4 * np.pi / 3))
    excess, where = spectral_peak(*radial_power_spectrum(noise + 0.3 * stripes))
    assert excess > 0.5 and where == pytest.approx(0.4, abs=0.01)


def test_spectral_slope_of_a_power_law():
    f = np.geomspace(0.01, 0.5, 40)
    assert spectral_slope(f, 7.0 * f**-3.0) == pytest.approx(-3.0)
    assert np.isnan(spectral_slope(f, f, band=(0.6, 0.7)))


def test_jpeg_at_quality_30_is_blockier_than_the_original():
    rng = np.random.default_rng(2)
    image = blobs() + rng.normal(0.0, 0.03, (256, 256))
    image8 = np.clip(image * 200, 0, 255).astype(np.uint8)
    compressed = jpeg(image8, 30)
    original_blockiness = blockiness(image8.astype(float))
    assert original_blockiness == pytest.approx(1.0, abs=0.1)
    assert blockiness(compressed.astype(float)) > 1.3 * original_blockiness
    # JPEG throws away the finest noise, which the finest-scale estimate then misses;
    # the background estimate, which looks a few pixels wide, still sees most of it
    assert noise_sigma(compressed) < 0.8 * noise_sigma(image8)
    assert (background_noise_sigma(compressed) / noise_sigma(compressed)
            > 1.2 * background_noise_sigma(image8) / noise_sigma(image8))
    # shifting the crop off the JPEG grid hides the blocks unless the phase is searched
    shifted = compressed[3:, 5:].astype(float)
    assert blockiness(shifted, aligned=False) > 1.3 * blockiness(shifted)


def test_noise_sigma_measures_noise_not_structure():
    rng = np.random.default_rng(3)
    image = blobs(seed=3)
    assert noise_sigma(image) < 0.005
    for sigma in (0.01, 0.05, 0.2):
        assert noise_sigma(image + rng.normal(0.0, sigma, image.shape)) == pytest.approx(
            sigma, rel=0.1)


def test_snr_rises_when_noise_falls():
    rng = np.random.default_rng(4)
    image = blobs(seed=4)
    snrs = [signal_to_noise(image + rng.normal(0.0, sigma, image.shape))
            for sigma in (0.2, 0.1, 0.05, 0.02)]
    assert all(a < b for a, b in zip(snrs, snrs[1:]))
    # scale-free: a gain and an offset leave it unchanged
    noisy = image + rng.normal(0.0, 0.05, image.shape)
    assert signal_to_noise(100 * noisy + 7) == pytest.approx(signal_to_noise(noisy), rel=1e-6)
    assert signal_to_noise(np.zeros((32, 32))) == 0.0


def test_object_diameters_tell_a_crowd_of_small_nuclei_from_one_large_one():
    yy, xx = np.mgrid[:256, :256]
    one = ((yy - 128) ** 2 + (xx - 128) ** 2 < 90**2).astype(float)
    crowd = np.zeros((256, 256))
    for cy in range(20, 256, 40):
        for cx in range(20, 256, 40):
            crowd[(yy - cy) ** 2 + (xx - cx) ** 2 < 12**2] = 1.0
    big, small = (object_diameters(foreground_mask(image)) for image in (one, crowd))
    assert big.size == 1 and big[0] == pytest.approx(180, rel=0.05)
    assert small.size == 36 and np.median(small) == pytest.approx(24, rel=0.1)


def test_clipping_and_quantisation_are_seen():
    rng = np.random.default_rng(5)
    camera = rng.poisson(blobs(seed=5) * 3000 + 100).astype(np.uint16)
    low, high = saturated_fractions(camera)
    assert low < 0.001 and high < 0.001
    # an 8-bit export that saturates the bright structures and quantises the rest
    clipped = np.clip(camera / 4.0, 0, 255).astype(np.uint8)
    assert saturated_fractions(clipped)[1] > 0.01
    assert grey_levels(clipped) <= 256 < grey_levels(camera)


def test_histograms_and_distances():
    rng = np.random.default_rng(6)
    a = rng.normal(0.3, 0.1, 10_000)
    h = intensity_histogram(a)
    assert h.shape == (64,) and h.sum() == pytest.approx(1.0)
    assert histogram_intersection(h, h) == pytest.approx(1.0)
    assert histogram_intersection(h, intensity_histogram(a + 0.5)) < 0.1
    assert wasserstein(a, a) == 0.0
    assert wasserstein(a, a + 0.2) == pytest.approx(0.2, abs=1e-9)


def test_describe_a_simulated_image():
    from napari_organelle.simulation.scene import training_sample

    raw, _, info = training_sample(7, (128, 128), ["mitochondria"], shown="mitochondria",
                                   return_info=True)
    low, high = np.percentile(raw, [1.0, 99.8])
    stats = describe(raw, (raw - low) / (high - low), pixel_size_nm=info["pixel_size_nm"])
    scalars = {k: v for k, v in stats.items() if np.isscalar(v)}
    assert all(np.isfinite(v) for v in scalars.values()), scalars
    assert 0.0 <= stats["background_fraction"] <= 1.0
    assert stats["snr"] > 0
    assert stats["histogram"].sum() == pytest.approx(1.0)
    per_um = stats["frequency"] / (info["pixel_size_nm"] / 1000.0)
    np.testing.assert_allclose(stats["frequency_per_um"], per_um)
