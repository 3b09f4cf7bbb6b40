"""Share a model on bioimage.io: one zip that the bioimage.io tools can run, test and show.

:func:`export_bioimageio` writes any model version (bundled, trained here or
imported) as a bioimage.io model package, a zip holding:

* ``rdf.yaml``: the description, model spec 0.5 (``format_version``
  :data:`FORMAT_VERSION`: the 0.5 release of bioimageio.spec 0.5.4, which
  ``bioimageio.core`` 0.9.0 uses, so every core from 0.9 on reads it; newer
  readers update it to their 0.5.x), written here with plain dictionaries:
  bioimageio.spec and bioimageio.core are only needed to test the zip, never
  to make it;
* the weights twice: ``weights.pt``, a PyTorch state dict (``torch.save`` of
  tensors only) of the network defined in ``napari_organelle_network.py``
  (built with segmentation-models-pytorch from the card's architecture, no
  napari-organelle needed), and ``weights.onnx``, the ONNX graph
  :mod:`napari_organelle.backends` converts and checks for the CPU backend;
* ``test_input.npy`` and ``test_output.npy``: a crop of a simulated sample
  image (or of the image given) at the model's pixel size, and the
  probabilities napari-organelle computes for it in PyTorch (its own
  normalisation, then the weights); ``bioimageio.core``'s test runs the zip's
  preprocessing and every weight format on the input and compares (the same
  pair as TIFF files, ``sample_input.tif`` and ``sample_output.tif``, for people);
* ``cover.png`` (the test input beside its predicted masks), ``README.md``
  (classes, pixel size, scores, training, training data with their licences
  and citations), ``environment.yaml`` (what the network file needs);
* in ``config["napari-organelle"]`` the whole model card, so nothing the
  plugin knows about the model is lost.

What the zip computes: ``scale_range`` (percentiles ``normalization.low`` and
``high`` of each channel of each image, the plugin's normalisation), then
the network with a sigmoid: one probability per class and pixel, classes
independent. What it does not: thresholds, splitting touching objects of
instance classes and removing small ones stay in napari-organelle (they are
described in the README).

Examples:
    >>> bioimageio_path("em-organelles", "2", "/tmp/share").as_posix()
    '/tmp/share/em-organelles-2.bioimageio.zip'
    >>> bioimageio_path("em-organelles", "2", "/tmp/share/mito.zip").as_posix()
    '/tmp/share/mito.zip'
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .durable import TEMP_PREFIX, atomic_path, utc_now
from .errors import InputError, ModelError
from .progress import Progress, run

if TYPE_CHECKING:
    from .models import Model, ModelCard

__all__ = [
    "ARCHITECTURE_FILE",
    "CONFIG_KEY",
    "FORMAT_VERSION",
    "INPUT_ID",
    "OUTPUT_ID",
    "RDF_FILE",
    "SUFFIX",
    "bioimageio_path",
    "describe_for_bioimageio",
    "export_bioimageio",
    "export_bioimageio_iter",
]

#: model spec version written (any 0.5.x reader updates it to its own)
FORMAT_VERSION = "0.5.4"
#: the description inside the zip
RDF_FILE = "rdf.yaml"
#: how exported zips are named in a folder: ``<name>-<version>.bioimageio.zip``
SUFFIX = ".bioimageio.zip"
#: the key of ``config`` holding the napari-organelle card
CONFIG_KEY = "napari-organelle"
#: the tensor ids
INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
#: the network's source file, shipped in the zip for the PyTorch state dict
ARCHITECTURE_FILE = "napari_organelle_network.py"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "weights.onnx"
TEST_INPUT_FILE = "test_input.npy"
TEST_OUTPUT_FILE = "test_output.npy"
SAMPLE_INPUT_FILE = "sample_input.tif"
SAMPLE_OUTPUT_FILE = "sample_output.tif"
COVER_FILE = "cover.png"
README_FILE = "README.md"
ENVIRONMENT_FILE = "environment.yaml"
#: the largest test crop edge (pixels)
MAX_TEST_SIZE = 256
#: largest |probability difference| between the zip's ONNX graph and PyTorch on the test input
ONNX_TOLERANCE = 1e-3
#: the class name (``architecture.callable``) in :data:`ARCHITECTURE_FILE`
ARCHITECTURE_CALLABLE = "OrganelleNetwork"

SMP_CITATION = {"text": "Iakubovskii, P. Segmentation Models Pytorch (2019).",
                "url": "https://github.com/qubvel-org/segmentation_models.pytorch"}
DEFAULT_AUTHORS = ("napari-organelle contributors",)
#: the project's licence (LICENSE), used when the card names none
DEFAULT_LICENSE = "BSD-3-Clause"

# The network as bioimage.io tools build it: the card's smp model, sigmoid on top. Its state
# dict is the napari-organelle network's with every key prefixed by "network.".
ARCHITECTURE_SOURCE = '''\
"""The network of a napari-organelle model, for bioimage.io tools.

