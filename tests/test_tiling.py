from __future__ import annotations

import numpy as np
import pytest

from napari_organelle.progress import run
from napari_organelle.tiling import gaussian_weight, predict_plane, tile_starts


@pytest.mark.parametrize("length,tile,stride", [(1000, 256, 192), (256, 256, 192), (300, 128, 96),
                                                (129, 128, 1)])
def test_tiles_cover_every_pixel_and_stay_inside(length, tile, stride):
    starts = tile_starts(length, tile, stride)
    covered = np.zeros(max(length, tile), bool)
    for start in starts:
        covered[start:start + tile] = True
        assert start + tile <= max(length, tile)
    assert covered[:length].all()


def identity_predictor(batch):
    # A "network" that returns its input: blending must reproduce the image exactly.
    return batch.copy()


@pytest.mark.parametrize("shape", [(1, 300, 517), (1, 64, 40), (1, 128, 128)])
def test_blending_reproduces_a_position_independent_prediction_without_seams(shape):
    rng = np.random.default_rng(0)
    plane = rng.random(shape).astype(np.float32)
    out = run(predict_plane(plane, identity_predictor, 1, tile=128, overlap=0.25, batch_size=3))
    assert out.shape == shape and out.dtype == np.uint8
    expected = np.round(plane * 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_progress_counts_every_tile():
    plane = np.zeros((1, 300, 300), np.float32)
    reports = []
    run(predict_plane(plane, identity_predictor, 1, tile=128, overlap=0.5), reports.append)
    assert reports[-1].done == reports[-1].total == 16  # 4 x 4 tiles at stride 64
    assert [r.done for r in reports] == sorted(r.done for r in reports)


def test_gaussian_weight_peaks_in_the_centre_and_never_reaches_zero():
    weight = gaussian_weight(64)
    assert weight.shape == (64, 64)
    assert weight[31:33, 31:33].min() > 0.99
    assert weight.min() > 0
    assert weight[0, 0] < 0.01


def test_overlap_out_of_range_is_refused():
    with pytest.raises(ValueError):
        run(predict_plane(np.zeros((1, 64, 64)), identity_predictor, 1, tile=64, overlap=0.95))


def test_thresholds_give_the_masks_of_the_blended_probabilities():
    rng = np.random.default_rng(1)
    plane = rng.random((2, 300, 517)).astype(np.float32)  # two "classes" through the identity
    masks = run(predict_plane(plane, identity_predictor, 2, tile=128, overlap=0.25,
                              thresholds=[0.5, 0.8]))
    assert masks.shape == plane.shape and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    clear = np.abs(plane - np.array([0.5, 0.8])[:, None, None]) > 1e-4  # away from float ties
    expected = plane >= np.array([0.5, 0.8])[:, None, None]
    np.testing.assert_array_equal(masks[clear], expected[clear])
    with pytest.raises(ValueError, match="thresholds"):
        run(predict_plane(plane, identity_predictor, 2, tile=128, thresholds=[0.5]))
