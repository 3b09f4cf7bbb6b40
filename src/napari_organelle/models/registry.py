"""Find models by name: the bundled ones and the versions a lab has trained.

Bundled models live inside the package (``napari_organelle/bundled/<name>/``).
Models a user trains are kept per version under the user data folder
(``<data>/models/<name>/<version>/``), so an older version is never lost and
rolling back is choosing it again. ``NAPARI_ORGANELLE_HOME`` moves the user
data folder (tests and shared lab installs use it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .card import ModelCard
from .io import CARD_FILE, WEIGHTS_FILE, Model, load_cached

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"


def user_data_dir() -> Path:
    """The folder for everything napari-organelle keeps per user."""
    override = os.environ.get("NAPARI_ORGANELLE_HOME")
    if override:
        return Path(override)
    from platformdirs import user_data_dir as platform_user_data_dir

    return Path(platform_user_data_dir("napari-organelle", appauthor=False))


def user_models_dir() -> Path:
    return user_data_dir() / "models"


@dataclass(frozen=True)
class ModelInfo:
    """A model found on disk, described without loading its weights."""

    name: str
    version: str
    path: Path
    bundled: bool
    modality: str
    classes: tuple[str, ...]
    parent: str | None
    created: str

    @property
    def full_name(self) -> str:
        return f"{self.name}@{self.version}"


def _info(folder: Path, bundled: bool) -> ModelInfo | None:
    if not (folder / WEIGHTS_FILE).exists() or not (folder / CARD_FILE).exists():
        return None
    try:
        card = ModelCard.load(folder / CARD_FILE)
    except ModelError:
        return None
    return ModelInfo(card.name, card.version, folder, bundled, card.modality,
                     tuple(card.class_names), card.parent, card.created)


def list_models(modality: str | None = None) -> list[ModelInfo]:
    """All models on this machine: bundled ones first, then user versions newest first.

    Args:
        modality: keep only ``em`` or ``fluorescence`` models.
    """
    found: list[ModelInfo] = []
    if BUNDLED_DIR.is_dir():
        for folder in sorted(BUNDLED_DIR.iterdir()):
            info = _info(folder, bundled=True)
            if info:
                found.append(info)
    user_dir = user_models_dir()
    if user_dir.is_dir():
        user_found = []
        for name_dir in sorted(user_dir.iterdir()):
            if not name_dir.is_dir() or name_dir.name.startswith("."):
                continue
            for version_dir in name_dir.iterdir():
                if version_dir.name.startswith("."):
                    continue  # being written (see versions.py)
                info = _info(version_dir, bundled=False)
                if info:
                    user_found.append(info)
        found.extend(sorted(user_found, key=lambda info: (info.created, info.version),
                            reverse=True))
    if modality is not None:
        found = [info for info in found if info.modality == modality]
    return found


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Turn a model name, ``name@version`` or path into the folder to load.

    A name without version means its active version (see
    :mod:`napari_organelle.models.versions`), so rolling back changes what
    every caller of ``load_model(name)`` gets.
    """
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.exists():
        return candidate
    name, _, version = text.partition("@")
    matches = [info for info in list_models() if info.name == name
               and (not version or info.version == version)]
    if not matches:
        known = ", ".join(sorted({info.full_name for info in list_models()})) or "none"
        raise ModelError(f"no model called {text!r} (and no such file); installed models: {known}")
    if not version:
        from .versions import active_version  # versions builds on this module

        return active_version(name).path
    return matches[0].path


def load_model(name_or_path: str | os.PathLike | Model) -> Model:
    """Load a model by name (``em-organelles``), ``name@version``, or folder path.

    Loaded models are cached: asking again for the same model returns the same
    object without reading the weights again.

    Raises:
        ModelError: unknown name, missing or corrupt files, card/weights mismatch.
    """
    if isinstance(name_or_path, Model):
        return name_or_path
    return load_cached(resolve_model(name_or_path))


def default_model_name(modality: str) -> str | None:
    """The bundled model used when the user picks none, for ``em`` or ``fluorescence``."""
    for info in list_models(modality):
        if info.bundled:
            return info.name
    return None
