"""How the network runs: ONNX Runtime on the CPU, PyTorch on a GPU and for training.

The same network runs faster on the CPU in ONNX Runtime than in eager PyTorch
(fused convolutions and activations, kernels chosen for the shapes), with
probabilities that differ by about 1e-5; ``benchmarks/inference.py`` measures each
backend. So on the CPU a model is converted once per model version and the
converted copy is kept:

* **where**: beside the weights (``model.onnx`` and ``model.onnx.json`` in the
  model folder); where that folder cannot be written (a bundled model installed
  read-only), under the user data folder (``<data>/cache/onnx/``); a part of a
  composite model that runs alone has its own copy (``model.member0.onnx``);
* **when it is rebuilt**: its key (the weights' SHA-256, the torch and onnx
  versions, the opset, the input channels and classes) no longer matches, or the
  file is damaged (its SHA-256, kept in ``model.onnx.json``, differs, or ONNX
  Runtime cannot read it); a note says so, never a traceback;
* **checked**: every new conversion is compared with eager PyTorch on random
  inputs of two shapes and is refused (PyTorch is used instead, with a note)
  when a probability differs by more than :data:`TOLERANCE`.

Nothing is converted at import time, only when a segmentation first needs it.

Backends (:data:`BACKENDS`; the ``NAPARI_ORGANELLE_BACKEND`` environment variable
sets the default, for debugging):

* ``auto``: ONNX Runtime on the CPU for a model saved on disk, when onnxruntime
  is installed and the conversion works; otherwise PyTorch (channels-last memory
  layout on the CPU, which measured faster than the default layout; plain on CUDA
  and MPS);
* ``onnx``: ONNX Runtime, CPU only; an error when it cannot be used;
* ``torch``: eager PyTorch in the default memory layout (the reference);
* ``channels_last``: eager PyTorch with channels-last tensors.

Training never goes through this module: it always runs PyTorch.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .durable import atomic_path, atomic_write_json, sha256_file
from .errors import InputError, ModelError

if TYPE_CHECKING:
    from .confidence import FeatureMeter
    from .models import Model

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "ONNX_FILE",
    "ONNX_INFO_FILE",
    "TOLERANCE",
    "OnnxRunner",
    "TorchRunner",
    "cache_key",
    "choose_backend",
    "clear_sessions",
    "make_runner",
    "onnx_available",
    "onnx_runner",
]

#: what ``backend`` may be
BACKENDS = ("auto", "onnx", "torch", "channels_last")
#: environment variable giving the default backend
BACKEND_ENV = "NAPARI_ORGANELLE_BACKEND"
#: the converted network, beside the weights
ONNX_FILE = "model.onnx"
#: its key and checksum
ONNX_INFO_FILE = "model.onnx.json"
#: bump when what is exported changes (outputs, wrapper), so old conversions are rebuilt
EXPORT_FORMAT = 1
OPSET = 17
#: largest |probability difference| from eager float32 PyTorch a conversion may show
TOLERANCE = 1e-3
#: PyTorch on the CPU when ONNX Runtime is not used: channels-last measured faster than the
#: default layout for the bundled networks (benchmarks/inference.py measures both)
TORCH_CPU_FALLBACK = "channels_last"


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's dependency (``onnx``) can be imported."""
    # find_spec, not import: importing onnx holds the GIL for most of a second (its
    # extension modules initialise), a stall napari's event loop would feel
    import importlib.util

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        return False
    return True


