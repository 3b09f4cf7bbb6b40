"""Training images from the project's fluorescence simulator.

There is no real live-cell organelle data to train on, so the fluorescence
model learns from :func:`napari_organelle.simulation.scene.training_sample`:
one organelle per image, imaged through a random microscope at a random pixel
size, with crosstalk and cytosolic background. A fixed pool is drawn once
(seeded) and augmented on the fly, which keeps steps cheap.

The user always says which organelle a channel shows (the Segment widget's
channel assignment, the CLI's ``--channels``), and only that class's output is
read. So each output channel is trained only on images of its own organelle:
the targets of the other classes are *ignored*, not background. The network
then learns "where is X, given that this dye marks X" (including not
segmenting faint crosstalk of other dyes), instead of also having to guess
which dye was used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .datasets import IGNORE, TrainingImage, normalize_percentile


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
        raw, targets, info = training_sample(rng, shape, class_names, return_info=True)
        target = np.stack([targets[c] if c == info["shown"] else np.full(shape, IGNORE, np.uint8)
                           for c in class_names]).astype(np.uint8)
        images.append(TrainingImage(normalize_percentile(raw, *normalization), target,
                                    f"{name}/{index:05d}", name))
    return images
