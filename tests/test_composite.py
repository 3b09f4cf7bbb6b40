"""Composite models: members run side by side and keep their own predictions exactly."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_organelle.cli import main
from napari_organelle.errors import InputError, ModelError
from napari_organelle.inference import segment
from napari_organelle.models import ClassSpec, Model, build_network, load_model_folder, save_model
from napari_organelle.models.composite import (
    COMPOSITE,
    compose,
    member_model,
    members,
    tile_multiple,
)

from ._models import tiny_card


def _member(name: str, classes: list[ClassSpec], pixel_size_nm: float, seed: int) -> Model:
    torch.manual_seed(seed)
    card = tiny_card(name, classes=classes, pixel_size_nm=pixel_size_nm)
    network = build_network(card).eval()
    with torch.no_grad():  # a clearly non-constant output, so that mix-ups show
        network.segmentation_head[0].bias.add_(torch.linspace(-0.5, 0.5, len(classes)))
    return Model(card, network)


@pytest.fixture
def parts(one_torch_thread) -> list[tuple[Model, int]]:
    real = _member("real", [ClassSpec("mitochondria", "instance"), ClassSpec("membranes")],
                   8.0, 0)
    simulated = _member("simulated", [ClassSpec("nuclei", "instance"), ClassSpec("er")],
                        16.0, 1)
    return [(real, 1), (simulated, 2)]


def test_each_class_is_exactly_its_members_output(parts):
    card, network = compose(parts, "both", "1", 256, "two networks")
    (real, _), (simulated, _) = parts
    tile = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        got = network(tile)
        alone = real.network(tile)
        coarse = F.interpolate(simulated.network(F.avg_pool2d(tile, 2)), size=(128, 128),
                               mode="bilinear", align_corners=False)
    assert card.architecture == COMPOSITE
    assert card.class_names == ["mitochondria", "membranes", "nuclei", "er"]
    assert tile_multiple(card) == 64
    torch.testing.assert_close(got[:, :2], alone, rtol=0, atol=0)
    torch.testing.assert_close(got[:, 2:], coarse)
    assert [m["source"] for m in members(card)] == ["real@0", "simulated@0"]
    second = member_model(Model(card, network), 1)
    assert second.card.class_names == ["nuclei", "er"] and second.card.pixel_size_nm == 16.0
    assert second.card.tile_size == 128  # the same micrometres as the composite's 256
    assert second.card.full_name == "both@1" and second.network is network.members[1]
    assert second.part == "member1"


def test_saved_and_loaded_it_segments_the_first_members_classes_unchanged(parts, tmp_path):
    card, network = compose(parts, "both", "1", 128, "two networks")
    folder = save_model((card, network), tmp_path / "both", half_precision=False)
    loaded = load_model_folder(folder)
    rng = np.random.default_rng(0)
    image = (rng.random((200, 170)) * 1000).astype(np.uint16)

    together = segment(image, loaded, backend="torch")
    alone = segment(image, parts[0][0], backend="torch", tile_size=128)

    assert sorted(together.labels) == ["er", "membranes", "mitochondria", "nuclei"]
    np.testing.assert_array_equal(together.labels["membranes"], alone.labels["membranes"])
    np.testing.assert_array_equal(together.labels["mitochondria"], alone.labels["mitochondria"])
    assert together.labels["er"].shape == image.shape


def test_onnx_runs_it_like_torch(parts, tmp_path):
    pytest.importorskip("onnxruntime")
    card, network = compose(parts, "both", "1", 128, "two networks")
    model = load_model_folder(save_model((card, network), tmp_path / "both"))
    image = (np.random.default_rng(1).random((150, 150)) * 1000).astype(np.uint16)
    with_torch = segment(image, model, backend="torch")
    with_onnx = segment(image, model, backend="onnx")
    assert with_onnx.settings["backend"] == "onnx"
    for name in card.class_names:
        same = (with_torch.labels[name] > 0) == (with_onnx.labels[name] > 0)
        assert same.mean() > 0.999, name


def test_classes_of_one_member_run_that_member_only_with_its_own_onnx_copy(parts, tmp_path):
    pytest.importorskip("onnxruntime")
    card, network = compose(parts, "both", "1", 128, "two networks")
    model = load_model_folder(save_model((card, network), tmp_path / "both"))
    image = (np.random.default_rng(2).random((150, 150)) * 1000).astype(np.uint16)

    first_only = segment(image, model, classes=["mitochondria", "membranes"], backend="onnx")
    everything = segment(image, model, backend="onnx")

    assert (tmp_path / "both" / "model.member0.onnx").is_file()  # member 0 converted alone
    assert (tmp_path / "both" / "model.onnx").is_file()  # and the whole, kept apart
    assert first_only.model == "both@1"  # results still name the model the user chose
    assert sorted(first_only.labels) == ["membranes", "mitochondria"]
    for name in ("mitochondria", "membranes"):
        same = (first_only.labels[name] > 0) == (everything.labels[name] > 0)
        assert same.mean() > 0.999, name


def test_members_that_do_not_fit_are_refused(parts):
    real, simulated = parts[0][0], parts[1][0]
    with pytest.raises(ModelError, match="not 8.0 x 3"):
        compose([(real, 1), (simulated, 3)], "x", "1", 192, "")
    with pytest.raises(ModelError, match="classes another member has"):
        compose([(real, 1), (real, 1)], "x", "1", 128, "")
    with pytest.raises(ModelError, match="multiple of 64"):
        compose(parts, "x", "1", 96, "")
    card, _ = compose(parts, "x", "1", 128, "")
    card.arch_kwargs["members"][1]["classes"] = ["nuclei"]
    with pytest.raises(ModelError, match="exactly one member"):
        build_network(card)


def test_a_tile_that_the_coarse_member_cannot_take_is_a_clear_error(parts):
    card, network = compose(parts, "both", "1", 128, "")
    image = np.ones((100, 100), np.uint16)
    image[20:40] = 500
    with pytest.raises(InputError, match="multiple of 64"):
        segment(image, Model(card, network), tile_size=96)


def test_fine_tuning_adds_a_class_to_the_first_member(parts, tmp_path):
    from napari_organelle.training.trainer import TrainConfig, _optimizer, _starting_model

    card, network = compose(parts, "both", "1", 128, "")
    base = save_model((card, network), tmp_path / "both", half_precision=False)
    config = TrainConfig(out=tmp_path / "run", base=str(base),
                         add_classes=[ClassSpec("synapses", "instance")], new_head_factor=10.0)

    new_card, new_network, parent = _starting_model(config)

    assert new_card.class_names[-1] == "synapses"
    assert members(new_card)[0]["classes"] == ["mitochondria", "membranes", "synapses"]
    tile = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        before, after = network.eval()(tile), new_network.eval()(tile)
    assert after.shape[1] == 5
    torch.testing.assert_close(after[:, :4], before)  # old classes start where they were
    optimizer, rows = _optimizer(new_network, config, [4])
    assert rows.old_rows == 2  # the first member's head: mitochondria, membranes, then synapses
    assert parent == "both@1"


def test_the_cli_composes_models(parts, tmp_path, capsys):
    folders = [save_model((model.card, model.network), tmp_path / model.card.name)
               for model, _ in parts]
    code = main(["models", "compose", str(folders[0]), f"{folders[1]}:2", "--name", "both",
                 "--version", "1", "--tile-size", "128", "--out", str(tmp_path / "both")])
    assert code == 0
    assert "wrote both@1" in capsys.readouterr().out
    assert load_model_folder(tmp_path / "both").card.class_names[2:] == ["nuclei", "er"]
    code = main(["models", "compose", str(folders[0]), f"{folders[1]}:half", "--name", "x",
                 "--version", "1", "--tile-size", "128", "--out", str(tmp_path / "x")])
    assert code != 0 and "must be a whole number" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_bioimageio_zip_rebuilds_the_composite(parts, tmp_path, private_home):
    import importlib.util

    import yaml

    from napari_organelle.bioimageio import export_bioimageio

    card, network = compose(parts, "both", "1", 128, "two networks")
    model = load_model_folder(save_model((card, network), tmp_path / "both"))
    path = export_bioimageio(model, tmp_path / "share")
    with zipfile.ZipFile(path) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
        (tmp_path / architecture["source"]).write_bytes(archive.read(architecture["source"]))
        state = torch.load(io.BytesIO(archive.read("weights.pt")), weights_only=True)
    spec = importlib.util.spec_from_file_location("shipped", tmp_path / architecture["source"])
    shipped = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shipped)
    rebuilt = getattr(shipped, architecture["callable"])(**architecture["kwargs"]).eval()
    rebuilt.load_state_dict(state, strict=True)
    tile = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(tile), torch.sigmoid(model.network(tile)))
