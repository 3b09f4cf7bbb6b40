"""Uncertainty maps (test-time augmentation) and the "annotate next" queue, core and CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import torch

from napari_organelle.cli import main
from napari_organelle.errors import InputError
from napari_organelle.inference import segment
from napari_organelle.models import ClassSpec, Model, ModelCard
from napari_organelle.suggest import (
    Region,
    candidate_regions,
    choose_diverse,
    rank_regions,
    suggest_iter,
)
from napari_organelle.uncertainty import entropy_bits

from ._models import make_tiny_model


class Asymmetric(torch.nn.Module):
    """Calls bright pixels mitochondria, with a bias that changes sign under a flip of X.

    Dark and bright pixels are far from the threshold, so every flip agrees on
    them; on mid-grey pixels the bias decides, and the unflipped and X-flipped
    passes disagree: where a map made from the flips' average must light up.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.linspace(-5.0, 5.0, x.shape[-1], device=x.device)
        return (x - 0.5) * 20 + bias


def three_bands(shape: tuple[int, ...] = (64, 64)) -> np.ndarray:
    """Dark on the left quarter, bright on the right quarter, mid-grey between."""
    image = np.full(shape, 500, np.float32)
    width = shape[-1]
    image[..., : width // 4] = 0
    image[..., 3 * width // 4:] = 1000
    return image


def asymmetric_model() -> Model:
    card = ModelCard(name="asym", version="1", architecture="Unet", encoder="resnet18",
                     in_channels=1, modality="em", tile_size=64,
                     classes=[ClassSpec("mitochondria", "instance")])
    return Model(card, Asymmetric())


def test_entropy_is_one_bit_at_one_half_and_zero_when_sure():
    values = entropy_bits(np.array([0, 26, 128, 229, 255], np.uint8))
    np.testing.assert_allclose(values, [0.0, 0.47, 1.0, 0.47, 0.0], atol=0.01)
    with pytest.raises(TypeError):
        entropy_bits(np.array([0.5]))


def test_uncertainty_maps_come_from_flips_and_cost_tta():
    image = three_bands()
    plain = segment(image, asymmetric_model())
    assert plain.uncertainty == {} and plain.settings["tta"] is False
    result = segment(image, asymmetric_model(), uncertainty=True)
    assert result.settings["tta"] is True  # four flips: the stated cost
    unsure = result.uncertainty["mitochondria"]
    assert unsure.shape == image.shape and unsure.dtype == np.float32
    assert 0.0 <= unsure.min() and unsure.max() <= 1.0
    # Dark and bright bands: every flip agrees, the map is low.
    assert unsure[:, :8].mean() < 0.1 and unsure[:, -8:].mean() < 0.1
    # Near the grey band's left end one pass alone says p = 0.07 (0.38 bits), but the
    # X-flipped pass says 0.93: their average is 0.5, a whole bit.
    assert unsure[:, 17:20].mean() > 0.9


def test_uncertainty_maps_of_a_stack_follow_its_planes():
    image = np.stack([three_bands(), np.zeros((64, 64), np.float32), three_bands()])
    image[1, :, 32:] = 1000  # a plane with only a sharp edge
    result = segment(image, asymmetric_model(), uncertainty=True, volume=True)
    unsure = result.uncertainty["mitochondria"]
    assert unsure.shape == (3, 64, 64)
    assert unsure[1].mean() < 0.5 * unsure[0].mean()


def test_candidates_cover_every_plane_with_full_tiles():
    maps = {"er": np.zeros((2, 300, 520), np.float32)}
    regions = candidate_regions(maps, tile=256)
    boxes = {r.box for r in regions}
    assert boxes == {(0, 0, 256, 256), (0, 256, 256, 512), (0, 264, 256, 520),
                     (44, 0, 300, 256), (44, 256, 300, 512), (44, 264, 300, 520)}
    assert {r.plane for r in regions} == {(0,), (1,)}
    small = candidate_regions({"er": np.ones((100, 80), np.float32)}, tile=256)
    assert [r.box for r in small] == [(0, 0, 100, 80)] and small[0].score == 1.0


def test_the_queue_is_spread_out_over_planes_and_images():
    unsure = np.zeros((5, 512, 512), np.float32)
    unsure[2, :256, :256] = 0.9
    unsure[3, :256, :256] = 0.85  # the same structure one section away: skipped
    unsure[2, :256, 256:] = 0.8   # the tile next to the best one: skipped
    unsure[0, 256:, 256:] = 0.5   # two planes away: taken
    regions = rank_regions({"er": unsure}, n=3, tile=256)
    assert [(r.plane, r.box, r.rank) for r in regions][:2] == [
        ((2,), (0, 0, 256, 256), 1), ((0,), (256, 256, 512, 512), 2)]
    other = Region("other.tif", (2,), (0, 256, 256, 512), 0.7, {"er": 0.7})
    mixed = choose_diverse([*candidate_regions({"er": unsure}, 256, "a.tif"), other], n=2)
    assert [r.source for r in mixed] == ["a.tif", "other.tif"]  # another image is never "near"
    close = choose_diverse(candidate_regions({"er": unsure}, 256), n=3, spacing=0, z_spacing=0)
    assert [r.score for r in close] == pytest.approx([0.9, 0.85, 0.8])


def test_the_same_structure_in_another_file_is_discounted():
    yy, xx = np.mgrid[:64, :64]
    pattern = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 80.0).astype(np.float32)
    other = np.exp(-((yy - 50) ** 2 + (xx - 10) ** 2) / 80.0).astype(np.float32)
    # Two sections of one volume saved as two files: the same uncertain structure.
    first = candidate_regions({"er": 0.9 * pattern}, 64, "z001.tif")
    again = candidate_regions({"er": 0.85 * pattern}, 64, "z002.tif")
    different = candidate_regions({"er": 0.5 * other}, 64, "z090.tif")
    queue = choose_diverse([*first, *again, *different], n=2, tile=64)
    assert [r.source for r in queue] == ["z001.tif", "z090.tif"]
    assert different[0].score < again[0].score  # it won on diversity, not on score


def test_uncertainty_where_the_model_finds_nothing_counts_less():
    unsure = np.full((256, 512), 0.6, np.float32)
    found = np.zeros((256, 512), np.uint16)
    found[:40, 300:340] = 7   # an object in the right tile: 2.4 % of it
    found[100:180, 400:480] = 8  # and another: 12 % in all, above the 10 % of full weight
    plain = candidate_regions({"mitochondria": unsure}, 256)
    weighted = candidate_regions({"mitochondria": unsure}, 256, masks={"mitochondria": found})
    assert [r.score for r in plain] == pytest.approx([0.6, 0.6])
    assert [r.score for r in weighted] == pytest.approx([0.0, 0.6])
    assert weighted[0].per_class == {"mitochondria": pytest.approx(0.6)}  # shown undiscounted
    queue = choose_diverse(weighted, n=1, spacing=0)
    assert queue[0].box == (0, 256, 256, 512) and "score 0.60" in queue[0].describe()
    with pytest.raises(InputError, match="masks must have"):
        candidate_regions({"mitochondria": unsure}, 256, masks={"mitochondria": found[:10]})


def test_bad_queue_input_gets_clear_errors():
    with pytest.raises(InputError, match="no uncertainty maps"):
        candidate_regions({})
    with pytest.raises(InputError, match="different shapes"):
        candidate_regions({"a": np.zeros((4, 4)), "b": np.zeros((5, 4))})
    with pytest.raises(InputError, match="at least one region"):
        choose_diverse([], 0)


def test_suggest_ranks_the_tiles_of_several_images():
    flat = np.zeros((128, 128), np.float32)
    flat[:, 64:] = 1000
    ramp = three_bands((128, 128))
    steps = [step for step in suggest_iter([("flat", flat), ("ramp", ramp)],
                                           asymmetric_model(), n=2, tile=64)]
    assert steps  # progress was reported
    work = suggest_iter([("flat", flat), ("ramp", ramp)], asymmetric_model(), n=2, tile=64)
    while True:
        try:
            next(work)
        except StopIteration as finished:
            regions = finished.value
            break
    assert regions[0].source == "ramp" and regions[0].rank == 1
    assert all(r.score >= s.score for r, s in zip(regions, regions[1:]))


def test_cli_suggest_writes_the_ranked_list(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "model")
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        tifffile.imwrite(folder / f"cell{index}.tif",
                         rng.integers(0, 4000, (160, 200)).astype(np.uint16))
    out = tmp_path / "queue.csv"
    assert main(["suggest", str(folder), "--model", str(model), "--n", "4", "--tile", "64",
                 "--spacing", "0",
                 "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(row["rank"]) for row in rows] == [1, 2, 3, 4]
    assert {row["source"].rsplit("/", 1)[-1] for row in rows} <= {"cell0.tif", "cell1.tif",
                                                                   "cell2.tif"}
    scores = [float(row["score"]) for row in rows]
    assert scores[0] == max(scores)  # later ranks are discounted for resembling earlier ones
    assert "unsure_mitochondria" in rows[0] and "4 regions ->" in capsys.readouterr().out
    as_json = tmp_path / "queue.json"
    assert main(["suggest", str(folder / "cell0.tif"), "--model", str(model), "--n", "2",
                 "--tile", "64", "--out", str(as_json), "--quiet"]) == 0
    saved = json.loads(as_json.read_text())
    assert saved["model"] == "tiny-em@0" and len(saved["regions"]) == 2


def test_cli_suggest_and_uncertainty_errors_are_readable(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "model")
    assert main(["suggest", str(tmp_path / "missing.tif"), "--model", str(model)]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_cli_segment_writes_uncertainty_tiffs(tmp_path):
    model = make_tiny_model(tmp_path / "model")
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, np.random.default_rng(1).integers(0, 4000, (96, 96)).astype(
        np.uint16))
    assert main(["segment", str(image), "--model", str(model), "--out", str(tmp_path / "out"),
                 "--uncertainty", "--quiet"]) == 0
    values = tifffile.imread(tmp_path / "out" / "cell" / "mitochondria_uncertainty.tif")
    assert values.shape == (96, 96) and values.dtype == np.float32
    assert 0 <= values.min() and values.max() <= 1 and values.max() > 0
    summary = json.loads((tmp_path / "out" / "cell" / "summary.json").read_text())
    assert summary["settings"]["tta"] is True