def choose_backend(device: torch.device | str, backend: str | None = None,
                   model: Model | None = None) -> str:
    """The backend a job on ``device`` uses: ``onnx``, ``torch`` or ``channels_last``.

    Args:
        device: where the network runs (``cpu``, ``cuda``, ``mps``).
        backend: one of :data:`BACKENDS`; None: ``$NAPARI_ORGANELLE_BACKEND``, else ``auto``.
        model: the model, when known: ``auto`` converts only models saved on disk
            (an in-memory one would be converted again in every session).

    Returns:
        The backend to run (``auto`` resolved).

    Raises:
        InputError: an unknown backend, or ``onnx`` where it cannot run.

    Examples:
        >>> choose_backend("cuda", "auto")
        'torch'
        >>> choose_backend("cpu", "torch")
        'torch'
    """
    requested = _requested(backend)
    kind = torch.device(device).type
    if requested == "onnx":
        if kind != "cpu":
            raise InputError(f"the ONNX Runtime backend runs on the CPU only, not on {kind}: "
                             "choose the CPU or the torch backend")
        if not onnx_available():
            raise InputError("the ONNX Runtime backend needs the onnxruntime and onnx packages: "
                             "pip install onnxruntime onnx")
        return "onnx"
    if requested != "auto":
        return requested
    if kind != "cpu":
        return "torch"
    if onnx_available() and (model is None or _weights_file(model) is not None):
        return "onnx"
    return TORCH_CPU_FALLBACK


def _requested(backend: str | None) -> str:
    source = "backend"
    if backend is None:
        backend, source = os.environ.get(BACKEND_ENV) or "auto", BACKEND_ENV
    name = str(backend).strip().lower().replace("-", "_")
    if name not in BACKENDS:
        raise InputError(f"unknown {source} {backend!r}; choose one of {', '.join(BACKENDS)}")
    return name


def make_runner(model: Model, device: torch.device, backend: str | None = None,
                notes: list[str] | None = None) -> TorchRunner | OnnxRunner:
    """What runs ``model``'s network on numpy batches, for :func:`choose_backend`'s backend.

    In ``auto``, a conversion that fails falls back to PyTorch with a note.

    Args:
        model: the model.
        device: where it runs.
        backend: see :func:`choose_backend`.
        notes: where notes for the user go (a failed conversion, a rebuilt cache).

    Returns:
        A callable ``runner(batch, tta=False, features=None) -> probabilities``.

    Raises:
        InputError: see :func:`choose_backend`.
        ModelError: ``onnx`` was asked for and the model cannot be converted.
    """
    requested = _requested(backend)
    chosen = choose_backend(device, requested, model)
    if chosen == "onnx":
        try:
            return onnx_runner(model, notes=notes)
        except ModelError as error:
            if requested == "onnx":
                raise
            _note(notes, f"{error}; ran it with PyTorch instead")
            chosen = TORCH_CPU_FALLBACK
    return TorchRunner(model, device, channels_last=chosen == "channels_last")


class TorchRunner:
    """Eager PyTorch: device transfer, mixed precision on CUDA, test-time flips.

    Args:
        model: the model; its network is moved to ``device`` (and, with
            ``channels_last``, to that memory layout) in place, as for any
            PyTorch inference.
        device: where it runs.
        channels_last: NHWC tensors instead of NCHW (faster on CPUs with oneDNN).
    """

    def __init__(self, model: Model, device: torch.device, channels_last: bool = False) -> None:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.network = model.network.to(device).eval()
        self.network.to(memory_format=layout)
        self.device = device
        self.layout = layout
        self.backend = "channels_last" if channels_last else "torch"

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, tta: bool = False,
                 features: FeatureMeter | None = None) -> np.ndarray:
        """Probabilities ``(B, K, Y, X)`` of float32 tiles ``(B, C, Y, X)``.

        Args:
            batch: the tiles.
            tta: average over the flips of Y, X and both.
            features: records the deepest encoder features of the unflipped tiles.
        """
        inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=self.layout)
        flips = [(), (-1,), (-2,), (-2, -1)] if tta else [()]
        total = None
        for dims in flips:
            flipped = torch.flip(inputs, dims) if dims else inputs
            with torch.autocast(self.device.type, dtype=torch.float16,
                                enabled=self.device.type == "cuda"):
                logits = self._forward(flipped, None if dims else features)
            probabilities = torch.sigmoid(logits.float())
            if dims:
                probabilities = torch.flip(probabilities, dims)
            total = probabilities if total is None else total + probabilities
        return np.ascontiguousarray((total / len(flips)).cpu().numpy())

    def _forward(self, inputs: torch.Tensor, features: FeatureMeter | None) -> torch.Tensor:
        if features is None or not _has_encoder(self.network):
            return self.network(inputs)
        logits, deepest = encode_decode(self.network, inputs)
        features.add(deepest.float().cpu().numpy())
        return logits


