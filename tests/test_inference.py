from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_organelle.errors import Cancelled, InputError
from napari_organelle.inference import segment, segment_iter
from napari_organelle.models import ClassSpec, Model, ModelCard

from ._models import make_tiny_model


class ThresholdNet(torch.nn.Module):
    """Stands in for a trained network: foreground wherever the normalised input is bright.

    It makes the pipeline's answer known in advance (tiling, normalisation,
    post-processing and stacking must reproduce a plain threshold), which a
    random network cannot.
    """

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x):
        return (x[:, :1] - 0.5).repeat(1, self.n_classes, 1, 1) * 40


def threshold_model(pixel_size_nm=None, in_channels=1, modality="em") -> Model:
    card = ModelCard(name="threshold", version="1", architecture="Unet", encoder="resnet18",
                     in_channels=in_channels, modality=modality, tile_size=64,
                     pixel_size_nm=pixel_size_nm,
                     classes=[ClassSpec("mitochondria", "instance", min_size_px=4),
                              ClassSpec("er", "semantic")])
    return Model(card, ThresholdNet(2))


def blobs_image(shape=(150, 230), n=12, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = []
    while len(centres) < n:
        c = rng.integers(12, np.array(shape) - 12)
        if all(np.hypot(*(c - d)) > 24 for d in centres):
            centres.append(c)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 8 ** 2] = 1000
    image = image + rng.integers(0, 50, shape).astype(np.uint16)  # camera noise
    return image, centres


def test_known_answer_2d_every_blob_found_once():
    image, centres = blobs_image()
    result = segment(image, threshold_model(), tile_size=64, overlap=0.25)
    labels = result.labels["mitochondria"]
    assert labels.shape == image.shape and labels.dtype == np.uint16
    assert labels.max() == len(centres)
    assert len({labels[cy, cx] for cy, cx in centres}) == len(centres)
    er = result.labels["er"]
    assert er.dtype == np.uint8 and set(np.unique(er)) == {0, 1}
    np.testing.assert_array_equal(er > 0, labels > 0)
    assert result.object_counts()["mitochondria"] == len(centres)
    summary = result.summary()
    assert summary["object_counts"] == {"mitochondria": len(centres)}
    assert summary["device"] == "cpu"


def test_stack_is_segmented_plane_by_plane_with_unique_ids():
    planes = [blobs_image(seed=s)[0] for s in range(3)]
    stack = np.stack(planes)
    result = segment(stack, threshold_model(), tile_size=64)
    labels = result.labels["mitochondria"]
    assert labels.shape == stack.shape
    ids = [set(np.unique(p)) - {0} for p in labels]
    assert all(len(i) == 12 for i in ids)
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])  # ids never repeat across planes


def test_time_lapse_of_stacks_and_dask_input():
    dask_array = pytest.importorskip("dask.array")
    image = np.stack([np.stack([blobs_image(seed=t)[0]] * 2) for t in range(2)])  # T, Z, Y, X
    lazy = dask_array.from_array(image, chunks=(1, 1, *image.shape[-2:]))
    result = segment(lazy, threshold_model(), tile_size=64)
    assert result.labels["er"].shape == image.shape
    np.testing.assert_array_equal(result.labels["er"][0, 0], result.labels["er"][0, 1])


def test_channel_map_segments_each_channel_for_its_class():
    image, _ = blobs_image()
    other = np.zeros_like(image)
    other[50:100, 50:100] = 2000
    two_channels = np.stack([image, other])
    result = segment(two_channels, threshold_model(modality="fluorescence"), channel_axis=0,
                     channel_classes={0: ["mitochondria"], 1: ["er"]}, tile_size=64)
    assert result.labels["mitochondria"].max() == 12
    assert result.labels["er"][50:100, 50:100].all() and result.labels["er"].sum() == 2500


def test_multichannel_without_a_map_asks_which_channel_shows_what():
    with pytest.raises(InputError, match="say which organelle each channel shows"):
        segment(np.random.rand(2, 64, 64), threshold_model(), channel_axis=0)


