"""Train or fine-tune a model: a generator that yields live figures and keeps the best weights.

The loop is written once for every use: rebuilding a bundled model from its
recipe, fine-tuning on an annotator's corrections from the CLI, and the Train
dock widget (which runs this generator in a worker thread and plots what it
yields). Validation is on whole held-out images, never on tiles of training
images; the best checkpoint by mean validation Dice is what is kept, so a
cancelled or early-stopped run still leaves its best model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import resolve_device
from ..durable import atomic_path, utc_now
from ..errors import InputError
from ..metrics import MetricAccumulator
from ..models import ClassSpec, Model, ModelCard, build_network, load_model, save_model
from ..models.composite import (
    add_to_first_member,
    encoders,
    head_rows,
    primary,
    tile_multiple,
)
from ..models.evidence import EVIDENCE_KEY, SIMULATION_ONLY, continued_simulation_only
from ..progress import Progress
from ..tiling import predict_plane
from .augment import AugmentSettings, sample_batch
from .datasets import IGNORE, DatasetSpec, TrainingImage, load_dataset, split_by_image

STATE_FILE = "train_state.pt"


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved with the model as its recipe).

    Attributes:
        out: folder that receives ``best/`` (the kept model) and ``last/`` (for resuming).
        card: card of the model to create (new training) — or None with ``base``.
        base: model to fine-tune (name, name@version or path).
        add_classes: classes to add to the base model (new output channels).
        datasets: data sets in the shared layout.
        images: extra in-memory training images (simulated data, corrections).
        val_images: explicit validation images (else split from ``datasets``).
        images_share: share of the crops drawn from ``images`` (``None``: by
            area, like every other image); e.g. 0.35 keeps simulated images
            from crowding out real ones however many there are.
        focus_classes: classes that a ``focus_share`` of the crops is centred on
            (rare or newly added classes, see :func:`~.augment.sample_batch`).
        new_head_factor: learning-rate multiple for the output rows of classes
            the base model lacks. A new row starts from random weights while
            the rest is trained already; at the fine-tuning rate it barely
            moves in a few hundred steps (``benchmarks/add_class.py``).
        keep_norm_statistics: leave the batch-norm running statistics (what
            inference normalises with) as the starting model has them; training
            batches are still normalised by their own statistics. Fine-tuning
            batches mix the lab's images and replay in other shares than the
            base model saw, and re-estimated statistics shift every class on
            every data set: in ``benchmarks/add_class.py`` they alone cost
            em-epfl-hippocampus mitochondria 0.05 Dice. Not for batches far from
            the images the model will run on (half simulated sections: validation
            Dice fell from 0.68 to 0.49 in 300 steps, docs/models.md).
        freeze_encoder: train the decoder and the output layer only; the
            encoder's weights and statistics stay the starting model's (and its
            backward pass is skipped, so steps are faster).
        encoder_from: a model (name or path) whose encoder weights start a new
            network trained from ``card``, e.g. the EM model's encoder, which has
            learnt real electron micrographs, for a network taught from simulated
            sections only. The encoders must match (same encoder and input channels).
        monitor_images: images scored at every validation but never used to pick
            the kept model, e.g. held-out images of the base model's own
            training data, which show forgetting while fine-tuning.
        val_fraction: share of each set's images held out for validation.
        iterations: optimizer steps (``None``: until ``minutes`` run out).
        minutes: wall-time budget (``None``: until ``iterations`` are done).
        batch_size, crop: crops per step and their edge (model pixels).
        learning_rate, weight_decay: AdamW settings (peak LR of a warm-up + cosine schedule).
        validate_every: steps between validations.
        patience: validations without improvement before stopping early (0: never).
        seed: makes sampling, augmentation and initialisation repeatable.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        threads: CPU threads for torch (0: leave torch's default).
        augment: augmentation ranges.
        resume: continue from ``out/last`` if it exists.
    """

    out: Path
    card: ModelCard | None = None
    base: str | None = None
    add_classes: list[ClassSpec] = field(default_factory=list)
    datasets: list[DatasetSpec] = field(default_factory=list)
    images: list[TrainingImage] = field(default_factory=list)
    val_images: list[TrainingImage] = field(default_factory=list)
    images_share: float | None = None
    focus_classes: list[str] = field(default_factory=list)
    focus_share: float = 0.0
    new_head_factor: float = 1.0
    keep_norm_statistics: bool = False
    freeze_encoder: bool = False
    encoder_from: str | None = None
    monitor_images: list[TrainingImage] = field(default_factory=list)
    val_fraction: float = 0.2
    iterations: int | None = 1000
    minutes: float | None = None
    batch_size: int = 8
    crop: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    validate_every: int = 100
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    resume: bool = False

    def recipe(self) -> dict[str, Any]:
        """The settings as JSON-ready data, for the model card."""
        return {
            "base": self.base,
            "add_classes": [asdict(spec) for spec in self.add_classes],
            "datasets": [{"path": Path(spec.path).name, "split": spec.split,
                          "class_map": spec.class_map, "weight": spec.weight}
                         for spec in self.datasets],
            "extra_images": len(self.images), "images_share": self.images_share,
            "focus_classes": list(self.focus_classes), "focus_share": self.focus_share,
            "new_head_factor": self.new_head_factor,
            "keep_norm_statistics": self.keep_norm_statistics,
            "freeze_encoder": self.freeze_encoder, "encoder_from": self.encoder_from,
            "val_fraction": self.val_fraction, "iterations": self.iterations,
            "minutes": self.minutes, "batch_size": self.batch_size, "crop": self.crop,
            "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
            "validate_every": self.validate_every, "patience": self.patience,
            "seed": self.seed, "augment": asdict(self.augment),
        }


