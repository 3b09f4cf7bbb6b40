"""Build, save and load models: safetensors weights plus a JSON card, never pickles."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..durable import atomic_path, sha256_file
from ..errors import ModelError
from .card import ModelCard

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"


@dataclass
class Model:
    """A network ready to run, with the card that describes it.

    Attributes:
        card: the model card.
        network: the torch module (in eval mode, on the CPU until moved).
        path: the folder it was loaded from, or None when built in memory.
        part: which part of the folder's network this is (``member0``: a composite's
            first member, :func:`~napari_organelle.models.composite.member_model`);
            empty for the whole network.
    """

    card: ModelCard
    network: torch.nn.Module
    path: Path | None = None
    part: str = ""

    def __repr__(self) -> str:
        return f"Model({self.card.full_name}, classes={self.card.class_names}, path={self.path})"


def build_network(card: ModelCard) -> torch.nn.Module:
    """Create the untrained network a card describes (no download, ever).

    Examples:
        >>> from napari_organelle.models import ClassSpec, ModelCard, build_network
        >>> card = ModelCard(name="tiny", version="0", architecture="Unet",
        ...     encoder="resnet18", in_channels=1, modality="em",
        ...     classes=[ClassSpec("mitochondria", "instance")],
        ...     arch_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]})
        >>> net = build_network(card)
        >>> sum(p.numel() for p in net.parameters()) > 0
        True
    """
    from .._compat import avoid_llvm_clash

    # smp imports huggingface_hub; make sure nothing can ever reach a hub from here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    avoid_llvm_clash()  # smp imports torchvision -> torch._dynamo -> triton
    import segmentation_models_pytorch as smp

    def build_one(architecture: str, encoder: str, n_classes: int,
                  arch_kwargs: dict) -> torch.nn.Module:
        return smp.create_model(architecture, encoder_name=encoder, encoder_weights=None,
                                in_channels=card.in_channels, classes=n_classes, **arch_kwargs)

    try:
        if card.architecture == "Composite":
            from .composite import build_composite  # imports torch

            return build_composite(card, build_one)
        return build_one(card.architecture, card.encoder, len(card.classes), card.arch_kwargs)
    except (KeyError, ValueError, TypeError) as error:
        raise ModelError(
            f"cannot build {card.architecture} with encoder {card.encoder!r} from the card of "
            f"{card.full_name}: {error}"
        ) from None


def save_model(model: Model | tuple[ModelCard, torch.nn.Module], folder: str | Path,
               half_precision: bool = True) -> Path:
    """Write weights and card into ``folder`` (created), atomically per file.

    The weights are written first: a crash between the two files leaves the
    old card, whose ``weights_sha256`` then tells that the weights changed.

    Args:
        model: a :class:`Model`, or a ``(card, network)`` pair.
        folder: destination folder.
        half_precision: store floating-point tensors as float16, which halves
            the file; they are cast back to float32 on load.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    card, network = (model.card, model.network) if isinstance(model, Model) else model
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, tensor in network.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half_precision and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[key] = tensor
    with atomic_path(folder / WEIGHTS_FILE) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt", "model": card.full_name})
        card.extra["weights_sha256"] = sha256_file(temporary)
    card.save(folder / CARD_FILE)  # atomic too
    return folder


def load_model_folder(folder: str | Path) -> Model:
    """Load a model folder (or its ``.safetensors`` file) and check card against weights.

    Raises:
        ModelError: the folder lacks a file, the weights are corrupt, or they do
            not match the architecture the card describes.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder)
    if path.is_file() and path.suffix == ".safetensors":
        weights_path = path
        card_path = path.with_name(CARD_FILE)
        if not card_path.exists():
            card_path = path.with_suffix(".json")
        folder = path.parent
    else:
        folder = path
        weights_path, card_path = folder / WEIGHTS_FILE, folder / CARD_FILE
    if not folder.exists():
        raise ModelError(f"model {path} does not exist")
    if not weights_path.exists():
        raise ModelError(f"{folder} is not a model folder: {WEIGHTS_FILE} is missing")
    card = ModelCard.load(card_path)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelError(
            f"model weights {weights_path} are corrupt or not a safetensors file ({error}); "
            "restore the file or choose another model"
        ) from None
    network = build_network(card)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [key for key in expected.keys() & state.keys()
                   if tuple(expected[key].shape) != tuple(state[key].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if wrong_shape:
            key = wrong_shape[0]
            details.append(f"{len(wrong_shape)} tensors of the wrong shape (e.g. {key}: weights "
                           f"{tuple(state[key].shape)}, card {tuple(expected[key].shape)})")
        if missing:
            details.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise ModelError(
            f"the card of {card.full_name} ({card.architecture}/{card.encoder}, "
            f"{card.in_channels} in, {len(card.classes)} classes) does not match its weights: "
            + "; ".join(details)
        )
    state = {key: value.to(expected[key].dtype) for key, value in state.items()}
    network.load_state_dict(state, strict=True)
    network.eval()
    torch.set_grad_enabled(True)  # loading must not change global autograd state
    return Model(card=card, network=network, path=folder)


_cache_lock = threading.Lock()
_cache: dict[tuple[str, float], Model] = {}


def load_cached(folder: Path) -> Model:
    """Load a model folder once; later calls return the same object until the file changes."""
    weights = folder / WEIGHTS_FILE
    key = (str(folder.resolve()), weights.stat().st_mtime if weights.exists() else 0.0)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = load_model_folder(folder)
            _cache[key] = model
        return model


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
