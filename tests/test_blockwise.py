"""Blockwise segmentation equals in-memory segmentation, and resumes after a kill."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_organelle.blockwise import (
    LOG_NAME,
    match_overlaps,
    segment_blockwise,
    tile_span,
    work_folder,
)
from napari_organelle.errors import InputError
from napari_organelle.inference import segment
from napari_organelle.models import ClassSpec, Model, ModelCard
from napari_organelle.ngff import labels_metadata, read_labels, read_ngff, write_ngff_image
from napari_organelle.tiling import tile_starts


class Blur(torch.nn.Module):
    """A network with spatial context (9 x 9 blur): its output depends on the tile grid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 9, padding=4, bias=True)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 81)
            self.conv.weight[1] *= -1
            self.conv.bias[:] = torch.tensor([-0.5, 0.12])
        self.scale = 30.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


def blur_model() -> Model:
    card = ModelCard(name="blur", version="1", architecture="Unet", encoder="resnet18",
                     in_channels=1, modality="em", tile_size=64,
                     classes=[ClassSpec("mitochondria", "instance", min_size_px=12),
                              ClassSpec("membranes", "semantic")])
    return Model(card, Blur().eval())


def blobs(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    """Discs (2-D) or balls (3-D) of radius 3-9, some touching, on a noisy background."""
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    image = rng.normal(100, 8, shape)
    for _ in range(n):
        centre = [rng.uniform(0, s) for s in shape]
        radius = rng.uniform(3, 9)
        inside = sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius ** 2
        image[inside] += 120
    return image.astype(np.uint16)


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal pixel masks, and objects equal up to renumbering."""
    if not np.array_equal(first > 0, second > 0):
        return False
    pairs = np.unique(np.stack([first[first > 0], second[second > 0]]), axis=1)
    return (len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1])))


def test_tile_span_reproduces_the_global_grid():
    length, tile, stride = 1000, 256, 192
    starts = tile_starts(length, tile, stride)
    for start, stop in [(0, 10), (300, 700), (900, 1000), (190, 193)]:
        a, b = tile_span(length, tile, stride, start, stop)
        inside = [s - a for s in starts if a <= s and s + tile <= b]
        assert tile_starts(b - a, tile, stride) == inside
        assert a <= start and b >= stop


def test_match_overlaps_does_not_join_touching_objects():
    first = np.array([[1, 1, 2, 2]])
    second = np.array([[3, 3, 3, 4]])  # 3 covers all of 1 and half of 2
    assert match_overlaps(first, second) == [(1, 3), (2, 3), (2, 4)]
    assert match_overlaps(np.array([[1, 1, 0, 0]]), np.array([[0, 0, 2, 2]])) == []


@pytest.mark.parametrize("batch_size", [1, 4])
def test_blockwise_2d_equals_in_memory(tmp_path, batch_size):
    image = blobs((150, 230), 40)
    model = blur_model()
    expected = segment(image, model, batch_size=batch_size, device="cpu", backend="torch")
    path = tmp_path / "image.ome.zarr"
    write_ngff_image(path, image, axes="YX", pixel_size_nm=5.0, chunks=32, version="0.4")
    source = read_ngff(path)
    result = segment_blockwise(source.data, model, path, batch_size=batch_size, device="cpu",
                               backend="torch", block_size=64, halo=48, axes=source.axes,
                               scale=source.scales[0])
    labels = read_labels(path)
    assert sorted(labels) == ["membranes", "mitochondria"]
    got = {name: np.asarray(image.data) for name, image in labels.items()}
    assert np.array_equal(got["membranes"], expected.labels["membranes"])
    assert same_partition(got["mitochondria"], expected.labels["mitochondria"])
    assert result.object_counts["mitochondria"] == expected.object_counts()["mitochondria"]
    assert result.blocks == 3 * 4
    # the pyramid is nearest-neighbour, the metadata names the class and its colour
    mito = labels["mitochondria"]
    assert len(mito.levels) >= 2
    assert np.array_equal(np.asarray(mito.levels[1]), got["mitochondria"][::2, ::2])
    meta = labels_metadata(mito)
    assert meta["class"] == "mitochondria" and meta["kind"] == "instance"
    assert labels_metadata(labels["membranes"])["image-label"]["colors"][0]["label-value"] == 1
    assert mito.pixel_size_nm == 5.0
    assert not work_folder(path).exists()


def test_blockwise_3d_volume_equals_in_memory(tmp_path):
    image = blobs((20, 90, 100), 30, seed=3)
    model = blur_model()
    expected = segment(image, model, batch_size=1, device="cpu", backend="torch",
                       volume=True, axes="ZYX")
    out = tmp_path / "results.ome.zarr"
    result = segment_blockwise(image, model, out, batch_size=1, device="cpu", backend="torch",
                               axes="ZYX", volume=True, block_size=(8, 48, 48),
                               halo=(8, 32, 32))
    got = {name: np.asarray(image.data) for name, image in read_labels(out).items()}
    assert np.array_equal(got["membranes"], expected.labels["membranes"])
    assert same_partition(got["mitochondria"], expected.labels["mitochondria"])
    assert result.settings["volume"] and result.blocks == 3 * 2 * 3


@pytest.mark.parametrize("stop_at, logged", [("segmented", 3), ("labelling", 6 + 2)])
def test_blockwise_resumes_after_a_kill(tmp_path, stop_at, logged):
    image = blobs((128, 160), 30, seed=5)
    model = blur_model()
    out = tmp_path / "out.ome.zarr"
    options = dict(batch_size=1, device="cpu", backend="torch", block_size=64, halo=40)
    reports = []

    def stop_early() -> bool:
        return sum(stop_at in r.message for r in reports) >= (3 if stop_at == "segmented" else 2)

    with pytest.raises(Exception, match="stopped"):
        segment_blockwise(image, model, out, progress=reports.append, should_stop=stop_early,
                          **options)
    log = [json.loads(line) for line in (work_folder(out) / LOG_NAME).read_bytes().splitlines()]
    assert len(log) == logged and log[0]["phase"] == 1
    assert read_labels(out) == {}  # nothing is listed before it is finished
    resumed = segment_blockwise(image, model, out, **options)
    assert resumed.skipped == min(logged, 6) and resumed.blocks == 6
    fresh = segment_blockwise(image, model, tmp_path / "fresh.ome.zarr", **options)
    first = {n: np.asarray(i.data) for n, i in read_labels(out).items()}
    second = {n: np.asarray(i.data) for n, i in read_labels(tmp_path / "fresh.ome.zarr").items()}
    assert sorted(first) == ["membranes", "mitochondria"]
    for name in first:
        assert np.array_equal(first[name], second[name])
    assert fresh.object_counts == resumed.object_counts


def test_blockwise_refuses_other_settings_in_the_work_folder(tmp_path):
    image = blobs((64, 64), 5)
    out = tmp_path / "out.ome.zarr"
    work_folder(out).mkdir(parents=True)
    (work_folder(out) / "settings.json").write_text('{"fingerprint": "other"}')
    with pytest.raises(InputError, match="other settings"):
        segment_blockwise(image, blur_model(), out, device="cpu", backend="torch")


def test_blockwise_refuses_a_rescale(tmp_path):
    model = blur_model()
    model.card.pixel_size_nm = 5.0
    with pytest.raises(InputError, match="pyramid level"):
        segment_blockwise(blobs((64, 64), 5), model, tmp_path / "o.zarr", pixel_size_nm=10.0,
                          device="cpu")
