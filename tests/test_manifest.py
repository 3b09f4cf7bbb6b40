from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import napari_organelle


def test_npe2_validate_passes():
    pytest.importorskip("npe2")  # with napari, an optional extra
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "napari-organelle"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_ships_inside_the_package_and_matches_the_top_level_file():
    packaged = Path(napari_organelle.__file__).with_name("napari.yaml")
    top_level = Path(__file__).resolve().parents[1] / "napari.yaml"
    assert packaged.read_text() == top_level.read_text()


def test_every_manifest_command_imports():
    pytest.importorskip("napari")  # the widgets need napari, an optional extra
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-organelle")
    for command in manifest.contributions.commands:
        module_name, _, attribute = command.python_name.partition(":")
        module = __import__(module_name, fromlist=[attribute])
        assert callable(getattr(module, attribute)), command.id


def test_sample_data_gives_calibrated_fluorescence_channels():
    from napari_organelle._sample_data import sample_live_cell

    layers = sample_live_cell()
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["nuclei", "mitochondria", "er", "lysosomes"]
    for data, meta, kind in layers:
        assert kind == "image" and data.ndim == 2 and data.dtype.kind == "u"
        assert meta["metadata"]["pixel_size_nm"] == meta["scale"][0] * 1000
        assert data.std() > 0  # a real image, not a blank placeholder
