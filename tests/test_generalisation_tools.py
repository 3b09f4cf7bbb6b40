"""What the generalisation work adds: EM augmentations, the unfamiliar-image warning, baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_organelle.baselines import classical_predictor, classical_segment
from napari_organelle.cli import main
from napari_organelle.confidence import FeatureMeter
from napari_organelle.inference import segment
from napari_organelle.models import load_model
from napari_organelle.training.augment import (
    AugmentSettings,
    _random_curve,
    _resin,
    sample_batch,
)
from napari_organelle.training.datasets import IGNORE, TrainingImage

from ._models import make_tiny_model

EVERYTHING_ON = AugmentSettings(
    scale=(0.5, 2.0), elastic_probability=1.0, curve_probability=1.0,
    local_contrast_probability=1.0, illumination_probability=1.0, scanline_probability=1.0,
    correlated_noise_probability=1.0, resin_probability=1.0, noise_probability=1.0,
    blur_probability=1.0)


def _disc_image(size: int = 300) -> TrainingImage:
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2)
    image = np.where(disc, 0.2, 0.8).astype(np.float32)
    target = np.stack([disc.astype(np.uint8), np.full(disc.shape, IGNORE, np.uint8)])
    return TrainingImage(image, target, "set/disc", "set", 1.0)


def test_every_augmentation_at_once_gives_finite_crops_with_valid_targets():
    rng = np.random.default_rng(0)
    images, targets = sample_batch([_disc_image()], 6, 64, rng, EVERYTHING_ON)
    assert images.shape == (6, 1, 64, 64) and targets.shape == (6, 2, 64, 64)
    assert torch.isfinite(images).all()
    assert set(np.unique(targets.numpy())) <= {0, 1, IGNORE}
    # The elastic warp and resin must not invent foreground where the second class is unknown.
    assert not (targets[:, 1] == 1).any()


def test_the_random_intensity_curve_keeps_the_order_of_grey_values():
    rng = np.random.default_rng(3)
    ramp = torch.linspace(-0.2, 1.2, 4096).view(1, 64, 64)
    for _ in range(20):
        curved = _random_curve(ramp, rng).flatten()
        assert (curved[1:] - curved[:-1] >= -1e-6).all()
        assert not torch.allclose(curved, ramp.flatten())


def test_painted_resin_is_flat_background_in_every_class():
    rng = np.random.default_rng(1)
    images = torch.rand(4, 1, 64, 64)
    targets = torch.ones(4, 2, 64, 64, dtype=torch.uint8)
    before = images.clone()
    images, targets = _resin(images, targets, rng, AugmentSettings(resin_probability=1.0))
    changed = (images != before)[:, 0]
    assert changed.any()
    assert (targets[:, 0][changed] == 0).all() and (targets[:, 1][changed] == 0).all()
    for index in range(4):  # flat within each crop (each has its own resin level)
        if changed[index].sum() > 10:
            assert images[index, 0][changed[index]].std() < before[index, 0][changed[index]].std()


def test_segment_reports_how_unsure_and_how_unfamiliar(tmp_path):
    model = load_model(make_tiny_model(tmp_path / "tiny"))
    image = np.random.default_rng(0).normal(120, 20, (200, 200)).clip(0, 255).astype(np.uint8)
    plain = segment(image, model)
    assert set(plain.unsure_share) == {"mitochondria", "membranes"}
    assert plain.feature_distance is None  # not calibrated: no claim either way
    assert plain.features is not None and plain.features.vectors().shape[0] >= 1
    width = plain.features.vectors().shape[1]

    def calibrated(limit: float):
        model.card.extra = {"confidence": {"feature_mean": [50.0] * width,
                                           "feature_std": [0.01] * width,
                                           "feature_distance_limit": limit}}
        return segment(image, model)

    far = calibrated(limit=1.0)
    assert far.feature_distance > 1.0
    assert any("looks unlike what tiny-em@0 learned" in note for note in far.notes)
    assert far.summary()["feature_distance"] == pytest.approx(far.feature_distance, abs=1e-3)
    near = calibrated(limit=far.feature_distance * 2)
    assert not any("looks unlike" in note for note in near.notes)


def test_unsure_share_limit_in_the_card_warns_per_class(tmp_path):
    model = load_model(make_tiny_model(tmp_path / "tiny"))
    image = np.random.default_rng(2).normal(120, 20, (200, 200)).clip(0, 255).astype(np.uint8)
    share = segment(image, model).unsure_share["membranes"]
    if share != share:
        pytest.skip("the random network considers too few membrane pixels")
    model.card.extra = {"confidence": {"unsure_share_limit": {"membranes": share / 2}}}
    result = segment(image, model)
    assert result.unfamiliar == {"membranes": pytest.approx(share)}
    assert any("pixels it considers membranes" in note for note in result.notes)


def test_feature_meter_distance_is_zero_at_the_reference():
    meter = FeatureMeter()
    vectors = np.random.default_rng(0).normal(size=(5, 3, 2, 2)).astype(np.float32)
    meter.add(vectors)
    pooled = meter.vectors()
    assert meter.distance(pooled.mean(0), pooled.std(0)) == pytest.approx(
        np.sqrt((((pooled - pooled.mean(0)) / pooled.std(0)) ** 2).mean(1)).mean())
    assert np.isnan(FeatureMeter().distance(np.zeros(3), np.ones(3)))


def test_classical_ridge_filter_finds_a_dark_membrane_and_nothing_far_from_it():
    image = np.full((80, 80), 200.0)
    image[:, 39:41] = 40.0  # a dark line, as a membrane in EM
    mask = classical_segment(image, "sato", dark=True)
    assert mask[:, 36:44].mean() > 0.5
    assert mask[:, :20].sum() == 0 and mask[:, 60:].sum() == 0
    with pytest.raises(ValueError, match="unknown classical method"):
        classical_segment(image, "magic")
    labels = classical_predictor("otsu", {"x": "instance"}, dark=True)(image, None)["x"]
    assert labels.dtype == np.uint32


def test_a_recipe_that_continues_from_another_says_which_to_build_first(tmp_path, capsys):
    code = main(["train", "--recipe", "em-organelles", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "run")])
    assert code != 0
    error = capsys.readouterr().err
    assert "em-organelles-v1" in error and "--base" in error


def test_a_model_trained_from_a_base_starts_without_the_bases_calibration(tmp_path):
    from napari_organelle.models import save_model
    from napari_organelle.training import TrainConfig
    from napari_organelle.training.trainer import _starting_model

    base = load_model(make_tiny_model(tmp_path / "tiny"))
    base.card.extra = {"confidence": {"feature_distance_limit": 3.0}, "kept": 1}
    save_model(base, tmp_path / "calibrated")
    card, _, parent = _starting_model(TrainConfig(out=tmp_path / "run",
                                                  base=str(tmp_path / "calibrated")))
    assert parent == "tiny-em@0"
    assert "confidence" not in card.extra and card.extra.get("kept") == 1


def test_crops_are_centred_on_annotated_pixels_when_most_of_the_image_is_not():
    image = np.random.default_rng(0).random((400, 400)).astype(np.float32)
    target = np.full((1, 400, 400), IGNORE, np.uint8)
    target[0, 180:220, 180:220] = 1  # one annotated cell, 1 % of the image
    item = TrainingImage(image, target, "set/one-cell", "set", 1.0)
    settings = AugmentSettings(scale=(1.0, 1.0), rotate=False, flip=False)
    _, targets = sample_batch([item], 32, 32, np.random.default_rng(1), settings)
    annotated = (targets != IGNORE).flatten(1).any(1)
    # Without the re-draw about 1 % of centres would land in the annotated square.
    assert annotated.float().mean() > 0.5


@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_recipe_run_stopped_with_ctrl_c_keeps_its_best_checkpoint(tmp_path, monkeypatch,
                                                                     capsys, checkpoint):
    import json

    import napari_organelle.training as training
    from napari_organelle.progress import Progress

    from ._models import tiny_card

    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps({"card": tiny_card().to_dict(), "datasets": [],
                                  "training": {"iterations": 10}}))
    out = tmp_path / "run"

    def interrupted(config):
        if checkpoint:
            make_tiny_model(out / "best")
        yield Progress(1, 10, "step 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_iter", interrupted)
    code = main(["train", "--recipe", str(recipe), "--out", str(out), "--skip-tests"])
    printed = capsys.readouterr().out
    if checkpoint:
        assert code == 0 and "keeping the best model so far" in printed
        assert load_model(out / "best").card.name == "tiny-em"
    else:
        assert code == 1 and "nothing kept" in printed


def test_a_share_of_crops_is_centred_on_a_rare_focus_class():
    rng = np.random.default_rng(0)
    image = rng.random((400, 400)).astype(np.float32)
    target = np.zeros((2, 400, 400), np.uint8)
    target[0, :200] = 1                   # a common class: half the image
    target[1, 300:306, 40:46] = 1         # a rare one: 0.02 % of the pixels
    common = TrainingImage(image, target, "set/rare", "set", 1.0)
    empty = TrainingImage(image, np.zeros_like(target), "set/none", "set", 1.0)
    settings = AugmentSettings(scale=(1.0, 1.0), rotate=False, flip=False)

    def rare_share(focus, share):
        _, targets = sample_batch([common, empty], 40, 32, np.random.default_rng(2), settings,
                                  focus, share)
        return float((targets[:, 1] == 1).flatten(1).any(1).float().mean())

    assert rare_share((), 0.0) < 0.1
    assert rare_share((1,), 1.0) == 1.0   # every crop shows it, from the image that has it
    assert 0.3 < rare_share((1,), 0.5) < 0.8