Needs PyTorch and segmentation-models-pytorch only. The network returns
probabilities: the sigmoid of the segmentation-models-pytorch model's output,
one channel per class, classes independent.
"""

import segmentation_models_pytorch as smp
import torch


class Composite(torch.nn.Module):
    """Member networks side by side, each on the input average-pooled by its scale; their
    logits are upsampled back, concatenated and put in the model's class order."""

    def __init__(self, in_channels, members, order):
        super().__init__()
        self.members = torch.nn.ModuleList(
            smp.create_model(m["architecture"], encoder_name=m["encoder"], encoder_weights=None,
                             in_channels=in_channels, classes=len(m["classes"]),
                             **m.get("arch_kwargs", {}))
            for m in members)
        self.scales = [int(m.get("scale", 1)) for m in members]
        self.order = list(order)

    def forward(self, x):
        outputs = []
        for member, scale in zip(self.members, self.scales):
            if scale == 1:
                outputs.append(member(x))
                continue
            logits = member(torch.nn.functional.avg_pool2d(x, scale))
            outputs.append(torch.nn.functional.interpolate(
                logits, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return torch.cat(outputs, dim=1)[:, self.order]


class OrganelleNetwork(torch.nn.Module):
    """A segmentation-models-pytorch model (or a composite of them) followed by a sigmoid."""

    def __init__(self, architecture, encoder_name, in_channels, classes, arch_kwargs=None):
        super().__init__()
        arch_kwargs = dict(arch_kwargs or {})
        if architecture == "Composite":
            self.network = Composite(in_channels, arch_kwargs["members"], arch_kwargs["order"])
            return
        self.network = smp.create_model(architecture, encoder_name=encoder_name,
                                        encoder_weights=None, in_channels=in_channels,
                                        classes=classes, **arch_kwargs)

    def forward(self, x):
        return torch.sigmoid(self.network(x))
'''

_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_+\- ()]")
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s,;]+[^\s,;.)])")
_URL = re.compile(r"https?://[^\s,;]+[^\s,;.)]")
_VERSION = re.compile(r"\d+(\.\d+){0,2}")
_CONTENT_TAGS = {"nuclei": "nuclei", "mitochondria": "mitochondria",
                 "cell_boundary": "cell-membrane", "membranes": "cell-membrane"}


@dataclass
class _TestData:
    raw: np.ndarray            # (1, C, S, S) float32, raw intensities
    probabilities: np.ndarray  # (1, K, S, S) float32
    normalized: np.ndarray     # (C, S, S) float32, what the network read
    source: str                # where the crop comes from, for the README


def bioimageio_path(name: str, version: str, destination: str | os.PathLike) -> Path:
    """Where :func:`export_bioimageio` writes ``name@version`` for ``destination``.

    Args:
        name: the model name.
        version: its version.
        destination: a file ending in ``.zip`` (used as it is), else a folder
            (the zip is ``<folder>/<name>-<version>.bioimageio.zip``).

    Returns:
        The zip's path.
    """
    destination = Path(destination).expanduser()
    if destination.suffix.lower() == ".zip":
        return destination
    return destination / f"{name}-{version}{SUFFIX}"


def export_bioimageio(model: Model | str | os.PathLike, destination: str | os.PathLike, *,
                      test_image: np.ndarray | None = None,
                      authors: Sequence[str] | None = None, license: str | None = None,
                      notes: list[str] | None = None) -> Path:
    """Write a model version as a bioimage.io model package (a zip).

    The zip is written atomically: ``destination`` holds the whole new zip or
    what it held before, never part of one. An existing zip of that name is
    replaced.

    Args:
        model: a loaded model, a model name (its version in use),
            ``name@version``, or a model folder.
        destination: a file ending in ``.zip``, or a folder (created) that
            receives ``<name>-<version>.bioimageio.zip``.
        test_image: the image the test tensors are cut from, ``(Y, X)`` or
            ``(C, Y, X)`` with the model's input channels, at the model's pixel
            size; None: a simulated sample image of the model's modality
            (rescaled to its pixel size).
        authors: names for the zip's ``authors``; None: ``card.extra["authors"]``,
            else "napari-organelle contributors".
        license: SPDX licence identifier of the weights; None:
            ``card.extra["license"]``, else the project's (BSD-3-Clause).
        notes: receives notes for the user (e.g. the ONNX weights were left out).

    Returns:
        The path of the zip.

    Raises:
        ModelError: unknown model, or a card bioimage.io cannot describe.
        InputError: the destination cannot be written, or a wrong ``test_image``.

    Examples:
        >>> import tempfile, zipfile
        >>> from napari_organelle.models import ClassSpec, Model, ModelCard, build_network
        >>> card = ModelCard(name="tiny-em", version="1", architecture="Unet",
        ...     encoder="resnet18", in_channels=1, modality="em",
        ...     classes=[ClassSpec("mitochondria", "instance")], tile_size=64,
        ...     arch_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]})
        >>> zip_path = export_bioimageio(Model(card, build_network(card)), tempfile.mkdtemp())
        >>> zip_path.name
        'tiny-em-1.bioimageio.zip'
        >>> sorted(zipfile.ZipFile(zip_path).namelist())  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'cover.png', 'environment.yaml', 'napari_organelle_network.py',
         'rdf.yaml', 'sample_input.tif', 'sample_output.tif', 'test_input.npy',
         'test_output.npy', 'weights.onnx', 'weights.pt']
    """
    return run(export_bioimageio_iter(model, destination, test_image=test_image,
                                      authors=authors, license=license, notes=notes))


def export_bioimageio_iter(model: Model | str | os.PathLike, destination: str | os.PathLike, *,
                           test_image: np.ndarray | None = None,
                           authors: Sequence[str] | None = None, license: str | None = None,
                           notes: list[str] | None = None) -> Generator[Progress, None, Path]:
    """:func:`export_bioimageio` as a progress generator (for the GUI's background task).

    Yields:
        :class:`~napari_organelle.progress.Progress` between the steps.

    Returns:
        The path of the zip.
    """
    steps = 5
    yield Progress(0, steps, "loading the model")
    from .models import Model, load_model

    loaded = model if isinstance(model, Model) else load_model(model)
    card = loaded.card
    _check_card(card)
    target = bioimageio_path(card.name, card.version, destination)
    _check_writable(target)
    # A private copy on the CPU: the loaded model is shared (cached) and may be running
    # on a GPU in another dock while this runs.
    private = Model(card=card, network=copy.deepcopy(loaded.network).to("cpu").eval(),
                    path=loaded.path)

    yield Progress(1, steps, "computing the test output")
    test = _test_data(private, test_image)

    yield Progress(2, steps, "converting to ONNX")
    onnx_bytes = _onnx_weights(private, test, notes)

    yield Progress(3, steps, "writing the weights and the description")
    files = _package_files(private, test, onnx_bytes, authors, license)

    yield Progress(4, steps, f"writing {target.name}")
    try:
        with atomic_path(target) as temporary:
            with zipfile.ZipFile(temporary, "w") as archive:
                for name, content in files.items():
                    archive.writestr(_zip_entry(name), content)
    except OSError as error:
        raise InputError(f"cannot write {target}: {error.strerror or error}") from None
    yield Progress(steps, steps, f"exported {card.full_name}")
    return target


# ------------------------------------------------------------------------ checks


def _check_card(card: ModelCard) -> None:
    norm = card.normalization
    if norm.method != "percentile" or not (0 <= norm.low < norm.high <= 100) or norm.high <= 1:
        raise ModelError(f"{card.full_name}: bioimage.io can describe percentile normalisation "
                         f"with 0 <= low < high <= 100 (and high > 1), not {norm}")
    if card.in_channels < 1:
        raise ModelError(f"{card.full_name}: in_channels must be at least 1")


def _check_writable(target: Path) -> None:
    """Fail now, before any work, when ``target`` cannot be written."""
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name ending in .zip or a folder "
                         "to write into")
    if target.parent.exists() and not target.parent.is_dir():
        raise InputError(f"cannot write {target}: {target.parent} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=TEMP_PREFIX):
            pass
    except OSError as error:
        raise InputError(f"cannot write {target}: {error.strerror or error}") from None


# ------------------------------------------------------------------------ test tensors


def _step(network: Any) -> int:
    """The input edge must be a multiple of this (the encoder's output stride)."""
    from .models.composite import CompositeNetwork

    if isinstance(network, CompositeNetwork):
        return max(_step(member) * scale for member, scale in zip(network.members,
                                                                   network.scales))
    stride = getattr(getattr(network, "encoder", None), "output_stride", None)
    return int(stride) if isinstance(stride, int) and stride > 0 else 32


def _test_data(model: Model, test_image: np.ndarray | None) -> _TestData:
    from .backends import TorchRunner
    from .image_input import plane_statistics
    from .inference import _normalizer, _widen_flat_range

    card = model.card
    if test_image is None:
        plane, source = _sample_plane(card)
    else:
        plane = np.asarray(test_image)
        if plane.ndim == 2:
            plane = plane[None]
        if plane.ndim != 3 or plane.dtype.kind not in "uif" or plane.shape[0] != card.in_channels:
            raise InputError(f"the test image must be (Y, X) or (C, Y, X) numbers with "
                             f"{card.in_channels} channel(s) for {card.full_name}, not "
                             f"{plane.shape} {plane.dtype}")
        source = "the image given when exporting"
    step = _step(model.network)
    size = min(int(card.tile_size or MAX_TEST_SIZE), MAX_TEST_SIZE, *plane.shape[-2:])
    size = size // step * step
    if size < step:
        raise InputError(f"the test image {plane.shape[-2:]} is smaller than the {step} pixels "
                         f"{card.full_name} needs")
    top, left = ((plane.shape[-2] - size) // 2, (plane.shape[-1] - size) // 2)
    raw = np.ascontiguousarray(plane[:, top:top + size, left:left + size], dtype=np.float32)
    if not np.isfinite(raw).all():
        raise InputError("the test image has NaN or infinite pixels")
    lows, highs, _ = plane_statistics(raw, card.normalization.low, card.normalization.high)
    lows, highs = _widen_flat_range(raw, lows, highs)
    if (highs <= lows).any():
        raise InputError("the test crop is blank (one value only): choose another test image")
    normalized = _normalizer(lows, highs)(raw)
    import torch

    runner = TorchRunner(model, torch.device("cpu"))
    probabilities = runner(normalized[None])  # the plugin's PyTorch path, without flips
    return _TestData(raw=raw[None], probabilities=probabilities.astype(np.float32),
                     normalized=normalized, source=source)


def _sample_plane(card: ModelCard) -> tuple[np.ndarray, str]:
    """A simulated image of the card's modality, ``(C, Y, X)``, at its pixel size if near."""
    from .inference import _resize_plane

    if card.modality == "em":
        from .simulation.sample import sample_em_like

        image, pixel_size = sample_em_like(seed=0)
        plane, names = image[None], ["em"]
        source = "a simulated EM section (napari_organelle.simulation, seed 0)"
    else:
        from .simulation.sample import sample_live_cell

        plane, names, pixel_size = sample_live_cell(seed=0)
        source = "a simulated confocal live-cell image (napari_organelle.simulation, seed 0)"
    # One channel per input: the channels showing the card's classes first.
    order = [names.index(n) for n in card.class_names if n in names]
    order += [index for index in range(len(names)) if index not in order]
    chosen = [order[i % len(order)] for i in range(card.in_channels)]
    plane = plane[chosen]
    if card.modality == "fluorescence":
        source += f", channel(s) {', '.join(names[index] for index in chosen)}"
    if card.pixel_size_nm:
        scale = pixel_size / card.pixel_size_nm
        if 0.25 <= scale <= 4 and abs(scale - 1) > 0.01:
            plane = _resize_plane(plane, scale)
            source += f", resampled from {pixel_size:g} to {card.pixel_size_nm:g} nm per pixel"
    return plane, source


# ------------------------------------------------------------------------ weights


def _onnx_weights(model: Model, test: _TestData, notes: list[str] | None) -> bytes | None:
    """The ONNX graph of the probabilities (the backends' conversion, one output), or None."""
    from . import backends

    if not backends.onnx_available():
        _note(notes, "onnx and onnxruntime are not installed: the zip has PyTorch weights only")
        return None
    try:
        content = None
        if backends.cache_key(model) is not None:  # a model on disk: the cached conversion
            runner = backends.onnx_runner(model)
            if runner.source is not None and Path(runner.source).is_file():
                content = Path(runner.source).read_bytes()
        if content is None:
            content = backends._convert(model, 1)[0]
        content = _probabilities_only(content)
        session = backends._session(content, 1)
        got = session.run(None, {session.get_inputs()[0].name: test.normalized[None]})[0]
    except ModelError as error:
        _note(notes, f"{error}: the zip has PyTorch weights only")
        return None
    except Exception as error:  # noqa: BLE001 - onnx raises many kinds
        _note(notes, f"the ONNX copy could not be made ({type(error).__name__}: "
                     f"{str(error)[:200]}): the zip has PyTorch weights only")
        return None
    difference = float(np.abs(got - test.probabilities).max())
    if not difference <= ONNX_TOLERANCE:
        _note(notes, f"the ONNX copy differs from PyTorch by {difference:.2g} on the test image: "
                     "the zip has PyTorch weights only")
        return None
    return content


def _probabilities_only(content: bytes) -> bytes:
    """The graph without the backends' second output (pooled features for the confidence)."""
    import onnx
    from onnx.utils import Extractor

    graph = onnx.load_model_from_string(content)
    outputs = [output.name for output in graph.graph.output]
    if outputs == ["probabilities"]:
        return content
    inputs = [value.name for value in graph.graph.input]
    return Extractor(graph).extract_model(inputs, ["probabilities"]).SerializeToString()


def _exported_arch_kwargs(model: Model) -> dict[str, Any]:
    """The card's ``arch_kwargs``; for a composite, with the output order its network uses."""
    kwargs = dict(model.card.arch_kwargs)
    order = getattr(model.network, "order", None)
    if order is not None:
        kwargs["order"] = list(order)
    return kwargs


def _state_dict_bytes(model: Model) -> bytes:
    import torch

    state = {f"network.{key}": value.detach().to("cpu").contiguous().clone()
             for key, value in model.network.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------ the package


def _package_files(model: Model, test: _TestData, onnx_bytes: bytes | None,
                   authors: Sequence[str] | None, license: str | None) -> dict[str, bytes]:
    import torch

    card = model.card
    files: dict[str, bytes] = {}
    files[WEIGHTS_FILE] = _state_dict_bytes(model)
    files[ARCHITECTURE_FILE] = ARCHITECTURE_SOURCE.encode("utf-8")
    if onnx_bytes is not None:
        files[ONNX_FILE] = onnx_bytes
    files[TEST_INPUT_FILE] = _npy(test.raw)
    files[TEST_OUTPUT_FILE] = _npy(test.probabilities)
    files[SAMPLE_INPUT_FILE] = _tiff(test.raw[0])  # the same, for people and image viewers
    files[SAMPLE_OUTPUT_FILE] = _tiff(test.probabilities[0])
    files[COVER_FILE] = _cover(card, test)
    step = _step(model.network)
    files[README_FILE] = describe_for_bioimageio(card, step, test.source,
                                                 onnx_bytes is not None).encode("utf-8")
    files[ENVIRONMENT_FILE] = _environment(card).encode("utf-8")

    torch_version = torch.__version__.split("+")[0]
    weights: dict[str, Any] = {
        "pytorch_state_dict": {
            **_file(files, WEIGHTS_FILE),
            "architecture": {
                **_file(files, ARCHITECTURE_FILE),
                "callable": ARCHITECTURE_CALLABLE,
                "kwargs": {"architecture": card.architecture, "encoder_name": card.encoder,
                           "in_channels": int(card.in_channels),
                           "classes": len(card.classes),
                           "arch_kwargs": _plain(_exported_arch_kwargs(model))},
            },
            "pytorch_version": torch_version,
            "dependencies": _file(files, ENVIRONMENT_FILE),
        },
    }
    if onnx_bytes is not None:
        from .backends import OPSET

        weights["onnx"] = {**_file(files, ONNX_FILE), "opset_version": OPSET,
                           "parent": "pytorch_state_dict"}

    space = {"unit": "nanometer", "scale": float(card.pixel_size_nm)} if card.pixel_size_nm else {}
    channel_names = (["em"] if card.modality == "em" else ["fluorescence"]) \
        if card.in_channels == 1 else [f"channel{i}" for i in range(card.in_channels)]
    norm = card.normalization
    rdf: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": _bioimageio_name(card.name),
        "description": _short_description(card),
        "authors": _authors(card, authors),
        "cite": _citations(card),
        "license": license or str(card.extra.get("license") or DEFAULT_LICENSE),
        "documentation": README_FILE,
        "covers": [COVER_FILE],
        "tags": _tags(card, onnx_bytes is not None),
        "timestamp": _timestamp(card.created),
        "inputs": [{
            "id": INPUT_ID,
            "description": f"{card.modality} image, raw intensities (any range)",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": channel_names},
                {"type": "space", "id": "y", "size": {"min": step, "step": step}, **space},
                {"type": "space", "id": "x", "size": {"min": step, "step": step}, **space},
            ],
            "data": {"type": "float32"},
            "test_tensor": _file(files, TEST_INPUT_FILE),
            "sample_tensor": _file(files, SAMPLE_INPUT_FILE),
            "preprocessing": [
                {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                {"id": "scale_range", "kwargs": {"axes": ["y", "x"],
                                                 "min_percentile": float(norm.low),
                                                 "max_percentile": float(norm.high),
                                                 "eps": 1e-6}},
                {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
            ],
        }],
        "outputs": [{
            "id": OUTPUT_ID,
            "description": "probability per class (sigmoid, classes independent)",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": list(card.class_names)},
                {"type": "space", "id": "y",
                 "size": {"tensor_id": INPUT_ID, "axis_id": "y"}, **space},
                {"type": "space", "id": "x",
                 "size": {"tensor_id": INPUT_ID, "axis_id": "x"}, **space},
            ],
            "data": {"type": "float32", "range": [0.0, 1.0]},
            "test_tensor": _file(files, TEST_OUTPUT_FILE),
            "sample_tensor": _file(files, SAMPLE_OUTPUT_FILE),
        }],
        "weights": weights,
        "config": {CONFIG_KEY: {"card": _plain(card.to_dict()),
                                "exported_with": _package_version(),
                                "exported": utc_now()}},
    }
    if _VERSION.fullmatch(card.version):
        rdf["version"] = card.version
    files[RDF_FILE] = _yaml(rdf).encode("utf-8")
    return {RDF_FILE: files.pop(RDF_FILE), **files}


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """A member readable by everyone once unpacked; weights stored (they barely compress, and
    deflating them takes seconds), the rest deflated."""
    import time

    entry = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    entry.external_attr = 0o644 << 16
    entry.compress_type = (zipfile.ZIP_STORED if name in (WEIGHTS_FILE, ONNX_FILE)
                           else zipfile.ZIP_DEFLATED)
    return entry


def _file(files: Mapping[str, bytes], name: str) -> dict[str, str]:
    return {"source": name, "sha256": sha256(files[name]).hexdigest()}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


def _cover(card: ModelCard, test: _TestData) -> bytes:
    """The test input (left) and its masks over it in the class colours (right), 2:1."""
    import imageio.v3 as iio

    gray = np.clip(test.normalized[0], 0, 1)
    left = np.repeat(gray[..., None], 3, axis=2)
    right = left.copy()
    for index, spec in enumerate(card.classes):
        mask = test.probabilities[0, index] > spec.threshold
        color = np.array(_rgb(spec.color), dtype=np.float32)
        right[mask] = 0.45 * right[mask] + 0.55 * color
    image = np.concatenate([left, right], axis=1)
    repeat = max(1, 256 // image.shape[0])  # tiny test crops: make the cover readable
    if repeat > 1:
        image = image.repeat(repeat, axis=0).repeat(repeat, axis=1)
    return iio.imwrite("<bytes>", (image * 255).round().astype(np.uint8), extension=".png")


def _rgb(color: str) -> tuple[float, float, float]:
    text = color.lstrip("#")
    try:
        return tuple(int(text[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return (1.0, 1.0, 1.0)


def _environment(card: ModelCard) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        smp = f"segmentation-models-pytorch=={version('segmentation-models-pytorch')}"
    except PackageNotFoundError:
        smp = "segmentation-models-pytorch"
    return (f"# what {ARCHITECTURE_FILE} needs (the version of the export: the names of the\n"
            "# weights follow segmentation-models-pytorch's modules)\n"
            f"name: {re.sub(r'[^A-Za-z0-9_.-]', '-', card.name)}\n"
            "channels:\n  - conda-forge\n  - nodefaults\n"
            "dependencies:\n  - python>=3.9\n  - pytorch>=2.1\n  - pip\n"
            f"  - pip:\n      - {smp}\n")


def _bioimageio_name(name: str) -> str:
    """Only letters, digits, ``_+-()`` and spaces, 5 to 128 characters."""
    cleaned = _NAME_CHARACTERS.sub("-", name)[:100]
    return cleaned if len(cleaned) >= 5 else f"{cleaned} model"


def _short_description(card: ModelCard) -> str:
    what = (f"Segments {', '.join(name.replace('_', ' ') for name in card.class_names)} in "
            f"{'electron micrographs' if card.modality == 'em' else 'fluorescence images'} "
            f"({card.architecture}, {card.encoder} encoder; napari-organelle model "
            f"{card.full_name}).")
    text = f"{what} {card.description.strip()}".strip()
    if len(text) <= 500:
        return text
    return text[:497].rsplit(" ", 1)[0] + "..."  # the whole text is in the README


def _authors(card: ModelCard, authors: Sequence[str] | None) -> list[dict[str, str]]:
    names = list(authors or [])
    if not names:
        given = card.extra.get("authors")
        if isinstance(given, str):
            names = [given]
        elif isinstance(given, Sequence):
            names = [entry.get("name", "") if isinstance(entry, Mapping) else str(entry)
                     for entry in given]
    names = [name.replace("/", "-").strip() for name in names if name and name.strip()]
    return [{"name": name} for name in names or DEFAULT_AUTHORS]


def _citations(card: ModelCard) -> list[dict[str, str]]:
    """The training data that say where to cite them (a ``doi`` or ``url``), then smp."""
    cite = []
    for entry in card.training_data:
        text = str(entry.get("citation") or entry.get("name") or "").strip()
        doi = str(entry.get("doi") or "").strip()
        url = str(entry.get("url") or "").strip()
        if not doi and (found := _DOI.search(text)):
            doi = found.group(1)
        if not doi and not url and (found := _URL.search(text)):
            url = found.group(0)
        if text and (doi or url):
            cite.append({"text": text, **({"doi": doi} if doi else {"url": url})})
    return [*cite, dict(SMP_CITATION)]


def _tags(card: ModelCard, has_onnx: bool) -> list[str]:
    kinds = {spec.kind for spec in card.classes}
    tags = ["napari-organelle", "napari", "2d", "pytorch", "unet" if "unet" in
            card.architecture.lower() else card.architecture.lower(),
            "electron-microscopy" if card.modality == "em" else "fluorescence-light-microscopy",
            "organelles", "cells"]
    if has_onnx:
        tags.append("onnx")
    tags += ["instance-segmentation"] * ("instance" in kinds)
    tags += ["semantic-segmentation"] * ("semantic" in kinds)
    tags += [_CONTENT_TAGS.get(name, name.replace("_", "-")) for name in card.class_names]
    return list(dict.fromkeys(tags))


def _timestamp(created: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(created).isoformat()
    except (TypeError, ValueError):
        return utc_now()


def _plain(value: Any) -> Any:
    """JSON types only (tuples become lists), for YAML."""
    return json.loads(json.dumps(value, default=str))


def _yaml(data: Mapping[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True, width=100)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"napari-organelle {version('napari-organelle')}"
    except PackageNotFoundError:
        return "napari-organelle"


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None and text not in notes:
        notes.append(text)


# ------------------------------------------------------------------------ the README


def describe_for_bioimageio(card: ModelCard, step: int, test_source: str,
                            has_onnx: bool) -> str:
    """The zip's documentation: what the model does, on what, how well, trained how."""
    norm = card.normalization
    pixel = (f"{card.pixel_size_nm:g} nm per pixel; rescale images of another pixel size to it"
             if card.pixel_size_nm else "any pixel size (trained on several)")
    lines = [f"# {card.full_name}", "", _short_description(card) if not card.description
             else card.description.strip(), "",
             f"Exported with {_package_version()} (a napari plugin).", "",
             "## Input", "",
             f"- {card.in_channels} channel(s) of {card.modality} images, 2-D, at {pixel}.",
             f"- Height and width: multiples of {step} pixels (at least {step}); napari-organelle "
             f"runs tiles of {card.tile_size} pixels.",
             f"- Normalisation (`scale_range` in rdf.yaml): per image and channel, "
             f"`(x - p{norm.low:g}) / (p{norm.high:g} - p{norm.low:g})` with percentiles of "
             "the whole image (no clipping).", "",
             "## Output", "",
             f"`{OUTPUT_ID}`: one channel per class, the probability (0 to 1, a sigmoid inside "
             "the network; classes are independent, a pixel may belong to several):", "",
             "| channel | class | kind in napari-organelle | threshold | smallest object (px) |",
             "| --- | --- | --- | --- | --- |"]
    for index, spec in enumerate(card.classes):
        lines.append(f"| {index} | {spec.name} | {spec.kind} | {spec.threshold:g} | "
                     f"{spec.min_size_px or '-'} |")
    lines += ["", "### What napari-organelle does after the network (not in this zip)", "",
              "bioimage.io tools give the probabilities above. napari-organelle then thresholds "
              "each class at its threshold; *semantic* classes become a 0/1 mask, *instance* "
              "classes become labelled objects: touching objects are split (a watershed on the "
              "distance transform, at narrow necks) and objects smaller than the smallest "
              "object size are removed. Test-time flips, the confidence warning and the "
              "rescaling to the model's pixel size are napari-organelle's too.", "",
              "## Weights", "",
              f"- `pytorch_state_dict`: `{WEIGHTS_FILE}`, the network of `{ARCHITECTURE_FILE}` "
              f"(segmentation-models-pytorch `{card.architecture}`, encoder `{card.encoder}`, "
              f"options {json.dumps(_plain(card.arch_kwargs))}, built without pretrained "
              "weights, then these loaded)."]
    if has_onnx:
        lines.append(f"- `onnx`: `{ONNX_FILE}`, the same network converted for ONNX Runtime "
                     "(checked against PyTorch on the test image).")
    lines += ["", "## Validation", "",
              f"Test tensors (`{TEST_INPUT_FILE}`, `{TEST_OUTPUT_FILE}`; the same as TIFF in "
              f"`{SAMPLE_INPUT_FILE}`, `{SAMPLE_OUTPUT_FILE}`): a crop of {test_source}, and "
              "the probabilities napari-organelle computes for it with the PyTorch weights "
              "(its own normalisation, no test-time flips)."
              + (" The ONNX weights were checked against them when exporting (largest "
                 f"difference allowed: {ONNX_TOLERANCE:g})." if has_onnx else ""),
              "", "`bioimageio test <this zip>` (bioimageio.core) checks the description, runs "
              "the preprocessing and each weight format on the test input, compares with the "
              "test output, and runs other input sizes and batch sizes.", ""]
    lines += _metrics_section(card)
    lines += _training_section(card)
    lines += ["## Use it in napari-organelle", "",
              f"The model card is in `rdf.yaml` under `config.{CONFIG_KEY}.card`; the plugin's "
              "own export (`napari-organelle models export NAME@VERSION FOLDER`) keeps the "
              "safetensors weights and that card.", ""]
    return "\n".join(lines)


def _metrics_section(card: ModelCard) -> list[str]:
    groups = list(_score_groups(card.metrics))
    lineage = card.extra.get("lineage", {}) if isinstance(card.extra, Mapping) else {}
    after = lineage.get("metrics", {}).get("validation", {}).get("after", {}) \
        if isinstance(lineage, Mapping) else {}
    scores = {name: float(value) for name, value in (after or {}).items()
              if isinstance(value, (int, float))}
    if scores:
        groups.append((("last fine-tuning, held-out images (Dice)",), scores))
    if not groups:
        return ["## Evaluation", "", "No scores were recorded with this model.", ""]
    lines = ["## Evaluation", "", "Scores recorded in the model card (`validation`: held-out "
             "images of the training sources; `test`: test splits, per data set and class):",
             "", "| where | scores |", "| --- | --- |"]
    for path, values in groups:
        shown = ", ".join(f"{key} {value:.3f}" for key, value in values.items())
        lines.append(f"| {' / '.join(path)} | {shown} |")
    return [*lines, ""]


def _score_groups(value: Any, path: tuple[str, ...] = ()
                  ) -> Generator[tuple[tuple[str, ...], dict[str, float]]]:
    """``(path, {name: score})`` for every mapping of numbers in the nested ``value``."""
    if not isinstance(value, Mapping):
        return
    numbers = {str(key): float(inner) for key, inner in value.items()
               if isinstance(inner, (int, float)) and not isinstance(inner, bool)}
    if numbers and path:
        yield path, numbers
    for key, inner in value.items():
        if isinstance(inner, Mapping):
            yield from _score_groups(inner, (*path, str(key)))


def _training_section(card: ModelCard) -> list[str]:
    lineage = card.extra.get("lineage", {}) if isinstance(card.extra, Mapping) else {}
    lines = ["## Training", "",
             f"- parent: {card.parent or 'none (trained from scratch)'}",
             f"- created: {card.created or 'unknown'}"]
    timing = lineage.get("time", {}) if isinstance(lineage, Mapping) else {}
    if timing:
        lines.append(f"- fine-tuned: {timing.get('steps')} steps, {timing.get('seconds')} s on "
                     f"{timing.get('device')} ({timing.get('stopped')})")
    if isinstance(lineage, Mapping) and lineage.get("data_manifest_sha256"):
        lines.append(f"- training data hash: {lineage['data_manifest_sha256']}")
    if card.recipe:
        recipe = json.dumps(_plain(card.recipe), indent=1)
        if len(recipe) > 4000:
            recipe = recipe[:4000] + "\n... (the whole recipe is in the card, see below)"
        lines += ["", "Recipe:", "", "```json", recipe, "```"]
    lines += ["", "## Training data", ""]
    if not card.training_data:
        lines.append("Not recorded in the model card.")
    for entry in card.training_data:
        lines.append(f"- **{entry.get('name', '?')}**; licence: "
                     f"{entry.get('licence') or entry.get('license') or 'unknown'}; cite: "
                     f"{entry.get('citation') or 'not given'}")
    lines += ["", "The licences of the training data may restrict how the weights can be used.",
              ""]
    return lines
