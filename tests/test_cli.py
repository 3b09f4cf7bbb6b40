from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_organelle.cli import main

from ._models import make_tiny_model


def test_segment_writes_one_tiff_per_class_and_a_summary(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 255, (3, 96, 80), dtype=np.uint8),
                     imagej=True, resolution=(250.0, 250.0), metadata={"unit": "um", "axes": "ZYX"})
    status = main(["segment", str(tmp_path / "a.tif"), "--model", str(model), "--out",
                   str(tmp_path / "out"), "--tile", "64", "--quiet"])
    assert status == 0
    folder = tmp_path / "out" / "a"
    for name in ("mitochondria", "membranes"):
        labels = tifffile.imread(folder / f"{name}.tif")
        assert labels.shape == (3, 96, 80)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["pixel_size_nm"] == 4.0
    assert summary["model"] == "tiny-em@0" and summary["device"] == "cpu"
    assert set(summary["classes"]) == {"mitochondria", "membranes"}
    assert "mitochondria" in summary["object_counts"]
    assert str(folder) in capsys.readouterr().out


def test_segment_bad_input_exits_1_with_a_message_not_a_traceback(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "tiny")
    tifffile.imwrite(tmp_path / "tiny.tif", np.zeros((4, 4), np.uint8))
    status = main(["segment", str(tmp_path / "tiny.tif"), "--model", str(model), "--out",
                   str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert "at least 16 x 16" in err and "Traceback" not in err


def test_segment_multichannel_needs_a_channel_map(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "tiny", modality="fluorescence")
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 64, 64), np.uint16), imagej=True,
                     metadata={"axes": "CYX"})
    args = ["segment", str(tmp_path / "two.tif"), "--model", str(model), "--out",
            str(tmp_path / "out"), "--quiet", "--tile", "64"]
    assert main(args) == 1
    assert "--channels" in capsys.readouterr().err
    data = np.zeros((2, 64, 64), np.uint16)
    data[1, 20:40, 20:40] = 500
    tifffile.imwrite(tmp_path / "two.tif", data, imagej=True, metadata={"axes": "CYX"})
    assert main(args + ["--channels", "1=membranes"]) == 0
    assert (tmp_path / "out" / "two" / "membranes.tif").exists()
    assert not (tmp_path / "out" / "two" / "mitochondria.tif").exists()


def test_models_lists_user_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path))
    make_tiny_model(tmp_path / "models" / "tiny-em" / "0")
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "tiny-em", "version": "0"}.items() <= next(
        m for m in listed if m["name"] == "tiny-em").items()


def test_unknown_model_name_is_a_clear_error(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    assert main(["segment", str(tmp_path / "a.tif"), "--model", "no-such-model", "--out",
                 str(tmp_path / "o")]) == 1
    assert "no model called 'no-such-model'" in capsys.readouterr().err


def test_demo_headless_segments_the_sample_and_says_where(tmp_path, capsys):
    import pytest

    from napari_organelle.models import default_model_name

    if default_model_name("fluorescence") is None:
        pytest.skip("no bundled fluorescence model in this checkout")
    assert main(["demo", "--headless", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "demo") in out
    for name in ("nuclei", "mitochondria", "er", "lysosomes"):
        labels = tifffile.imread(tmp_path / "demo" / f"{name}.tif")
        assert labels.shape == (512, 512) and labels.any(), name
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["object_counts"]["nuclei"] >= 1
