"""Fine-tune a model on a lab's corrections and data sets, and keep the result as a version.

This is the human-in-the-loop step: an annotator corrects the model's output
(saved in a training store), a lab lead fine-tunes the model on those
corrections for a few minutes, compares it with the base model on held-out
images, and keeps it or rolls back. The CLI (``napari-organelle train
--base``), the Train dock widget and ``benchmarks/hitl.py`` all run
:func:`finetune_iter`.

What it adds to the training loop (:func:`~.trainer.train_iter`):

* **Data.** Training stores and data sets in the shared layout, read straight
  into memory at the model's pixel size; unreviewed pixels are ignored by the
  loss. Data classes are matched to model classes by name (``membranes``
  counts as ``cell_boundary``), or by an explicit map.
* **Honest validation.** Whole images are held out per data source; store
  samples cut from the same image plane are kept on the same side, so no
  validation image has a training crop of itself.
* **New classes.** Classes the base model lacks get new output channels; the
  old ones start from the base model's weights. :func:`new_classes` lists the
  classes the data annotates and the base lacks, with their kind, for the
  Train dock and ``train --add-classes``.
* **Replay.** Optionally a share of each batch comes from the base model's
  own training data, against forgetting; held-out images of it are scored at
  every validation (``monitor``) to show forgetting, without choosing the
  kept model.
* **Lineage.** The run folder (``run.json``, ``data_manifest.json``, ``best/``,
  ``last/``) is kept under the user data folder so a run can be resumed, and
  :func:`register_run` turns its best checkpoint into a numbered model
  version whose card records parent, data hash, settings, scores and times.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device
from ..durable import atomic_write_json, utc_now
from ..errors import InputError, ModelError
from ..models import ClassSpec, ModelCard, ModelInfo, load_model, user_data_dir
from ..models.evidence import EVIDENCE_KEY
from ..models.versions import check_model_name, register_version
from ..progress import Progress
from .augment import AugmentSettings
from .datasets import IGNORE, DatasetSpec, TrainingImage, load_dataset, read_dataset_info
from .sources import (
    DataClass,
    DataSource,
    data_classes,
    dataset_files,
    load_source,
    missing_classes,
    split_by_group,
)
from .trainer import TrainConfig, train_iter

__all__ = [
    "RUN_FILE",
    "DataClass",
    "FinetuneResult",
    "FinetuneSettings",
    "RegisteredVersion",
    "RunRecord",
    "RunRecordError",
    "data_classes",
    "default_data_root",
    "default_work_dir",
    "finetune",
    "finetune_iter",
    "missing_classes",
    "new_classes",
    "read_run",
    "register_run",
    "resume_settings",
    "write_run",
]

RUN_FILE = "run.json"
MANIFEST_FILE = "data_manifest.json"
LOG_FILE = "log.jsonl"

#: Replay images held out to watch forgetting; each costs a whole-image
#: prediction at every validation, which adds up on a CPU.
MAX_MONITOR_IMAGES = 3


@dataclass
class FinetuneSettings:
    """What a user chooses for one fine-tuning run (saved with the run, and in the version).

    Attributes:
        base: model to start from (``name``, ``name@version`` or folder).
        data: training stores and/or data set folders (``<set>/train/images``...).
        name: model name the result is registered under (a new version of it).
        add_classes: classes the base model lacks, given new output channels.
        class_map: data class -> model class, for names that differ
            (``{"mito": "mitochondria"}``); other classes match by name.
        minutes: wall-time budget (None: no limit).
        epochs: passes over the training pixels (None: no limit).
        iterations: optimizer steps (None: no limit; for tests and scripts).
        val_fraction: share of each source's images held out for validation.
        replay: share of each batch drawn from the base model's own training
            data (0 to 0.9), against forgetting.
        data_root: folder holding the base model's data sets, for replay.
        new_class_crops: share of the crops centred on a pixel of an added class
            (when ``add_classes`` is not empty): a new class is often rare (synapses
            cover 0.3-0.6 % of em-drosophila-vnc), and random crops would show it
            too seldom to learn from a few images (``benchmarks/add_class.py``).
        new_head_factor: learning-rate multiple for the output rows of added
            classes (they start from random weights; see
            :attr:`~.trainer.TrainConfig.new_head_factor`).
        keep_norm_statistics: keep the base model's batch-norm statistics
            (:attr:`~.trainer.TrainConfig.keep_norm_statistics`). None: when
            adding classes.
        old_classes_from_base: where the lab's images leave a class of the base
            model unannotated (an annotator who paints only synapses), teach it
            there from the base model's confident predictions (learning without
            forgetting, Li & Hoiem 2016; :func:`label_from_base`). None: when
            adding classes.
        freeze_encoder: train the decoder and output layer only
            (:attr:`~.trainer.TrainConfig.freeze_encoder`). None: when adding
            classes.

        The three "None: when adding classes" settings are what made adding
        synapses work in ``benchmarks/add_class.py`` (docs/benchmarks.md);
        plain fine-tuning on corrections of the model's own classes keeps the
        set-up ``benchmarks/hitl.py`` measured.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        threads: CPU threads for torch (0: torch's default).
        batch_size: crops per step (None: 4 on a CPU, 8 on a GPU).
        crop: crop edge in model pixels.
        learning_rate: peak AdamW learning rate. 3e-4 rather than the 1e-3 of
            training from scratch: in ``benchmarks/hitl.py`` it kept forgetting of
            the old domain within 0.02 Dice while gaining 0.15 on the new one.
        validate_every: steps between validations (None: 20 on a CPU, 100 on a GPU).
        patience: validations without improvement before stopping (0: never).
        seed: makes the split, sampling and augmentation repeatable.
        work_dir: run folder (None: ``<user data>/runs/<name>``).
        activate: make the new version the one in use right away.
    """

    base: str
    data: list[Path]
    name: str
    add_classes: list[ClassSpec] = field(default_factory=list)
    class_map: dict[str, str] = field(default_factory=dict)
    minutes: float | None = 10.0
    epochs: float | None = None
    iterations: int | None = None
    val_fraction: float = 0.2
    replay: float = 0.0
    data_root: Path | None = None
    new_class_crops: float = 0.5
    new_head_factor: float = 10.0
    keep_norm_statistics: bool | None = None
    old_classes_from_base: bool | None = None
    freeze_encoder: bool | None = None
    device: str = "auto"
    threads: int = 0
    batch_size: int | None = None
    crop: int = 256
    learning_rate: float = 3e-4
    validate_every: int | None = None
    patience: int = 6
    seed: int = 0
    work_dir: Path | None = None
    activate: bool = False

    def check(self) -> None:
        """Refuse settings that cannot work, with a message saying what to change.

        Raises:
            InputError: no data, a missing folder, a bad name or number.
        """
        try:
            check_model_name(self.name)
        except ModelError as error:
            raise InputError(str(error)) from None
        if not self.data:
            raise InputError("no training data: give a training store or data set folder")
        for path in self.data:
            if not Path(path).is_dir():
                raise InputError(f"training data folder {path} does not exist")
        if self.minutes is None and self.epochs is None and self.iterations is None:
            raise InputError("give a time budget (minutes) or a number of epochs")
        for label, value in (("minutes", self.minutes), ("epochs", self.epochs),
                             ("iterations", self.iterations)):
            if value is not None and value <= 0:
                raise InputError(f"{label} must be positive, not {value}")
        if not 0 <= self.replay <= 0.9:
            raise InputError(f"replay is a share of each batch, 0 to 0.9, not {self.replay}")
        if not 0 <= self.new_class_crops <= 1:
            raise InputError("the share of crops centred on new classes must be 0 to 1, not "
                             f"{self.new_class_crops}")
        if self.new_head_factor <= 0:
            raise InputError("the learning-rate multiple of new classes must be positive, not "
                             f"{self.new_head_factor}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"the validation fraction must be 0 to <1, not {self.val_fraction}")
        if self.crop % 32 or self.crop < 32:
            raise InputError(f"the crop must be a multiple of 32, not {self.crop}")

    def when_adding(self, value: bool | None) -> bool:
        """A setting whose None means "on when adding classes", resolved."""
        return bool(self.add_classes) if value is None else bool(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        data = asdict(self)
        data["data"] = [str(p) for p in self.data]
        for key in ("data_root", "work_dir"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneSettings:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["data"] = [Path(p) for p in values.get("data", [])]
        values["add_classes"] = [ClassSpec(**c) for c in values.get("add_classes", [])]
        for key in ("data_root", "work_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)


@dataclass
class FinetuneResult:
    """What a fine-tuning run left.

    Attributes:
        version: the registered model version (None: stopped before the
            first checkpoint, nothing kept).
        card: its card.
        before: validation Dice per class of the base model (classes it has).
        after: validation Dice per class of the kept model.
        monitor_before: Dice on held-out base training data (replay) before.
        monitor_after: the same after (a drop is forgetting).
        stopped: ``finished``, ``early-stopped``, ``time-budget`` or ``cancelled``.
        validation_images: names of the held-out images ``before``/``after`` are on.
        notes: things the user should know (unused classes, missing replay data).
        work_dir: the run folder (for ``resume``).
        history: the logged steps of this session.
    """

    version: ModelInfo | None
    card: ModelCard | None
    before: dict[str, float]
    after: dict[str, float]
    monitor_before: dict[str, float]
    monitor_after: dict[str, float]
    stopped: str
    validation_images: list[str]
    notes: list[str]
    work_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)


class RunRecordError(InputError):
    """The record of a fine-tuning run (``run.json``) is damaged or cannot be read."""


@dataclass
class RegisteredVersion:
    """The model version a run's best checkpoint was registered as.

    Attributes:
        version: its full name, ``name@version``.
        weights_sha256: hash of the weights registered (a later checkpoint differs).
    """

    version: str
    weights_sha256: str | None = None


@dataclass
class RunRecord:
    """What a run folder's ``run.json`` says about a fine-tuning run.

    Written when a run starts, rewritten once the base model has been scored
    and when the result is registered (atomically, see
    :func:`~napari_organelle.durable.atomic_write_json`); read to resume the
    run and to register its best checkpoint with its lineage.

    Attributes:
        settings: what the user chose.
        base: full name of the base model (``name@version``).
        classes: classes of the model being trained (the base's, then the added ones).
        data_manifest_sha256: hash of the training data manifest.
        started: when the run first started (UTC ISO 8601), kept when resumed.
        device: the device it trains on.
        added_classes: classes given new output channels.
        data: one summary per data source (``name``, ``kind``, ``role``,
            image counts, ``class_map``, ``licence``).
        replay_datasets: the base model's data sets replayed.
        recipe_datasets: the data sets the new model learnt from, for its card.
        validation_images: names of the held-out images.
        monitor_images: names of the held-out replay images scored for forgetting.
        training_images: how many images are trained on.
        notes: things the user should know.
        before: validation Dice per class of the base model (once scored).
        monitor_before: the same on ``monitor_images``.
        registered: the version the best checkpoint became, once registered.

    Examples:
        >>> settings = FinetuneSettings(base="em-organelles", data=[Path("store")], name="lab")
        >>> record = RunRecord(settings, base="em-organelles@1.0.0", classes=["mitochondria"],
        ...                    data_manifest_sha256="ab" * 32, started="2024-05-01T10:00:00+00:00",
        ...                    device="cpu")
        >>> RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
        True
    """

    settings: FinetuneSettings
    base: str
    classes: list[str]
    data_manifest_sha256: str
    started: str
    device: str
    added_classes: list[str] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    replay_datasets: list[dict[str, Any]] = field(default_factory=list)
    recipe_datasets: list[dict[str, Any]] = field(default_factory=list)
    validation_images: list[str] = field(default_factory=list)
    monitor_images: list[str] = field(default_factory=list)
    training_images: int = 0
    notes: list[str] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)
    monitor_before: dict[str, float] = field(default_factory=dict)
    registered: RegisteredVersion | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the layout of ``run.json``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["settings"] = self.settings.to_dict()
        data["registered"] = asdict(self.registered) if self.registered else None
        return json.loads(json.dumps(data))  # deep copy; fails here on a value JSON cannot hold

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (written by a later version).

        Raises:
            ValueError: a field is missing; TypeError: a field has the wrong type. The
                message names the field.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
        settings = _field(data, "settings", dict)
        try:
            parsed = FinetuneSettings.from_dict(settings)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise ValueError(f"'settings' are not fine-tuning settings ({error})") from None
        if not isinstance(parsed.name, str) or not isinstance(parsed.base, str):
            raise TypeError("'settings' lack the model name or base model")
        registered = _field(data, "registered", (dict, type(None)), None)
        if registered is not None:
            version = _field(registered, "version", str)
            sha = _field(registered, "weights_sha256", (str, type(None)), None)
            registered = RegisteredVersion(version, sha)
        data_entries = _field(data, "data", list, [])
        for entry in data_entries:
            if not isinstance(entry, dict) or not all(
                    isinstance(entry.get(key), str) for key in ("name", "kind", "role")):
                raise TypeError("an entry of 'data' lacks its name, kind or role")
        return cls(
            settings=parsed,
            base=_field(data, "base", str),
            classes=_strings(data, "classes", required=True),
            data_manifest_sha256=_field(data, "data_manifest_sha256", str),
            started=_field(data, "started", str),
            device=_field(data, "device", str, ""),
            added_classes=_strings(data, "added_classes"),
            data=data_entries,
            replay_datasets=_records(data, "replay_datasets"),
            recipe_datasets=_records(data, "recipe_datasets"),
            validation_images=_strings(data, "validation_images"),
            monitor_images=_strings(data, "monitor_images"),
            training_images=_field(data, "training_images", int, 0),
            notes=_strings(data, "notes"),
            before=_scores(data, "before"),
            monitor_before=_scores(data, "monitor_before"),
            registered=registered,
        )


_REQUIRED = object()


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
           default: Any = _REQUIRED) -> Any:
    """``data[key]`` if it is a ``kind``, ``default`` if absent (else ValueError, TypeError)."""
    if key not in data:
        if default is _REQUIRED:
            raise ValueError(f"{key!r} is missing")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in kinds)
        found = _JSON_NAMES.get(type(value), type(value).__name__)
        raise TypeError(f"{key!r} should be {wanted}, not {found}")
    return value


_JSON_NAMES = {dict: "an object", list: "a list", str: "text", int: "a whole number",
               float: "a number", bool: "true or false", type(None): "null"}


def _strings(data: Mapping[str, Any], key: str, required: bool = False) -> list[str]:
    values = _field(data, key, list, _REQUIRED if required else [])
    if not all(isinstance(value, str) for value in values):
        raise TypeError(f"{key!r} should be a list of names")
    return list(values)


def _records(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    values = _field(data, key, list, [])
    if not all(isinstance(value, dict) for value in values):
        raise TypeError(f"{key!r} should be a list of objects")
    return list(values)


def _scores(data: Mapping[str, Any], key: str) -> dict[str, float]:
    values = _field(data, key, dict, {})
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        raise TypeError(f"{key!r} should map class names to numbers")
    return {str(k): float(v) for k, v in values.items()}


def read_run(work_dir: str | os.PathLike) -> RunRecord | None:
    """The record of the fine-tuning run in ``work_dir``, or None if it holds none.

    Args:
        work_dir: a run folder (see :func:`default_work_dir`).

    Raises:
        RunRecordError: ``run.json`` exists but cannot be read, is not JSON, or
            is not a run record. A damaged record is never taken as "no run":
            that would silently start over, or register nothing.
    """
    path = Path(work_dir) / RUN_FILE
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunRecordError(f"cannot read the fine-tuning run record {path} "
                             f"({error.strerror or error}); check the folder's permissions"
                             ) from None
    try:
        return RunRecord.from_dict(json.loads(content.decode("utf-8")))
    except json.JSONDecodeError as error:
        reason = f"not valid JSON: {error.msg}, line {error.lineno} column {error.colno}"
    except UnicodeDecodeError as error:
        reason = f"not text: byte {error.start} is not UTF-8"
    except (ValueError, TypeError) as error:
        reason = str(error)
    raise RunRecordError(
        f"the fine-tuning run record {path} is damaged ({reason}), so this run can be "
        "neither resumed nor kept as a version. Start the run again without resuming "
        "(that replaces the run folder), or restore the file from a backup")


def write_run(work_dir: str | os.PathLike, run: RunRecord) -> None:
    """Write ``run`` as ``run.json`` in ``work_dir``, atomically: a crash leaves the old one."""
    atomic_write_json(Path(work_dir) / RUN_FILE, run.to_dict())


# ---------------------------------------------------------------------- folders


def default_work_dir(name: str) -> Path:
    """Where the run for model ``name`` keeps its checkpoints: ``<user data>/runs/<name>``."""
    return user_data_dir() / "runs" / name


def default_data_root() -> Path | None:
    """The folder holding the shared data sets, if this machine has one.

    ``NAPARI_ORGANELLE_DATA``, else ``../shared/data`` from the working
    directory, else beside the source checkout.
    """
    override = os.environ.get("NAPARI_ORGANELLE_DATA")
    candidates = [Path(override)] if override else []
    candidates += [Path.cwd().parent / "shared" / "data",
                   Path(__file__).resolve().parents[3].parent / "shared" / "data"]
    return next((path for path in candidates if path.is_dir()), None)


def resume_settings(name: str, work_dir: Path | None = None) -> FinetuneSettings:
    """The settings of the last run for ``name``, to resume it.

    Raises:
        InputError: there is no run to resume.
        RunRecordError: the run's record is damaged.
    """
    folder = Path(work_dir) if work_dir else default_work_dir(name)
    run = read_run(folder)
    if run is None:
        raise InputError(f"there is no run of {name} to resume in {folder}")
    settings = FinetuneSettings.from_dict(run.settings.to_dict())  # a copy
    settings.work_dir = folder
    return settings


# ---------------------------------------------------------------------- new classes


def new_classes(base: str | os.PathLike | ModelCard, data: Sequence[str | os.PathLike],
                class_map: Mapping[str, str] | None = None) -> list[DataClass]:
    """The classes the training data annotates that the base model lacks, with their kind.

    These are what :attr:`FinetuneSettings.add_classes` can add (a class with
    no data cannot be learnt). Matched as in training: ``class_map``, the
    same name, or a synonym (``membranes`` is ``cell_boundary``). Only the
    stores' records and the data sets' folders are read (no image).

    Args:
        base: the base model (``name``, ``name@version``, folder) or its card.
        data: training stores and/or data set folders.
        class_map: data class -> model class, as in the settings.

    Raises:
        ModelError: the base model is not found or its card cannot be read.
    """
    if isinstance(base, ModelCard):
        card = base
    else:
        from ..models import resolve_model
        from ..models.io import CARD_FILE

        card = ModelCard.load(resolve_model(base) / CARD_FILE)
    return missing_classes(card, data, class_map)


# ---------------------------------------------------------------------- the run


def finetune_iter(settings: FinetuneSettings, resume: bool = False,
                  should_stop: Callable[[], bool] | None = None,
                  ) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune as ``settings`` say and register the kept model as a new version.

    Yields :class:`~napari_organelle.progress.Progress` while loading data and
    for every training step (``data`` as in :func:`~.trainer.train_iter`);
    returns a :class:`FinetuneResult`. ``should_stop`` is polled after each
    report: when it returns True, training stops and the best checkpoint so
    far is registered (``stopped == "cancelled"``). Closing the generator
    instead (napari's thread worker on cancel) stops at once without
    registering; :func:`register_run` on ``result.work_dir`` (or
    :func:`default_work_dir`) then keeps the best checkpoint.

    Args:
        settings: what to train.
        resume: continue the run in the work folder from its last checkpoint.
        should_stop: polled between steps.

    Raises:
        InputError: bad settings, or data the model cannot use.
        RunRecordError: resuming, and the run's record is damaged.
        ModelError: the base model cannot be loaded.
    """
    settings.check()
    work_dir = Path(settings.work_dir) if settings.work_dir else default_work_dir(settings.name)
    # Not resuming: the old record (even a damaged one) is replaced, never read.
    previous = read_run(work_dir) if resume else None
    if resume and previous is None:
        raise InputError(f"there is no run to resume in {work_dir}")
    yield Progress(0, 0, f"loading {settings.base}")
    base = load_model(settings.base)
    card = _card_with_classes(base.card, settings.add_classes)
    sources: list[DataSource] = []
    for index, path in enumerate(settings.data):
        yield Progress(index, len(settings.data), f"reading {Path(path).name}")
        sources.append(load_source(path, card, settings.class_map))
    if settings.replay:
        yield Progress(0, 0, f"reading the training data of {base.card.full_name} for replay")
    plan = _plan(settings, base.card, card, sources)
    if settings.when_adding(settings.old_classes_from_base):
        yield Progress(0, 0, f"labelling unannotated classes of {base.card.full_name} "
                             "on the training images with its predictions")
        replayed = {str(source.path) for source in plan.replay_sources}
        own = [item for item in plan.train if item.source not in replayed]
        labelled = label_from_base(base.network, own, len(base.card.classes),
                                   resolve_device(settings.device))
        by_name = {item.name: item for item in labelled}
        plan.train[:] = [by_name.get(item.name, item) if item.source not in replayed else item
                         for item in plan.train]
    for note in plan.notes:
        yield Progress(0, 0, note)

    if not resume:
        _clear_run(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run = _run_record(settings, base.card, card, plan, previous)
    atomic_write_json(work_dir / MANIFEST_FILE, plan.manifest)
    write_run(work_dir, run)

    config = _train_config(settings, card, plan, work_dir, resume)
    history: list[dict[str, Any]] = []
    stopped = "cancelled"
    import torch  # deferred: reading data does not need it

    threads = torch.get_num_threads()
    work = train_iter(config)
    try:
        with open(work_dir / LOG_FILE, "a") as log:
            while True:
                try:
                    report = next(work)
                except StopIteration as finished:
                    stopped = finished.value.stopped
                    break
                if report.data:
                    _remember(report.data, run, history, work_dir)
                    log.write(json.dumps(report.data) + "\n")
                    log.flush()
                yield report
                if should_stop is not None and should_stop():
                    break
    finally:
        work.close()
        torch.set_num_threads(threads)  # the trainer may have changed it for the whole process
    yield Progress(0, 0, "keeping the model as a new version")
    return register_run(work_dir, stopped, history=history, activate=settings.activate)


def finetune(settings: FinetuneSettings, resume: bool = False,
             progress: Callable[[Progress], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """Run :func:`finetune_iter` to the end (scripts, the benchmark)."""
    work = finetune_iter(settings, resume, should_stop)
    try:
        while True:
            report = next(work)
            if progress is not None:
                progress(report)
    except StopIteration as finished:
        return finished.value


def register_run(work_dir: str | os.PathLike, stopped: str,
                 history: Sequence[Mapping[str, Any]] | None = None,
                 activate: bool = False) -> FinetuneResult:
    """Keep the best checkpoint of a run as a new version of its model, with lineage.

    Safe to call again for the same checkpoint: it is registered once.

    Args:
        work_dir: the run folder (``run.json``, ``best/``...).
        stopped: why training ended (recorded in the lineage).
        history: the steps logged in this session (else read from the checkpoints).
        activate: make the new version the one in use.

    Raises:
        InputError: the folder holds no run.
        RunRecordError: the run's record is damaged.
    """
    folder = Path(work_dir)
    run = read_run(folder)
    if run is None:
        raise InputError(f"{folder} holds no fine-tuning run")
    added = set(run.added_classes)
    before = {k: v for k, v in run.before.items() if k not in added}
    monitor_before = {k: v for k, v in run.monitor_before.items() if k not in added}
    common = {"before": before, "monitor_before": monitor_before, "stopped": stopped,
              "validation_images": list(run.validation_images),
              "notes": list(run.notes), "work_dir": folder,
              "history": list(history or [])}
    best = folder / "best"
    if not (best / "card.json").exists():
        return FinetuneResult(version=None, card=None, after={}, monitor_after={}, **common)
    card = ModelCard.load(best / "card.json")
    common["after"] = dict(card.metrics.get("validation", {}))
    common["monitor_after"] = dict(card.metrics.get("monitor", {}))
    existing = _already_registered(run.registered, card)
    if existing is not None:
        return FinetuneResult(version=existing,
                              card=ModelCard.load(existing.path / "card.json"), **common)

    timing = _timing(folder, card, history, run, stopped)
    _describe_result(card, run)
    lineage = {
        "parent": run.base,
        "data_manifest_sha256": run.data_manifest_sha256,
        "data": run.data,
        "settings": {"finetune": run.settings.to_dict(), "training": card.recipe},
        "metrics": {
            "validation": {"images": run.validation_images,
                           "before": before, "after": common["after"]},
            "replay_validation": {"images": run.monitor_images,
                                  "before": monitor_before, "after": common["monitor_after"]},
        },
        "time": timing,
    }
    card.save(best / "card.json")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    info = register_version(best, run.settings.name, lineage=lineage, manifest=manifest,
                            activate=activate)
    run.registered = RegisteredVersion(info.full_name, card.extra.get("weights_sha256"))
    write_run(folder, run)
    return FinetuneResult(version=info, card=ModelCard.load(info.path / "card.json"), **common)


# ---------------------------------------------------------------------- planning


@dataclass
class _Plan:
    train: list[TrainingImage]
    val: list[TrainingImage]
    monitor: list[TrainingImage]
    replay_sources: list[DataSource]
    replay_entries: list[dict[str, Any]]
    notes: list[str]
    manifest: dict[str, Any]
    summary: list[dict[str, Any]]


def label_from_base(network: Any, images: Sequence[TrainingImage], n_old: int, device: Any,
                    confident: float = 0.8) -> list[TrainingImage]:
    """Fill the unannotated pixels of the first ``n_old`` classes with the base model's
    confident predictions (probability >= ``confident``: 1, <= 1 - ``confident``: 0);
    the rest stays ignored.

    Images whose old classes are fully annotated come back as they are; the others
    come back as new :class:`TrainingImage` objects (the inputs are not changed).
    """
    from .trainer import predict_image

    high, low = round(255 * confident), round(255 * (1 - confident))
    out = []
    for item in images:
        unknown = item.target[:n_old] == IGNORE
        if not unknown.any():
            out.append(item)
            continue
        probabilities = predict_image(network.to(device), item.image, n_old, device)
        guess = np.full(unknown.shape, IGNORE, np.uint8)
        guess[probabilities >= high] = 1
        guess[probabilities <= low] = 0
        target = item.target.copy()
        target[:n_old][unknown] = guess[unknown]
        out.append(replace(item, target=target))
    return out


def _card_with_classes(base: ModelCard, add: Sequence[ClassSpec]) -> ModelCard:
    """The base card with the new classes appended (what the trainer will build)."""
    card = ModelCard.from_dict(json.loads(json.dumps(base.to_dict())))
    duplicates = [spec.name for spec in add if spec.name in card.class_names]
    if duplicates:
        raise InputError(f"{base.full_name} already segments {', '.join(duplicates)}; "
                         "add only classes it lacks")
    card.classes = card.classes + list(add)
    return card


def _plan(settings: FinetuneSettings, base: ModelCard, card: ModelCard,
          sources: list[DataSource]) -> _Plan:
    rng = np.random.default_rng(settings.seed)
    train: list[TrainingImage] = []
    val: list[TrainingImage] = []
    notes: list[str] = []
    manifest_files: list[dict[str, str]] = []
    summary: list[dict[str, Any]] = []
    for source in sources:
        train_index, val_index = split_by_group(source.groups, settings.val_fraction, rng)
        train += [source.images[i] for i in train_index]
        val += [source.images[i] for i in val_index]
        if source.unused:
            notes.append(f"{source.name}: {', '.join(source.unused)} not used (the model has "
                         "no such class; add it as a new class to learn it)")
        if not val_index:
            notes.append(f"{source.name}: too few images to hold one out for validation "
                         "(3 or more needed); all are used for training")
        held_out = {source.images[i].name for i in val_index}
        manifest_files += _manifest_entries(source, held_out, "train", "validation")
        summary.append(_summary(source, len(train_index), len(val_index)))
    if not train:
        raise InputError("no training images left after holding out validation images")

    replay_sources, replay_entries = [], []
    monitor: list[TrainingImage] = []
    if settings.replay > 0:
        replay_sources, replay_entries, replay_notes = _replay_sources(settings, base, card)
        notes += replay_notes
        replay_train: list[TrainingImage] = []
        for source in replay_sources:
            train_index, val_index = split_by_group(source.groups, settings.val_fraction, rng)
            replay_train += [source.images[i] for i in train_index]
            # All held-out images stay out of training; a few are scored.
            scored = val_index[:max(1, MAX_MONITOR_IMAGES // len(replay_sources))]
            monitor += [source.images[i] for i in scored]
            held_out = {source.images[i].name for i in val_index}
            manifest_files += _manifest_entries(source, held_out, "replay", "replay-validation")
            summary.append({**_summary(source, len(train_index), len(val_index)),
                            "role": "replay"})
        train += _weighted(replay_train, train, settings.replay)
    manifest_files.sort(key=lambda entry: (entry["source"], entry["item"]))
    digest = hashlib.sha256()
    for entry in manifest_files:
        digest.update("\t".join((entry["source"], entry["role"], entry["item"],
                                 entry["sha256"])).encode() + b"\n")
    manifest = {"sha256": digest.hexdigest(), "files": manifest_files}
    return _Plan(train, val, monitor, replay_sources, replay_entries, notes, manifest, summary)


def _manifest_entries(source: DataSource, held_out: set[str], role: str, held_role: str
                      ) -> list[dict[str, str]]:
    entries = []
    for item, sha in source.files:
        # item is "train/images/<file>" (data sets) or a sample id (stores)
        stem = Path(item).stem if source.kind == "dataset" else item
        is_held = f"{source.name}/{stem}" in held_out
        entries.append({"source": source.name, "kind": source.kind,
                        "role": held_role if is_held else role, "item": item, "sha256": sha})
    return entries


def _summary(source: DataSource, n_train: int, n_val: int) -> dict[str, Any]:
    return {"name": source.name, "kind": source.kind, "role": "train",
            "training_images": n_train, "validation_images": n_val,
            "class_map": source.class_map,
            "licence": source.info.get("licence", "")}


def _replay_sources(settings: FinetuneSettings, base: ModelCard, card: ModelCard
                    ) -> tuple[list[DataSource], list[dict[str, Any]], list[str]]:
    """The base model's own training sets found on this machine, read for ``card``."""
    entries = list(base.recipe.get("datasets") or [])
    if not entries:
        return [], [], [(f"replay skipped: the card of {base.full_name} names no training "
                         "data sets")]
    root = Path(settings.data_root) if settings.data_root else default_data_root()
    sources, used, notes = [], [], []
    for entry in entries:
        folder = root / entry["path"] if root else None
        if folder is None or not (folder / entry.get("split", "train") / "images").is_dir():
            notes.append(f"replay: {entry['path']} is not on this machine "
                         f"({'no data root' if root is None else root}); skipped")
            continue
        images = load_dataset(DatasetSpec(folder, entry.get("split", "train"),
                                          entry.get("class_map", {})),
                              card.class_names, card.pixel_size_nm,
                              (card.normalization.low, card.normalization.high))
        for item in images:
            item.weight = float(entry.get("weight", 1.0))
        class_map = dict(entry.get("class_map", {}))
        files = dataset_files(folder, entry.get("split", "train"), images,
                               class_map or {name: name for name in card.class_names})
        sources.append(DataSource(folder, "dataset", images, [i.name for i in images],
                                  class_map, [], files, read_dataset_info(folder).raw))
        used.append(entry)
    return sources, used, notes


def _weighted(replay: list[TrainingImage], own: list[TrainingImage], share: float
              ) -> list[TrainingImage]:
    """Weight replay images so they make up ``share`` of sampled crops.

    Crops are drawn with probability proportional to ``weight x area``.
    """
    if not replay:
        return []
    own_mass = sum(item.weight * item.image.size for item in own)
    replay_mass = sum(item.weight * item.image.size for item in replay)
    factor = share / (1 - share) * own_mass / replay_mass
    for item in replay:
        item.weight *= factor
    return replay


def _train_config(settings: FinetuneSettings, card: ModelCard, plan: _Plan, work_dir: Path,
                  resume: bool) -> TrainConfig:
    on_cpu = resolve_device(settings.device).type == "cpu"
    batch_size = settings.batch_size or (4 if on_cpu else 8)
    iterations = settings.iterations
    if settings.epochs is not None:
        # One epoch: as many crop pixels as the lab's own training pixels.
        own = sum(item.image.size for item in plan.train if item.source
                  not in {str(s.path) for s in plan.replay_sources})
        by_epochs = math.ceil(settings.epochs * own / (batch_size * settings.crop ** 2)
                              / (1 - settings.replay))
        iterations = min(iterations, by_epochs) if iterations else max(1, by_epochs)
    return TrainConfig(
        out=work_dir, base=settings.base, add_classes=list(settings.add_classes),
        images=plan.train, val_images=plan.val, monitor_images=plan.monitor,
        val_fraction=settings.val_fraction, iterations=iterations, minutes=settings.minutes,
        batch_size=batch_size, crop=settings.crop, learning_rate=settings.learning_rate,
        validate_every=settings.validate_every or (20 if on_cpu else 100),
        patience=settings.patience, seed=settings.seed, device=settings.device,
        threads=settings.threads, augment=_augment_settings(card), resume=resume,
        focus_classes=[spec.name for spec in settings.add_classes],
        focus_share=settings.new_class_crops if settings.add_classes else 0.0,
        new_head_factor=settings.new_head_factor,
        keep_norm_statistics=settings.when_adding(settings.keep_norm_statistics),
        freeze_encoder=settings.when_adding(settings.freeze_encoder))


def _augment_settings(card: ModelCard) -> AugmentSettings:
    """The augmentation the base model was trained with (defaults match the bundled ones)."""
    recorded = card.recipe.get("augment") or {}
    known = {f.name for f in fields(AugmentSettings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()
              if k in known}
    return AugmentSettings(**values)


# ---------------------------------------------------------------------- run record


def _run_record(settings: FinetuneSettings, base: ModelCard, card: ModelCard, plan: _Plan,
                previous: RunRecord | None) -> RunRecord:
    notes = list(plan.notes)
    if previous and previous.data_manifest_sha256 != plan.manifest["sha256"]:
        notes.append("the training data changed since this run started; resuming on the new data")
    return RunRecord(
        settings=FinetuneSettings.from_dict(settings.to_dict()),  # as they were at the start
        base=base.full_name,
        classes=list(card.class_names),
        added_classes=[spec.name for spec in settings.add_classes],
        data=plan.summary,
        replay_datasets=plan.replay_entries,
        recipe_datasets=_recipe_datasets(base, plan),
        data_manifest_sha256=plan.manifest["sha256"],
        validation_images=[item.name for item in plan.val],
        monitor_images=[item.name for item in plan.monitor],
        training_images=len(plan.train),
        notes=notes,
        started=(previous.started if previous else "") or utc_now(),
        device=str(resolve_device(settings.device)),
        before=dict(previous.before) if previous else {},
        monitor_before=dict(previous.monitor_before) if previous else {},
    )


def _recipe_datasets(base: ModelCard, plan: _Plan) -> list[dict[str, Any]]:
    """The data sets the new model learnt from, by name, so a later fine-tune can replay them.

    The base model's own sets, plus the shared-layout sets of this run
    (training stores are not named: they are the lab's, not shared).
    """
    entries = [dict(entry) for entry in base.recipe.get("datasets") or []]
    names = {entry["path"] for entry in entries}
    for source in plan.summary:
        if source["role"] == "train" and source["kind"] == "dataset" \
                and source["name"] not in names:
            entries.append({"path": source["name"], "split": "train",
                            "class_map": source["class_map"], "weight": 1.0})
    return entries


def _remember(data: Mapping[str, Any], run: RunRecord, history: list[dict[str, Any]],
              work_dir: Path) -> None:
    """Keep a training report: steps in the history, the base model's scores in run.json."""
    if "before" in data:
        run.before = _finite(data["before"])
        run.monitor_before = _finite(data.get("monitor_before", {}))
        write_run(work_dir, run)
    else:
        history.append(dict(data))


def _describe_result(card: ModelCard, run: RunRecord) -> None:
    """Say in the card what the model was fine-tuned on, with licences and data set names."""
    card.recipe = {**card.recipe, "datasets": run.recipe_datasets}
    names = ", ".join(entry["name"] for entry in run.data if entry["role"] == "train")
    sentence = f"Fine-tuned from {run.base} on {names}."
    if sentence not in card.description:
        card.description = f"{card.description} {sentence}".strip()
    # Classes this run learnt from real data (stores, data sets) are no longer simulation-only.
    declared = card.extra.get(EVIDENCE_KEY)
    if isinstance(declared, dict):
        trained = {model_class for entry in run.data if entry["role"] == "train"
                   for model_class in (entry.get("class_map") or {}).values()}
        kept = {name: value for name, value in declared.items() if name not in trained}
        if kept:
            card.extra[EVIDENCE_KEY] = kept
        else:
            card.extra.pop(EVIDENCE_KEY)
    listed = {entry.get("name") for entry in card.training_data}
    for entry in run.data:
        if entry["role"] != "train" or entry["name"] in listed:
            continue
        licence = entry.get("licence") or ("the lab's own annotations (no licence recorded)"
                                            if entry["kind"] == "store" else "not stated")
        card.training_data.append({"name": entry["name"], "licence": licence,
                                   "citation": ""})


def _timing(folder: Path, card: ModelCard, history: Sequence[Mapping[str, Any]] | None,
            run: RunRecord, stopped: str) -> dict[str, Any]:
    curve = card.extra.get("training_curve") or [{}]
    last_curve = curve
    last_card = folder / "last" / "card.json"
    if last_card.exists():
        last_curve = ModelCard.load(last_card).extra.get("training_curve") or curve
    final = (list(history or []) or last_curve)[-1]
    return {"started": run.started, "finished": utc_now(),
            "steps": final.get("step"), "seconds": final.get("seconds"),
            "kept_step": curve[-1].get("step"), "stopped": stopped,
            "device": run.device}


def _already_registered(registered: RegisteredVersion | None, card: ModelCard
                        ) -> ModelInfo | None:
    if registered is None or registered.weights_sha256 != card.extra.get("weights_sha256"):
        return None
    from ..models import list_models

    for info in list_models():
        if info.full_name == registered.version:
            return info
    return None


def _clear_run(folder: Path) -> None:
    """Remove the previous run of this name (its result, if any, is a version already)."""
    for name in ("best", "last"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in (RUN_FILE, MANIFEST_FILE, LOG_FILE):
        (folder / name).unlink(missing_ok=True)


def _finite(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in scores.items() if not math.isnan(v)}
