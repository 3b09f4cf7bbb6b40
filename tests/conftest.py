from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAPARI_ORGANELLE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The development data sets (../shared/data); tests using it skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    return SHARED_DATA


@pytest.fixture
def no_bundled_models(tmp_path_factory, monkeypatch):
    """Hide the bundled models, for tests that drive widgets with their own tiny models."""
    monkeypatch.setattr("napari_organelle.models.registry.BUNDLED_DIR",
                        tmp_path_factory.mktemp("no-bundled"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: tiny models run much faster so (on a busy machine, ten times)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_em_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-em@0`` (mitochondria: instance, membranes: semantic; random weights), built once."""
    import torch

    from ._models import make_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_tiny_model(tmp_path_factory.mktemp("base") / "tiny-em")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty napari-organelle home (models, runs, default training store) for one test."""
    folder = tmp_path / "home"
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(folder))
    return folder


@pytest.fixture
def home(private_home: Path, tiny_em_model: Path) -> Path:
    """A private napari-organelle home holding ``tiny-em@0`` as a user model."""
    shutil.copytree(tiny_em_model, private_home / "models" / "tiny-em" / "0")
    return private_home
