"""Batch augmentation on tensors: what varies between microscopes and samples.

Geometry (scale jitter for pixel-size differences, any rotation, flips, and an
optional smooth elastic warp) is one resampling per batch with ``grid_sample``,
so it costs the same on a CPU or a GPU. Intensity changes mimic staining,
exposure, detector noise and focus: contrast, brightness, gamma, Gaussian
noise, blur.

What differs between EM labs goes further than that, and each of the following
is off by default (probability 0) so older recipes train exactly as before:

- a random monotone intensity curve (staining and detector response are not
  linear, and differ between labs more than by a gamma),
- local contrast changes (unsharp masking or its inverse: CLAHE'd and
  unprocessed images both occur),
- uneven illumination (a smooth multiplicative field),
- scan-line offsets and defocus (SEM charging and focus drift),
- correlated (blurred) noise as well as white noise,
- empty resin: a smooth blob of flat, noisy intensity whose pixels become
  background, since cultured cells sit in resin that must never be called an
  organelle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import IGNORE, TrainingImage


@dataclass
class AugmentSettings:
    """Ranges of each augmentation; a probability of 0 turns one off."""

    scale: tuple[float, float] = (0.75, 1.33)
    rotate: bool = True
    flip: bool = True
    contrast: tuple[float, float] = (0.6, 1.5)
    brightness: float = 0.2
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_probability: float = 0.3
    noise_sigma: tuple[float, float] = (0.0, 0.08)
    noise_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    blur_probability: float = 0.25
    invert_probability: float = 0.0
    elastic_probability: float = 0.0
    elastic_strength: float = 0.04
    curve_probability: float = 0.0
    local_contrast_probability: float = 0.0
    local_contrast: tuple[float, float] = (-0.5, 1.0)
    illumination_probability: float = 0.0
    illumination_strength: float = 0.3
    scanline_probability: float = 0.0
    correlated_noise_probability: float = 0.0
    resin_probability: float = 0.0


def sample_batch(
    images: Sequence[TrainingImage],
    batch_size: int,
    crop: int,
    rng: np.random.Generator,
    settings: AugmentSettings,
    focus: Sequence[int] = (),
    focus_share: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmented crops: ``(B, 1, crop, crop)`` images and ``(B, K, crop, crop)`` targets.

    Images are drawn with probability proportional to ``weight x area``, so big
    images and favoured sets are seen more often. With ``focus`` classes (output
    indices), a ``focus_share`` of the crops is centred on a pixel of one of them
    (a class drawn at random among those the image has), from the images that
    have any: a class covering 0.5 % of the pixels is then in most batches.
    """
    weights = np.array([item.weight * item.image.size for item in images], dtype=np.float64)
    picks = rng.choice(len(images), size=batch_size, p=weights / weights.sum())
    focused = [i for i, item in enumerate(images)
               if any(len(item.class_pixels(k)) for k in focus)] if focus_share > 0 else []
    # Cut a window big enough that any rotation and zoom-out stays inside it.
    window = int(math.ceil(crop * math.sqrt(2) * settings.scale[1])) + 2
    image_windows, target_windows = [], []
    for index in picks:
        centres = None
        if focused and rng.random() < focus_share:
            index = focused[rng.choice(len(focused), p=weights[focused] / weights[focused].sum())]
            present = [k for k in focus if len(images[index].class_pixels(k))]
            centres = images[index].class_pixels(present[rng.integers(0, len(present))])
        item = images[index]
        image, target = _window(item.image, item.target, window, rng,
                                item.annotated_pixels() if centres is None else centres)
        image_windows.append(image)
        target_windows.append(target)
    image_batch = torch.from_numpy(np.stack(image_windows)[:, None])
    target_batch = torch.from_numpy(np.stack(target_windows))
    image_batch, target_batch = _affine(image_batch, target_batch, crop, window, rng, settings)
    image_batch = _intensity(image_batch, rng, settings)
    if settings.resin_probability > 0:
        image_batch, target_batch = _resin(image_batch, target_batch, rng, settings)
    return image_batch, target_batch


