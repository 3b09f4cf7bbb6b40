"""Sample images for napari's File > Open Sample, made by the simulator (no download)."""

from __future__ import annotations

from typing import Any

from .models.card import ORGANELLE_COLORS

#: napari colormaps per channel organelle, close to the label colours.
_CHANNEL_COLORMAPS = {"nuclei": "blue", "mitochondria": "magenta", "er": "green",
                      "lysosomes": "red", "lipid_droplets": "yellow", "golgi": "cyan",
                      "cell_boundary": "gray"}


def sample_live_cell() -> list[tuple[Any, dict, str]]:
    """A simulated multichannel confocal live-cell image, one organelle per channel."""
    from .simulation.sample import sample_live_cell as simulate

    image, channel_names, pixel_size_nm = simulate(seed=0)
    scale = (pixel_size_nm / 1000.0, pixel_size_nm / 1000.0)  # µm, as biologists read it
    layers = []
    for channel, name in zip(image, channel_names):
        layers.append((channel, {
            "name": name,
            "colormap": _CHANNEL_COLORMAPS.get(name, "gray"),
            "blending": "additive",
            "scale": scale,
            "metadata": {"pixel_size_nm": pixel_size_nm, "organelle": name,
                         "modality": "fluorescence", "simulated": True},
        }, "image"))
    return layers


def sample_em() -> list[tuple[Any, dict, str]]:
    """A simulated EM image with mitochondria and cell membranes."""
    from .simulation.sample import sample_em_like

    image, pixel_size_nm = sample_em_like(seed=0)
    scale = (pixel_size_nm / 1000.0, pixel_size_nm / 1000.0)
    return [(image, {"name": "EM (simulated)", "scale": scale,
                     "metadata": {"pixel_size_nm": pixel_size_nm, "modality": "em",
                                  "simulated": True}}, "image")]


__all__ = ["ORGANELLE_COLORS", "sample_em", "sample_live_cell"]
