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
  old ones start from the base model's weights.
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
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device
from ..errors import InputError, ModelError
from ..models import ClassSpec, ModelCard, ModelInfo, load_model, user_data_dir
from ..models.versions import check_model_name, register_version
from ..progress import Progress
from .augment import AugmentSettings
from .datasets import DatasetSpec, TrainingImage, load_dataset, read_dataset_info
from .sources import DataSource, dataset_files, load_source, split_by_group
from .trainer import TrainConfig, train_iter

__all__ = [
    "RUN_FILE",
    "FinetuneResult",
    "FinetuneSettings",
    "default_data_root",
    "default_work_dir",
    "finetune",
    "finetune_iter",
    "register_run",
    "resume_settings",
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
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"the validation fraction must be 0 to <1, not {self.val_fraction}")
        if self.crop % 32 or self.crop < 32:
            raise InputError(f"the crop must be a multiple of 32, not {self.crop}")

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
    """
    folder = Path(work_dir) if work_dir else default_work_dir(name)
    run = _read_run(folder)
    if not run:
        raise InputError(f"there is no run of {name} to resume in {folder}")
    settings = FinetuneSettings.from_dict(run["settings"])
    settings.work_dir = folder
    return settings


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
        ModelError: the base model cannot be loaded.
    """
    settings.check()
    work_dir = Path(settings.work_dir) if settings.work_dir else default_work_dir(settings.name)
    previous = _read_run(work_dir) if resume else {}
    if resume and not previous:
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
    for note in plan.notes:
        yield Progress(0, 0, note)

    if not resume:
        _clear_run(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run = _run_record(settings, base.card, card, plan, previous)
    _write_json(work_dir / MANIFEST_FILE, plan.manifest)
    _write_json(work_dir / RUN_FILE, run)

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
    """
    folder = Path(work_dir)
    run = _read_run(folder)
    if not run:
        raise InputError(f"{folder} holds no fine-tuning run")
    added = set(run.get("added_classes", []))
    before = {k: v for k, v in run.get("before", {}).items() if k not in added}
    monitor_before = {k: v for k, v in run.get("monitor_before", {}).items() if k not in added}
    common = {"before": before, "monitor_before": monitor_before, "stopped": stopped,
              "validation_images": run.get("validation_images", []),
              "notes": run.get("notes", []), "work_dir": folder,
              "history": list(history or [])}
    best = folder / "best"
    if not (best / "card.json").exists():
        return FinetuneResult(version=None, card=None, after={}, monitor_after={}, **common)
    card = ModelCard.load(best / "card.json")
    common["after"] = dict(card.metrics.get("validation", {}))
    common["monitor_after"] = dict(card.metrics.get("monitor", {}))
    existing = _already_registered(run.get("registered", {}), card)
    if existing is not None:
        return FinetuneResult(version=existing,
                              card=ModelCard.load(existing.path / "card.json"), **common)

    timing = _timing(folder, card, history, run, stopped)
    _describe_result(card, run)
    lineage = {
        "parent": run["base"],
        "data_manifest_sha256": run["data_manifest_sha256"],
        "data": run["data"],
        "settings": {"finetune": run["settings"], "training": card.recipe},
        "metrics": {
            "validation": {"images": run.get("validation_images", []),
                           "before": before, "after": common["after"]},
            "replay_validation": {"images": run.get("monitor_images", []),
                                  "before": monitor_before, "after": common["monitor_after"]},
        },
        "time": timing,
    }
    card.save(best / "card.json")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    info = register_version(best, run["settings"]["name"], lineage=lineage, manifest=manifest,
                            activate=activate)
    run["registered"] = {"version": info.full_name,
                         "weights_sha256": card.extra.get("weights_sha256")}
    _write_json(folder / RUN_FILE, run)
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
        return [], [], [f"replay skipped: the card of {base.full_name} names no training "
                        "data sets"]
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
                                  class_map, [], files, read_dataset_info(folder)))
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
        threads=settings.threads, augment=_augment_settings(card), resume=resume)


def _augment_settings(card: ModelCard) -> AugmentSettings:
    """The augmentation the base model was trained with (defaults match the bundled ones)."""
    recorded = card.recipe.get("augment") or {}
    known = {f.name for f in fields(AugmentSettings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()
              if k in known}
    return AugmentSettings(**values)


# ---------------------------------------------------------------------- run record


def _run_record(settings: FinetuneSettings, base: ModelCard, card: ModelCard, plan: _Plan,
                previous: Mapping[str, Any]) -> dict[str, Any]:
    notes = list(plan.notes)
    if previous and previous.get("data_manifest_sha256") != plan.manifest["sha256"]:
        notes.append("the training data changed since this run started; resuming on the new data")
    run = {
        "settings": settings.to_dict(),
        "base": base.full_name,
        "classes": card.class_names,
        "added_classes": [spec.name for spec in settings.add_classes],
        "data": plan.summary,
        "replay_datasets": plan.replay_entries,
        "recipe_datasets": _recipe_datasets(base, plan),
        "data_manifest_sha256": plan.manifest["sha256"],
        "validation_images": [item.name for item in plan.val],
        "monitor_images": [item.name for item in plan.monitor],
        "training_images": len(plan.train),
        "notes": notes,
        "started": previous.get("started") or _now(),
        "device": str(resolve_device(settings.device)),
    }
    for key in ("before", "monitor_before"):
        if key in previous:
            run[key] = previous[key]
    return run


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


def _remember(data: Mapping[str, Any], run: dict[str, Any], history: list[dict[str, Any]],
              work_dir: Path) -> None:
    """Keep a training report: steps in the history, the base model's scores in run.json."""
    if "before" in data:
        run["before"] = _finite(data["before"])
        run["monitor_before"] = _finite(data.get("monitor_before", {}))
        _write_json(work_dir / RUN_FILE, run)
    else:
        history.append(dict(data))


def _describe_result(card: ModelCard, run: Mapping[str, Any]) -> None:
    """Say in the card what the model was fine-tuned on, with licences and data set names."""
    card.recipe = {**card.recipe, "datasets": run.get("recipe_datasets", [])}
    names = ", ".join(entry["name"] for entry in run["data"] if entry["role"] == "train")
    sentence = f"Fine-tuned from {run['base']} on {names}."
    if sentence not in card.description:
        card.description = f"{card.description} {sentence}".strip()
    listed = {entry.get("name") for entry in card.training_data}
    for entry in run["data"]:
        if entry["role"] != "train" or entry["name"] in listed:
            continue
        licence = entry.get("licence") or ("the lab's own annotations (no licence recorded)"
                                            if entry["kind"] == "store" else "not stated")
        card.training_data.append({"name": entry["name"], "licence": licence,
                                   "citation": ""})


def _timing(folder: Path, card: ModelCard, history: Sequence[Mapping[str, Any]] | None,
            run: Mapping[str, Any], stopped: str) -> dict[str, Any]:
    curve = card.extra.get("training_curve") or [{}]
    last_curve = curve
    last_card = folder / "last" / "card.json"
    if last_card.exists():
        last_curve = ModelCard.load(last_card).extra.get("training_curve") or curve
    final = (list(history or []) or last_curve)[-1]
    return {"started": run.get("started"), "finished": _now(),
            "steps": final.get("step"), "seconds": final.get("seconds"),
            "kept_step": curve[-1].get("step"), "stopped": stopped,
            "device": run.get("device")}


def _already_registered(registered: Mapping[str, Any], card: ModelCard) -> ModelInfo | None:
    if not registered or registered.get("weights_sha256") != card.extra.get("weights_sha256"):
        return None
    from ..models import list_models

    for info in list_models():
        if info.full_name == registered.get("version"):
            return info
    return None


def _read_run(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _clear_run(folder: Path) -> None:
    """Remove the previous run of this name (its result, if any, is a version already)."""
    for name in ("best", "last"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in (RUN_FILE, MANIFEST_FILE, LOG_FILE):
        (folder / name).unlink(missing_ok=True)


def _write_json(path: Path, content: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(temporary, path)


def _finite(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in scores.items() if not math.isnan(v)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
