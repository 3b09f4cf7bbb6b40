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


#: The simulators a recipe's ``"simulated"`` section can name.
SIMULATORS = ("fluo-scene", "em-cells")


def simulated_em_images(n: int, class_names: Sequence[str], seed: int, taught: Sequence[str],
                        shape: tuple[int, int] = (512, 512), pixel_size_nm: float = 8.0,
                        normalization: tuple[float, float] = (1.0, 99.8),
                        name: str = "simulated-em") -> list[TrainingImage]:
    """Draw ``n`` simulated EM sections of cultured cells and hepatocytes with targets.

    Sections come from :func:`napari_organelle.simulation.em_cells.simulate_em_cell`
    (randomised tissue and TEM, SBF-SEM or FIB-SEM contrast) at the model's pixel
    size. Only the ``taught`` classes get targets; every other class of the model
    is ignored in these images, so a class that real data sets annotate (EM
    mitochondria, cell boundaries) keeps learning from real images only.

    Args:
        n: how many images.
        class_names: the model's classes, in output order.
        seed: the first image's seed (image ``i`` uses ``seed + i``).
        taught: classes these images teach; each must be a class of the simulator.
        shape: image shape in pixels.
        pixel_size_nm: the model's pixel size.
        normalization: the model's percentile normalisation.
        name: prefix of the images' names in reports.

    Raises:
        InputError: a taught class the simulator does not draw.

    Example:
        >>> images = simulated_em_images(1, ["mitochondria", "nuclei"], 5, ["nuclei"],
        ...                              shape=(128, 128))
        >>> images[0].target.shape, int(images[0].target[0].min())  # mitochondria ignored
        ((2, 128, 128), 255)
    """
    from ..errors import InputError
    from ..simulation.em_cells import EM_CELL_CLASSES, simulate_em_cell

    unknown = sorted(set(taught) - set(EM_CELL_CLASSES))
    not_in_model = sorted(set(taught) - set(class_names))
    if not_in_model:
        raise InputError(f"simulated images would teach {', '.join(not_in_model)}, which the "
                         f"model lacks (its classes: {', '.join(class_names)})")
    if unknown:
        raise InputError(f"the EM cell simulator does not draw {', '.join(unknown)}; it draws "
                         f"{', '.join(EM_CELL_CLASSES)}")
    images = []
    for index in range(n):
        em = simulate_em_cell(seed + index, shape, pixel_size_nm)
        target = np.stack([(em.labels[c] > 0).astype(np.uint8) if c in taught
                           else np.full(shape, IGNORE, np.uint8) for c in class_names])
        images.append(TrainingImage(normalize_percentile(em.image, *normalization), target,
                                    f"{name}/{index:05d}", name))
    return images
