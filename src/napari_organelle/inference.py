"""Segment any 2-D, 3-D, time-lapse or multichannel image with a model.

The work is a generator, :func:`segment_iter`, that yields
:class:`~napari_organelle.progress.Progress` after every batch of tiles and
returns a :class:`SegmentationResult`; :func:`segment` drives it to the end.
Stacks and time-lapses are segmented plane by plane: the last two axes are Y
and X, every axis before them (T, Z) is iterated. By default instance labels
are unique across the whole stack and objects are not linked between planes.
In volume mode (``volume=True``, or automatic when ``axes`` names a Z axis)
the instance classes of a Z stack become 3-D objects, labelled in the stacked
masks (:mod:`napari_organelle.volume` explains the method and what memory it
holds), and ``z_consensus`` can smooth the probabilities along Z first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from itertools import product
from numbers import Real
from typing import Any

import numpy as np
import torch

from .backends import make_runner
from .confidence import (
    ConfidenceMeter,
    FeatureMeter,
    confidence_limits,
    confidence_warning,
    feature_reference,
    unfamiliar_classes,
)
from .devices import resolve_device
from .errors import InputError
from .image_input import PreparedImage, plane_statistics, prepare_image
from .models import ClassSpec, Model, ModelCard, load_model
from .models.composite import runnable_part, tile_multiple
from .postprocess import label_instances, probabilities_to_mask
from .progress import Progress, run
from .tiling import predict_plane
from .uncertainty import entropy_bits
from .volume import ZConsensus, label_volume, min_object_voxels, z_position

#: Rescale only when the image's pixel size differs from the model's by more than this.
RESCALE_TOLERANCE = 0.1


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes:
        labels: per class name, a label image with the image's spatial shape:
            object ids (uint16/uint32) for instance classes, 0/1 (uint8) masks
            for semantic classes. In volume mode an id is one 3-D object.
        classes: the :class:`ClassSpec` of each returned class (name, kind, colour).
        model: ``name@version`` of the model used.
        device: where the network ran.
        seconds: wall time.
        notes: what the user should know (converted RGB, NaNs filled, blank planes).
        uncertainty: per class, with ``uncertainty=True``: float32 maps of the image's
            spatial shape, the entropy (0..1 bits) of the flips' average probability.
    """

    labels: dict[str, np.ndarray]
    classes: dict[str, ClassSpec]
    model: str
    device: str
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unsure_share: dict[str, float] = field(default_factory=dict)
    unfamiliar: dict[str, float] = field(default_factory=dict)
    feature_distance: float | None = None
    features: FeatureMeter | None = field(default=None, repr=False)
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def object_counts(self) -> dict[str, int]:
        """Objects per instance class (number of distinct ids), pixels' presence for masks."""
        counts = {}
        for name, labels in self.labels.items():
            if self.classes[name].kind == "instance":
                counts[name] = int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
            else:
                counts[name] = int(labels.any())
        return counts

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: classes, object counts, seconds, device, settings."""
        return {
            "model": self.model,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "classes": {name: {"kind": spec.kind, "color": spec.color}
                        for name, spec in self.classes.items()},
            "object_counts": {name: count for name, count in self.object_counts().items()
                              if self.classes[name].kind == "instance"},
            "foreground_fraction": {name: float(np.count_nonzero(labels)) / labels.size
                                    for name, labels in self.labels.items()},
            "shape": list(next(iter(self.labels.values())).shape) if self.labels else [],
            "settings": self.settings,
            # Per class: the share of considered pixels the model was unsure of, and the
            # classes over the model's calibrated limit (the image looks unfamiliar).
            "unsure_share": {name: (round(v, 4) if v == v else None)
                             for name, v in self.unsure_share.items()},
            "unfamiliar": {name: round(v, 4) for name, v in self.unfamiliar.items()},
            "feature_distance": (round(self.feature_distance, 3)
                                 if self.feature_distance is not None
                                 and self.feature_distance == self.feature_distance else None),
            "notes": self.notes,
        }


def segment_iter(
    image: Any,
    model: Model | str,
    *,
    classes: Sequence[str] | None = None,
    channel_axis: int | None = None,
    channel_classes: dict[int, Sequence[str]] | None = None,
    rgb: bool | None = None,
    pixel_size_nm: float | None = None,
    tile_size: int | None = None,
    overlap: float = 0.25,
    batch_size: int | None = None,
    tta: bool = False,
    device: str = "auto",
    min_size: dict[str, int] | None = None,
    volume: bool | None = None,
    axes: str | None = None,
    z_anisotropy: float | None = None,
    z_consensus: bool = False,
    backend: str | None = None,
    uncertainty: bool = False,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment an image tile by tile, yielding progress; returns the labels.

    Args:
        image: numpy or dask array; see :func:`~napari_organelle.image_input.prepare_image`.
        model: a loaded :class:`Model` or its name/path.
        classes: class names to return (default: all the model's classes).
        channel_axis: axis holding channels, if any.
        channel_classes: for a one-channel model and a multichannel image,
            which classes to take from each channel, e.g. ``{0: ["nuclei"],
            1: ["mitochondria"]}`` (fluorescence: one organelle per dye).
        rgb: the last axis is RGB; None guesses.
        pixel_size_nm: the image's pixel size; when known and different from
            the model's, planes are rescaled to the model's pixel size.
        tile_size: tile edge (multiple of 32); default from the model card.
        overlap: fraction of overlap between tiles.
        batch_size: tiles per forward pass; default 4 on the CPU, 16 on a GPU.
        tta: average predictions over flips (4x slower, a little more accurate).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        min_size: per class, smallest object kept, in pixels at the image's
            resolution (default from the card). In volume mode the smallest
            3-D object is a ball with that equatorial area
            (:func:`~napari_organelle.volume.min_object_voxels`).
        volume: link instance objects across Z into 3-D objects (see
            :mod:`napari_organelle.volume`). None (default): on when ``axes``
            names a Z axis, off otherwise (a bare array says nothing about
            its axes). True: the Z axis is the one ``axes`` names, else the
            last axis before Y and X (napari's T, Z, Y, X order); a time-lapse
            of stacks is labelled one Z stack at a time. False: plane by plane.
        axes: one letter per axis of ``image`` (``"ZYX"``, ``"TZCYX"``; ``C``
            and ``S`` are channels), as :func:`napari_organelle.io.read_image`
            gives them; only used to find Z.
        z_anisotropy: the Z step divided by the XY pixel size (sections of
            50 nm at 5 nm pixels: 10), for the 3-D distance transform and the
            z-consensus weights; default 1 (isotropic).
        z_consensus: in volume mode, average each plane's probabilities with
            the planes above and below before thresholding, weighted for the
            anisotropy (:class:`~napari_organelle.volume.ZConsensus`).
        backend: how the network runs: ``auto`` (ONNX Runtime on the CPU, PyTorch on a
            GPU), ``onnx``, ``torch`` or ``channels_last``; None: the
            ``NAPARI_ORGANELLE_BACKEND`` environment variable, else ``auto``
            (:mod:`napari_organelle.backends`).
        uncertainty: also return, per class, the binary entropy (0..1 bits) of the
            probabilities averaged over four flips (:mod:`napari_organelle.uncertainty`);
            turns ``tta`` on, so it costs four network passes per tile.

    Examples:
        A square tube through a 6-plane stack is six objects plane by plane
        and one 3-D object in volume mode (the "network" here calls bright
        pixels mitochondria):

        >>> from napari_organelle.models import ClassSpec, Model, ModelCard
        >>> class Bright(torch.nn.Module):
        ...     def forward(self, x):
        ...         return (x - 0.5) * 40
        >>> card = ModelCard(name="bright", version="1", architecture="Unet",
        ...                  encoder="resnet18", in_channels=1, modality="em", tile_size=64,
        ...                  classes=[ClassSpec("mitochondria", "instance")])
        >>> model = Model(card, Bright())
        >>> stack = np.zeros((6, 64, 64), np.uint16)
        >>> stack[:, 20:40, 20:40] = 1000
        >>> segment(stack, model).object_counts()["mitochondria"]
        6
        >>> in_3d = segment(stack, model, volume=True)
        >>> in_3d.object_counts()["mitochondria"], in_3d.settings["volume"]
        (1, True)

    Raises:
        InputError: the image cannot be segmented as given (the message says why).
        ModelError: the model cannot be loaded.
    """
    started = time.perf_counter()
    model = load_model(model)
    card = model.card
    wanted = list(classes) if classes is not None else card.class_names
    for name in wanted:
        card.class_spec(name)  # raises a clear error for unknown classes
    if not wanted:
        raise InputError("no classes chosen: pick at least one organelle to segment")
    # Only the networks the chosen classes need run (a composite's one member, if one has all).
    model = runnable_part(model, wanted)
    card = model.card
    tile = checked_tile_size(card, tile_size)
    if not 0 <= overlap < 0.9:
        raise InputError(f"overlap must be between 0 and 0.9, not {overlap}")

    prepared = prepare_image(image, channel_axis=channel_axis, rgb=rgb,
                             keep_rgb=card.in_channels == 3)
    jobs = _plan_channel_jobs(prepared, card.in_channels, wanted, channel_classes)
    scale = _rescale_factor(pixel_size_nm, card.pixel_size_nm)
    notes = list(prepared.notes)
    z_axis = _volume_axis(prepared, volume, axes, notes)
    anisotropy = _anisotropy(z_anisotropy)
    if z_consensus and z_axis is None:
        notes.append("z-consensus smooths along Z in volume mode only: not used")
        z_consensus = False
    _check_memory(prepared, [card.class_spec(name) for _, names in jobs for name in names],
                  z_axis, uncertainty)
    if uncertainty and not tta:
        tta = True  # the maps are the entropy of the flips' average

    torch_device = resolve_device(device)
    batch = int(batch_size or (4 if torch_device.type == "cpu" else 16))
    predictor = _BatchPredictor(model, torch_device, tta, backend, notes)
    features = predictor.features = FeatureMeter()
    specs = {name: card.class_spec(name) for _, names in jobs for name in names}
    outputs = {name: np.zeros(prepared.output_shape,
                              dtype=np.uint16 if spec.kind == "instance" else np.uint8)
               for name, spec in specs.items()}
    unsure = {name: np.zeros(prepared.output_shape, dtype=np.float32)
              for name in specs} if uncertainty else {}
    next_ids = dict.fromkeys(specs, 0)
    meter = ConfidenceMeter(list(specs))
    sizes = _min_sizes(specs, min_size, scale)

    total_planes = prepared.n_planes * len(jobs)
    blank_planes = 0
    done_planes = 0

    def predict(plane: np.ndarray, channels: list[int], names: list[str],
                probabilities: bool = False, where: tuple[Any, ...] = ()
                ) -> Generator[Progress, None, np.ndarray | None]:
        """One job's ``(K, Y, X)`` uint8 masks of one plane (or its probabilities); None if
        the plane is blank. With ``uncertainty``, the plane's maps go to ``unsure[where]``."""
        nonlocal blank_planes
        raw = plane[channels]
        lows, highs, nonfinite = plane_statistics(raw, card.normalization.low,
                                                  card.normalization.high)
        if np.isnan(lows).any():
            blank_planes += 1
            return None
        if nonfinite:
            raw = _fill_nonfinite(raw)
            _note_once(notes, "NaN or infinite pixels were replaced by the median before "
                              "segmenting; they may be mislabelled")
        lows, highs = _widen_flat_range(raw, lows, highs)
        if (highs <= lows).all():
            blank_planes += 1
            return None
        if scale != 1.0:
            raw = _resize_plane(raw, scale)
        normalize = _normalizer(lows, highs)
        output_index = [card.class_names.index(name) for name in names]
        # At the image's own pixel size the tiler thresholds as it writes, so no
        # probability image is held; rescaled planes need the probabilities to resize.
        thresholds = ([specs[name].threshold for name in names]
                      if scale == 1.0 and not probabilities and not uncertainty else None)
        predicted = yield from _with_plane_progress(
            predict_plane(raw, predictor.for_classes(
                              output_index, meter, [list(specs).index(n) for n in names]),
                          len(names), tile=tile,
                          overlap=overlap, batch_size=batch, normalize=normalize,
                          thresholds=thresholds),
            done_planes, total_planes)
        if scale != 1.0:
            predicted = _resize_probabilities(predicted, prepared.plane_shape)
        for channel, name in enumerate(names if uncertainty else ()):
            unsure[name][where] = entropy_bits(predicted[channel])
        if thresholds is None and not probabilities:
            for channel, name in enumerate(names):
                predicted[channel] = probabilities_to_mask(predicted[channel],
                                                           specs[name].threshold)
        return predicted

    if z_axis is None:
        for index in prepared.plane_indices():
            plane = prepared.plane(index)
            for channels, names in jobs:
                masks = yield from predict(plane, channels, names, where=index)
                for channel, name in enumerate(names if masks is not None else ()):
                    mask = masks[channel]
                    if specs[name].kind == "semantic":
                        outputs[name][index] = mask
                        continue
                    labels = label_instances(mask, min_size=sizes[name])
                    count = int(labels.max())
                    if count:
                        outputs[name] = _ensure_capacity(outputs[name], next_ids[name] + count)
                        target = outputs[name][index]
                        np.add(labels, next_ids[name], out=target, where=labels > 0,
                               casting="unsafe")
                        next_ids[name] += count
                done_planes += 1
                yield Progress(done_planes, total_planes, "planes")
    else:
        # Volume mode: one Z stack at a time (each T of a T x Z stack), plane by plane;
        # instance masks are stacked and labelled in 3-D once the stack is complete.
        leading = prepared.leading_shape
        depth = leading[z_axis]
        instance_names = [name for name, spec in specs.items() if spec.kind == "instance"]
        voxel_sizes = {name: min_object_voxels(sizes[name], anisotropy)
                       for name in instance_names}
        for outer in product(*(range(n) for n in leading[:z_axis] + leading[z_axis + 1:])):
            def at(z: int | slice, outer: tuple[int, ...] = outer) -> tuple[Any, ...]:
                return (*outer[:z_axis], z, *outer[z_axis:])

            stacks = {name: np.zeros((depth, *prepared.plane_shape), dtype=bool)
                      for name in instance_names}

            def keep(z: int, values: np.ndarray | None, names: list[str], thresholded: bool,
                     at: Callable[[int], tuple[Any, ...]] = at,
                     stacks: dict[str, np.ndarray] = stacks) -> None:
                for channel, name in enumerate(names if values is not None else ()):
                    mask = (values[channel] if thresholded
                            else probabilities_to_mask(values[channel], specs[name].threshold))
                    if specs[name].kind == "semantic":
                        outputs[name][at(z)] = mask
                    else:
                        stacks[name][z] = mask

            smoothers = [ZConsensus(anisotropy) for _ in jobs] if z_consensus else None
            for z in range(depth):
                plane = prepared.plane(at(z))
                for job, (channels, names) in enumerate(jobs):
                    predicted = yield from predict(plane, channels, names,
                                                   probabilities=smoothers is not None,
                                                   where=at(z))
                    ready = (smoothers[job].push(z, predicted) if smoothers is not None
                             else [(z, predicted)])
                    for ready_z, values in ready:
                        keep(ready_z, values, names, thresholded=smoothers is None)
                    done_planes += 1
                    yield Progress(done_planes, total_planes, "planes")
            for job, (_, names) in enumerate(jobs if smoothers is not None else ()):
                for ready_z, values in smoothers[job].flush():
                    keep(ready_z, values, names, thresholded=False)
            for name in instance_names:
                yield Progress(done_planes, total_planes, f"linking {name} across Z")
                labels = label_volume(stacks.pop(name), min_size=voxel_sizes[name],
                                      anisotropy=anisotropy)
                count = int(labels.max())
                if len(leading) == 1:
                    outputs[name] = labels  # the whole image: no copy
                elif count:
                    outputs[name] = _ensure_capacity(outputs[name], next_ids[name] + count)
                    target = outputs[name][at(slice(None))]
                    np.add(labels, next_ids[name], out=target, where=labels > 0,
                           casting="unsafe")
                del labels
                next_ids[name] += count
    if blank_planes == total_planes:
        raise InputError("the image is blank (every pixel has the same value, or none is a "
                         "number): there is nothing to segment")
    if blank_planes:
        notes.append(f"{blank_planes} blank plane(s) were left unlabelled")
    unsure_share = meter.unsure_share()
    unfamiliar = unfamiliar_classes(unsure_share, confidence_limits(card.extra))
    reference = feature_reference(card.extra)
    distance = features.distance(*reference[:2]) if reference else None
    far = distance if reference and distance == distance and distance > reference[2] else None
    warning = confidence_warning(unfamiliar, card.full_name, far,
                                 reference[2] if reference else None)
    if warning:
        notes.append(warning)

    return SegmentationResult(
        labels=outputs,
        classes=specs,
        model=card.full_name,
        device=str(torch_device),
        seconds=time.perf_counter() - started,
        settings={"tile_size": tile, "overlap": overlap, "batch_size": batch, "tta": tta,
                  **({"uncertainty": "entropy of the 4-flip average"} if uncertainty else {}),
                  "backend": predictor.backend,
                  "rescale": scale, "pixel_size_nm": pixel_size_nm,
                  "volume": z_axis is not None,
                  **({"z_anisotropy": anisotropy, "z_consensus": bool(z_consensus)}
                     if z_axis is not None else {})},
        notes=notes,
        unsure_share=unsure_share,
        unfamiliar=unfamiliar,
        feature_distance=distance,
        features=features,
        uncertainty=unsure,
    )