def _has_encoder(network: torch.nn.Module) -> bool:
    return hasattr(network, "forward_with_features") or all(
        hasattr(network, part) for part in ("encoder", "decoder", "segmentation_head"))


def encode_decode(network: torch.nn.Module, inputs: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """smp's ``SegmentationModel.forward``, keeping the deepest encoder features (a composite
    network's own ``forward_with_features``)."""
    if hasattr(network, "forward_with_features"):
        return network.forward_with_features(inputs)
    encoded = network.encoder(inputs)
    decoded = (network.decoder(*encoded) if _decoder_takes_separate_features(network)
               else network.decoder(encoded))
    return network.segmentation_head(decoded), encoded[-1]


def _decoder_takes_separate_features(network: torch.nn.Module) -> bool:
    """smp < 0.4 decoders take the features as separate arguments, newer ones as a list."""
    import inspect

    parameters = list(inspect.signature(network.decoder.forward).parameters.values())
    return bool(parameters) and parameters[0].kind == inspect.Parameter.VAR_POSITIONAL


class OnnxRunner:
    """ONNX Runtime on the CPU, with the same interface as :class:`TorchRunner`.

    Args:
        session: an ``onnxruntime.InferenceSession`` of a graph exported by this module.
        has_features: the graph also returns the pooled deepest encoder features.
        source: where the graph was read from (None: converted in memory).
    """

    backend = "onnx"

    def __init__(self, session: Any, has_features: bool, source: Path | None = None) -> None:
        self.session = session
        self.has_features = has_features
        self.source = source
        self._input = session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray, tta: bool = False,
                 features: FeatureMeter | None = None) -> np.ndarray:
        """Probabilities ``(B, K, Y, X)`` of float32 tiles ``(B, C, Y, X)`` (see
        :meth:`TorchRunner.__call__`)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        flips = [(), (-1,), (-2,), (-2, -1)] if tta else [()]
        total = None
        for axes in flips:
            flipped = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
            record = features is not None and self.has_features and not axes
            outputs = self.session.run(["probabilities", "features"] if record
                                       else ["probabilities"], {self._input: flipped})
            if record:
                features.add(outputs[1][:, :, None, None])
            probabilities = np.flip(outputs[0], axes) if axes else outputs[0]
            total = probabilities if total is None else total + probabilities
        if len(flips) > 1:
            total = total / np.float32(len(flips))
        return np.ascontiguousarray(total)


class _Exported(torch.nn.Module):
    """The graph that is exported: probabilities, and the pooled deepest features."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.has_features = _has_encoder(network)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.has_features:
            return (torch.sigmoid(self.network(inputs)),)
        logits, deepest = encode_decode(self.network, inputs)
        return torch.sigmoid(logits), deepest.mean(dim=(2, 3))


# ------------------------------------------------------------------ the conversion and its cache


def onnx_file_names(model: Model) -> tuple[str, str]:
    """The converted graph's file and its description's, beside the weights; a part of a
    composite model (:func:`~napari_organelle.models.composite.member_model`) has its own."""
    if not model.part:
        return ONNX_FILE, ONNX_INFO_FILE
    return f"model.{model.part}.onnx", f"model.{model.part}.onnx.json"


def _weights_file(model: Model) -> Path | None:
    from .models.io import WEIGHTS_FILE

    if model.path is None:
        return None
    weights = Path(model.path) / WEIGHTS_FILE
    return weights if weights.is_file() else None


def cache_key(model: Model) -> dict[str, Any] | None:
    """What a converted copy of ``model`` must match to be used; None for an unsaved model.

    Examples:
        >>> from napari_organelle.models import load_model
        >>> sorted(cache_key(load_model("em-organelles")))  # doctest: +NORMALIZE_WHITESPACE
        ['architecture', 'classes', 'encoder', 'format', 'in_channels', 'onnx', 'opset',
         'torch', 'weights_sha256']
    """
    weights = _weights_file(model)
    if weights is None:
        return None
    from importlib.metadata import version

    card = model.card
    return {"format": EXPORT_FORMAT, "weights_sha256": sha256_file(weights),
            "torch": torch.__version__, "onnx": version("onnx"), "opset": OPSET,
            "in_channels": int(card.in_channels), "classes": len(card.classes),
            "architecture": card.architecture, "encoder": card.encoder,
            **({"part": model.part} if model.part else {})}


