"""What happens to a fluorescence image between the detector and the user's disk.

Real live-cell images that reach a segmentation tool have rarely been left as
the detector recorded them. Many were exported to 8 bits with the display
range set by eye (so the brightest structures clip at 255), many went through
JPEG on the way to a paper, a repository or a lab chat, and SIM, deconvolved
or denoised images are far smoother than raw counts. A model that never saw
such images reads their flat clipped plateaus, block edges and missing noise
as structure. :class:`AcquisitionArtifacts` draws these steps at random and
:func:`apply_artifacts` applies them to a simulated image.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = rng.gamma(2.0, 50.0, (64, 64)).astype(np.float32)
    >>> steps = AcquisitionArtifacts(smoothing_px=1.0, saturated_fraction=0.02,
    ...                              eight_bit=True, jpeg_quality=70)
    >>> out = apply_artifacts(image, steps)
    >>> out.dtype, out.shape, float(out.max())
    (dtype('float32'), (64, 64), 255.0)
    >>> bool((out == 255).mean() >= 0.01)
    True
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._random import Range

#: how much of a simulated image :meth:`AcquisitionArtifacts.random` clips at white
SATURATED_FRACTION_RANGE = Range(0.0005, 0.05, log=True)
#: JPEG qualities seen on exported images
JPEG_QUALITY_RANGE = Range(35.0, 95.0)
#: smoothing of denoised, deconvolved or reconstructed images, pixels
SMOOTHING_RANGE = Range(0.5, 1.6)


@dataclass(frozen=True)
class AcquisitionArtifacts:
    """The processing one image went through after detection.

    Attributes:
        smoothing_px: Gaussian smoothing of a denoised or reconstructed image
            (0 = raw counts).
        eight_bit: exported to 8 bits, display range from the darkest pixels to
            the level that clips ``saturated_fraction`` of the image.
        saturated_fraction: share of pixels clipped at white (8-bit export only).
        jpeg_quality: JPEG quality the 8-bit image was saved at (0 = not JPEG).
    """

    smoothing_px: float = 0.0
    eight_bit: bool = False
    saturated_fraction: float = 0.0
    jpeg_quality: int = 0

    @classmethod
    def random(cls, rng: np.random.Generator, *, denoise_probability: float = 0.25,
               eight_bit_probability: float = 0.35,
               jpeg_probability: float = 0.5,
               saturated_fraction: Range = SATURATED_FRACTION_RANGE) -> AcquisitionArtifacts:
        """Draw a processing history; ``jpeg_probability`` is among 8-bit images."""
        smoothing = SMOOTHING_RANGE.draw(rng) if rng.random() < denoise_probability else 0.0
        eight_bit = bool(rng.random() < eight_bit_probability)
        saturated = saturated_fraction.draw(rng) if eight_bit else 0.0
        quality = (int(round(JPEG_QUALITY_RANGE.draw(rng)))
                   if eight_bit and rng.random() < jpeg_probability else 0)
        return cls(smoothing, eight_bit, saturated, quality)

    @property
    def any(self) -> bool:
        """Whether this history changes the image at all."""
        return self.smoothing_px > 0 or self.eight_bit


def apply_artifacts(image: np.ndarray, steps: AcquisitionArtifacts) -> np.ndarray:
    """Apply ``steps`` to a detector image; float32 out (0-255 after an 8-bit export).

    Args:
        image: 2-D detector image (any numeric dtype).
        steps: what to do to it.

    Returns:
        float32 image of the same shape.
    """
    out = np.asarray(image, dtype=np.float32)
    if steps.smoothing_px > 0:
        out = ndi.gaussian_filter(out, steps.smoothing_px, mode="reflect")
    if steps.eight_bit:
        out = to_eight_bit(out, steps.saturated_fraction).astype(np.float32)
        if steps.jpeg_quality:
            out = jpeg_roundtrip(out.astype(np.uint8), steps.jpeg_quality).astype(np.float32)
    return out


def to_eight_bit(image: np.ndarray, saturated_fraction: float) -> np.ndarray:
    """Export to uint8 as a display range set by eye would: the bright end clips.

    The black level is the 0.5th percentile (real exports keep a little
    offset); white is the level above which ``saturated_fraction`` of the
    pixels lie.

    Example:
        >>> import numpy as np
        >>> ramp = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(100, 100)
        >>> out = to_eight_bit(ramp, 0.1)
        >>> out.dtype.name, round(float((out == 255).mean()), 2)
        ('uint8', 0.1)
    """
    values = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(values, [0.5, 100.0 * (1.0 - float(saturated_fraction))])
    if high <= low:
        high = low + 1.0
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Save a uint8 image as a greyscale JPEG at ``quality`` and read it back.

    Example:
        >>> import numpy as np
        >>> flat = np.full((16, 16), 100, np.uint8)
        >>> int(jpeg_roundtrip(flat, 50)[8, 8])
        100
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(
        buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L"), dtype=np.uint8)