@dataclass
class TrainResult:
    """What a run leaves behind.

    Attributes:
        model_dir: folder of the best model (``out/best``).
        card: its card (with validation metrics and recipe).
        history: one dict per logged step (``step``, ``loss``, ``lr``, and
            ``val`` per-class Dice at validation steps).
        before: validation Dice per class of the starting model (fine-tuning).
        after: validation Dice per class of the kept model.
        stopped: ``finished``, ``early-stopped``, ``time-budget`` or ``cancelled``.
        monitor_before: Dice per class on ``monitor_images`` of the starting model.
        monitor_after: the same for the kept model.
    """

    model_dir: Path
    card: ModelCard
    history: list[dict[str, Any]]
    before: dict[str, float]
    after: dict[str, float]
    stopped: str
    monitor_before: dict[str, float] = field(default_factory=dict)
    monitor_after: dict[str, float] = field(default_factory=dict)


def masked_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice per class, over valid pixels only.

    ``target`` holds 0/1 and :data:`IGNORE`; ignored pixels (unannotated
    classes, unreviewed regions) contribute nothing, so they never teach
    background.
    """
    valid = target != IGNORE
    truth = (target == 1).float()
    weight = valid.float()
    n_valid = weight.sum()
    if n_valid == 0:
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits, truth, weight=weight,
                                             reduction="sum") / n_valid
    probability = torch.sigmoid(logits) * weight
    dims = (0, 2, 3)
    intersection = (probability * truth).sum(dims)
    denominator = probability.sum(dims) + (truth * weight).sum(dims)
    has_pixels = weight.sum(dims) > 0
    dice = (2 * intersection + 1.0) / (denominator + 1.0)
    dice_loss = (1 - dice[has_pixels]).mean() if has_pixels.any() else bce * 0.0
    return bce + dice_loss


def predict_image(network: torch.nn.Module, image: np.ndarray, n_classes: int,
                  device: torch.device, tile: int = 256) -> np.ndarray:
    """Probabilities of a whole normalised ``(Y, X)`` image, uint8 ``(K, Y, X)`` (255 = 1.0)."""
    network.eval()

    @torch.inference_mode()
    def predict(batch: np.ndarray) -> np.ndarray:
        return torch.sigmoid(network(torch.from_numpy(batch).to(device)).float()).cpu().numpy()

    work = predict_plane(image[None], predict, n_classes, tile=tile, overlap=0.25)
    try:
        while True:
            next(work)
    except StopIteration as finished:
        return finished.value


def validate(network: torch.nn.Module, images: Sequence[TrainingImage], class_names: Sequence[str],
             device: torch.device, tile: int = 256) -> dict[str, float]:
    """Pixel Dice per class over whole validation images (summed counts), NaN where unannotated."""
    network.eval()
    accumulator = MetricAccumulator()
    for item in images:
        probabilities = predict_image(network, item.image, len(class_names), device, tile)
        for channel, name in enumerate(class_names):
            target = item.target[channel]
            ignore = target == IGNORE
            if ignore.all():
                continue
            accumulator.add(name, probabilities[channel] >= 128, target == 1, ignore)
    network.train()
    return {name: accumulator[name].dice if name in accumulator.classes else float("nan")
            for name in class_names}


def train_iter(config: TrainConfig) -> Generator[Progress, None, TrainResult]:
    """Train as configured; yields a :class:`Progress` per logged step, returns a
    :class:`TrainResult`.

    Each progress carries ``data`` with ``step``, ``loss``, ``lr`` and, after a
    validation, ``val`` (Dice per class), ``best`` (best mean Dice so far) and,
    with ``monitor_images``, ``monitor`` (their Dice per class). When
    fine-tuning, one report before the first step carries ``before`` (and
    ``monitor_before``): the starting model's scores, without ``loss``.
    Closing the generator (cancel) keeps the best model saved so far.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # crops have one size: pick the fastest kernels
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    card, network, parent = _starting_model(config)
    class_names = card.class_names
    multiple = tile_multiple(card)
    if config.crop % multiple:
        raise InputError(f"crops of {config.crop} pixels do not fit {card.full_name}: they must "
                         f"be a multiple of {multiple} pixels")
    yield Progress(0, 1, "loading data")
    train_images, val_images = _gather_images(config, card)
    if not train_images:
        raise InputError("no training images: give at least one data set or correction")
    unknown = sorted(set(config.focus_classes) - set(class_names))
    if unknown:
        raise InputError(f"focus classes {', '.join(unknown)} are not classes of the model")
    focus = [class_names.index(name) for name in config.focus_classes]
    new_rows = _new_class_rows(card, config)
    if new_rows and not config.resume:
        start_at_prior(network, new_rows, train_images)
    network.to(device).train()
    optimizer, head = _optimizer(network, config, new_rows)
    step, best_score, history = 0, -1.0, []
    last_dir, best_dir = out / "last", out / "best"
    # Scored before resuming, so "before" always means the base model.
    before: dict[str, float] = {}
    monitor_before: dict[str, float] = {}
    if parent is not None and (val_images or config.monitor_images):
        if val_images:
            before = validate(network, val_images, class_names, device)
        if config.monitor_images:
            monitor_before = validate(network, config.monitor_images, class_names, device)
    if config.resume and (last_dir / STATE_FILE).exists():
        step, best_score, history = _restore(last_dir, network, optimizer, device)
        rng = np.random.default_rng(config.seed + step)
    if parent is not None and (before or monitor_before):
        yield Progress(step, config.iterations or 0, "scored the starting model",
                       {"step": step, "before": before, "monitor_before": monitor_before})
    stale, stopped = 0, "finished"
    total = config.iterations or 0
    deadline = started + 60 * config.minutes if config.minutes else None
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    window_loss: list[float] = []
    saved_step = -1  # step of the weights in best/ when validation cannot rank them

    while True:
        if config.iterations is not None and step >= config.iterations:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stopped = "time-budget"
            break
        images, targets = sample_batch(train_images, config.batch_size, config.crop, rng,
                                       config.augment, focus, config.focus_share)
        images, targets = images.to(device), targets.to(device)
        _training_mode(network, config.keep_norm_statistics, config.freeze_encoder)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step, started, deadline) * group["factor"]
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = network(images)
        loss = masked_loss(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            head.step(lambda: scaler.step(optimizer))
            scaler.update()
        else:
            loss.backward()
            head.step(optimizer.step)
        step += 1
        window_loss.append(float(loss.detach()))
        record: dict[str, Any] = {"step": step, "loss": float(np.mean(window_loss[-20:])),
                                  "lr": optimizer.param_groups[0]["lr"],
                                  "seconds": round(time.perf_counter() - started, 1)}
        validation_due = (step % config.validate_every == 0
                          or (config.iterations is not None and step == config.iterations))
        monitor: dict[str, float] = {}
        if validation_due and config.monitor_images:
            monitor = validate(network, config.monitor_images, class_names, device)
            record["monitor"] = monitor
        if validation_due and val_images:
            scores = validate(network, val_images, class_names, device)
            record["val"] = scores
            mean = _mean_score(scores)
            if mean > best_score:
                best_score, stale = mean, 0
                _save(card, network, best_dir, config, history + [record], scores, parent,
                      monitor)
            else:
                stale += 1
            record["best"] = best_score
            _checkpoint(last_dir, card, network, optimizer, step, best_score, history + [record],
                        config, parent)
        elif validation_due or (not val_images and step % config.validate_every == 0):
            _save(card, network, best_dir, config, history + [record], {}, parent, monitor)
            saved_step = step
            _checkpoint(last_dir, card, network, optimizer, step, best_score, history + [record],
                        config, parent)
        history.append(record)
        fraction_total = total or (int(60 * config.minutes) if config.minutes else 0)
        done = step if total else int(time.perf_counter() - started)
        yield Progress(done, fraction_total, f"step {step}, loss {record['loss']:.3f}", record)
        if config.patience and stale >= config.patience:
            stopped = "early-stopped"
            break

    # Without validation images nothing tells checkpoints apart, so the latest
    # weights (trained longest, at the lowest learning rate) are the ones kept.
    unsaved = bool(history) and history[-1]["step"] != saved_step
    if not (best_dir / "card.json").exists() or (not val_images and unsaved):
        scores = validate(network, val_images, class_names, device) if val_images else {}
        monitor = (validate(network, config.monitor_images, class_names, device)
                   if config.monitor_images else {})
        _save(card, network, best_dir, config, history, scores, parent, monitor)
    kept = load_model(best_dir)
    after = {k: v for k, v in kept.card.metrics.get("validation", {}).items()}
    monitor_after = dict(kept.card.metrics.get("monitor", {}))
    return TrainResult(best_dir, kept.card, history, before, after, stopped, monitor_before,
                       monitor_after)


def train(config: TrainConfig, progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run :func:`train_iter` to the end (or until ``should_stop``), keeping the best model."""
    work = train_iter(config)
    try:
        while True:
            report = next(work)
            if progress:
                progress(report)
            if should_stop and should_stop():
                work.close()
                best = Path(config.out) / "best"
                kept = load_model(best)
                return TrainResult(best, kept.card, [], {}, kept.card.metrics.get("validation", {}),
                                   "cancelled")
    except StopIteration as finished:
        return finished.value


def _starting_model(config: TrainConfig) -> tuple[ModelCard, torch.nn.Module, str | None]:
    if config.base is None:
        if config.card is None:
            raise InputError("give a base model to fine-tune or a card for a new model")
        network = build_network(config.card)
        if config.encoder_from is not None:
            _copy_encoder(load_model(config.encoder_from), network)
        return config.card, network, None
    base = load_model(config.base)
    card = ModelCard.from_dict(json.loads(json.dumps(base.card.to_dict())))
    known = set(card.class_names)
    new = [spec for spec in config.add_classes if spec.name not in known]
    if config.card is not None:
        # A recipe that continues from a base adds the classes its card has and the base lacks.
        named = {spec.name for spec in new}
        new += [spec for spec in config.card.classes
                if spec.name not in known and spec.name not in named]
    card.classes = card.classes + new
    add_to_first_member(card, [spec.name for spec in new])
    if config.card is not None and card.class_names != config.card.class_names:
        raise InputError(
            f"the recipe's classes ({', '.join(config.card.class_names)}) must be the base "
            f"model's ({', '.join(base.card.class_names)}) followed by the new ones, in order")
    card.parent = base.card.full_name
    card.metrics = {}
    # The base's calibration of the unfamiliar-image warning describes the base's features;
    # training moves them, so a new model starts uncalibrated (benchmarks/confidence.py).
    card.extra.pop("confidence", None)
    if config.card is not None:
        # A recipe that continues from a base names the new model and says what it learned from.
        card.name, card.version = config.card.name, config.card.version
        card.description = config.card.description or card.description
        card.training_data = list(config.card.training_data) or card.training_data
        # What the recipe teaches from simulated images only, less what the base learnt
        # from real ones.
        declared = config.card.extra.get(EVIDENCE_KEY) or {}
        simulated_only = continued_simulation_only(
            [name for name, value in declared.items() if value == SIMULATION_ONLY], base.card)
        card.extra.pop(EVIDENCE_KEY, None)
        if simulated_only:
            card.extra[EVIDENCE_KEY] = {name: SIMULATION_ONLY for name in simulated_only}
    network = build_network(card)
    _copy_weights(base.network, network, len(base.card.classes))
    return card, network, base.card.full_name


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module, n_old: int) -> None:
    """Copy a base network into one with more output classes; old classes keep their head rows."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    for key, value in source_state.items():
        if key not in target_state:
            continue
        if target_state[key].shape == value.shape:
            target_state[key] = value.clone()
        elif ("segmentation_head" in key and value.shape[1:] == target_state[key].shape[1:]
              and value.shape[0] < target_state[key].shape[0]):
            # the output layer gained rows for new classes (the last ones of the network,
            # or of a composite's first member)
            target_state[key][:value.shape[0]] = value
    target.load_state_dict(target_state)


def _copy_encoder(source: Model, target: torch.nn.Module) -> None:
    """Start ``target``'s encoder from ``source``'s (weights and batch-norm statistics; of
    a composite, its first member's)."""
    wanted = target.encoder.state_dict()
    given = {key[len("encoder."):]: value
             for key, value in primary(source.network).state_dict().items()
             if key.startswith("encoder.")}
    if set(given) != set(wanted) or any(given[k].shape != wanted[k].shape for k in wanted):
        raise InputError(f"the encoder of {source.card.full_name} ({source.card.encoder}, "
                         f"{source.card.in_channels} channels in) does not fit this network's")
    target.encoder.load_state_dict(given)


def _training_mode(network: torch.nn.Module, keep_norm_statistics: bool,
                   freeze_encoder: bool = False) -> None:
    network.train()
    for encoder in encoders(network) if freeze_encoder else ():
        encoder.eval()
    if keep_norm_statistics:
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.0  # running statistics stay; batches use their own


def _new_class_rows(card: ModelCard, config: TrainConfig) -> list[int]:
    """Output rows of the classes the base model lacks (none when training from scratch)."""
    if config.base is None:
        return []
    known = set(load_model(config.base).card.class_names)
    return [i for i, name in enumerate(card.class_names) if name not in known]


def start_at_prior(network: torch.nn.Module, rows: Sequence[int],
                   images: Sequence[TrainingImage], floor: float = 1e-3) -> dict[int, float]:
    """Set the output bias of ``rows`` to the logit of each class's share of its annotated pixels.

    A new output channel then starts out predicting its base rate (synapses: about
    0.5 % of pixels) instead of 0.5 everywhere, so its first steps teach where the
    class is rather than how rare it is (the prior initialisation of RetinaNet,
    Lin et al. 2017).

    Returns:
        The prior used per row.
    """
    bias = primary(network).segmentation_head[0].bias
    priors = {}
    for row, local in zip(rows, head_rows(network, rows)):
        positive = annotated = 0
        for item in images:
            target = item.target[row]
            annotated += int((target != IGNORE).sum())
            positive += int((target == 1).sum())
        prior = min(0.5, max(floor, positive / annotated)) if annotated else 0.5
        with torch.no_grad():
            bias[local] = math.log(prior / (1 - prior))
        priors[row] = prior
    return priors


class _HeadRows:
    """Steps new output rows at ``factor`` x the learning rate and the old rows at 1 x.

    The whole output layer sits in the fast parameter group; after each step the
    old rows' change is scaled back by ``1 / factor``. An AdamW update is linear in
    the learning rate (decoupled weight decay included), so this is exactly a
    step at the base rate for them.
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], old_rows: int, factor: float):
        self.parameters, self.old_rows, self.factor = list(parameters), old_rows, factor

    def step(self, optimizer_step: Callable[[], Any]) -> None:
        if not self.parameters or self.factor == 1.0:
            optimizer_step()
            return
        before = [p.detach()[:self.old_rows].clone() for p in self.parameters]
        optimizer_step()
        with torch.no_grad():
            for parameter, old in zip(self.parameters, before):
                moved = parameter[:self.old_rows]
                moved.copy_(old + (moved - old) / self.factor)


def _optimizer(network: torch.nn.Module, config: TrainConfig, new_rows: Sequence[int]
               ) -> tuple[torch.optim.Optimizer, _HeadRows]:
    factor = config.new_head_factor if new_rows else 1.0
    if factor <= 0:
        raise InputError(f"new_head_factor must be positive, not {factor}")
    head = list(primary(network).segmentation_head.parameters()) if factor != 1.0 else []
    frozen = ([p for encoder in encoders(network) for p in encoder.parameters()]
              if config.freeze_encoder else [])
    for parameter in frozen:
        parameter.requires_grad_(False)
    ids = {id(p) for p in head + frozen}
    body = [p for p in network.parameters() if id(p) not in ids]
    groups = [{"params": body, "factor": 1.0}]
    if head:
        groups.append({"params": head, "factor": factor})
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    first_new = min(head_rows(network, new_rows)) if new_rows else 0
    return optimizer, _HeadRows(head, first_new, factor)


def _gather_images(config: TrainConfig, card: ModelCard
                   ) -> tuple[list[TrainingImage], list[TrainingImage]]:
    loaded: list[TrainingImage] = []
    low, high = card.normalization.low, card.normalization.high
    for spec in config.datasets:
        loaded.extend(load_dataset(spec, card.class_names, card.pixel_size_nm, (low, high)))
    train_images, val_images = split_by_image(loaded, config.val_fraction, config.seed)
    extra = list(config.images)
    if config.images_share is not None and extra and train_images:
        if not 0.0 < config.images_share < 1.0:
            raise InputError(f"images_share must lie between 0 and 1, not {config.images_share}")
        # Sampling is by weight x area: scale the extra images' weights to their share.
        real = sum(item.weight * item.image.size for item in train_images)
        added = sum(item.weight * item.image.size for item in extra)
        factor = config.images_share / (1.0 - config.images_share) * real / added
        extra = [replace(item, weight=item.weight * factor) for item in extra]
    train_images = train_images + extra
    val_images = val_images + list(config.val_images)
    return train_images, val_images


def _learning_rate(config: TrainConfig, step: int, started: float, deadline: float | None) -> float:
    # Whichever budget binds first (steps or minutes) drives the schedule to its end.
    progress = 0.0
    if config.iterations:
        progress = step / config.iterations
    if deadline:
        progress = max(progress, (time.perf_counter() - started) / (deadline - started))
    warmup = 0.03
    if progress < warmup:
        return config.learning_rate * (0.1 + 0.9 * progress / warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))
    return config.learning_rate * (0.01 + 0.99 * cosine)


def _mean_score(scores: dict[str, float]) -> float:
    values = [v for v in scores.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else 0.0


def _save(card: ModelCard, network: torch.nn.Module, folder: Path, config: TrainConfig,
          history: list[dict[str, Any]], scores: dict[str, float], parent: str | None,
          monitor: dict[str, float] | None = None) -> None:
    card.parent = parent
    card.created = utc_now()
    card.recipe = config.recipe()
    card.metrics = dict(card.metrics)
    card.metrics["validation"] = {k: round(v, 4) for k, v in scores.items() if not math.isnan(v)}
    card.metrics.pop("monitor", None)
    if monitor:
        card.metrics["monitor"] = {k: round(v, 4) for k, v in monitor.items() if not math.isnan(v)}
    card.extra["training_curve"] = _curve_summary(history)
    save_model((card, network), folder)


def _curve_summary(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most 50 points of the curve, plus every validation, for the card."""
    keep = max(1, len(history) // 50)
    points = [h for i, h in enumerate(history) if i % keep == 0 or "val" in h]
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
            for h in points]


def _checkpoint(folder: Path, card: ModelCard, network: torch.nn.Module,
                optimizer: torch.optim.Optimizer, step: int, best: float,
                history: list[dict[str, Any]], config: TrainConfig, parent: str | None) -> None:
    _save(card, network, folder, config, history, {}, parent)
    with atomic_path(folder / STATE_FILE) as temporary:
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "best": best,
                    "history": json.dumps(history)}, temporary)


def _restore(folder: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
             device: torch.device) -> tuple[int, float, list[dict[str, Any]]]:
    weights = load_model(folder).network.state_dict()
    network.load_state_dict(weights)
    network.to(device)
    state = torch.load(folder / STATE_FILE, map_location=device, weights_only=True)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError:
        raise InputError(f"the checkpoint in {folder} was saved with other training settings "
                         "(a run from an older version?); start the run again instead of "
                         "resuming it") from None
    return int(state["step"]), float(state["best"]), json.loads(state["history"])
