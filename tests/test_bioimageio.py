"""bioimage.io export: the zip passes bioimageio.core's own test and carries the model card.

``bioimageio.core`` (and ``bioimageio.spec``) are test-only dependencies (the
``testing`` extra): the tests that validate with them skip without them, the
others need neither. The GUI test (the Train dock's button) runs under Xvfb::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_bioimageio.py
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_organelle.bioimageio import (
    CONFIG_KEY,
    FORMAT_VERSION,
    RDF_FILE,
    export_bioimageio,
)
from napari_organelle.cli import main
from napari_organelle.errors import InputError, ModelError
from napari_organelle.models import ClassSpec, Model, ModelCard, build_network, load_model

from ._models import tiny_card


def read_rdf(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read(RDF_FILE))


def reproduced_formats(summary) -> set[str]:
    """The weight formats whose test outputs bioimageio.core reproduced."""
    return {detail.name.rsplit("(", 1)[-1].rstrip(")") for detail in summary.details
            if detail.name.startswith("Reproduce test outputs") and detail.status == "passed"}


# ------------------------------------------------------------------ the real bioimage.io test


def test_the_zip_passes_bioimageio_core_test(home, tmp_path, one_torch_thread):
    core = pytest.importorskip("bioimageio.core")
    path = export_bioimageio("tiny-em@0", tmp_path / "share")
    assert path == tmp_path / "share" / "tiny-em-0.bioimageio.zip"

    summary = core.test_model(path)

    assert summary.status == "passed", summary.format()
    assert reproduced_formats(summary) == {"pytorch_state_dict", "onnx"}, summary.format()


def test_the_description_loads_and_carries_the_card(home, tmp_path, one_torch_thread):
    spec = pytest.importorskip("bioimageio.spec")
    path = export_bioimageio("tiny-em@0", tmp_path / "mito.zip", authors=["A. Lab Lead"],
                             license="CC-BY-4.0")
    assert path == tmp_path / "mito.zip"

    description = spec.load_model_description(path)

    assert description.validation_summary.status in ("valid-format", "passed")
    assert [str(name) for name in description.outputs[0].axes[1].channel_names] == \
        ["mitochondria", "membranes"]
    kinds = [step.id for step in description.inputs[0].preprocessing]
    assert "scale_range" in kinds
    scale = description.inputs[0].preprocessing[kinds.index("scale_range")].kwargs
    card = load_model("tiny-em@0").card
    assert (scale.min_percentile, scale.max_percentile) == (card.normalization.low,
                                                            card.normalization.high)
    assert description.weights.pytorch_state_dict is not None
    assert description.weights.onnx is not None
    assert [author.name for author in description.authors] == ["A. Lab Lead"]
    assert str(description.license) == "CC-BY-4.0"
    assert any("segmentation_models" in str(entry.url) for entry in description.cite)

    rdf = read_rdf(path)
    assert rdf["format_version"] == FORMAT_VERSION
    # Nothing the plugin knows is lost: the whole card comes back.
    back = ModelCard.from_dict(rdf["config"][CONFIG_KEY]["card"])
    assert back.to_dict() == json.loads(json.dumps(card.to_dict()))


def test_the_weights_are_a_plain_state_dict_matching_the_test_output(home, tmp_path,
                                                                      one_torch_thread):
    """``weights.pt`` loads with ``weights_only`` into the shipped network and gives the output."""
    import importlib.util

    import torch

    path = export_bioimageio("tiny-em@0", tmp_path)
    rdf = read_rdf(path)
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    with zipfile.ZipFile(path) as archive:
        (tmp_path / architecture["source"]).write_bytes(archive.read(architecture["source"]))
        state = torch.load(io.BytesIO(archive.read("weights.pt")), weights_only=True)
        test_input = np.load(io.BytesIO(archive.read("test_input.npy")))
        test_output = np.load(io.BytesIO(archive.read("test_output.npy")))
    module_spec = importlib.util.spec_from_file_location("shipped", tmp_path /
                                                         architecture["source"])
    shipped = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(shipped)
    network = getattr(shipped, architecture["callable"])(**architecture["kwargs"]).eval()
    network.load_state_dict(state, strict=True)

    raw = test_input[0]
    low, high = np.percentile(raw, [1.0, 99.8], axis=(1, 2))
    normalized = (raw - low[:, None, None]) / (high - low)[:, None, None]
    with torch.no_grad():
        got = network(torch.from_numpy(normalized[None].astype(np.float32))).numpy()
    assert test_input.dtype == np.float32 and test_input.shape == (1, 1, 128, 128)
    assert test_output.shape == (1, 2, 128, 128)
    np.testing.assert_allclose(got, test_output, atol=1e-4)


def test_a_fluorescence_model_with_two_channels_and_a_pixel_size(private_home, tmp_path,
                                                                 one_torch_thread):
    spec = pytest.importorskip("bioimageio.spec")
    card = tiny_card("two-channel", "fluorescence", in_channels=2, pixel_size_nm=90.0,
                     classes=[ClassSpec("nuclei", "instance"), ClassSpec("er")])
    card.training_data = [{"name": "some data", "licence": "CC0-1.0",
                           "citation": "Someone et al. (2020), https://doi.org/10.1234/abcd.5"}]
    path = export_bioimageio(Model(card, build_network(card)), tmp_path)

    description = spec.load_model_description(path)

    assert [str(n) for n in description.inputs[0].axes[1].channel_names] == \
        ["channel0", "channel1"]
    assert description.inputs[0].axes[2].unit == "nanometer"
    assert description.inputs[0].axes[2].scale == 90.0
    assert any(str(entry.doi) == "10.1234/abcd.5" for entry in description.cite)
    with zipfile.ZipFile(path) as archive:
        readme = archive.read("README.md").decode()
        cover = archive.read("cover.png")
    assert "some data" in readme and "CC0-1.0" in readme and "instance" in readme
    assert cover.startswith(b"\x89PNG")


def test_without_onnx_the_zip_has_pytorch_weights_only(private_home, tmp_path, monkeypatch,
                                                       one_torch_thread):
    spec = pytest.importorskip("bioimageio.spec")

    def fails(model, threads):
        raise ModelError("could not convert tiny-em@0 for ONNX Runtime (test)")

    monkeypatch.setattr("napari_organelle.backends._convert", fails)
    card = tiny_card()
    notes: list[str] = []
    path = export_bioimageio(Model(card, build_network(card)), tmp_path, notes=notes)

    assert "onnx" not in read_rdf(path)["weights"]
    assert any("PyTorch weights only" in note for note in notes)
    assert spec.load_model_description(path).weights.onnx is None


# ------------------------------------------------------------------ errors


def test_unknown_models_and_unwritable_destinations_are_explained(home, tmp_path):
    with pytest.raises(ModelError, match="no model called 'nope@1'"):
        export_bioimageio("nope@1", tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write"):
        export_bioimageio("tiny-em@0", blocker / "model.zip")
    (tmp_path / "folder.zip").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        export_bioimageio("tiny-em@0", tmp_path / "folder.zip")
    with pytest.raises(InputError, match="1 channel"):
        export_bioimageio("tiny-em@0", tmp_path, test_image=np.zeros((3, 64, 64)))
    assert not list(tmp_path.glob("*.bioimageio.zip"))


# ------------------------------------------------------------------ the command line


def test_models_export_format_bioimageio_writes_the_zip(home, tmp_path, capsys,
                                                        one_torch_thread):
    assert main(["models", "export", "tiny-em@0", str(tmp_path / "share"),
                 "--format", "bioimageio", "--author", "Ann", "--author", "Bo"]) == 0
    written = tmp_path / "share" / "tiny-em-0.bioimageio.zip"
    assert f"exported for bioimage.io to {written}" in capsys.readouterr().out
    assert [author["name"] for author in read_rdf(written)["authors"]] == ["Ann", "Bo"]

    assert main(["models", "export", "tiny-em", str(tmp_path / "mine.zip"),
                 "--format", "bioimageio"]) == 0  # the version in use, at the path given
    assert (tmp_path / "mine.zip").is_file()
    capsys.readouterr()

    assert main(["models", "export", "nope@1", str(tmp_path), "--format", "bioimageio"]) == 1
    error = capsys.readouterr().err
    assert "error: no model called 'nope@1'" in error and "Traceback" not in error
    assert main(["models", "export", "tiny-em@0", str(tmp_path / "x"), "--license", "MIT"]) == 1
    assert "--format bioimageio" in capsys.readouterr().err


# ------------------------------------------------------------------ the Train dock


@pytest.mark.gui
def test_train_dock_exports_the_selected_version(request, home, tmp_path, qtbot, monkeypatch,
                                                 no_bundled_models):
    pytest.importorskip("napari")
    from napari_organelle._widgets.train import TrainWidget

    viewer = request.getfixturevalue("make_napari_viewer")()
    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train")
    assert dock.versions_combo.value.full_name == "tiny-em@0"

    asked = []
    # the save dialog, answered (a class attribute: magicgui containers own their attributes)
    monkeypatch.setattr(TrainWidget, "_ask_save_path",
                        lambda self, suggested: asked.append(suggested))
    dock.export_button.clicked.emit()  # the dialog is cancelled: nothing happens
    assert asked[0].name == "tiny-em-0.bioimageio.zip" and not dock.running

    target = tmp_path / "shared" / "tiny"
    monkeypatch.setattr(TrainWidget, "_ask_save_path", lambda self, suggested: target)
    dock.export_button.clicked.emit()
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)

    assert dock.controls.last_error is None, dock.controls.last_error
    written = tmp_path / "shared" / "tiny.zip"
    assert written.is_file()
    assert f"to {written}" in dock.controls.status_label.value
    assert read_rdf(written)["name"] == "tiny-em"
