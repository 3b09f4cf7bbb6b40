from __future__ import annotations

import os
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