def segment(
    image: Any,
    model: Model | str,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> SegmentationResult:
    """Segment an image and return one label image per organelle.

    Takes the same options as :func:`segment_iter`, plus a progress callback
    and a stop flag (raises :class:`~napari_organelle.errors.Cancelled`).

    Examples:
        >>> from napari_organelle.inference import segment
        >>> result = segment(image, "em-organelles")  # doctest: +SKIP
        >>> sorted(result.labels)  # doctest: +SKIP
        ['cell_boundary', 'mitochondria']
    """
    return run(segment_iter(image, model, **options), progress, should_stop)


class _BatchPredictor:
    """Runs the network on numpy batches through a backend (:mod:`napari_organelle.backends`):
    ONNX Runtime or PyTorch (device transfer, mixed precision, flips)."""

    def __init__(self, model: Model, device: torch.device, tta: bool,
                 backend: str | None = None, notes: list[str] | None = None) -> None:
        self.runner = make_runner(model, device, backend, notes)
        self.backend = self.runner.backend
        self.device = device
        self.tta = tta
        #: When set, the deepest encoder features of each (unflipped) batch are recorded.
        self.features: FeatureMeter | None = None

    def for_classes(self, indices: list[int], meter: ConfidenceMeter | None = None,
                    meter_channels: list[int] | None = None
                    ) -> Callable[[np.ndarray], np.ndarray]:
        def predict(batch: np.ndarray) -> np.ndarray:
            probabilities = self(batch)[:, indices]
            if meter is not None:
                meter.add(probabilities, meter_channels)
            return probabilities

        return predict

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch, tta=self.tta, features=self.features)