def _window(image: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator,
            annotated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape
    # Centre the window on an annotated pixel: a set annotated in one cell
    # (em-hela-sbfsem-mito) or in reviewed boxes would otherwise spend many crops on
    # pixels that give no loss.
    if annotated is not None and len(annotated):
        cy, cx = divmod(int(annotated[rng.integers(0, len(annotated))]), width)
    else:
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y, x = cy - size // 2, cx - size // 2
    pad = ((max(0, -y), max(0, y + size - height)), (max(0, -x), max(0, x + size - width)))
    ys, xs = slice(max(0, y), min(height, y + size)), slice(max(0, x), min(width, x + size))
    image_part, target_part = image[ys, xs], target[:, ys, xs]
    if any(p for pair in pad for p in pair):
        image_part = np.pad(image_part, pad,
                            mode="reflect" if min(image.shape) > size else "symmetric")
        # Reflected context is fine for the input, but it is not annotated data.
        target_part = np.pad(target_part, ((0, 0), *pad), mode="constant", constant_values=IGNORE)
    return image_part, target_part


def _affine(images: torch.Tensor, targets: torch.Tensor, crop: int, window: int,
            rng: np.random.Generator,
            settings: AugmentSettings) -> tuple[torch.Tensor, torch.Tensor]:
    batch = images.shape[0]
    thetas = []
    for _ in range(batch):
        scale = math.exp(rng.uniform(math.log(settings.scale[0]), math.log(settings.scale[1])))
        angle = rng.uniform(0, 2 * math.pi) if settings.rotate else 0.0
        flip = -1.0 if settings.flip and rng.random() < 0.5 else 1.0
        zoom = scale * crop / window  # output spans crop*scale input pixels
        cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
        thetas.append([[cos * flip, -sin, 0.0], [sin * flip, cos, 0.0]])
    theta = torch.tensor(thetas, dtype=torch.float32)
    grid = F.affine_grid(theta, [batch, 1, crop, crop], align_corners=False)
    if settings.elastic_probability > 0:
        grid = _elastic(grid, rng, settings, crop / window)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    targets = F.grid_sample(targets.float(), grid, mode="nearest", padding_mode="zeros",
                            align_corners=False).to(torch.uint8)
    return images, targets


def _intensity(images: torch.Tensor, rng: np.random.Generator, settings: AugmentSettings
               ) -> torch.Tensor:
    out = []
    for image in images:
        mean = image.mean()
        image = (image - mean) * rng.uniform(*settings.contrast) + mean
        image = image + rng.uniform(-settings.brightness, settings.brightness)
        if rng.random() < settings.gamma_probability:
            low, high = image.min(), image.max()
            span = (high - low).clamp_min(1e-6)
            image = ((image - low) / span) ** rng.uniform(*settings.gamma) * span + low
        if rng.random() < settings.curve_probability:
            image = _random_curve(image, rng)
        if rng.random() < settings.invert_probability:
            image = 1.0 - image
        if rng.random() < settings.local_contrast_probability:
            # amount < 0 flattens local contrast, > 0 sharpens it (CLAHE-like look).
            amount = rng.uniform(*settings.local_contrast)
            image = image + amount * (image - _blur(image, rng.uniform(8.0, 32.0)))
        if rng.random() < settings.illumination_probability:
            image = image * _smooth_field(image.shape[-2:], rng, settings.illumination_strength)
        if rng.random() < settings.blur_probability:
            image = _blur(image, rng.uniform(*settings.blur_sigma))
        if rng.random() < settings.scanline_probability:
            rows = torch.from_numpy(rng.normal(0, rng.uniform(0.01, 0.06), image.shape[-2]))
            image = image + rows.float().view(1, -1, 1)
        if rng.random() < settings.noise_probability:
            image = image + torch.randn_like(image) * rng.uniform(*settings.noise_sigma)
        if rng.random() < settings.correlated_noise_probability:
            noise = _blur(torch.randn_like(image), rng.uniform(0.7, 2.0))
            image = image + noise / noise.std().clamp_min(1e-6) * rng.uniform(0.02, 0.1)
        out.append(image)
    return torch.stack(out)


def _random_curve(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random monotone, piecewise-linear intensity curve over the crop's 1-99 % range."""
    low, high = torch.quantile(image.flatten()[::7], torch.tensor([0.01, 0.99]))
    span = float((high - low).clamp_min(1e-6))
    knots = np.linspace(0.0, 1.0, 6)
    values = np.sort(rng.uniform(0.0, 1.0, 6))
    values = 0.5 * values + 0.5 * knots  # keep it monotone and not too far from identity
    values = (values - values[0]) / max(values[-1] - values[0], 1e-6)
    unit = ((image - low) / span).clamp(0.0, 1.0)
    index = (unit * 5).clamp(max=4.999)
    lower = index.floor().long()
    weight = index - lower
    table = torch.from_numpy(values.astype(np.float32))
    mapped = table[lower] * (1 - weight) + table[lower + 1] * weight
    # Outside the 1-99 % range keep the original offsets, so the tails stay monotone too.
    return mapped * span + low + (image - low - unit * span)


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, strength: float
                  ) -> torch.Tensor:
    """A smooth positive field with mean about 1 (illumination, resin blobs)."""
    coarse = torch.from_numpy(rng.normal(0, 1, (1, 1, 4, 4)).astype(np.float32))
    field = F.interpolate(coarse, size=tuple(shape), mode="bicubic", align_corners=False)[0]
    field = field / field.abs().max().clamp_min(1e-6)
    return 1.0 + strength * rng.uniform(0.3, 1.0) * field


def _elastic(grid: torch.Tensor, rng: np.random.Generator, settings: AugmentSettings,
             zoom: float) -> torch.Tensor:
    """Add a smooth random displacement to a sampling grid (in place of a true elastic model)."""
    batch, height, width, _ = grid.shape
    for index in range(batch):
        if rng.random() >= settings.elastic_probability:
            continue
        coarse = torch.from_numpy(rng.normal(0, 1, (1, 2, 5, 5)).astype(np.float32))
        shift = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        grid[index] += (settings.elastic_strength * zoom * shift[0]).permute(1, 2, 0)
    return grid


def _resin(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator,
           settings: AugmentSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint a flat, noisy blob of "empty resin" into some crops; it is background in every
    class."""
    for index in range(images.shape[0]):
        if rng.random() >= settings.resin_probability:
            continue
        shape = images.shape[-2:]
        field = _smooth_field(shape, rng, 1.0)[0] - 1.0
        blob = field > rng.uniform(0.2, 0.6) * float(field.max())
        if not bool(blob.any()):
            continue
        image = images[index, 0]
        level = float(torch.quantile(image.flatten()[::11], float(rng.choice([0.02, 0.98]))))
        noise = torch.randn(shape) * rng.uniform(0.01, 0.05)
        image[blob] = (level + noise)[blob]
        targets[index][:, blob] = 0
    return images, targets


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    # Reflect padding needs the radius under the crop's size (wide blurs on small crops).
    radius = max(1, min(int(math.ceil(3 * sigma)), min(image.shape[-2:]) - 1))
    axis = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (axis / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return blurred[0]