def test_pixel_size_rescales_to_the_model_and_back():
    image, centres = blobs_image(shape=(200, 200), n=6)
    model = threshold_model(pixel_size_nm=20.0)
    result = segment(image, model, pixel_size_nm=10.0, tile_size=64)  # runs at half size
    labels = result.labels["mitochondria"]
    assert labels.shape == image.shape
    assert result.settings["rescale"] == 0.5
    assert labels.max() == len(centres)
    overlap = np.logical_and(labels > 0, image > 500).sum() / (image > 500).sum()
    assert overlap > 0.9


def test_classes_subset_and_unknown_class():
    image, _ = blobs_image()
    result = segment(image, threshold_model(), classes=["er"], tile_size=64)
    assert list(result.labels) == ["er"]
    with pytest.raises(Exception, match="has no class 'golgi'"):
        segment(image, threshold_model(), classes=["golgi"])


def test_cancel_between_tiles():
    image, _ = blobs_image(shape=(400, 400))
    seen = []
    with pytest.raises(Cancelled):
        segment(image, threshold_model(), tile_size=64, progress=seen.append,
                should_stop=lambda: len(seen) >= 2)
    assert len(seen) == 2


def test_progress_is_monotonic_and_reaches_the_end():
    image = np.stack([blobs_image(seed=s)[0] for s in range(2)])
    work = segment_iter(image, threshold_model(), tile_size=64)
    fractions = []
    try:
        while True:
            fractions.append(next(work).fraction)
    except StopIteration:
        pass
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("image,message", [
    (np.zeros((1, 1)), "at least 16 x 16"),
    (np.zeros((8, 300)), "at least 16 x 16"),
    (np.zeros((2, 2, 2, 2, 32, 32)), "more than napari-organelle handles"),
    (np.zeros((64,)), "at least 2 dimensions"),
    (np.ones((64, 64), bool), "binary mask, not an image"),
    (np.zeros((64, 64)), "blank"),
    (np.full((64, 64), np.nan), "blank"),
    (np.array([["a"] * 20] * 20), "cannot segment data of type"),
])
def test_bad_images_get_clear_messages(image, message):
    with pytest.raises(InputError, match=message):
        segment(image, threshold_model(), tile_size=64)


def test_colour_rgb_is_refused_but_grey_rgb_is_converted():
    image, _ = blobs_image()
    grey = (image / image.max() * 255).astype(np.uint8)
    rgb_grey = np.stack([grey] * 3, axis=-1)
    result = segment(rgb_grey, threshold_model(), tile_size=64)
    assert result.labels["mitochondria"].shape == grey.shape
    assert any("RGB" in note for note in result.notes)
    colour = rgb_grey.copy()
    colour[..., 0] = 0
    with pytest.raises(InputError, match="colour RGB image"):
        segment(colour, threshold_model(), tile_size=64)


def test_nans_are_filled_and_reported():
    image, centres = blobs_image()
    image = image.astype(np.float32)
    image[:10, :10] = np.nan
    result = segment(image, threshold_model(), tile_size=64)
    assert result.labels["mitochondria"].max() == len(centres)
    assert any("NaN" in note for note in result.notes)


def test_real_network_runs_on_odd_sizes(tmp_path):
    folder = make_tiny_model(tmp_path / "tiny")
    result = segment(np.random.rand(70, 45).astype(np.float32), str(folder), tile_size=64)
    assert result.labels["membranes"].shape == (70, 45)


def test_impossible_memory_is_refused_before_work(monkeypatch):
    import napari_organelle.inference as inference

    monkeypatch.setattr(inference, "_available_memory", lambda: 10_000_000)
    lazy = pytest.importorskip("dask.array").zeros((50, 1024, 1024), dtype=np.uint8)
    with pytest.raises(InputError, match="needs about"):
        segment(lazy, threshold_model())
