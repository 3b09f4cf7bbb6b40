"""Re-make ``docs/images/em-cells-simulated.png``: simulated EM sections of non-neural cells.

Five sections from :func:`napari_organelle.simulation.simulate_em_cell` (cultured cells and
hepatocytes; TEM, SBF-SEM and FIB-SEM contrast; one SEM image shown raw, membranes bright)
and one section with its masks over it in the class colours. Needs no display::

    python docs/make_em_cells_figure.py
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: (title, tissue, contrast, pixel size nm, wanted dark_membranes or None for either)
PANELS = (
    ("cultured cell, TEM, 8 nm", "cultured", "tem", 8.0, None),
    ("cultured cell, SBF-SEM (inverted), 10 nm", "cultured", "sbfsem", 10.0, True),
    ("cultured cell, FIB-SEM (inverted), 6 nm", "cultured", "fibsem", 6.0, True),
    ("hepatocytes, TEM, 12 nm", "hepatocyte", "tem", 12.0, None),
    ("hepatocytes, SBF-SEM (raw), 10 nm", "hepatocyte", "sbfsem", 10.0, False),
)


def section(tissue: str, contrast: str, pixel_size_nm: float, dark: bool | None, seed: int):
    """The first section from ``seed`` on with the wanted polarity."""
    from napari_organelle.simulation import simulate_em_cell

    for attempt in range(seed, seed + 50):
        em = simulate_em_cell(attempt, (512, 512), pixel_size_nm, tissue=tissue, contrast=contrast)
        if dark is None or em.dark_membranes == dark:
            return em
    raise RuntimeError(f"no {contrast} section with dark_membranes={dark}")


def overlay(em) -> np.ndarray:
    """The image in grey with every class in its colour (RGB floats)."""
    from matplotlib.colors import to_rgb

    from napari_organelle.models.card import ORGANELLE_COLORS

    rgb = np.repeat(em.image[..., None] / 255.0, 3, axis=2)
    for name, labels in em.labels.items():
        mask = labels > 0
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array(to_rgb(ORGANELLE_COLORS[name]))
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "images" / "em-cells-simulated.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch
    from PIL import Image

    from napari_organelle.models.card import ORGANELLE_COLORS

    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    shown = []
    for i, (ax, (title, tissue, contrast, pixel_size, dark)) in enumerate(zip(axes.flat, PANELS)):
        em = section(tissue, contrast, pixel_size, dark, args.seed + 10 * i)
        shown.append(em)
        ax.imshow(em.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    masked = shown[3]  # the hepatocytes under TEM, with their masks
    ax = axes.flat[5]
    ax.imshow(overlay(masked), interpolation="nearest")
    ax.set_title("hepatocytes, TEM: the masks", fontsize=10)
    handles = [Patch(color=to_rgb(ORGANELLE_COLORS[name]), label=name.replace("_", " "))
               for name in masked.labels]
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=90)
    # a 256-colour palette keeps the noisy greys and the class colours at a third of the size
    with Image.open(buffer) as rendered:
        rendered.convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
