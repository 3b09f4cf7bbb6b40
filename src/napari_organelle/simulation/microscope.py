"""Image formation: from emission density to the counts a detector records.

The model, in the order light meets it:

1. **Optics.** The emission density (rendered on a grid finer than the
   camera's) is convolved with a Gaussian approximation of the in-focus PSF.
   Its width follows the modality: widefield ``sigma = 0.21 lambda / NA``
   (Zhang, Zerubia & Olivo-Marin, Appl. Opt. 2007), confocal narrower by a
   pinhole-dependent factor down to ``1/sqrt(2)``, SIM narrower by its
   resolution gain (~1.6-2x). Out-of-focus light is added as a broad haze (large
   in widefield, small in confocal/SIM) and a spatially varying defocus blur
   stands in for parts of the cell lying above or below the focal plane.
2. **Sampling.** Each camera pixel integrates (bins) the fine grid under it.
3. **Illumination and background.** Uneven excitation (vignetting and
   low-frequency roughness) multiplies the signal; a smooth background
   (medium, out-of-cell autofluorescence, stray light) is added; signal decays
   by photobleaching over the frames of a time-lapse.
4. **Detection.** Photon shot noise (Poisson), then the detector: a camera
   adds Gaussian read noise, gain and offset; a PMT multiplies each
   photoelectron by a random gain (excess noise); a photon-counting detector
   reports counts. Values are rounded and clipped to the bit depth and
   returned as uint16. SIM output is then "reconstructed" by a sharpening
   step that amplifies noise into SIM's typical texture, with faint residual
   stripes.

Brightness is set by ``peak_photons``: the expected photon count of the
brightest in-focus structure (as an operator sets exposure or laser power).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage as ndi

from ._random import Range, SeedLike, as_rng, smooth_noise
from .grid import bin_pixels

Modality = Literal["widefield", "confocal", "sim"]
Detector = Literal["camera", "pmt", "photon_counting"]
MODALITIES: tuple[Modality, ...] = ("widefield", "confocal", "sim")

#: Gaussian sigma of the widefield PSF in units of lambda / NA (paraxial fit to the Airy disc)
WIDEFIELD_SIGMA_PER_LAMBDA_NA = 0.21


def psf_sigma_nm(
    modality: Modality,
    emission_wavelength_nm: float,
    numerical_aperture: float,
    pinhole_airy_units: float = 1.0,
    sim_resolution_gain: float = 1.8,
) -> float:
    """Lateral standard deviation (nm) of the Gaussian that approximates the in-focus PSF.

    Args:
        modality: "widefield", "confocal" or "sim".
        emission_wavelength_nm: emission (detection) wavelength.
        numerical_aperture: objective NA.
        pinhole_airy_units: confocal pinhole diameter; 0 approaches the
            ideal-confocal ``1/sqrt(2)`` narrowing, large pinholes approach widefield.
        sim_resolution_gain: resolution improvement of SIM over widefield.

    Examples:
        >>> round(psf_sigma_nm("widefield", 520.0, 1.4), 1)
        78.0
    """
    widefield = WIDEFIELD_SIGMA_PER_LAMBDA_NA * emission_wavelength_nm / numerical_aperture
    if modality == "widefield":
        return widefield
    if modality == "confocal":
        p2 = pinhole_airy_units**2
        return widefield * float(np.sqrt(0.5 + 0.5 * p2 / (1.0 + p2)))
    if modality == "sim":
        return widefield / sim_resolution_gain
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def gaussian_psf(sigma_nm: float, pixel_size_nm: float, radius_sigmas: float = 4.0) -> np.ndarray:
    """A normalised 2-D Gaussian PSF kernel sampled at pixel centres (odd size)."""
    half = max(1, int(np.ceil(radius_sigmas * sigma_nm / pixel_size_nm)))
    r = np.arange(-half, half + 1) * pixel_size_nm
    profile = np.exp(-0.5 * (r / sigma_nm) ** 2)
    kernel = np.outer(profile, profile)
    return (kernel / kernel.sum()).astype(np.float32)


@dataclass(frozen=True)
class MicroscopeSettings:
    """Everything about one acquisition that shapes the image, in physical units.

    Attributes:
        modality: "widefield", "confocal" or "sim".
        numerical_aperture: objective NA.
        emission_wavelength_nm: centre of the emission band.
        pinhole_airy_units: confocal pinhole diameter (ignored otherwise).
        sim_resolution_gain: SIM resolution gain over widefield (ignored otherwise).
        out_of_focus_fraction: share of the light that arrives as broad haze
            from planes above and below focus.
        haze_sigma_nm: width of that haze.
        defocus_fraction: largest local share of signal blurred by defocus
            (varies smoothly over the field).
        peak_photons: expected photons at the brightest structure.
        background_fraction: background level relative to ``peak_photons``.
        illumination_falloff: relative drop of excitation from the optical
            axis to the field corner (vignetting).
        illumination_roughness: relative low-frequency unevenness of excitation.
        bleach_rate_per_frame: signal decays as ``exp(-rate * frame)``.
        detector: "camera" (sCMOS/CCD), "pmt" (analogue point detector) or
            "photon_counting" (hybrid detector in counting mode).
        gain_adu_per_electron: output units per detected photoelectron.
        offset_adu: value recorded for zero light.
        read_noise_electrons: Gaussian read noise (camera) or electronic noise (PMT).
        excess_noise_factor: variance multiplier of the PMT gain process (1 = none).
        bit_depth: digitiser depth; values saturate at ``2**bit_depth - 1``.
        hot_pixel_fraction: share of camera pixels with high dark current.
        sim_artifact_strength: strength of SIM reconstruction artefacts.
    """

    modality: Modality = "confocal"
    numerical_aperture: float = 1.4
    emission_wavelength_nm: float = 520.0
    pinhole_airy_units: float = 1.0
    sim_resolution_gain: float = 1.8
    out_of_focus_fraction: float = 0.03
    haze_sigma_nm: float = 1500.0
    defocus_fraction: float = 0.2
    peak_photons: float = 80.0
    background_fraction: float = 0.02
    illumination_falloff: float = 0.1
    illumination_roughness: float = 0.03
    bleach_rate_per_frame: float = 0.0
    detector: Detector = "pmt"
    gain_adu_per_electron: float = 20.0
    offset_adu: float = 20.0
    read_noise_electrons: float = 0.2
    excess_noise_factor: float = 1.4
    bit_depth: int = 12
    hot_pixel_fraction: float = 0.0
    sim_artifact_strength: float = 0.0

    #: ranges that :meth:`random` draws from, whatever the modality
    RANGES: ClassVar[dict[str, Range]] = {
        "emission_wavelength_nm": Range(450.0, 700.0),
        "haze_sigma_nm": Range(600.0, 3000.0, log=True),
        "defocus_fraction": Range(0.0, 0.6),
        "background_fraction": Range(0.002, 0.3, log=True),
        "illumination_falloff": Range(0.0, 0.5),
        "illumination_roughness": Range(0.0, 0.15),
        "bleach_rate_per_frame": Range(0.0, 0.05),
    }
    #: ranges that depend on the modality
    MODALITY_RANGES: ClassVar[dict[str, dict[str, Range]]] = {
        "widefield": {
            "numerical_aperture": Range(0.75, 1.45),
            "out_of_focus_fraction": Range(0.1, 0.6),
            "peak_photons": Range(20.0, 5000.0, log=True),
        },
        "confocal": {
            "numerical_aperture": Range(1.0, 1.45),
            "pinhole_airy_units": Range(0.5, 1.5),
            "out_of_focus_fraction": Range(0.0, 0.08),
            "peak_photons": Range(4.0, 400.0, log=True),
        },
        "sim": {
            "numerical_aperture": Range(1.2, 1.49),
            "sim_resolution_gain": Range(1.6, 2.0),
            "out_of_focus_fraction": Range(0.0, 0.1),
            "peak_photons": Range(50.0, 3000.0, log=True),
            "sim_artifact_strength": Range(0.0, 1.0),
        },
    }
    #: how often :meth:`random` picks each modality
    MODALITY_PROBABILITIES: ClassVar[dict[str, float]] = {
        "widefield": 0.35,
        "confocal": 0.45,
        "sim": 0.2,
    }

    @property
    def psf_sigma_nm(self) -> float:
        """Lateral sigma of the in-focus PSF."""
        return psf_sigma_nm(
            self.modality,
            self.emission_wavelength_nm,
            self.numerical_aperture,
            self.pinhole_airy_units,
            self.sim_resolution_gain,
        )

    @property
    def saturation_adu(self) -> int:
        return 2**self.bit_depth - 1

    def with_wavelength(self, emission_wavelength_nm: float) -> MicroscopeSettings:
        """The same microscope looking at a dye of another colour."""
        return replace(self, emission_wavelength_nm=float(emission_wavelength_nm))

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        modality: Modality | None = None,
        emission_wavelength_nm: float | None = None,
    ) -> MicroscopeSettings:
        """Settings drawn from wide, realistic ranges (see :attr:`RANGES`, :attr:`MODALITY_RANGES`).

        Detector parameters follow the modality: cameras for widefield and SIM,
        PMTs or photon counting for confocal. Gains are chosen so the
        brightest structure fills 15-110 % of the digitiser range, as an
        operator would set them (occasionally saturating).
        """
        if modality is None:
            names = list(cls.MODALITY_PROBABILITIES)
            modality = names[
                int(rng.choice(len(names), p=list(cls.MODALITY_PROBABILITIES.values())))
            ]
        values: dict = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        values.update({name: r.draw(rng) for name, r in cls.MODALITY_RANGES[modality].items()})
        if emission_wavelength_nm is not None:
            values["emission_wavelength_nm"] = float(emission_wavelength_nm)
        fill = rng.uniform(0.15, 1.1)
        peak = values["peak_photons"]
        if modality == "confocal":
            if rng.random() < 0.4:
                detector: Detector = "photon_counting"
                values.update(bit_depth=int(rng.choice([8, 12, 16])), gain_adu_per_electron=1.0,
                              offset_adu=0.0, read_noise_electrons=0.0, excess_noise_factor=1.0)
            else:
                detector = "pmt"
                bit_depth = int(rng.choice([8, 12, 16], p=[0.3, 0.5, 0.2]))
                values.update(
                    bit_depth=bit_depth,
                    gain_adu_per_electron=fill * (2**bit_depth - 1) / peak,
                    offset_adu=float(rng.uniform(0.0, 0.03) * (2**bit_depth - 1)),
                    read_noise_electrons=rng.uniform(0.0, 0.5),
                    excess_noise_factor=rng.uniform(1.1, 2.0),
                )
        else:
            detector = "camera"
            bit_depth = int(rng.choice([12, 16], p=[0.3, 0.7]))
            offset = float(rng.choice([0.0, 100.0, rng.uniform(50.0, 500.0)]))
            gain = float(np.exp(rng.uniform(np.log(0.2), np.log(4.0))))
            gain = min(gain, 1.1 * (2**bit_depth - 1 - offset) / peak)
            values.update(
                bit_depth=bit_depth,
                gain_adu_per_electron=gain,
                offset_adu=offset,
                read_noise_electrons=float(np.exp(rng.uniform(np.log(0.7), np.log(8.0)))),
                excess_noise_factor=1.0,
                hot_pixel_fraction=float(rng.uniform(0.0, 2e-4)),
            )
        return cls(modality=modality, detector=detector, **values)


class Microscope:
    """Images emission densities with fixed settings and fixed field-dependent quirks.

    The illumination pattern, background, defocus map and SIM stripes are
    drawn once per microscope, so frames of a time-lapse share them and differ
    only by noise, bleaching and whatever moved.

    Args:
        settings: optical and detector parameters.
        pixel_size_nm: camera pixel size in the sample plane.
        oversample: fine-grid pixels per camera pixel along each axis in the
            densities passed in.
        seed: random source for the fixed fields and the noise.
    """

    def __init__(
        self,
        settings: MicroscopeSettings,
        pixel_size_nm: float,
        oversample: int = 2,
        seed: SeedLike = None,
    ) -> None:
        if oversample < 1:
            raise ValueError("oversample must be at least 1")
        self.settings = settings
        self.pixel_size_nm = float(pixel_size_nm)
        self.oversample = int(oversample)
        self.rng = as_rng(seed)
        self._fields: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._reference: float | None = None

    # ------------------------------------------------------------------ optics

    def optics(self, density: np.ndarray) -> np.ndarray:
        """Noise-free image on the camera grid: PSF, haze, defocus, then pixel binning.

        Args:
            density: emission density (projected dye thickness) on the fine grid,
                shape divisible by ``oversample``; each value is the density at the
                fine pixel's centre.

        Returns:
            float32 image of shape ``density.shape // oversample`` in density units.
        """
        s = self.settings
        fine_px = self.pixel_size_nm / self.oversample
        # binning integrates over each camera pixel from its fine pixels; the area of one fine
        # pixel is integrated here, as the variance of a box of that width (width^2 / 12)
        sigma_nm = np.sqrt(s.psf_sigma_nm**2 + fine_px**2 / 12.0)
        focused = ndi.gaussian_filter(
            density.astype(np.float32, copy=False), sigma_nm / fine_px, mode="nearest"
        )
        image = bin_pixels(focused, self.oversample)
        px = self.pixel_size_nm
        weight = self._field(image.shape, "defocus")
        if s.defocus_fraction > 0:
            defocused = _blur(image, 2.5 * s.psf_sigma_nm / px)
            image = (1.0 - weight) * image + weight * defocused
        if s.out_of_focus_fraction > 0:
            haze = _blur(image, s.haze_sigma_nm / px)
            image = (1.0 - s.out_of_focus_fraction) * image + s.out_of_focus_fraction * haze
        return image.astype(np.float32)

    def expected_photons(
        self, optical: np.ndarray, frame: int = 0, reference: float | None = None
    ) -> np.ndarray:
        """Expected photons per pixel from a noise-free :meth:`optics` image.

        Args:
            optical: noise-free image from :meth:`optics`.
            frame: frame index in a time-lapse (for bleaching).
            reference: optical value that gets ``peak_photons``, as the
                operator sets exposure for the labelled structure. By default
                the brightest pixel of the first image seen; once set it is
                kept, so later frames show bleaching.
        """
        s = self.settings
        if reference is not None:
            self._reference = float(reference)
        if self._reference is None:
            peak = float(optical.max())
            self._reference = peak if peak > 0 else 1.0
        fields = self._fields_for(optical.shape)
        signal = optical * (s.peak_photons / self._reference) * fields["illumination"]
        signal *= np.exp(-s.bleach_rate_per_frame * frame)
        background = s.background_fraction * s.peak_photons * fields["background"]
        if s.modality == "sim" and s.sim_artifact_strength > 0:
            signal *= fields["stripes"]
        return (signal + background).astype(np.float32)

    # ------------------------------------------------------------------ detection

    def detect(self, photons: np.ndarray) -> np.ndarray:
        """Shot noise and detector response: uint16 counts from expected photons."""
        s, rng = self.settings, self.rng
        photons = np.clip(photons, 0.0, None)
        electrons = rng.poisson(photons).astype(np.float64)
        if s.detector == "camera":
            if s.hot_pixel_fraction > 0:
                hot = rng.random(photons.shape) < s.hot_pixel_fraction
                electrons[hot] += rng.exponential(
                    50.0 * (1.0 + s.peak_photons / 100.0), int(hot.sum())
                )
            signal = s.gain_adu_per_electron * (
                electrons + rng.normal(0.0, s.read_noise_electrons, photons.shape)
            )
        elif s.detector == "pmt":
            # each photoelectron is multiplied by a random gain with variance (F - 1) * mean^2
            k = 1.0 / max(s.excess_noise_factor - 1.0, 1e-6)
            signal = rng.gamma(electrons * k, s.gain_adu_per_electron / k)
            signal += s.gain_adu_per_electron * rng.normal(
                0.0, s.read_noise_electrons, photons.shape
            )
        elif s.detector == "photon_counting":
            signal = s.gain_adu_per_electron * electrons
        else:
            raise ValueError(f"unknown detector {s.detector!r}")
        if s.modality == "sim" and s.sim_artifact_strength > 0:
            signal = _sim_reconstruction(
                signal, s.sim_artifact_strength, s.psf_sigma_nm / self.pixel_size_nm
            )
        counts = np.rint(signal + s.offset_adu)
        return np.clip(counts, 0, s.saturation_adu).astype(np.uint16)

    def acquire(
        self, density: np.ndarray, frame: int = 0, crop: tuple[slice, slice] | None = None
    ) -> np.ndarray:
        """Optics, then ``crop`` (to cut the margin off a world-grid image), then detection."""
        optical = self.optics(density)
        if crop is not None:
            optical = optical[crop]
        return self.detect(self.expected_photons(optical, frame))

    def time_series(
        self, density: np.ndarray, n_frames: int, crop: tuple[slice, slice] | None = None
    ) -> np.ndarray:
        """``n_frames`` acquisitions of a static specimen: shared optics, bleaching, fresh noise.

        Returns:
            uint16 array (T, Y, X).
        """
        optical = self.optics(density)
        if crop is not None:
            optical = optical[crop]
        return np.stack(
            [self.detect(self.expected_photons(optical, frame)) for frame in range(n_frames)]
        )

    # ------------------------------------------------------------------ fixed fields

    def _fields_for(self, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        return {
            name: self._field(shape, name) for name in ("illumination", "background", "stripes")
        }

    def _field(self, shape: tuple[int, int], name: str) -> np.ndarray:
        shape = tuple(int(n) for n in shape)
        fields = self._fields.setdefault(shape, {})
        if name not in fields:
            fields[name] = self._make_field(shape, name)
        return fields[name]

    def _make_field(self, shape: tuple[int, int], name: str) -> np.ndarray:
        s, rng = self.settings, self.rng
        size = max(shape)
        if name == "illumination":
            # vignetting around an optical axis that need not be centred on the crop
            axis = np.array(shape) * rng.uniform(0.2, 0.8, 2)
            y, x = np.ogrid[: shape[0], : shape[1]]
            r2 = ((y - axis[0]) ** 2 + (x - axis[1]) ** 2) / (0.5 * size**2)
            field = (1.0 - s.illumination_falloff * np.clip(r2, 0.0, 1.0)).astype(np.float32)
            field *= 1.0 + s.illumination_roughness * smooth_noise(rng, shape, 0.25 * size)
            return np.clip(field, 0.05, None)
        if name == "background":
            return np.clip(
                1.0 + 0.3 * smooth_noise(rng, shape, 0.3 * size), 0.1, None
            ).astype(np.float32)
        if name == "defocus":
            weight = 0.5 + 0.5 * np.tanh(
                smooth_noise(rng, shape, 0.15 * size) + rng.normal(0.0, 0.5)
            )
            return (s.defocus_fraction * weight).astype(np.float32)
        if name == "stripes":
            # residue of the three illumination orientations at the pattern period lambda / (2 NA)
            period_px = s.emission_wavelength_nm / (2.0 * s.numerical_aperture) / self.pixel_size_nm
            y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
            pattern = np.zeros(shape, dtype=np.float32)
            for angle in rng.uniform(0, np.pi / 3) + np.arange(3) * np.pi / 3:
                phase = rng.uniform(0, 2 * np.pi)
                pattern += np.cos(
                    2 * np.pi * (y * np.sin(angle) + x * np.cos(angle)) / max(period_px, 2.1)
                    + phase
                )
            # strong enough to leave the narrow spectral peak real (i)SIM frames show (3-6x)
            return (1.0 + 0.12 * s.sim_artifact_strength * pattern).astype(np.float32)
        raise KeyError(name)


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a shrunken copy (the result is smooth anyway)."""
    if sigma_px <= 8.0:
        return ndi.gaussian_filter(image, sigma_px, mode="nearest")
    factor = int(sigma_px // 4)
    small = ndi.zoom(image, 1.0 / factor, order=1, grid_mode=True, mode="nearest")
    small = ndi.gaussian_filter(small, sigma_px / factor, mode="nearest")
    zoom = (image.shape[0] / small.shape[0], image.shape[1] / small.shape[1])
    big = ndi.zoom(small, zoom, order=1, grid_mode=True, mode="nearest")[
        : image.shape[0], : image.shape[1]
    ]
    missing = ((0, image.shape[0] - big.shape[0]), (0, image.shape[1] - big.shape[1]))
    return np.pad(big, missing, mode="edge")


def _sim_reconstruction(signal: np.ndarray, strength: float, psf_sigma_px: float) -> np.ndarray:
    """Mimic SIM reconstruction: high-frequency boost (ringing, amplified noise), negative
    values clipped."""
    sigma = max(psf_sigma_px, 0.7)
    low = ndi.gaussian_filter(signal, 1.5 * sigma, mode="nearest")
    sharpened = signal + 0.6 * strength * (signal - low)
    # reconstruction smooths the very highest frequencies (apodisation)
    return np.clip(ndi.gaussian_filter(sharpened, 0.5 * sigma, mode="nearest"), 0.0, None)