def _cache_folders(model: Model, key: dict[str, Any]) -> list[Path]:
    """Beside the weights first, then the user cache (for read-only model folders)."""
    from .models.registry import user_data_dir

    folders = [Path(model.path)] if model.path is not None else []
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.card.full_name)
    part = f"-{model.part}" if model.part else ""
    folders.append(user_data_dir() / "cache" / "onnx"
                   / f"{name}{part}-{key['weights_sha256'][:16]}")
    return folders


_lock = threading.Lock()
#: (model folder, key, threads) -> runner; a few models at most
_sessions: OrderedDict[tuple[str, str, int], OnnxRunner] = OrderedDict()
_MAX_SESSIONS = 4
#: conversions that failed in this process, so ``auto`` does not retry at every call
_failed: dict[tuple[str, str], str] = {}


def clear_sessions() -> None:
    """Forget the ONNX Runtime sessions and failed conversions held in this process."""
    with _lock:
        _sessions.clear()
        _failed.clear()


def onnx_runner(model: Model, notes: list[str] | None = None,
                threads: int | None = None) -> OnnxRunner:
    """An ONNX Runtime runner of ``model``: from the cache, else converted (and cached).

    A model without a folder (built in memory) is converted at every call and not kept:
    its weights may change.

    Args:
        model: the model.
        notes: receives a note when a stale or damaged cache is rebuilt, or cannot be written.
        threads: ONNX Runtime's intra-op threads (default ``torch.get_num_threads()``).

    Raises:
        ModelError: the network cannot be converted, or the conversion is not accurate.
    """
    threads = int(threads or torch.get_num_threads())
    key = cache_key(model)
    if key is None:
        content, has_features, _, session = _convert(model, threads)
        return OnnxRunner(session, has_features)
    identity = (str(Path(model.path).resolve()) + (f"#{model.part}" if model.part else ""),
                json.dumps(key, sort_keys=True))
    with _lock:
        cached = _sessions.get((*identity, threads))
        if cached is not None:
            _sessions.move_to_end((*identity, threads))
            return cached
        if identity in _failed:
            raise ModelError(_failed[identity])
        try:
            runner = _load_or_convert(model, key, threads, notes)
        except ModelError as error:
            _failed[identity] = str(error)
            raise
        _sessions[(*identity, threads)] = runner
        while len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
        return runner


