"""The training store: corrected masks saved as versioned, append-only samples.

A store is a plain folder (see :mod:`napari_organelle.store.layout`). Saving
writes the sample's TIFFs into a new version folder first and appends its
manifest line last, so the line is the commit: a save killed at any moment
leaves every earlier sample intact and at worst an unreferenced folder, which
readers never look at and :meth:`TrainingStore.clean` deletes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ..durable import atomic_write_json, utc_now
from ..errors import InputError, StoreError
from . import layout
from .durable import (
    atomic_write_bytes,
    atomic_write_tiff,
    check_writable,
    exclusive_lock,
    fsync_dir,
    is_temporary,
)
from .hashing import sample_key, sha256_array, sha256_file
from .layout import IGNORE_VALUE, SCHEMA_VERSION, STORE_FORMAT
from .manifest import ADD, EXCLUDE, RESTORE, ManifestContent, append_event, read_manifest
from .prepare import PreparedSample, ReviewedRegion, prepare_sample
from .provenance import Provenance, current_user


@dataclass(frozen=True)
class SampleRecord:
    """One saved version of a sample, as recorded in the manifest.

    Attributes:
        id: ``<key>_v<version>``, unique in the store.
        key: what was annotated (source content, plane, crop); shared by all
            versions of the sample.
        version: 1 for the first save of ``key``, 2 for the next, ...
        saved: ISO 8601 time the store wrote it (UTC).
        shape: ``(height, width)`` of the image.
        image_dtype: numpy dtype name of the image.
        classes: the classes this sample has labels for.
        instance_classes: the subset that also has instance ids.
        files: paths relative to the store, keyed ``image``,
            ``labels/<class>``, ``instances/<class>``.
        array_sha256: hash of each array (same keys as ``files``).
        content_sha256: one hash over all arrays, used to find duplicates.
        pixels: per class, ``foreground``/``background``/``ignored`` counts.
        overlaps: ``{"classes": [a, b], "pixels": n}`` per pair of classes that
            are both foreground somewhere in this sample.
        provenance: see :class:`~napari_organelle.store.provenance.Provenance`.
        excluded: True if excluded from training (and not restored).
    """

    id: str
    key: str
    version: int
    saved: str
    shape: tuple[int, int]
    image_dtype: str
    classes: tuple[str, ...]
    instance_classes: tuple[str, ...]
    files: dict[str, str]
    array_sha256: dict[str, str]
    content_sha256: str
    pixels: dict[str, dict[str, int]]
    provenance: dict[str, Any]
    overlaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    excluded: bool = False

    @classmethod
    def from_event(cls, event: Mapping[str, Any], excluded: bool = False) -> SampleRecord:
        """Build from an ``add`` manifest event (raises KeyError/TypeError if malformed)."""
        return cls(
            id=layout.sample_id(event["key"], int(event["version"])),
            key=str(event["key"]),
            version=int(event["version"]),
            saved=str(event["saved"]),
            shape=tuple(int(n) for n in event["shape"]),  # type: ignore[arg-type]
            image_dtype=str(event["image_dtype"]),
            classes=tuple(event["classes"]),
            instance_classes=tuple(event.get("instance_classes", ())),
            files=dict(event["files"]),
            array_sha256=dict(event["array_sha256"]),
            content_sha256=str(event["content_sha256"]),
            pixels={k: dict(v) for k, v in event["pixels"].items()},
            provenance=dict(event["provenance"]),
            overlaps=[dict(o) for o in event.get("overlaps", [])],
            excluded=excluded,
        )

    def to_event(self) -> dict[str, Any]:
        """The ``add`` manifest event that records this sample."""
        event: dict[str, Any] = {"op": ADD, "schema_version": SCHEMA_VERSION}
        event.update(dataclasses.asdict(self))
        del event["excluded"]  # a state derived from later events, not a fact of the save
        event["shape"] = list(self.shape)
        event["classes"] = list(self.classes)
        event["instance_classes"] = list(self.instance_classes)
        return event


@dataclass(frozen=True)
class SaveResult:
    """What :meth:`TrainingStore.save` did.

    Attributes:
        sample: the stored sample (the existing one for a duplicate).
        duplicate: True if identical pixels were already the current version of
            a sample, so nothing was written. ``sample.excluded`` tells whether
            that sample is excluded (call :meth:`TrainingStore.restore` to
            bring it back).
    """

    sample: SampleRecord
    duplicate: bool


class LoadedSample(NamedTuple):
    """The pixels and provenance of one sample version.

    Attributes:
        image: the 2-D image as saved.
        labels: per class, uint8 masks with 1 = foreground and 0 elsewhere
            (including ignored pixels: check ``ignore_masks``).
        ignore_masks: per class, True where the pixel was not reviewed and
            must not be used for training (neither foreground nor background).
        provenance: the provenance dict as saved.
    """

    image: np.ndarray
    labels: dict[str, np.ndarray]
    ignore_masks: dict[str, np.ndarray]
    provenance: dict[str, Any]


@dataclass
class _ManifestState:
    events: dict[str, dict[str, Any]]  # sample id -> add event, in file order
    excluded: set[str]
    versions: dict[str, list[str]]  # key -> sample ids, oldest first
    damaged_lines: list[int]


class TrainingStore:
    """A folder of corrected samples for training.

    Open one with :func:`open_store` (which can create it); constructing this
    class directly only opens an existing store.

    Reading never modifies the folder. Every write takes an operating-system
    lock, so two napari windows (or napari and a script) can share a store.

    Args:
        path: the store folder.

    Raises:
        StoreError: the folder is not a store, is damaged, or was written by a
            newer version of napari-organelle.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().absolute()
        self._settings = _read_store_json(self.path)
        self._cache_stamp: tuple[int, int] | None = None
        self._cache: _ManifestState | None = None

    def __repr__(self) -> str:
        return f"TrainingStore({str(self.path)!r})"

    # -- description ---------------------------------------------------------------

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names samples may have labels for, in the order they were added."""
        return tuple(self._settings.get("classes", ()))

    @property
    def schema_version(self) -> int:
        """The schema version recorded in ``store.json``."""
        return int(self._settings["schema_version"])

    @property
    def damaged_lines(self) -> list[int]:
        """Manifest lines skipped as incomplete (normally empty; see :mod:`.manifest`)."""
        return list(self._state().damaged_lines)

    def is_writable(self) -> bool:
        """True if samples can be saved here (probes with a real file)."""
        try:
            check_writable(self.path)
        except StoreError:
            return False
        return True

    # -- reading -------------------------------------------------------------------

    def samples(self, include_excluded: bool = False) -> list[SampleRecord]:
        """The current version of every sample, oldest save first.

        Args:
            include_excluded: also list samples whose current version is
                excluded (their ``excluded`` flag is True).

        Returns:
            One record per key: its latest version. Older versions are
            superseded and only visible through :meth:`history`; excluding the
            latest version hides the sample (it does not bring back an older one).
        """
        state = self._state()
        position = {sample_id: i for i, sample_id in enumerate(state.events)}
        latest = sorted((ids[-1] for ids in state.versions.values()), key=position.__getitem__)
        records = [self._record(state, sample_id) for sample_id in latest]
        return [r for r in records if include_excluded or not r.excluded]

    def get(self, sample_id: str) -> SampleRecord:
        """The record of one sample version.

        Raises:
            InputError: no sample has this id.
        """
        state = self._state()
        if sample_id not in state.events:
            layout.split_sample_id(sample_id)  # a malformed id gets its own message
            raise InputError(f"there is no sample {sample_id!r} in the training store {self.path}")
        return self._record(state, sample_id)

    def history(self, key: str) -> list[SampleRecord]:
        """All versions of a sample, oldest first (excluded ones flagged).

        Args:
            key: the sample key, or the id of any of its versions.
        """
        if "_v" in key:
            key = layout.split_sample_id(key)[0]
        state = self._state()
        return [self._record(state, sample_id) for sample_id in state.versions.get(key, [])]

    def load(self, sample_id: str, verify: bool = True) -> LoadedSample:
        """Read the pixels of one sample version.

        Args:
            sample_id: the sample's id.
            verify: check every array against the hash recorded at saving.

        Raises:
            InputError: no sample has this id.
            StoreError: a file is missing, unreadable, or changed since saving.
        """
        record = self.get(sample_id)
        image = self._read_array(record, "image", verify)
        labels: dict[str, np.ndarray] = {}
        ignore: dict[str, np.ndarray] = {}
        for name in record.classes:
            mask = self._read_array(record, f"labels/{name}", verify)
            ignore[name] = mask == IGNORE_VALUE
            labels[name] = (mask == 1).astype(np.uint8)
        return LoadedSample(image, labels, ignore, dict(record.provenance))

    def load_instances(self, sample_id: str, verify: bool = True) -> dict[str, np.ndarray]:
        """Instance ids of a sample's instance classes (0 also where not reviewed).

        Raises:
            InputError: no sample has this id.
            StoreError: a file is missing, unreadable, or changed since saving.
        """
        record = self.get(sample_id)
        return {
            name: self._read_array(record, f"instances/{name}", verify)
            for name in record.instance_classes
        }

    # -- writing -------------------------------------------------------------------

    def save(
        self,
        image: ArrayLike,
        labels: Mapping[str, ArrayLike],
        reviewed: ReviewedRegion,
        provenance: Provenance | Mapping[str, Any] | None = None,
        *,
        instances: Mapping[str, ArrayLike] | None = None,
        proposals: Mapping[str, ArrayLike] | None = None,
    ) -> SaveResult:
        """Save a corrected sample; see :func:`save_sample` for the arguments."""
        self._settings = _read_store_json(self.path)  # classes another process may have added
        prepared = prepare_sample(
            image, labels, reviewed,
            known_classes=self.classes, instances=instances, proposals=proposals,
        )
        details = _complete_provenance(Provenance.from_dict(provenance), prepared)
        key = sample_key(details.source_sha256 or "", details.plane, details.crop)
        duplicate = self._find_current(self._state(), prepared.content_sha256)
        if duplicate is not None:  # nothing to write: fine even in a read-only store
            return SaveResult(self.get(duplicate), duplicate=True)
        check_writable(self.path)  # before anything is written, so a refusal leaves no trace
        with exclusive_lock(self.path / layout.LOCK_FILE):
            state = self._state()  # another process may have saved meanwhile
            duplicate = self._find_current(state, prepared.content_sha256)
            if duplicate is not None:
                return SaveResult(self._record(state, duplicate), duplicate=True)
            versions = [layout.split_sample_id(i)[1] for i in state.versions.get(key, [])]
            version = 1 + max(versions, default=0)
            record = self._write_version(key, version, prepared, details)
        self._cache_stamp = None
        return SaveResult(record, duplicate=False)

    def exclude(self, sample_id: str, reason: str = "") -> bool:
        """Remove a sample version from training, reversibly.

        Nothing is deleted: an ``exclude`` event is appended to the manifest.

        Returns:
            False if it was already excluded (nothing written).

        Raises:
            InputError: no sample has this id.
            StoreError: the store cannot be written.
        """
        return self._toggle(sample_id, EXCLUDE, reason)

    def restore(self, sample_id: str) -> bool:
        """Undo :meth:`exclude`.

        Returns:
            False if it was not excluded (nothing written).

        Raises:
            InputError: no sample has this id.
            StoreError: the store cannot be written.
        """
        return self._toggle(sample_id, RESTORE, "")

    def add_classes(self, names: Iterable[str]) -> tuple[str, ...]:
        """Register new class names (existing ones are kept, in order).

        Returns:
            The store's classes afterwards.

        Raises:
            InputError: a name is not a valid class name.
            StoreError: the store cannot be written.
        """
        new = [layout.check_class_name(n) for n in dict.fromkeys(names) if n not in self.classes]
        if not new:
            return self.classes
        check_writable(self.path)
        with exclusive_lock(self.path / layout.LOCK_FILE):
            settings = _read_store_json(self.path)  # another process may have added some
            classes = list(settings.get("classes", []))
            classes += [n for n in new if n not in classes]
            settings["classes"] = classes
            _write_store_json(self.path, settings)
            self._settings = settings
        return self.classes

    def clean(self) -> list[Path]:
        """Delete left-overs of interrupted saves.

        Those are temporary files (``.tmp-*``) and version folders that no
        manifest line names. Readers ignore them anyway; this only frees space.

        Returns:
            The paths deleted.
        """
        check_writable(self.path)
        removed: list[Path] = []
        with exclusive_lock(self.path / layout.LOCK_FILE):
            self._cache_stamp = None
            state = self._state()
            referenced = {
                layout.version_dir(self.path, *layout.split_sample_id(i)) for i in state.events
            }
            for folder, subfolders, files in os.walk(self.path, topdown=True):
                here = Path(folder)
                if here.parent.parent == self.path / layout.SAMPLES_DIR and here not in referenced:
                    _remove(here)  # a version folder whose save never committed
                    removed.append(here)
                    subfolders.clear()
                    continue
                for name in [*files, *subfolders]:
                    if is_temporary(name):
                        _remove(here / name)
                        removed.append(here / name)
                subfolders[:] = [s for s in subfolders if not is_temporary(s)]
            samples = self.path / layout.SAMPLES_DIR
            for key_dir in samples.iterdir() if samples.is_dir() else ():
                if key_dir.is_dir() and not any(key_dir.iterdir()):
                    key_dir.rmdir()
                    removed.append(key_dir)
        return removed

    # -- internals -----------------------------------------------------------------

    def _state(self) -> _ManifestState:
        manifest = self.path / layout.MANIFEST_FILE
        try:
            stat = manifest.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            stamp = (0, 0)
        if self._cache is None or stamp != self._cache_stamp:
            self._cache = _replay(read_manifest(manifest))
            self._cache_stamp = stamp
        return self._cache

    def _record(self, state: _ManifestState, sample_id: str) -> SampleRecord:
        excluded = sample_id in state.excluded
        return SampleRecord.from_event(state.events[sample_id], excluded=excluded)

    @staticmethod
    def _find_current(state: _ManifestState, content: str) -> str | None:
        for ids in state.versions.values():
            if state.events[ids[-1]]["content_sha256"] == content:
                return ids[-1]
        return None

    def _write_version(
        self, key: str, version: int, prepared: PreparedSample, details: Provenance
    ) -> SampleRecord:
        folder = layout.version_dir(self.path, key, version)
        files = {"image": layout.IMAGE_FILE}
        files.update({f"labels/{n}": f"{layout.LABELS_DIR}/{n}.tif" for n in prepared.masks})
        files.update(
            {f"instances/{n}": f"{layout.INSTANCES_DIR}/{n}.tif" for n in prepared.instances}
        )
        arrays = {"image": prepared.image}
        arrays.update({f"labels/{n}": a for n, a in prepared.masks.items()})
        arrays.update({f"instances/{n}": a for n, a in prepared.instances.items()})
        record = SampleRecord(
            id=layout.sample_id(key, version),
            key=key,
            version=version,
            saved=utc_now(),
            shape=prepared.image.shape,  # type: ignore[arg-type]
            image_dtype=prepared.image.dtype.name,
            classes=tuple(prepared.masks),
            instance_classes=tuple(prepared.instances),
            files={
                name: folder.relative_to(self.path).joinpath(rel).as_posix()
                for name, rel in files.items()
            },
            array_sha256=dict(prepared.array_sha256),
            content_sha256=prepared.content_sha256,
            pixels=prepared.pixels,
            provenance=details.to_dict(),
            overlaps=prepared.overlaps,
        )
        event = record.to_event()
        try:
            if folder.exists():  # left by a save killed before its manifest line: not a sample
                shutil.rmtree(folder)
            subfolders = {folder / Path(rel).parent for rel in files.values()}
            for sub in subfolders:
                sub.mkdir(parents=True, exist_ok=True)
            for name, rel in files.items():
                atomic_write_tiff(folder / rel, arrays[name])
            for sub in (*subfolders - {folder}, folder, folder.parent, folder.parent.parent):
                fsync_dir(sub)
            # The manifest line is the commit point: written last, after the files are durable.
            append_event(self.path / layout.MANIFEST_FILE, event)
        except BaseException as error:
            # An interrupt (Ctrl+C) can land just after the line was written: only
            # delete the files if the manifest does not name them.
            self._cache_stamp = None
            if record.id not in self._state().events:
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(error, OSError):
                raise StoreError(
                    f"could not save the sample to {self.path} ({error.strerror or error}); "
                    "earlier samples are intact. Free disk space or check the folder, "
                    "then save again"
                ) from error
            raise
        return record

    def _toggle(self, sample_id: str, op: str, reason: str) -> bool:
        self.get(sample_id)
        check_writable(self.path)
        with exclusive_lock(self.path / layout.LOCK_FILE):
            state = self._state()
            if (sample_id in state.excluded) == (op == EXCLUDE):
                return False
            event: dict[str, Any] = {"op": op, "id": sample_id, "time": utc_now()}
            by = current_user()
            if by:
                event["by"] = by
            if reason:
                event["reason"] = reason
            try:
                append_event(self.path / layout.MANIFEST_FILE, event)
            except OSError as error:
                raise StoreError(
                    f"could not update the training store {self.path}: {error}"
                ) from error
        self._cache_stamp = None
        return True

    def _read_array(self, record: SampleRecord, name: str, verify: bool) -> np.ndarray:
        import tifffile

        path = self.path / record.files[name]
        try:
            array = tifffile.imread(path)
        except (OSError, ValueError, tifffile.TiffFileError) as error:
            raise StoreError(
                f"sample {record.id} cannot be read: {path} is missing or damaged ({error})"
            ) from None
        if verify and sha256_array(array) != record.array_sha256[name]:
            raise StoreError(f"sample {record.id} is damaged: {path} changed after it was saved")
        return array


def open_store(
    path: str | os.PathLike | None = None,
    create: bool = True,
    classes: Iterable[str] | None = None,
) -> TrainingStore:
    """Open a training store, creating it if needed.

    Args:
        path: the store folder; None for :func:`~.layout.default_store_path`.
        create: create the store if the folder does not exist or is empty.
        classes: class names the caller will save; missing ones are added to
            the store (existing ones keep their order).

    Raises:
        StoreError: the folder is not a store (and not empty), cannot be
            created or written, or was written by a newer napari-organelle.
        InputError: a class name is invalid.
    """
    path = Path(path).expanduser().absolute() if path is not None else layout.default_store_path()
    names = [layout.check_class_name(n) for n in dict.fromkeys(classes or ())]
    if not (path / layout.STORE_FILE).exists():
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file; pick a folder for the training store")
        if path.is_dir() and any(not is_temporary(p.name) for p in path.iterdir()):
            raise StoreError(
                f"{path} is not a training store (it has no {layout.STORE_FILE}) and is not empty; "
                "pick an empty folder or an existing training store"
            )
        if not create:
            raise StoreError(f"there is no training store at {path}")
        _create_store(path, names)
    store = TrainingStore(path)
    if any(n not in store.classes for n in names):
        store.add_classes(names)
    return store


def save_sample(
    store: TrainingStore | str | os.PathLike,
    image: ArrayLike,
    labels: Mapping[str, ArrayLike],
    reviewed: ReviewedRegion,
    provenance: Provenance | Mapping[str, Any] | None = None,
    *,
    instances: Mapping[str, ArrayLike] | None = None,
    proposals: Mapping[str, ArrayLike] | None = None,
) -> SaveResult:
    """Save a corrected 2-D sample as a new version in a training store.

    Args:
        store: a :class:`TrainingStore` or the path of one (created if needed,
            with the classes in ``labels``/``instances``).
        image: the 2-D image (a plane, or a crop of one).
        labels: per class, a 0/1 (or bool) mask of the image's shape.
        reviewed: where the annotator checked the labels: ``True`` (all of
            it), a boolean numpy mask, a list of ``(y0, x0, y1, x1)`` boxes, or a
            dict of those per class. Outside it the stored labels are
            ``IGNORE_VALUE``, so a partial correction never teaches background.
        provenance: a :class:`~napari_organelle.store.provenance.Provenance` or
            a dict with its fields. Missing ``source_sha256``, ``annotator``
            and ``time`` are filled in.
        instances: per class, instance ids (stored in ``instances/<class>.tif``
            next to the class mask, which is derived from them if not given).
        proposals: per class, the model output the annotator started from;
            the changed pixels inside the reviewed region are recorded in
            ``provenance["changed_pixels"]``.

    Returns:
        The new version, or the existing sample if the pixels are identical
        to the current version of a sample (``duplicate=True``).

    Raises:
        InputError: shapes differ, masks hold values other than 0/1, a class
            is unknown, or the reviewed region is empty. Nothing is written.
        StoreError: the store cannot be written. Nothing is written.

    Examples:
        >>> import numpy as np, tempfile
        >>> store = open_store(tempfile.mkdtemp(), classes=["mitochondria"])
        >>> image = np.zeros((4, 4), np.uint8); mask = np.eye(4, dtype=bool)
        >>> result = save_sample(store, image, {"mitochondria": mask}, [(0, 0, 2, 4)])
        >>> result.sample.version, result.duplicate
        (1, False)
        >>> bool(store.load(result.sample.id).ignore_masks["mitochondria"][2:].all())
        True
    """
    if not isinstance(store, TrainingStore):
        path = Path(store).expanduser()
        # A new store takes the classes given; an existing one keeps its own, so a
        # misspelt class is refused instead of silently becoming a new class.
        store = TrainingStore(path) if (path / layout.STORE_FILE).exists() else open_store(
            path, classes=[*labels, *(instances or {})]
        )
    return store.save(image, labels, reviewed, provenance, instances=instances, proposals=proposals)


def _complete_provenance(details: Provenance, prepared: PreparedSample) -> Provenance:
    if details.crop is not None:
        y0, x0, y1, x1 = details.crop
        if (y1 - y0, x1 - x0) != prepared.image.shape:
            raise InputError(
                f"the crop {details.crop} is {y1 - y0}x{x1 - x0} pixels but the image is "
                f"{prepared.image.shape[0]}x{prepared.image.shape[1]}"
            )
    source_sha256, hashed = details.source_sha256, details.source_sha256_of
    if not source_sha256:
        source = Path(details.source_path) if details.source_path else None
        if source is not None and source.is_file():
            source_sha256, hashed = sha256_file(source), "file"
        else:  # a layer not backed by a file (or a file that has moved): its pixels identify it
            source_sha256, hashed = sha256_array(prepared.image), "pixels"
    completed = dataclasses.replace(
        details.completed(),
        source_sha256=source_sha256,
        source_sha256_of=hashed,
        changed_pixels={**details.changed_pixels, **prepared.changed_pixels},
    )
    try:  # the manifest is JSON: refuse what cannot be written before touching the disk
        json.dumps(completed.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"provenance must hold plain values (text, numbers, lists, dicts): {error}"
        ) from None
    return completed


def _replay(content: ManifestContent) -> _ManifestState:
    state = _ManifestState({}, set(), {}, list(content.damaged_lines))
    for number, event in zip(content.line_numbers, content.events):
        op = event["op"]
        try:
            if op == ADD:
                SampleRecord.from_event(event)  # reject malformed lines here, not at every read
                sample_id = layout.sample_id(event["key"], int(event["version"]))
                # The first line wins: a later copy cannot rewrite history.
                if sample_id not in state.events:
                    state.events[sample_id] = event
                    state.versions.setdefault(event["key"], []).append(sample_id)
            elif op == EXCLUDE and event["id"] in state.events:
                state.excluded.add(event["id"])
            elif op == RESTORE:
                state.excluded.discard(event["id"])
        except (KeyError, TypeError, ValueError, AttributeError):
            # Valid JSON but missing fields: skipped like a torn line.
            state.damaged_lines.append(number)
    state.damaged_lines.sort()
    for ids in state.versions.values():
        ids.sort(key=lambda i: layout.split_sample_id(i)[1])
    return state


def _read_store_json(path: Path) -> dict[str, Any]:
    store_file = path / layout.STORE_FILE
    try:
        settings = json.loads(store_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(
            f"there is no training store at {path} ({layout.STORE_FILE} is missing)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(
            f"the training store {path} is damaged: {store_file} cannot be read ({error})"
        ) from None
    if not isinstance(settings, dict) or settings.get("format") != STORE_FORMAT:
        raise StoreError(f"{store_file} does not describe a napari-organelle training store")
    version = settings.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreError(f"the training store {path} is damaged: schema_version is {version!r}")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the training store {path} was written by a newer napari-organelle "
            f"(store schema {version}; this version reads up to {SCHEMA_VERSION}). "
            "Update napari-organelle to use it"
        )
    return settings


def _write_store_json(path: Path, settings: dict[str, Any]) -> None:
    atomic_write_json(path / layout.STORE_FILE, settings, indent=2, ensure_ascii=False)


def _create_store(path: Path, classes: list[str]) -> None:
    existing = path
    while not existing.exists():
        existing = existing.parent
    check_writable(existing)  # refuse before creating any folder
    try:
        path.mkdir(parents=True, exist_ok=True)
        # store.json first: its presence makes the folder a store, and readers
        # treat a missing manifest or samples folder as empty.
        _write_store_json(
            path,
            {
                "format": STORE_FORMAT,
                "schema_version": SCHEMA_VERSION,
                "created": utc_now(),
                "created_by": layout.generator_name(),
                "classes": classes,
                "ignore_value": IGNORE_VALUE,
                "readme": layout.README_FILE,
            },
        )
        readme = layout.STORE_README.format(ignore=IGNORE_VALUE)
        atomic_write_bytes(path / layout.README_FILE, readme.encode())
        (path / layout.MANIFEST_FILE).touch()
        (path / layout.SAMPLES_DIR).mkdir(exist_ok=True)
        fsync_dir(path)
    except OSError as error:
        raise StoreError(
            f"could not create a training store at {path}: {error.strerror or error}"
        ) from error


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
