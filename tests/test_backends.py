"""The CPU backends: ONNX Runtime matches eager PyTorch, and its cache is kept honest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_organelle import backends
from napari_organelle.backends import (
    ONNX_FILE,
    ONNX_INFO_FILE,
    TOLERANCE,
    OnnxRunner,
    TorchRunner,
    choose_backend,
    make_runner,
    onnx_runner,
)
from napari_organelle.confidence import FeatureMeter
from napari_organelle.errors import InputError, ModelError
from napari_organelle.image_input import plane_statistics
from napari_organelle.inference import _normalizer, segment
from napari_organelle.models import build_network, list_models, load_model
from napari_organelle.models.io import load_model_folder, save_model

from ._models import make_tiny_model, tiny_card

pytest.importorskip("onnxruntime")

BUNDLED = [info.name for info in list_models() if info.bundled]


@pytest.fixture(autouse=True)
def fresh_sessions(private_home):
    """Every test starts without sessions held in memory, and with its own user cache."""
    backends.clear_sessions()
    yield
    backends.clear_sessions()


def realistic_tiles(model, n=4):
    """``n`` normalised tiles of a simulated image of the model's modality."""
    from napari_organelle.simulation.sample import sample_em_like, sample_live_cell

    tile = model.card.tile_size
    if model.card.modality == "em":
        plane = sample_em_like(seed=1)[0][None]
    else:
        plane = sample_live_cell(seed=1)[0][1:2]  # mitochondria
    plane = np.concatenate([plane] * model.card.in_channels)
    normalization = model.card.normalization
    lows, highs, _ = plane_statistics(plane, normalization.low, normalization.high)
    normalize = _normalizer(lows, highs)
    starts = [(y, x) for y in (0, plane.shape[1] - tile) for x in (0, plane.shape[2] - tile)]
    return np.stack([normalize(plane[:, y:y + tile, x:x + tile]) for y, x in starts[:n]])


@pytest.mark.parametrize("name", BUNDLED)
def test_onnx_matches_eager_float32_for_every_bundled_model(name):
    model = load_model(name)
    batch = realistic_tiles(model)
    onnx = make_runner(model, torch.device("cpu"), "onnx")
    eager = make_runner(model, torch.device("cpu"), "torch")
    assert isinstance(onnx, OnnxRunner) and isinstance(eager, TorchRunner)
    onnx_features, eager_features = FeatureMeter(), FeatureMeter()
    got = onnx(batch, features=onnx_features)
    want = eager(batch, features=eager_features)
    assert got.shape == want.shape == (len(batch), len(model.card.classes), *batch.shape[2:])
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= TOLERANCE
    # The unfamiliar-image check sees the same features through either backend.
    np.testing.assert_allclose(onnx_features.vectors(), eager_features.vectors(),
                               rtol=1e-4, atol=1e-4)
    assert (model.path / ONNX_FILE).exists()  # kept beside the weights


def test_segment_gives_the_same_labels_with_both_backends():
    from napari_organelle.simulation.sample import sample_em_like

    image, pixel_size = sample_em_like(seed=2)
    image = image[:320, :400]
    results = {backend: segment(image, "em-organelles", pixel_size_nm=pixel_size,
                                backend=backend, device="cpu")
               for backend in ("onnx", "torch")}
    assert results["onnx"].settings["backend"] == "onnx"
    assert results["torch"].settings["backend"] == "torch"
    assert results["onnx"].object_counts() == results["torch"].object_counts()
    for name, labels in results["torch"].labels.items():
        assert np.mean(results["onnx"].labels[name] != labels) <= 1e-4
    assert results["onnx"].feature_distance == pytest.approx(results["torch"].feature_distance,
                                                             rel=1e-4)


@pytest.fixture
def tiny_model(tmp_path, one_torch_thread):
    return load_model_folder(make_tiny_model(tmp_path / "tiny"))


def test_tiny_model_with_flips_matches_and_is_cached(tiny_model):
    batch = np.random.default_rng(0).random((2, 1, 128, 128), dtype=np.float32)
    notes = []
    runner = onnx_runner(tiny_model, notes)
    assert notes == []  # a first conversion is no news
    np.testing.assert_allclose(runner(batch, tta=True),
                               TorchRunner(tiny_model, torch.device("cpu"))(batch, tta=True),
                               atol=TOLERANCE)
    assert onnx_runner(tiny_model) is runner  # held for the session
    backends.clear_sessions()
    again = onnx_runner(tiny_model)  # read back from the folder, not converted
    assert again is not runner and again.source == tiny_model.path / ONNX_FILE
    info = json.loads((tiny_model.path / ONNX_INFO_FILE).read_text())
    assert info["key"] == backends.cache_key(tiny_model) and info["max_difference"] <= TOLERANCE


def test_new_weights_make_the_cache_stale_and_it_is_rebuilt(tiny_model):
    onnx_runner(tiny_model)
    old_sha = json.loads((tiny_model.path / ONNX_INFO_FILE).read_text())["sha256"]
    torch.manual_seed(1)
    card = tiny_card()
    save_model((card, build_network(card)), tiny_model.path)  # retrained: other weights
    retrained = load_model_folder(tiny_model.path)
    notes = []
    runner = onnx_runner(retrained, notes)
    assert notes == [f"the ONNX Runtime copy of {card.full_name} was made for other weights or "
                     "software versions: rebuilt it"]
    info = json.loads((tiny_model.path / ONNX_INFO_FILE).read_text())
    assert info["sha256"] != old_sha and info["key"] == backends.cache_key(retrained)
    batch = np.random.default_rng(0).random((1, 1, 128, 128), dtype=np.float32)
    np.testing.assert_allclose(runner(batch), TorchRunner(retrained, torch.device("cpu"))(batch),
                               atol=TOLERANCE)


