"""Classical segmentation baselines: what a thresholding macro would give.

Every accuracy figure of a learned model means little without the figure a
biologist gets from Fiji in five minutes, so the benchmarks score these methods
with the same code and on the same images as the models
(:func:`napari_organelle.evaluation.evaluate_dataset`). Their settings are
fixed here, once, from the usual textbook choices; they are never tuned on a
test image.

Methods (each a light Gaussian smoothing first, sigma 1 pixel):

- ``otsu``: one global Otsu threshold.
- ``local``: a local mean threshold (``skimage.filters.threshold_local``,
  blocks of 51 pixels), for uneven backgrounds.
- ``sato`` and ``frangi``: a ridge filter (sigmas 1-3 pixels) then Otsu on its
  response, for tubules and membranes (ER, cell boundaries).
- ``otsu-watershed``: Otsu, then touching objects split by the same
  distance-transform watershed the models' post-processing uses (the classic
  nuclei macro).

Polarity is part of the method's input: organelles are dark in EM
(``dark=True``) and bright in fluorescence. Instance classes become connected
components after a small opening and removal of objects under ``min_size``
pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

#: Names of the methods :func:`classical_segment` knows.
METHODS = ("otsu", "local", "sato", "frangi", "otsu-watershed")

#: ``predict(image, pixel_size_nm) -> {class: labels}``, as evaluation expects.
Predictor = Callable[[np.ndarray, "float | None"], Mapping[str, np.ndarray]]


def classical_segment(image: np.ndarray, method: str, *, dark: bool = False,
                      instance: bool = False, min_size: int = 20) -> np.ndarray:
    """Segment one 2-D image with a classical method.

    Args:
        image: a 2-D grey image (any numeric dtype; NaNs are not allowed).
        method: one of :data:`METHODS`.
        dark: the structures are darker than their surroundings (EM).
        instance: return labelled objects (uint32) instead of a 0/1 mask.
        min_size: objects smaller than this (pixels) are dropped (instances only).

    Returns:
        A uint8 0/1 mask, or uint32 object labels when ``instance``.

    Raises:
        ValueError: for an unknown method or an image that is not 2-D.

    Examples:
        >>> image = np.zeros((64, 64)); image[10:20, 10:20] = 1.0; image[40:50, 30:45] = 1.0
        >>> labels = classical_segment(image, "otsu", instance=True)
        >>> int(labels.max()), labels.dtype.name
        (2, 'uint32')
        >>> mask = classical_segment(1.0 - image, "otsu", dark=True)
        >>> int(mask[15, 15]), int(mask[0, 0])
        (1, 0)
    """
    from skimage import filters

    if method not in METHODS:
        raise ValueError(f"unknown classical method {method!r}; known: {', '.join(METHODS)}")
    if image.ndim != 2:
        raise ValueError(f"classical baselines take 2-D images, not {image.shape}")
    values = filters.gaussian(image.astype(np.float32), sigma=1.0, preserve_range=True)
    if dark and method not in ("sato", "frangi"):
        values = -values  # every method below looks for bright structures
    if method in ("otsu", "otsu-watershed"):
        mask = values > filters.threshold_otsu(values)
    elif method == "local":
        mask = values > filters.threshold_local(values, block_size=51, method="mean")
    else:
        ridge = filters.sato if method == "sato" else filters.frangi
        response = ridge(values, sigmas=(1, 2, 3), black_ridges=dark)
        mask = response > filters.threshold_otsu(response)
    if not instance:
        return mask.astype(np.uint8)
    return _objects(mask, min_size, split=method == "otsu-watershed")


def classical_predictor(method: str, classes: Mapping[str, str], *, dark: bool,
                        min_size: int = 20) -> Predictor:
    """A predictor for :func:`~napari_organelle.evaluation.evaluate_dataset` running a method.

    Args:
        method: one of :data:`METHODS`.
        classes: class name -> ``"instance"`` or ``"semantic"``; every class
            gets the same segmentation (a threshold knows no organelles).
        dark: structures are dark (EM).
        min_size: smallest object kept, in pixels.

    Examples:
        >>> predict = classical_predictor("otsu", {"nuclei": "instance"}, dark=False)
        >>> image = np.zeros((32, 32)); image[8:24, 8:24] = 5.0
        >>> int(predict(image, None)["nuclei"].max())
        1
    """

    def predict(image: np.ndarray, pixel_size_nm: float | None) -> dict[str, np.ndarray]:
        plane = np.asarray(image)
        if plane.ndim == 3 and plane.shape[-1] in (3, 4):
            plane = plane[..., :3].mean(axis=-1)
        return {name: classical_segment(plane, method, dark=dark, instance=kind == "instance",
                                        min_size=min_size)
                for name, kind in classes.items()}

    return predict


def _objects(mask: np.ndarray, min_size: int, *, split: bool) -> np.ndarray:
    from scipy import ndimage as ndi

    from .postprocess import label_instances

    opened = ndi.binary_opening(mask, structure=np.ones((3, 3), bool))
    return label_instances(opened, min_size=min_size, split_touching=split).astype(np.uint32)
