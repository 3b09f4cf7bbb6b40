"""Model versions: registering with lineage, the active version and rollback, export/import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from napari_organelle.cli import main
from napari_organelle.durable import sha256_file
from napari_organelle.errors import ModelError
from napari_organelle.models import list_models, load_model, save_model
from napari_organelle.models.io import CARD_FILE, WEIGHTS_FILE
from napari_organelle.models.versions import (
    ACTIVE_FILE,
    active_version,
    export_version,
    import_version,
    list_versions,
    register_version,
    set_active,
)

from ._models import make_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def home(private_home: Path) -> Path:
    """An empty napari-organelle home: these tests register their own models."""
    return private_home


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny models with different random weights, built once."""
    root = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {tag: make_tiny_model(root / tag) for tag in "abc"}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def trained(tmp_path: Path, model_folders: dict[str, Path]):
    """``trained(tmp_path, tag)``: a fresh copy of a model folder, as a run leaves it."""
    def copy(folder: Path, tag: str) -> Path:
        return Path(shutil.copytree(model_folders[tag], folder / "runs" / tag))

    return copy


def test_versions_are_numbered_and_keep_lineage(home, tmp_path, trained):
    lineage = {"parent": "tiny-em@0", "data_manifest_sha256": "abc", "settings": {"lr": 1e-3}}
    first = register_version(trained(tmp_path, "a"), "lab", lineage=lineage,
                             manifest={"sha256": "abc", "files": []})
    second = register_version(trained(tmp_path, "b"), "lab")
    assert [first.version, second.version] == ["1", "2"]
    assert first.path == home / "models" / "lab" / "1"
    card = load_model("lab@1").card
    assert card.full_name == "lab@1"
    assert card.extra["lineage"] == lineage
    assert (first.path / "data_manifest.json").exists()
    assert [info.full_name for info in list_versions("lab")] == ["lab@1", "lab@2"]


def test_a_new_version_is_used_only_once_chosen(home, tmp_path, trained):
    register_version(trained(tmp_path, "a"), "lab")
    assert active_version("lab").version == "1"  # the first version of a name is in use
    register_version(trained(tmp_path, "b"), "lab")
    assert active_version("lab").version == "1"
    register_version(trained(tmp_path, "c"), "lab", activate=True)
    assert active_version("lab").version == "3"


def test_rollback_changes_what_load_model_returns(home, tmp_path, trained):
    one = register_version(trained(tmp_path, "a"), "lab")
    two = register_version(trained(tmp_path, "b"), "lab", activate=True)
    assert load_model("lab").path == two.path
    set_active("lab", "1")
    assert load_model("lab").path == one.path
    assert json.loads((home / "models" / "lab" / ACTIVE_FILE).read_text())["version"] == "1"
    assert load_model("lab@2").path == two.path  # explicit versions are unaffected


def test_activating_a_missing_version_is_refused(home, tmp_path, trained):
    register_version(trained(tmp_path, "a"), "lab")
    with pytest.raises(ModelError, match="no version '7'.*1"):
        set_active("lab", "7")


def test_register_refuses_bad_names_and_broken_models(home, tmp_path, trained):
    with pytest.raises(ModelError, match="not allowed"):
        register_version(trained(tmp_path, "a"), "lab/../x")
    broken = trained(tmp_path, "b")
    (broken / WEIGHTS_FILE).write_bytes(b"not weights")
    with pytest.raises(ModelError):
        register_version(broken, "lab")
    assert list_versions("lab") == []


def test_half_written_versions_are_not_listed(home, tmp_path, trained):
    register_version(trained(tmp_path, "a"), "lab")
    staging = home / "models" / "lab" / ".staging-dead"
    shutil.copytree(trained(tmp_path, "b"), staging)  # what a killed registration leaves
    assert [info.full_name for info in list_models() if info.name == "lab"] == ["lab@1"]