def test_a_changed_key_is_stale(tiny_model):
    onnx_runner(tiny_model)
    info_path = tiny_model.path / ONNX_INFO_FILE
    info = json.loads(info_path.read_text())
    info["key"]["torch"] = "0.0.1"  # made by another torch
    info_path.write_text(json.dumps(info))
    backends.clear_sessions()
    notes = []
    onnx_runner(tiny_model, notes)
    assert len(notes) == 1 and "made for other weights or software versions" in notes[0]
    assert json.loads(info_path.read_text())["key"] == backends.cache_key(tiny_model)


@pytest.mark.parametrize("damage, problem", [
    ("truncate", "its checksum does not match"),
    ("garbage description", "its description is missing or unreadable"),
    ("garbage graph", "ONNX Runtime cannot read it"),
])
def test_a_damaged_cache_is_rebuilt_with_a_note(tiny_model, damage, problem):
    onnx_runner(tiny_model)
    graph, info_path = tiny_model.path / ONNX_FILE, tiny_model.path / ONNX_INFO_FILE
    if damage == "truncate":
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    elif damage == "garbage description":
        info_path.write_text("{not json")
    else:  # consistent checksum, but not an ONNX graph
        import hashlib

        graph.write_bytes(b"\x00garbage" * 100)
        info = json.loads(info_path.read_text())
        info["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
        info_path.write_text(json.dumps(info))
    backends.clear_sessions()
    image = np.random.default_rng(0).integers(0, 255, (128, 160)).astype(np.uint8)
    result = segment(image, tiny_model, backend="auto")  # no traceback: a note
    assert result.settings["backend"] == "onnx"
    rebuilt = [note for note in result.notes if "ONNX Runtime copy" in note]
    assert len(rebuilt) == 1 and problem in rebuilt[0] and rebuilt[0].endswith("rebuilt it")
    assert backends._cache_problem(tiny_model.path, backends.cache_key(tiny_model)) is None


def test_a_read_only_model_folder_caches_in_the_user_folder(tiny_model, private_home,
                                                           monkeypatch):
    write = backends._write_cache

    def refuse_model_folder(folder, content, info, *names):
        if folder == tiny_model.path:
            raise PermissionError(13, "Permission denied")
        return write(folder, content, info, *names)

    monkeypatch.setattr(backends, "_write_cache", refuse_model_folder)
    notes = []
    runner = onnx_runner(tiny_model, notes)
    assert notes == [] and not (tiny_model.path / ONNX_FILE).exists()
    assert runner.source is not None and private_home in runner.source.parents
    backends.clear_sessions()
    assert onnx_runner(tiny_model).source == runner.source  # found there next time


def test_a_failed_conversion_falls_back_to_torch_in_auto(tiny_model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    notes = []
    runner = make_runner(tiny_model, torch.device("cpu"), "auto", notes)
    assert runner.backend == backends.TORCH_CPU_FALLBACK
    assert len(notes) == 1 and "could not convert tiny-em@0 for ONNX Runtime" in notes[0]
    assert "unsupported operator" in notes[0] and notes[0].endswith("with PyTorch instead")
    with pytest.raises(ModelError, match="could not convert"):
        make_runner(tiny_model, torch.device("cpu"), "onnx")


def test_forcing_a_backend_by_argument_or_environment(tiny_model, monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (128, 128)).astype(np.uint8)
    assert segment(image, tiny_model, backend="torch").settings["backend"] == "torch"
    monkeypatch.setenv(backends.BACKEND_ENV, "torch")
    assert segment(image, tiny_model).settings["backend"] == "torch"
    assert not (tiny_model.path / ONNX_FILE).exists()  # never converted
    monkeypatch.setenv(backends.BACKEND_ENV, "channels-last")
    assert segment(image, tiny_model).settings["backend"] == "channels_last"
    monkeypatch.setenv(backends.BACKEND_ENV, "tensorrt")
    with pytest.raises(InputError, match="NAPARI_ORGANELLE_BACKEND"):
        segment(image, tiny_model)


def test_which_backend_where():
    assert choose_backend("cpu", "auto") == "onnx"
    assert choose_backend("cuda", "auto") == "torch"
    assert choose_backend("mps", "channels_last") == "channels_last"
    with pytest.raises(InputError, match="CPU only"):
        choose_backend("cuda", "onnx")
    with pytest.raises(InputError, match="unknown backend"):
        choose_backend("cpu", "fast")


def test_an_unsaved_model_runs_torch_unless_onnx_is_asked_for():
    from .test_inference import blobs_image, threshold_model

    image, _ = blobs_image()
    model = threshold_model()  # in memory: nowhere to keep a conversion
    auto = segment(image, model, tile_size=64)
    assert auto.settings["backend"] == backends.TORCH_CPU_FALLBACK
    onnx = segment(image, model, tile_size=64, backend="onnx")
    assert onnx.settings["backend"] == "onnx"
    for name in auto.labels:
        np.testing.assert_array_equal(onnx.labels[name], auto.labels[name])
