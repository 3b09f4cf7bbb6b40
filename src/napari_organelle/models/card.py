"""The model card: everything needed to rebuild, run and trust a network.

A model on disk is a folder with ``model.safetensors`` (weights, no code) and
``card.json`` (this card). The card fixes the architecture so the weights can be
loaded without unpickling anything, and carries what a biologist needs to judge
the model: what it segments, at which pixel size, trained on what, how well.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..durable import atomic_write_json
from ..errors import ModelError

CARD_SCHEMA_VERSION = 1

ClassKind = Literal["instance", "semantic"]
Modality = Literal["em", "fluorescence"]

#: Default colours per organelle, so layers look the same whichever model made them.
ORGANELLE_COLORS: dict[str, str] = {
    "mitochondria": "#ff7f0e",
    "er": "#2ca02c",
    "nuclei": "#1f77b4",
    "lipid_droplets": "#e6c619",
    "lysosomes": "#d62728",
    "golgi": "#9467bd",
    "cell_boundary": "#17becf",
    "membranes": "#17becf",
    "vesicles": "#e377c2",
}

#: Names that mean the same organelle in different data sets (data name -> model name).
CLASS_SYNONYMS: dict[str, str] = {
    "membranes": "cell_boundary",
    "cell_boundaries": "cell_boundary",
    "cell_membrane": "cell_boundary",
    "mitochondrion": "mitochondria",
    "nucleus": "nuclei",
    "endoplasmic_reticulum": "er",
    "lipid_droplet": "lipid_droplets",
    "lysosome": "lysosomes",
}


@dataclass
class ClassSpec:
    """One output channel of a model.

    Attributes:
        name: organelle name, used for layer and file names (``mitochondria``).
        kind: ``instance`` classes become separately labelled objects (touching
            objects are split); ``semantic`` classes become a 0/1 mask.
        color: hex colour of the label layer.
        threshold: probability above which a pixel belongs to the class.
        min_size_px: objects smaller than this (in pixels at the model's pixel
            size) are removed from instance classes.
    """

    name: str
    kind: ClassKind = "semantic"
    color: str = ""
    threshold: float = 0.5
    min_size_px: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("instance", "semantic"):
            raise ModelError(f"class {self.name!r}: kind must be 'instance' or 'semantic', "
                             f"not {self.kind!r}")
        if not self.color:
            self.color = ORGANELLE_COLORS.get(self.name, "#ffffff")


@dataclass
class Normalization:
    """How raw intensities are mapped to the network's input range.

    ``percentile``: ``(x - p_low) / (p_high - p_low)`` with percentiles of the
    whole plane, which makes the model indifferent to bit depth and exposure.
    """

    method: Literal["percentile"] = "percentile"
    low: float = 1.0
    high: float = 99.8


@dataclass
class ModelCard:
    """Metadata that travels with every set of weights.

    Attributes:
        name: short identifier, unique among installed models (``em-organelles``).
        version: version string of these weights (``1.0.0``).
        architecture: segmentation-models-pytorch architecture (``Unet``).
        encoder: smp encoder name (``resnet18``); built with ``encoder_weights=None``.
        in_channels: channels the network reads.
        modality: ``em`` or ``fluorescence``.
        classes: output channels, in order.
        arch_kwargs: extra keyword arguments for ``smp.create_model``
            (``encoder_depth``, ``decoder_channels``...).
        normalization: input normalisation.
        pixel_size_nm: pixel size of the training data; images with a known,
            different pixel size are rescaled to it. None: never rescale.
        tile_size: recommended tile edge in pixels (a multiple of 32).
        description: one paragraph for people.
        training_data: data sets used, each with ``name``, ``licence``, ``citation``.
        metrics: scores: ``"validation"`` (Dice per class on held-out training images)
            and ``"test"``, per test set and class (named as in the set, e.g.
            ``membranes`` for ``cell_boundary``):
            ``{"test": {"em-epfl-hippocampus": {"mitochondria": {"dice": 0.8}}}}``. A test
            set whose name starts with ``simulated`` holds simulated images, any other
            real ones (:func:`~napari_organelle.models.evidence.class_evidence`).
        parent: ``name@version`` of the model this one was fine-tuned from.
        created: ISO date and time.
        recipe: the training settings that produced the weights.
        extra: anything else worth keeping (lineage, data hashes...). Keys read by
            napari-organelle: ``"class_evidence"``, ``{class: "simulation only"}`` for
            the classes learnt from simulated images only (no real training image);
            the recipe writes it (:func:`~napari_organelle.training.recipe.load_recipe`),
            fine-tuning on real data of a class removes the class from it, and the
            Segment dock marks those classes unless real test scores exist
            (:func:`~napari_organelle.models.evidence.class_evidence`).
    """

    name: str
    version: str
    architecture: str
    encoder: str
    in_channels: int
    modality: Modality
    classes: list[ClassSpec]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    normalization: Normalization = field(default_factory=Normalization)
    pixel_size_nm: float | None = None
    tile_size: int = 512
    description: str = ""
    training_data: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    created: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = CARD_SCHEMA_VERSION

    @property
    def class_names(self) -> list[str]:
        return [spec.name for spec in self.classes]

    @property
    def full_name(self) -> str:
        """``name@version``, the form used for lineage and provenance."""
        return f"{self.name}@{self.version}"

    def class_spec(self, name: str) -> ClassSpec:
        for spec in self.classes:
            if spec.name == name:
                return spec
        raise ModelError(
            f"model {self.full_name} has no class {name!r}; "
            f"it segments {', '.join(self.class_names)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from its JSON form, with messages that name the problem."""
        if not isinstance(data, dict):
            raise ModelError("model card must be a JSON object")
        version = data.get("schema_version", CARD_SCHEMA_VERSION)
        if not isinstance(version, int) or version > CARD_SCHEMA_VERSION:
            raise ModelError(
                f"model card schema version {version!r} is newer than this napari-organelle "
                f"understands ({CARD_SCHEMA_VERSION}); update napari-organelle"
            )
        missing = [key for key in ("name", "version", "architecture", "encoder", "in_channels",
                                   "modality", "classes") if key not in data]
        if missing:
            raise ModelError(f"model card lacks {', '.join(missing)}")
        try:
            fields = dict(data)
            fields["classes"] = [ClassSpec(**spec) for spec in data["classes"]]
            fields["normalization"] = Normalization(**data.get("normalization", {}))
            card = cls(**fields)
        except TypeError as error:
            raise ModelError(f"model card has an unexpected field: {error}") from None
        if not card.classes:
            raise ModelError(f"model card {card.full_name} lists no classes")
        if card.modality not in ("em", "fluorescence"):
            raise ModelError("model card modality must be 'em' or 'fluorescence', "
                             f"not {card.modality!r}")
        if card.tile_size % 32:
            raise ModelError(f"model card tile_size must be a multiple of 32, not {card.tile_size}")
        return card

    def save(self, path: str | Path) -> None:
        """Write the card to ``path`` as JSON, atomically (the old card or the new, never part)."""
        atomic_write_json(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ModelError(f"model card {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelError(f"model card {path} is not valid JSON ({error})") from None
        return cls.from_dict(data)