def _load_or_convert(model: Model, key: dict[str, Any], threads: int,
                     notes: list[str] | None) -> OnnxRunner:
    name = model.card.full_name
    folders = _cache_folders(model, key)
    graph_name, info_name = onnx_file_names(model)
    problems = []
    for folder in folders:
        problem = _cache_problem(folder, key, graph_name, info_name)
        if problem is None:
            try:
                info = json.loads((folder / info_name).read_text())
                session = _session(str(folder / graph_name), threads)
            except Exception as error:  # noqa: BLE001 - ORT raises its own types
                problem = f"damaged (ONNX Runtime cannot read it: {type(error).__name__})"
            else:
                return OnnxRunner(session, bool(info.get("has_features")), folder / graph_name)
        if problem != "absent" and problem not in problems:
            problems.append(problem)
    content, has_features, difference, session = _convert(model, threads)
    for problem in problems:
        _note(notes, f"the ONNX Runtime copy of {name} was {problem}: rebuilt it")
    info = {"key": key, "has_features": has_features, "max_difference": difference,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    failures = []
    for folder in folders:
        try:
            target = _write_cache(folder, content, info, graph_name, info_name)
        except OSError as error:
            failures.append(f"{folder}: {error.strerror or error}")
            continue
        return OnnxRunner(session, has_features, target)
    _note(notes, f"could not keep the ONNX Runtime copy of {name} ({'; '.join(failures)}); "
                 "it is converted again in every session")
    return OnnxRunner(session, has_features)


def _cache_problem(folder: Path, key: dict[str, Any], graph_name: str = ONNX_FILE,
                   info_name: str = ONNX_INFO_FILE) -> str | None:
    """None when ``folder`` holds a usable conversion for ``key``; else what is wrong."""
    info_path, onnx_path = folder / info_name, folder / graph_name
    if not info_path.exists() and not onnx_path.exists():
        return "absent"
    try:
        info = json.loads(info_path.read_text())
        recorded_key, recorded_sha = info["key"], info["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged (its description is missing or unreadable)"
    if recorded_key != key:
        return "made for other weights or software versions"
    try:
        if sha256_file(onnx_path) != recorded_sha:
            return "damaged (its checksum does not match)"
    except OSError:
        return "missing"
    return None


def _write_cache(folder: Path, content: bytes, info: dict[str, Any],
                 graph_name: str = ONNX_FILE, info_name: str = ONNX_INFO_FILE) -> Path:
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / graph_name
    with atomic_path(target) as temporary:
        temporary.write_bytes(content)
    # The graph first: a crash before the description leaves a stale description, rebuilt.
    atomic_write_json(folder / info_name,
                      {**info, "sha256": hashlib.sha256(content).hexdigest()})
    return target


def _session(source: str | bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle workers sleep instead of spinning: the tiler's numpy work between batches and
    # napari's event loop then keep their cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _convert(model: Model, threads: int) -> tuple[bytes, bool, float, Any]:
    """Export the network and check it against eager PyTorch.

    Returns:
        The graph, whether it returns features, the largest difference, and its session.
    """
    from ._compat import avoid_llvm_clash

    avoid_llvm_clash()  # the exporter may import torch._dynamo, which imports triton
    name = model.card.full_name
    network = model.network.to("cpu").eval()
    # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, and a
    # new module is in training mode, which would switch the network's batch norms to it.
    wrapper = _Exported(network).eval()
    channels = int(model.card.in_channels)
    outputs = ["probabilities", "features"] if wrapper.has_features else ["probabilities"]
    dynamic = {"input": {0: "batch", 2: "height", 3: "width"},
               "probabilities": {0: "batch", 2: "height", 3: "width"}}
    if wrapper.has_features:
        dynamic["features"] = {0: "batch"}
    buffer = io.BytesIO()
    grad = torch.is_grad_enabled()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (torch.zeros(2, channels, 64, 64),), buffer,
                              dynamo=False, opset_version=OPSET, input_names=["input"],
                              output_names=outputs, dynamic_axes=dynamic,
                              do_constant_folding=True)
        content = buffer.getvalue()
        session = _session(content, threads)
        difference = _check(wrapper, session, channels, int(model.card.tile_size or 256))
    except Exception as error:  # noqa: BLE001 - the exporter raises many kinds
        raise ModelError(f"could not convert {name} for ONNX Runtime "
                         f"({type(error).__name__}: {str(error)[:200]})") from None
    finally:
        torch.set_grad_enabled(grad)
        network.eval()
    if not difference <= TOLERANCE:
        raise ModelError(f"the ONNX Runtime copy of {name} differs from PyTorch by "
                         f"{difference:.2g} in probability (allowed: {TOLERANCE:g})")
    return content, wrapper.has_features, difference, session


def _check(wrapper: _Exported, session: Any, channels: int, tile: int) -> float:
    """Largest |difference| of probabilities and features, eager vs exported, on two shapes."""
    rng = np.random.default_rng(0)
    largest = 0.0
    for shape in ((1, channels, tile, tile), (3, channels, 64, 96)):
        inputs = rng.random(shape, dtype=np.float32)
        with torch.inference_mode():
            expected = [tensor.numpy() for tensor in wrapper(torch.from_numpy(inputs))]
        got = session.run(None, {"input": inputs})
        for want, have in zip(expected, got):
            if want.shape != have.shape:
                return float("inf")
            scale = 1.0 if want is expected[0] else max(1.0, float(np.abs(want).max()))
            largest = max(largest, float(np.abs(want - have).max()) / scale)
    return largest


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None and text not in notes:
        notes.append(text)