def _plan_channel_jobs(prepared: PreparedImage, in_channels: int, wanted: list[str],
                       channel_classes: dict[int, Sequence[str]] | None
                       ) -> list[tuple[list[int], list[str]]]:
    """Which image channels feed the network, and which classes each run returns."""
    n = prepared.n_channels
    if channel_classes:
        if in_channels != 1:
            raise InputError(f"the model reads {in_channels} channels together; a channel-to-"
                             "organelle map only applies to one-channel models")
        jobs, seen = [], set()
        for channel, names in sorted(channel_classes.items()):
            if not 0 <= channel < n:
                raise InputError(f"channel {channel} does not exist; the image has {n} channel(s)")
            names = [name for name in names if name in wanted] if wanted else list(names)
            for name in names:
                if name in seen:
                    raise InputError(f"{name} is assigned to more than one channel")
                seen.add(name)
            if names:
                jobs.append(([channel], names))
        if not jobs:
            raise InputError("no channel is assigned an organelle to segment")
        return jobs
    if n == in_channels:
        return [(list(range(n)), wanted)]
    if in_channels == 1:
        raise InputError(f"the image has {n} channels and the model reads one: say which "
                         "organelle each channel shows")
    raise InputError(f"the model reads {in_channels} channels but the image has {n}")


