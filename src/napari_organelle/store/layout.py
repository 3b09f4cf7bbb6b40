"""Names and constants of the training store's on-disk layout.

Everything a reader without the plugin needs to know is here and in the
``README.md`` that :func:`~napari_organelle.store.open_store` writes into each
new store::

    <store>/store.json                        format, schema_version, classes, ignore_value
    <store>/manifest.jsonl                    append-only events, one JSON object per line
    <store>/samples/<key>/v<N>/image.tif      the 2-D image (plane or crop), dtype as saved
    <store>/samples/<key>/v<N>/labels/<class>.tif     uint8: 0 background, 1 class, 255 ignore
    <store>/samples/<key>/v<N>/instances/<class>.tif  uint16/uint32 instance ids (optional)

``<key>`` identifies *what* was annotated (source content hash, plane, crop);
``v<N>`` is the N-th saved version of it. A version folder is written once and
never modified afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

#: the schema this code writes; stores with a higher number are refused
SCHEMA_VERSION = 1
#: value of ``store.json["format"]``, so other tools can recognise a store
STORE_FORMAT = "napari-organelle-training-store"

STORE_FILE = "store.json"
MANIFEST_FILE = "manifest.jsonl"
README_FILE = "README.md"
LOCK_FILE = ".lock"
SAMPLES_DIR = "samples"
IMAGE_FILE = "image.tif"
LABELS_DIR = "labels"
INSTANCES_DIR = "instances"

#: label value of pixels nobody reviewed: neither foreground nor background
IGNORE_VALUE = 255
#: names that would collide with nnU-Net's reserved labels
RESERVED_CLASS_NAMES = frozenset({"background", "ignore"})

# Class names become file names and nnU-Net label names: keep them portable.
_CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_SAMPLE_ID = re.compile(r"(?P<key>[0-9a-f]{16})_v(?P<version>[1-9][0-9]*)")


def default_store_path() -> Path:
    """The store used when the user has not picked one.

    Returns:
        ``training-store`` in napari-organelle's user data folder (e.g.
        ``~/.local/share/napari-organelle/`` on Linux), next to the user's
        model versions; ``NAPARI_ORGANELLE_HOME`` moves both.
    """
    from ..models.registry import user_data_dir  # deferred: only needed when none was picked

    return user_data_dir() / "training-store"


def generator_name() -> str:
    """``"napari-organelle <version>"``, recorded in stores and exports."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"napari-organelle {version('napari-organelle')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "napari-organelle (development version)"


def check_class_name(name: str) -> str:
    """Return ``name`` if it can be used as a class name, else raise.

    Raises:
        InputError: the name is empty, reserved, or has characters that are not
            safe in file names on every operating system.
    """
    if not isinstance(name, str) or not _CLASS_NAME.fullmatch(name):
        raise InputError(
            f"class name {name!r} is not allowed: use a letter followed by up to 63 letters, "
            "digits, '_' or '-' (e.g. 'mitochondria', 'er_sheets')"
        )
    if name.lower() in RESERVED_CLASS_NAMES:
        raise InputError(f"class name {name!r} is reserved; pick another name")
    return name


def sample_id(key: str, version: int) -> str:
    """The id of version ``version`` of sample ``key`` (e.g. ``'3fa2c1d0e9b87a65_v2'``)."""
    return f"{key}_v{version}"


def split_sample_id(sample_id_: str) -> tuple[str, int]:
    """Split a sample id into ``(key, version)``.

    Raises:
        InputError: ``sample_id_`` is not of the form ``<16 hex digits>_v<N>``.
    """
    match = _SAMPLE_ID.fullmatch(str(sample_id_))
    if match is None:
        raise InputError(f"{sample_id_!r} is not a sample id (expected e.g. '3fa2c1d0e9b87a65_v2')")
    return match["key"], int(match["version"])


def version_dir(store: Path, key: str, version: int) -> Path:
    """Folder holding the files of one sample version."""
    return store / SAMPLES_DIR / key / f"v{version}"


STORE_README = """\
# napari-organelle training store

Corrected segmentations saved from napari for training. Everything here can be
read without napari-organelle:

* `store.json`: `format`, `schema_version`, the list of `classes` and the
  `ignore_value`.
* `manifest.jsonl`: one JSON object per line, appended and never rewritten.
  `{{"op": "add", ...}}` adds a sample version (its files, shapes, content
  hashes, pixel counts and provenance); `{{"op": "exclude", "id": ...}}` removes a
  sample from training and `{{"op": "restore", "id": ...}}` undoes that. A line
  that is not valid JSON (e.g. cut short by a crash) must be skipped.
* `samples/<key>/v<N>/`: version N of the sample `<key>` (one source image,
  plane and crop). A newer version supersedes older ones; old versions stay.
  * `image.tif`: the 2-D image.
  * `labels/<class>.tif`: uint8, **0 = background, 1 = {{class}}, {ignore} = not
    reviewed (ignore: neither background nor foreground)**.
  * `instances/<class>.tif` (optional): instance ids (0 = none), 0 also where
    the matching label file says {ignore}.

A sample's current training state is the latest `add` for its key, unless an
`exclude` for that id was not followed by a `restore`. Files or folders whose
name starts with `.tmp-`, and version folders that no `add` line names, are
left-overs of an interrupted save and can be deleted.
"""