def test_export_import_round_trip_on_another_machine(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "here"))
    lineage = {"parent": "tiny-em@0", "data_manifest_sha256": "abc"}
    register_version(trained(tmp_path, "a"), "lab", lineage=lineage)
    exported = export_version("lab@1", tmp_path / "usb")
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", CARD_FILE, WEIGHTS_FILE]
    assert "lab@1" in (exported / "README.md").read_text()

    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "there"))
    installed = import_version(exported)
    assert installed.full_name == "lab@1"
    card = load_model("lab").card
    assert card.extra["lineage"]["data_manifest_sha256"] == "abc"
    with pytest.raises(ModelError, match="already installed here as lab@1"):
        import_version(exported)


def test_import_renumbers_a_version_taken_by_other_weights(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "here"))
    register_version(trained(tmp_path, "a"), "lab")
    exported = export_version("lab", tmp_path / "usb")  # the active version
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "there"))
    register_version(trained(tmp_path, "b"), "lab")  # this machine's own lab@1
    installed = import_version(exported)
    assert installed.full_name == "lab@2"
    lineage = load_model("lab@2").card.extra["lineage"]
    assert lineage["imported_from"]["model"] == "lab@1"
    assert active_version("lab").version == "1"  # importing does not switch models


def test_import_refuses_damaged_weights(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "here"))
    register_version(trained(tmp_path, "a"), "lab")
    exported = export_version("lab@1", tmp_path / "usb")
    card = json.loads((exported / CARD_FILE).read_text())
    card["extra"]["weights_sha256"] = "0" * 64
    (exported / CARD_FILE).write_text(json.dumps(card))
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "there"))
    with pytest.raises(ModelError, match="do not match"):
        import_version(exported)


def test_export_into_an_existing_folder_makes_a_subfolder(home, tmp_path, trained):
    register_version(trained(tmp_path, "a"), "lab")
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / "other.txt").write_text("x")
    assert export_version("lab@1", tmp_path / "usb") == tmp_path / "usb" / "lab@1"


def test_models_cli_lists_activates_exports_and_imports(tmp_path, monkeypatch, capsys, trained):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "here"))
    register_version(trained(tmp_path, "a"), "lab")
    register_version(trained(tmp_path, "b"), "lab")
    assert main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* lab@1") for line in listing)
    assert any(line.startswith("  lab@2") for line in listing)

    assert main(["models", "activate", "lab@2"]) == 0
    assert "lab now means lab@2" in capsys.readouterr().out
    assert load_model("lab").card.version == "2"
    assert main(["models", "--json"]) == 0
    listed = {m["version"]: m["active"] for m in json.loads(capsys.readouterr().out)
              if m["name"] == "lab"}  # bundled models are listed too
    assert listed == {"1": False, "2": True}

    assert main(["models", "export", "lab@2", str(tmp_path / "usb")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path / "there"))
    assert main(["models", "import", str(tmp_path / "usb"), "--name", "their-lab"]) == 0
    assert "installed their-lab@2 (was lab@2" in capsys.readouterr().out
    assert main(["models", "activate", "their-lab@9"]) == 1
    assert "no version '9'" in capsys.readouterr().err
    assert main(["models", "show", "their-lab"]) == 0
    assert "their-lab@2" in capsys.readouterr().out


def test_a_save_killed_while_writing_weights_keeps_the_old_model_whole(tmp_path, trained,
                                                                        monkeypatch):
    folder = trained(tmp_path, "a")
    before = {name: (folder / name).read_bytes() for name in (WEIGHTS_FILE, CARD_FILE)}
    other = load_model(trained(tmp_path, "b"))

    def killed(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half of the tensors")
        raise KeyboardInterrupt  # Ctrl+C or napari closed mid-write

    monkeypatch.setattr("safetensors.torch.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(other, folder)
    monkeypatch.undo()
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)  # no temporary left
    assert load_model(folder).card.extra["weights_sha256"]  # still loads

    save_model(other, folder)  # and a whole save replaces both, consistently
    reloaded = load_model(folder)
    assert reloaded.card.extra["weights_sha256"] == sha256_file(folder / WEIGHTS_FILE)
    assert (folder / WEIGHTS_FILE).read_bytes() != before[WEIGHTS_FILE]