def _with_plane_progress(work: Generator[Progress, None, np.ndarray], done_planes: int,
                         total_planes: int) -> Generator[Progress, None, np.ndarray]:
    """Re-express tile progress as a fraction of the whole job (planes x tiles)."""
    resolution = 1000
    try:
        while True:
            step = next(work)
            fraction = (done_planes + step.fraction) / total_planes
            message = (f"plane {done_planes + 1}/{total_planes}, tile {step.done}/{step.total}"
                       if total_planes > 1 else f"tile {step.done}/{step.total}")
            yield Progress(int(fraction * resolution), resolution, message)
    except StopIteration as finished:
        return finished.value


def checked_tile_size(card: ModelCard, tile_size: int | None) -> int:
    """The tile edge to use: ``tile_size``, else the card's; a multiple the network can take.

    Raises:
        InputError: the tile is not a multiple of :func:`~.models.composite.tile_multiple`.
    """
    tile = int(tile_size or card.tile_size)
    multiple = tile_multiple(card)
    if tile < multiple or tile % multiple:
        raise InputError(f"the tile size must be a multiple of {multiple} and at least "
                         f"{multiple} for {card.full_name}, not {tile}")
    return tile


def _rescale_factor(image_nm: float | None, model_nm: float | None) -> float:
    if not image_nm or not model_nm:
        return 1.0
    if image_nm <= 0 or not np.isfinite(image_nm):
        raise InputError(f"pixel size must be a positive number of nanometres, not {image_nm}")
    factor = float(image_nm) / float(model_nm)
    return 1.0 if abs(factor - 1.0) <= RESCALE_TOLERANCE else factor


