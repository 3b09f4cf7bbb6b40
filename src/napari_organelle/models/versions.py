"""Model versions: every trained model is kept as a numbered version, and one is in use.

A lab fine-tunes a model again and again. Each result becomes a new version
under the user data folder, never overwriting an older one, and carries its
lineage in its card (``card.parent`` and ``card.extra["lineage"]``: the data
it saw, the settings, the scores before and after, when). One version per
name is *active*: it is what ``load_model("name")`` returns, so rolling back
is making an older version active again.

Layout (under :func:`~napari_organelle.models.registry.user_models_dir`)::

    <name>/<version>/card.json            the card (name and version match the folders)
    <name>/<version>/model.safetensors    the weights
    <name>/<version>/data_manifest.json   optional: every training file with its hash
    <name>/active.json                    {"version": "3", "since": "<ISO time>"}

Versions registered here are counted ``1``, ``2``, ``3``... per name. A
bundled model of the same name is a version too (``em-organelles@1.0.0``) and
stays active until another one is chosen.

Exported versions are plain folders (card, weights, a README for people) that
:func:`import_version` installs on another machine after checking them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..durable import (
    atomic_write_json,
    publish_folder,
    sha256_file,
    staging_folder,
    utc_now,
)
from ..errors import ModelError
from .card import ModelCard
from .io import CARD_FILE, WEIGHTS_FILE, load_model_folder
from .registry import ModelInfo, list_models, resolve_model, user_models_dir

__all__ = [
    "ACTIVE_FILE",
    "MANIFEST_FILE",
    "active_version",
    "check_model_name",
    "export_version",
    "import_version",
    "list_versions",
    "register_version",
    "set_active",
]

#: Per-name file naming the active version.
ACTIVE_FILE = "active.json"
#: Optional file of a version listing the training data it saw.
MANIFEST_FILE = "data_manifest.json"
#: Human-readable description written into exported folders.
README_FILE = "README.md"

# Names become folder names on every operating system; "@" separates the version.
# Folders being written start with a dot (durable.TEMP_PREFIX): list_models skips them.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_model_name(name: str) -> str:
    """Return ``name`` if it can name a model, else raise.

    Raises:
        ModelError: empty, too long, or with characters unsafe in folder names.
    """
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ModelError(f"model name {name!r} is not allowed: use letters, digits, '.', '-' "
                         "and '_' (up to 64, starting with a letter or digit)")
    return name


def list_versions(name: str) -> list[ModelInfo]:
    """Every version of a model on this machine, oldest first (a bundled one first).

    Args:
        name: the model name, without version.

    Returns:
        The versions; empty when no model has this name.
    """
    found = [info for info in list_models() if info.name == name]
    return sorted(found, key=_version_order)


def active_version(name: str) -> ModelInfo:
    """The version of ``name`` that ``load_model(name)`` returns.

    That is the version chosen last with :func:`set_active`; when none was
    chosen (or it was deleted), the bundled version, else the newest.

    Raises:
        ModelError: no model has this name.
    """
    versions = list_versions(name)
    if not versions:
        raise ModelError(f"there is no model called {name!r}")
    return _active_among(versions, name)


def set_active(name: str, version: str) -> ModelInfo:
    """Make ``name@version`` the version used when ``name`` is asked for (rollback).

    Raises:
        ModelError: there is no such version.
    """
    for info in list_versions(name):
        if info.version == version:
            _write_active(name, version)
            return info
    known = ", ".join(info.version for info in list_versions(name)) or "none"
    raise ModelError(f"{name} has no version {version!r}; its versions: {known}")


def register_version(model_dir: str | os.PathLike, name: str, *,
                     lineage: Mapping[str, Any] | None = None,
                     manifest: Mapping[str, Any] | None = None,
                     activate: bool = False) -> ModelInfo:
    """Keep a trained model as the next version of ``name``.

    The folder is copied (the original, e.g. a run's ``best/``, is left as it
    is), the card gets the new name and version, and ``lineage`` is stored in
    ``card.extra["lineage"]``. The active version does not change unless
    ``activate`` is given or this is the first version of ``name``, so a
    training run never silently replaces the model a lab is using.

    Args:
        model_dir: a model folder (card and weights).
        name: the model name to register under.
        lineage: where the model comes from (data hash, settings, metrics, time).
        manifest: the training data listing, saved as :data:`MANIFEST_FILE`.
        activate: make the new version the active one.

    Returns:
        The new version.

    Raises:
        ModelError: bad name, or the folder is not a loadable model.
    """
    check_model_name(name)
    source = Path(model_dir)
    model = load_model_folder(source)  # refuse to register weights that do not load
    card = ModelCard.from_dict(json.loads(json.dumps(model.card.to_dict())))
    if lineage is not None:
        card.extra["lineage"] = json.loads(json.dumps(dict(lineage)))
    previous = list_versions(name)
    info = _install(source, card, name, _next_version(previous), manifest)
    if activate:
        _write_active(name, info.version)
    elif previous and _read_active(name) is None:
        # Pin what was in use, so the new version is only used once chosen.
        _write_active(name, _active_among(previous, name).version)
    return info


def export_version(spec: str, folder: str | os.PathLike) -> Path:
    """Write a version as a self-contained folder to copy to another machine.

    Args:
        spec: ``name@version``, or ``name`` for its active version.
        folder: the destination; created if needed. If it exists and is not
            empty, the version goes into ``<folder>/<name>@<version>``.

    Returns:
        The folder holding the exported card, weights and README.

    Raises:
        ModelError: unknown model, or the destination already holds this export.
    """
    source = _version_folder(spec)
    card = ModelCard.load(source / CARD_FILE)
    destination = Path(folder).expanduser()
    if destination.exists() and not destination.is_dir():
        raise ModelError(f"{destination} is a file; give a folder to export into")
    if destination.exists() and any(destination.iterdir()):
        destination = destination / card.full_name
    if destination.exists() and any(destination.iterdir()):
        raise ModelError(f"{destination} already exists and is not empty")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with staging_folder(destination) as staging:
        for file_name in (WEIGHTS_FILE, CARD_FILE, MANIFEST_FILE):
            if (source / file_name).exists():
                shutil.copy2(source / file_name, staging / file_name)
        (staging / README_FILE).write_text(describe_card(card), encoding="utf-8")
        publish_folder(staging, destination)  # replaces it if empty (checked above)
    return destination


def import_version(folder: str | os.PathLike, *, name: str | None = None,
                   activate: bool = False) -> ModelInfo:
    """Install an exported version (or any model folder) as a version on this machine.

    The card must be valid and the weights must load into the network it
    describes, and match the hash the card records. A model whose weights
    are already installed under that name is refused. If its version number
    is taken by different weights here, it is installed as the next free
    version and ``card.extra["lineage"]["imported_from"]`` keeps the original.

    Args:
        folder: the exported folder (or its ``card.json``).
        name: install under this name instead of the card's.
        activate: make it the active version.

    Returns:
        The installed version (compare ``full_name`` to see a renumbering).

    Raises:
        ModelError: not a model, damaged weights, or already installed.
    """
    source = Path(folder).expanduser()
    if source.name == CARD_FILE:
        source = source.parent
    model = load_model_folder(source)
    card = ModelCard.from_dict(json.loads(json.dumps(model.card.to_dict())))
    recorded = card.extra.get("weights_sha256")
    actual = sha256_file(source / WEIGHTS_FILE)
    if recorded and recorded != actual:
        raise ModelError(f"the weights in {source} do not match the hash in their card: the "
                         "copy is damaged or the card belongs to other weights")
    original = card.full_name
    target = check_model_name(name or card.name)
    previous = list_versions(target)
    for info in previous:
        if _weights_hash(info.path) == actual:
            raise ModelError(f"{original} is already installed here as {info.full_name}")
    version = card.version
    if not _MODEL_NAME.fullmatch(version) or any(info.version == version for info in previous):
        version = _next_version(previous)
    if f"{target}@{version}" != original:
        lineage = card.extra.setdefault("lineage", {})
        lineage["imported_from"] = {"model": original, "time": utc_now()}
    manifest = None
    if (source / MANIFEST_FILE).exists():
        manifest = json.loads((source / MANIFEST_FILE).read_text())
    info = _install(source, card, target, version, manifest)
    if activate:
        _write_active(target, info.version)
    elif previous and _read_active(target) is None:
        _write_active(target, _active_among(previous, target).version)
    return info


def describe_card(card: ModelCard) -> str:
    """A README for people: what the model segments, where it comes from, how well."""
    lineage = card.extra.get("lineage", {})
    lines = [f"# {card.full_name}", "", card.description or "", "",
             f"- segments: {', '.join(card.class_names)} ({card.modality})",
             f"- pixel size: {card.pixel_size_nm or 'any'} nm",
             f"- parent: {card.parent or 'none (trained from scratch)'}",
             f"- created: {card.created}"]
    if lineage.get("data_manifest_sha256"):
        lines.append(f"- training data hash: {lineage['data_manifest_sha256']}")
    metrics = lineage.get("metrics", {}).get("validation", {})
    if metrics.get("after"):
        lines += ["", "| class | before | after |", "| --- | --- | --- |"]
        for class_name, after in metrics["after"].items():
            before = metrics.get("before", {}).get(class_name)
            shown = "n/a" if before is None else f"{before:.3f}"
            lines.append(f"| {class_name} | {shown} | {after:.3f} |")
    if card.training_data:
        lines += ["", "Training data:"]
        lines += [f"- {entry.get('name', '?')}: {entry.get('licence', 'licence unknown')}"
                  for entry in card.training_data]
    lines += ["", "Install on another machine: `napari-organelle models import <this folder>`",
              ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- helpers


def _install(source: Path, card: ModelCard, name: str, version: str,
             manifest: Mapping[str, Any] | None) -> ModelInfo:
    """Copy weights and the renamed card into ``<name>/<version>`` atomically."""
    name_dir = user_models_dir() / name
    name_dir.mkdir(parents=True, exist_ok=True)
    with staging_folder(name_dir / version) as staging:
        shutil.copy2(source / WEIGHTS_FILE, staging / WEIGHTS_FILE)
        card.name, card.version = name, version
        card.extra["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
        card.save(staging / CARD_FILE)
        if manifest is not None:
            atomic_write_json(staging / MANIFEST_FILE, manifest)
        while True:
            target = name_dir / version
            try:
                publish_folder(staging, target)  # fails if another process took the number
                break
            except OSError:
                if not target.exists():
                    raise
                version = str(int(version) + 1) if version.isdigit() else f"{version}.1"
                card.version = version
                card.save(staging / CARD_FILE)
    return ModelInfo(card.name, card.version, target, False, card.modality,
                     tuple(card.class_names), card.parent, card.created)


def _active_among(versions: list[ModelInfo], name: str) -> ModelInfo:
    """:func:`active_version` among ``versions`` (all of ``name``, not empty)."""
    chosen = _read_active(name)
    for info in versions:
        if info.version == chosen:
            return info
    bundled = [info for info in versions if info.bundled]
    return bundled[0] if bundled else max(versions, key=_version_order)


def _version_order(info: ModelInfo) -> tuple[bool, int, str, str]:
    number = int(info.version) if info.version.isdigit() else -1
    return (not info.bundled, number, info.created, info.version)


def _next_version(versions: list[ModelInfo]) -> str:
    numbers = [int(info.version) for info in versions if info.version.isdigit()]
    return str(max(numbers, default=0) + 1)


def _version_folder(spec: str) -> Path:
    name, _, version = spec.partition("@")
    if version:
        return resolve_model(spec)
    return active_version(name).path


def _read_active(name: str) -> str | None:
    path = user_models_dir() / name / ACTIVE_FILE
    try:
        version = json.loads(path.read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None


def _write_active(name: str, version: str) -> None:
    folder = user_models_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / ACTIVE_FILE, {"version": version, "since": utc_now()},
                      indent=None)


def _weights_hash(folder: Path) -> str:
    try:
        recorded = ModelCard.load(folder / CARD_FILE).extra.get("weights_sha256")
    except ModelError:
        recorded = None
    return recorded or sha256_file(folder / WEIGHTS_FILE)
