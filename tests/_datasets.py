"""Tiny synthetic data sets in the shared layout, for training tests (written to tmp_path)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile


def disc_sample(rng: np.random.Generator, size: int = 96
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An image with a bright disc (mitochondria), its rim (membranes) and a stripe (er)."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    radius = size // 6
    distance = np.hypot(yy - cy, xx - cx)
    disc = distance < radius
    rim = (distance >= radius) & (distance < radius + 3)
    row = int(rng.integers(4, size - 8))
    stripe = np.zeros((size, size), bool)
    stripe[row:row + 4] = True
    stripe &= ~disc
    image = 40 + 140 * disc + 70 * stripe + rng.normal(0, 12, (size, size))
    masks = {"mitochondria": disc, "membranes": rim, "er": stripe}
    return image.clip(0, 255).astype(np.uint8), {k: v.astype(np.uint8) for k, v in masks.items()}


def write_dataset(root: Path, n_images: int = 4, classes: Sequence[str] = ("mitochondria",),
                  size: int = 96, seed: int = 0, split: str = "train",
                  pixel_size_nm: float | None = None) -> Path:
    """Write ``<root>/<split>/images/NN.tif`` and ``masks/<class>/NN.tif`` plus dataset.json."""
    rng = np.random.default_rng(seed)
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    for name in classes:
        (root / split / "masks" / name).mkdir(parents=True, exist_ok=True)
    for index in range(n_images):
        image, masks = disc_sample(rng, size)
        tifffile.imwrite(root / split / "images" / f"{index:02d}.tif", image)
        for name in classes:
            tifffile.imwrite(root / split / "masks" / name / f"{index:02d}.tif", masks[name])
    info = {"classes": list(classes), "licence": "CC0 (synthetic)"}
    if pixel_size_nm:
        info["pixel_size_nm"] = [pixel_size_nm, pixel_size_nm]
    (root / "dataset.json").write_text(json.dumps(info))
    return root