def _min_sizes(specs: dict[str, ClassSpec], override: dict[str, int] | None,
               scale: float) -> dict[str, int]:
    sizes = {}
    for name, spec in specs.items():
        if override and name in override:
            sizes[name] = int(override[name])
        else:
            # The card gives pixels at the model's resolution; convert to the image's.
            sizes[name] = int(round(spec.min_size_px / (scale * scale)))
    return sizes


def _normalizer(lows: np.ndarray, highs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    offset = lows.astype(np.float32)[:, None, None]
    span = np.maximum(highs - lows, 1e-6).astype(np.float32)[:, None, None]

    def normalize(raw: np.ndarray) -> np.ndarray:
        return (raw.astype(np.float32) - offset) / span

    return normalize


def _widen_flat_range(raw: np.ndarray, lows: np.ndarray, highs: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Sparse images (a few bright puncta on zero) have equal percentiles: use min and max."""
    flat = highs <= lows
    if flat.any():
        for channel in np.flatnonzero(flat):
            lows[channel], highs[channel] = (float(np.nanmin(raw[channel])),
                                             float(np.nanmax(raw[channel])))
    return lows, highs


def _fill_nonfinite(raw: np.ndarray) -> np.ndarray:
    raw = raw.astype(np.float32, copy=True)
    for channel in raw:
        bad = ~np.isfinite(channel)
        if bad.any():
            channel[bad] = np.median(channel[~bad]) if (~bad).any() else 0.0
    return raw


def _note_once(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _resize_plane(raw: np.ndarray, scale: float) -> np.ndarray:
    from skimage.transform import resize

    height, width = raw.shape[-2:]
    new_shape = (raw.shape[0], max(32, int(round(height * scale))),
                 max(32, int(round(width * scale))))
    return resize(raw.astype(np.float32), new_shape, order=1, anti_aliasing=scale < 1,
                  preserve_range=True).astype(np.float32)


def _resize_probabilities(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    resized = np.empty((probabilities.shape[0], *shape), dtype=np.uint8)
    for channel, values in enumerate(probabilities):
        resized[channel] = np.clip(resize(values.astype(np.float32), shape, order=1,
                                          preserve_range=True) + 0.5, 0, 255).astype(np.uint8)
    return resized


def _ensure_capacity(labels: np.ndarray, largest_id: int) -> np.ndarray:
    if largest_id > np.iinfo(labels.dtype).max:
        return labels.astype(np.uint32)
    return labels


def _volume_axis(prepared: PreparedImage, volume: bool | None, axes: str | None,
                 notes: list[str]) -> int | None:
    """Which leading axis is Z in volume mode (see :func:`segment_iter`), or None: 2-D mode."""
    if volume is False:
        return None
    n_leading = len(prepared.leading_shape)
    if volume is None and axes is None:
        return None
    position = z_position(axes, n_leading)
    if volume and n_leading == 0:
        notes.append("a 2-D image has no Z axis: segmented in 2-D")
        return None
    if volume and position is None:
        raise InputError(f"the image's axes ({axes}) have no Z axis to link objects along; "
                         "segment it plane by plane")
    return position


def _anisotropy(value: float | None) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < math.inf:
        raise InputError(f"the Z anisotropy (Z step / pixel size) must be a positive number, "
                         f"not {value!r}")
    return float(value)


def _check_memory(prepared: PreparedImage, specs: list[ClassSpec],
                  z_axis: int | None = None, uncertainty: bool = False) -> None:
    """Refuse, before starting, an image whose outputs cannot fit in memory."""
    needed = estimated_memory(prepared, specs, z_axis, uncertainty)
    available = _available_memory()
    if available and needed > 0.9 * available:
        raise InputError(
            f"segmenting this image needs about {needed / 1e9:.1f} GB of memory and "
            f"{available / 1e9:.1f} GB are free; segment fewer classes, a crop, or fewer planes")


def estimated_memory(prepared: PreparedImage, specs: Sequence[ClassSpec],
                     z_axis: int | None = None, uncertainty: bool = False) -> int:
    """Bytes that segmenting ``prepared`` in memory needs for ``specs`` (outputs and scratch).

    What :func:`segment` checks against the free memory before it starts, and what
    the Segment dock compares with it to choose blockwise segmentation
    (:func:`napari_organelle.blockwise.segment_blockwise_iter`) instead.
    """
    pixels = int(np.prod(prepared.output_shape, dtype=np.int64))
    plane_pixels = prepared.plane_shape[0] * prepared.plane_shape[1]
    needed = sum(2 if spec.kind == "instance" else 1 for spec in specs) * pixels
    if uncertainty:
        needed += 4 * len(specs) * pixels  # float32 maps
    n_instance = sum(spec.kind == "instance" for spec in specs)
    if z_axis is not None and n_instance:
        # One bool mask per instance class of the Z stack, and labelling it (int32
        # labels, then compacted): about 7 bytes per voxel, one class at a time.
        voxels = plane_pixels * prepared.leading_shape[z_axis]
        needed += (n_instance + 7) * voxels
    # Per plane: 8-bit probabilities per class, the raw plane, and labelling scratch space.
    needed += plane_pixels * (len(specs) + 4 + 4 * prepared.n_channels)
    return int(needed)


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation on this machine (None when unknown)."""
    return _available_memory()


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None
