"""What the simulator does after detection, and the look of live-cell ER images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_organelle.simulation.acquisition import (
    AcquisitionArtifacts,
    apply_artifacts,
    jpeg_roundtrip,
    to_eight_bit,
)
from napari_organelle.simulation.cells import CellParams
from napari_organelle.simulation.scene import training_sample


def test_eight_bit_export_clips_the_asked_share_and_keeps_order():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 100.0, (128, 128)).astype(np.float32)
    out = to_eight_bit(image, 0.03)
    assert out.dtype == np.uint8
    assert abs(float((out == 255).mean()) - 0.03) < 0.005
    # a monotone mapping: brighter inputs never come out darker
    order = np.argsort(image.ravel())
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)


def test_jpeg_roundtrip_leaves_blocks_on_fine_detail():
    rng = np.random.default_rng(1)
    detail = (rng.random((64, 64)) * 255).astype(np.uint8)
    low, high = jpeg_roundtrip(detail, 30), jpeg_roundtrip(detail, 95)
    assert low.shape == detail.shape and low.dtype == np.uint8
    error_low = np.abs(low.astype(int) - detail).mean()
    error_high = np.abs(high.astype(int) - detail).mean()
    assert error_low > error_high > 0


def test_smoothing_removes_high_frequency_noise():
    rng = np.random.default_rng(2)
    noisy = rng.normal(100.0, 10.0, (128, 128)).astype(np.float32)
    smooth = apply_artifacts(noisy, AcquisitionArtifacts(smoothing_px=1.5))
    assert smooth.std() < 0.3 * noisy.std()
    assert abs(float(smooth.mean()) - float(noisy.mean())) < 1.0


def test_random_histories_cover_raw_and_processed_images():
    rng = np.random.default_rng(3)
    histories = [AcquisitionArtifacts.random(rng) for _ in range(400)]
    # raw: no smoothing (0.75) and no 8-bit export (0.65)
    assert 0.42 < np.mean([not h.any for h in histories]) < 0.56
    eight_bit = [h for h in histories if h.eight_bit]
    assert 0.25 < len(eight_bit) / len(histories) < 0.45
    assert any(h.jpeg_quality for h in eight_bit) and any(not h.jpeg_quality for h in eight_bit)
    assert all(h.saturated_fraction > 0 for h in eight_bit)


def _er_samples_with(key: str, count: int = 2):
    found = []
    for seed in range(60):
        image, targets, info = training_sample(seed, (128, 128), ["er"], shown="er",
                                               return_info=True)
        if key in info:
            found.append((image, targets["er"], info))
            if len(found) == count:
                return found
    pytest.fail(f"no ER sample with {key} in 60 seeds")


def test_perinuclear_haze_is_bright_and_left_unlabelled():
    for image, target, info in _er_samples_with("haze_level"):
        # the labelled tubules are not where the image is brightest: the mass is
        brightest = image >= np.percentile(image, 99.5)
        assert target[brightest].mean() < 0.5 * max(target.mean(), 1e-3) + 0.05
        assert info["haze_level"] >= 1.5


def test_er_label_width_follows_the_psf():
    from skimage.morphology import skeletonize

    widths = []
    for seed in range(12):
        _, targets, info = training_sample(seed, (128, 128), ["er"], shown="er",
                                           return_info=True)
        mask = targets["er"] > 0
        if mask.sum() > 50:
            fwhm_px = 2.355 * info["microscope"].psf_sigma_nm / info["pixel_size_nm"]
            widths.append((mask.sum() / max(skeletonize(mask).sum(), 1), fwhm_px))
    assert len(widths) >= 5
    drawn, psf = np.array(widths).T
    # wider PSFs in pixels give wider labels (annotators draw what they see)
    assert np.corrcoef(drawn, psf)[0, 1] > 0.3
    assert drawn.max() > 3.0


def test_training_samples_stay_deterministic_with_artifacts():
    a, ta = training_sample(7, (96, 96), ["er", "mitochondria"])
    b, tb = training_sample(7, (96, 96), ["er", "mitochondria"])
    assert np.array_equal(a, b)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert CellParams.random(np.random.default_rng(0)) == CellParams.random(
        np.random.default_rng(0))


def test_touching_nuclei_are_kept_apart_in_the_target():
    from skimage.measure import label

    for seed in range(40):
        image, targets, info = training_sample(seed, (128, 128), ["nuclei"], shown="nuclei",
                                               return_info=True)
        if info["pixel_size_nm"] >= 200:
            assert info["microscope"].modality == "widefield"
            assert info["microscope"].numerical_aperture <= 0.8
            mask = targets["nuclei"] > 0
            # 4-connected pieces: the gaps separate touching nuclei
            assert label(mask, connectivity=1).max() >= 3
            return
    pytest.fail("no low-magnification nuclei field in 40 seeds")
