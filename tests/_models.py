"""Small untrained models the tests build themselves (no bundled weights needed)."""

from __future__ import annotations

from pathlib import Path

from napari_organelle.models import ClassSpec, ModelCard, build_network, save_model


def tiny_card(name: str = "tiny-em", modality: str = "em", classes=None, in_channels: int = 1,
              pixel_size_nm: float | None = None) -> ModelCard:
    classes = classes or [ClassSpec("mitochondria", "instance", min_size_px=10),
                          ClassSpec("membranes", "semantic")]
    return ModelCard(name=name, version="0", architecture="Unet", encoder="resnet18",
                     in_channels=in_channels, modality=modality, classes=classes,
                     arch_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
                     tile_size=128, pixel_size_nm=pixel_size_nm)


def make_tiny_model(folder: Path, **card_options) -> Path:
    card = tiny_card(**card_options)
    return save_model((card, build_network(card)), folder)
