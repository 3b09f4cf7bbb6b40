"""Training images from the project's fluorescence simulator.

There is no real live-cell organelle data to train on, so the fluorescence
model learns from :func:`napari_organelle.simulation.scene.training_sample`:
one organelle per image, imaged through a random microscope at a random pixel
size, with crosstalk and cytosolic background. A fixed pool is drawn once
(seeded) and augmented on the fly, which keeps steps cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .datasets import TrainingImage, normalize_percentile


def simulated_images(n: int, class_names: Sequence[str], seed: int,
                     shape: tuple[int, int] = (256, 256),
                     normalization: tuple[float, float] = (1.0, 99.8),
                     name: str = "simulated") -> list[TrainingImage]:
    """Draw ``n`` simulated single-channel images with targets for ``class_names``.

    Images are normalised exactly as inference normalises a plane, so the
    network sees the same input statistics in training and in use.
    """
    from ..simulation.scene import training_sample

    rng = np.random.default_rng(seed)
    images = []
    for index in range(n):
        raw, targets = training_sample(rng, shape, class_names)
        target = np.stack([targets[c] for c in class_names]).astype(np.uint8)
        images.append(TrainingImage(normalize_percentile(raw, *normalization), target,
                                    f"{name}/{index:05d}", name))
    return images
