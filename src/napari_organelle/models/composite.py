"""Composite models: trained networks run side by side on each tile, as one model.

A new class must not cost the classes a model already has. Teaching nuclei,
ER, lipid droplets and Golgi from simulated sections to the EM network that
learnt mitochondria and cell boundaries from real ones made those two worse on
real test sets (docs/models.md, the em-organelles-v3 try). A composite keeps each
network as it was trained and concatenates their outputs, so a class's
predictions are exactly those of the network that learnt it.

Each member may run at its own pixel size: a member with ``scale`` 2 sees the
tile average-pooled 2 x 2 (16 nm pixels in an 8 nm model), and its logits are
upsampled back. Coarser pixels give a member more micrometres of context per
pixel of compute, which nuclei need.

The card describes it with ``architecture="Composite"`` and, in
``arch_kwargs["members"]``, one entry per member: its segmentation-models-pytorch
``architecture``, ``encoder`` and ``arch_kwargs``, its ``classes`` (names, in its
output order), its ``scale`` and where it came from. The weights are one
safetensors file whose keys start with ``members.<i>.``; nothing is unpickled.

Examples:
    Two tiny members, the second at half resolution, give one output per class
    in the card's order:

    >>> import torch
    >>> from napari_organelle.models import ClassSpec, ModelCard, build_network
    >>> tiny = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}
    >>> card = ModelCard(name="both", version="1", architecture=COMPOSITE, encoder="resnet18",
    ...     in_channels=1, modality="em",
    ...     classes=[ClassSpec("mitochondria", "instance"), ClassSpec("nuclei", "instance")],
    ...     arch_kwargs={"members": [
    ...         member_entry("Unet", "resnet18", ["mitochondria"], 1, tiny),
    ...         member_entry("Unet", "resnet18", ["nuclei"], 2, tiny)]})
    >>> network = build_network(card).eval()
    >>> tuple(network(torch.zeros(1, 1, 64, 64)).shape)
    (1, 2, 64, 64)
    >>> tile_multiple(card)
    64
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import ModelError
from .evidence import EVIDENCE_KEY

if TYPE_CHECKING:
    from .card import ModelCard

#: The ``architecture`` of a composite model's card.
COMPOSITE = "Composite"
#: The input edge of a U-Net must be a multiple of this (five 2x poolings).
UNET_MULTIPLE = 32


def is_composite(card: ModelCard) -> bool:
    return card.architecture == COMPOSITE


def member_entry(architecture: str, encoder: str, classes: Sequence[str], scale: int = 1,
                 arch_kwargs: dict[str, Any] | None = None, source: str = "") -> dict[str, Any]:
    """One member's entry in a composite card's ``arch_kwargs["members"]``."""
    return {"architecture": architecture, "encoder": encoder, "classes": list(classes),
            "scale": int(scale), "arch_kwargs": dict(arch_kwargs or {}), "source": source}


def members(card: ModelCard) -> list[dict[str, Any]]:
    """The member entries of a composite card, checked against its classes.

    Raises:
        ModelError: no members, a bad scale, or the members' classes are not the card's.
    """
    entries = card.arch_kwargs.get("members") or []
    if not entries:
        raise ModelError(f"the composite card of {card.full_name} lists no member networks")
    named = [name for entry in entries for name in entry.get("classes", [])]
    if sorted(named) != sorted(card.class_names) or len(set(named)) != len(named):
        raise ModelError(f"the members of {card.full_name} segment {', '.join(named)}, but its "
                         f"card lists {', '.join(card.class_names)}: each class must come "
                         "from exactly one member")
    if entries[0].get("scale", 1) != 1:
        raise ModelError(f"the first member of {card.full_name} must run at the model's own "
                         "pixel size (scale 1)")
    for entry in entries:
        scale = entry.get("scale", 1)
        if not isinstance(scale, int) or scale < 1:
            raise ModelError(f"a member of {card.full_name} has scale {scale!r}; it must be "
                             "a whole number of pixels, 1 or more")
    return entries


def tile_multiple(card: ModelCard) -> int:
    """Tiles and training crops of this model must be a multiple of this many pixels."""
    if not is_composite(card):
        return UNET_MULTIPLE
    return UNET_MULTIPLE * max(int(entry.get("scale", 1)) for entry in members(card))


def build_composite(card: ModelCard, build_one: Any) -> CompositeNetwork:
    """The untrained composite network of ``card``; ``build_one(architecture, encoder,
    n_classes, arch_kwargs)`` builds each member."""
    entries = members(card)
    networks = [build_one(entry["architecture"], entry["encoder"], len(entry["classes"]),
                          entry.get("arch_kwargs", {})) for entry in entries]
    produced = [name for entry in entries for name in entry["classes"]]
    order = [produced.index(name) for name in card.class_names]
    return CompositeNetwork(networks, [int(entry.get("scale", 1)) for entry in entries], order)


class CompositeNetwork(torch.nn.Module):
    """Member networks on the same input; their logits concatenated in the card's class order.

    Args:
        networks: the members.
        scales: per member, the average-pooling factor of its input.
        order: for each output channel, its index among the members' concatenated outputs.
    """

    def __init__(self, networks: Sequence[torch.nn.Module], scales: Sequence[int],
                 order: Sequence[int]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(networks)
        self.scales = [int(s) for s in scales]
        self.order = [int(i) for i in order]

    def _member_logits(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        member, scale = self.members[index], self.scales[index]
        if scale == 1:
            return member(inputs)
        logits = member(F.avg_pool2d(inputs, scale))
        return F.interpolate(logits, size=inputs.shape[-2:], mode="bilinear",
                             align_corners=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._in_order([self._member_logits(i, inputs)
                               for i in range(len(self.members))])

    def forward_with_features(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits, and the deepest encoder features of the first member (which runs at
        the model's pixel size; the card's unfamiliar-image reference describes them)."""
        from ..backends import encode_decode

        first, deepest = encode_decode(self.members[0], inputs)
        rest = [self._member_logits(i, inputs) for i in range(1, len(self.members))]
        return self._in_order([first, *rest]), deepest

    def _in_order(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(outputs, dim=1)
        if self.order == list(range(len(self.order))):
            return stacked
        return stacked[:, self.order]


def primary(network: torch.nn.Module) -> torch.nn.Module:
    """The network that new classes are added to: the first member of a composite (it runs
    at the model's own pixel size), else the network itself."""
    return network.members[0] if isinstance(network, CompositeNetwork) else network


def head_rows(network: torch.nn.Module, rows: Sequence[int]) -> list[int]:
    """The rows of ``primary(network)``'s output layer that give the model's outputs ``rows``.

    Raises:
        ModelError: a row comes from another member of the composite.
    """
    if not isinstance(network, CompositeNetwork):
        return list(rows)
    first = network.members[0].segmentation_head[0].out_channels
    local = [network.order[row] for row in rows]
    if any(index >= first for index in local):
        raise ModelError("only the classes of a composite's first member can be trained "
                         "as new output rows")
    return local


def encoders(network: torch.nn.Module) -> list[torch.nn.Module]:
    """Every encoder in ``network`` (one per member of a composite)."""
    nets = list(network.members) if isinstance(network, CompositeNetwork) else [network]
    return [net.encoder for net in nets]


def add_to_first_member(card: ModelCard, names: Sequence[str]) -> None:
    """Give a composite card's first member the new classes ``names`` (in place; the card's
    class list already has them). They are then learnt at the model's own pixel size, by the
    member that runs there."""
    if is_composite(card) and names:
        first = card.arch_kwargs["members"][0]
        first["classes"] = list(first["classes"]) + [n for n in names if n not in first["classes"]]


def member_model(model: Any, index: int) -> Any:
    """Member ``index`` of a composite :class:`~napari_organelle.models.Model` as a model of
    its own: its classes, at its pixel size, with the composite's name and folder (so that
    results name the composite, and its ONNX copy is kept beside the composite's weights).

    Raises:
        ModelError: the model is not a composite, or has no such member.
    """
    import json

    from .card import ModelCard
    from .io import Model

    card = model.card
    if not is_composite(card) or not 0 <= index < len(members(card)):
        raise ModelError(f"{card.full_name} has no member network {index}")
    entry = members(card)[index]
    alone = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    alone.architecture, alone.encoder = entry["architecture"], entry["encoder"]
    alone.arch_kwargs = dict(entry.get("arch_kwargs", {}))
    alone.classes = [card.class_spec(name) for name in entry["classes"]]
    scale = int(entry.get("scale", 1))
    alone.pixel_size_nm = card.pixel_size_nm * scale if card.pixel_size_nm else None
    alone.tile_size = max(UNET_MULTIPLE, card.tile_size // scale // UNET_MULTIPLE * UNET_MULTIPLE)
    if index:  # the unfamiliar-image reference describes the first member's features only
        alone.extra.pop("confidence", None)
    return Model(alone, model.network.members[index], model.path, part=f"member{index}")


def runnable_part(model: Any, class_names: Sequence[str]) -> Any:
    """The smallest part of ``model`` that predicts ``class_names``: the one member of a
    composite that has them all (a network run less), else the model itself.

    The member gives exactly the outputs it gives inside the composite when it runs at the
    composite's pixel size (scale 1).
    """
    if not is_composite(model.card):
        return model
    for index, entry in enumerate(members(model.card)):
        if set(class_names) <= set(entry["classes"]):
            return member_model(model, index)
    return model


def compose(parts: Sequence[tuple[Any, int]], name: str, version: str, tile_size: int,
            description: str) -> tuple[ModelCard, torch.nn.Module]:
    """Join trained models into one composite model (card and network).

    Args:
        parts: ``(model, scale)`` pairs; the first runs at the composite's pixel size
            (its card's), each other at ``scale`` times coarser. All read the same
            channels with the same normalisation.
        name, version, tile_size, description: of the new card.

    Raises:
        ModelError: the models do not fit together (modality, channels, pixel sizes,
            normalisation, shared class names, or a tile that is not a multiple).
    """
    import json

    from .card import ModelCard
    from .io import build_network

    first = parts[0][0].card
    card = ModelCard.from_dict(json.loads(json.dumps(first.to_dict())))
    entries, classes, state = [], [], {}
    for index, (model, scale) in enumerate(parts):
        part = model.card
        if is_composite(part):
            raise ModelError(f"{part.full_name} is itself composite; compose its members")
        problems = []
        if part.modality != first.modality or part.in_channels != first.in_channels:
            problems.append("another modality or number of channels")
        if (part.normalization.low, part.normalization.high) != (
                first.normalization.low, first.normalization.high):
            problems.append("another normalisation")
        expected = (first.pixel_size_nm or 0) * scale
        if part.pixel_size_nm and first.pixel_size_nm and abs(part.pixel_size_nm - expected) > 1e-6:
            problems.append(f"pixels of {part.pixel_size_nm} nm, not {first.pixel_size_nm} x "
                            f"{scale} = {expected} nm")
        shared = set(part.class_names) & {spec.name for spec in classes}
        if shared:
            problems.append(f"classes another member has ({', '.join(sorted(shared))})")
        if problems:
            raise ModelError(f"cannot compose {part.full_name} with {first.full_name}: "
                             + "; ".join(problems))
        entries.append(member_entry(part.architecture, part.encoder, part.class_names, scale,
                                    part.arch_kwargs, part.full_name))
        classes.extend(part.classes)
        for key, value in model.network.state_dict().items():
            state[f"members.{index}.{key}"] = value
    card.name, card.version, card.description = name, version, description
    card.architecture, card.classes = COMPOSITE, classes
    card.arch_kwargs = {"members": entries}
    card.tile_size = int(tile_size)
    card.parent = first.full_name
    card.metrics = {}
    # The unfamiliar-image reference describes the first member's features, which stay.
    card.extra = {key: value for key, value in first.extra.items() if key == "confidence"}
    declared = {name: value for model, _ in parts
                for name, value in (model.card.extra.get(EVIDENCE_KEY) or {}).items()}
    if declared:
        card.extra[EVIDENCE_KEY] = declared
    card.recipe = {
        "compose": [{"model": model.card.full_name, "scale": scale,
                     "weights_sha256": model.card.extra.get("weights_sha256")}
                    for model, scale in parts],
        # the first member's data sets, whose class maps name its test scores' classes
        "datasets": list(first.recipe.get("datasets") or []),
        "members": [model.card.recipe for model, _ in parts],
    }
    card.training_data = [item for model, _ in parts for item in model.card.training_data]
    if card.tile_size % tile_multiple(card):
        raise ModelError(f"tile size {card.tile_size} is not a multiple of "
                         f"{tile_multiple(card)}, which the members' scales need")
    network = build_network(card)
    network.load_state_dict(state, strict=True)
    return card, network.eval()
