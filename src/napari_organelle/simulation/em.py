"""A synthetic electron-microscopy look-alike: neuropil-style profiles, mitochondria, vesicles.

Not a physical model of electron scattering; a careful imitation of what a
heavy-metal-stained TEM/FIB-SEM section looks like at ~5 nm per pixel, with
known labels: pale cell profiles separated by dark plasma membranes,
mitochondria with a dark matrix, double envelope and cristae, clusters of
synaptic-like vesicles next to a membrane thickening, granular cytoplasm,
blur and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_label

from ._random import SeedLike, as_rng, smooth_noise
from .cells import label_edges


@dataclass
class SimulatedEM:
    """A synthetic EM image and its labels.

    Attributes:
        image: uint8 (Y, X), membranes dark on a pale background.
        labels: ``"mitochondria"`` (int32 instances), ``"cell_boundary"``
            (uint8 0/1 plasma membranes) and ``"vesicles"`` (int32 instances).
        pixel_size_nm: pixel size.
    """

    image: np.ndarray
    labels: dict[str, np.ndarray]
    pixel_size_nm: float


def simulate_em(
    seed: SeedLike = 0, shape: tuple[int, int] = (512, 512), pixel_size_nm: float = 5.0
) -> SimulatedEM:
    """Simulate an EM-like section of neuropil.

    Args:
        seed: integer seed or generator.
        shape: image shape (Y, X).
        pixel_size_nm: pixel size; geometry is in nm, so other sizes give
            the same tissue seen at another magnification.
    """
    rng = as_rng(seed)
    px = float(pixel_size_nm)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32) * px

    profiles = _profiles(rng, shape, px, yy, xx)
    membrane_distance = ndi.distance_transform_edt(~label_edges(profiles)) * px
    membrane_halfwidth = rng.uniform(5.0, 8.0)
    membranes = membrane_distance <= membrane_halfwidth
    inside_distance = ndi.distance_transform_edt(~membranes) * px

    # electron density: 0 = pale (unstained), 1 = black
    density = 0.12 + 0.05 * smooth_noise(rng, shape, 60.0 / px)
    density += 0.06 * smooth_noise(rng, shape, 1.2)  # ribosomes and cytoskeleton grain
    density += 0.75 * np.exp(-0.5 * (membrane_distance / membrane_halfwidth) ** 2)

    mitochondria = np.zeros(shape, dtype=np.int32)
    vesicles = np.zeros(shape, dtype=np.int32)
    for profile_id in range(1, profiles.max() + 1):
        region = profiles == profile_id
        if not region.any():
            continue
        if rng.random() < 0.35:
            _add_mitochondrion(rng, region, inside_distance, px, yy, xx, density, mitochondria)
        if rng.random() < 0.25:
            _add_vesicle_cluster(
                rng,
                region,
                membrane_distance,
                inside_distance,
                px,
                yy,
                xx,
                density,
                vesicles,
                mitochondria,
            )

    if mitochondria.max() == 0:
        # every field of neuropil shows some mitochondria: try the roomiest profiles
        sizes = np.bincount(profiles.ravel())
        for profile_id in np.argsort(sizes)[::-1][:5]:
            if profile_id > 0:
                _add_mitochondrion(
                    rng, profiles == profile_id, inside_distance, px, yy, xx, density, mitochondria
                )
            if mitochondria.max() > 0:
                break

    # section thickness and beam blur, then detector noise and uneven illumination
    image = ndi.gaussian_filter(density, rng.uniform(0.6, 1.2) * 5.0 / px)
    image = image + rng.uniform(0.03, 0.06) * rng.standard_normal(shape).astype(np.float32)
    image = image * (1.0 + 0.08 * smooth_noise(rng, shape, 0.3 * max(shape)))
    brightness = 1.0 - image
    low, high = np.percentile(brightness, [0.5, 99.5])
    scaled = (brightness - low) / max(high - low, 1e-6)
    image8 = np.clip(rng.uniform(10, 40) + scaled * rng.uniform(180, 230), 0, 255).astype(np.uint8)

    return SimulatedEM(
        image=image8,
        labels={
            "mitochondria": connected_label(mitochondria, background=0).astype(np.int32),
            "cell_boundary": membranes.astype(np.uint8),
            "vesicles": vesicles,
        },
        pixel_size_nm=px,
    )


def _profiles(
    rng: np.random.Generator, shape: tuple[int, int], px: float, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Cell profiles: a power diagram of random seeds seen through a smooth warp, so borders
    curve."""
    area = shape[0] * shape[1] * px**2
    mean_diameter = rng.uniform(300.0, 700.0)
    n = max(4, int(area / mean_diameter**2))
    seeds = rng.uniform(0, 1, (n, 2)) * np.array(shape) * px
    weights = (mean_diameter * rng.uniform(0.0, 0.6, n)) ** 2
    warp = 0.25 * mean_diameter
    wy = yy + warp * smooth_noise(rng, shape, 0.4 * mean_diameter / px)
    wx = xx + warp * smooth_noise(rng, shape, 0.4 * mean_diameter / px)
    best = np.full(shape, np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for i, ((sy, sx), w) in enumerate(zip(seeds, weights), start=1):
        power = (wy - sy) ** 2 + (wx - sx) ** 2 - w
        closer = power < best
        labels[closer] = i
        best = np.minimum(best, power)
    # warped cells can fall apart; give every piece its own label
    return connected_label(labels, background=0, connectivity=1)


def _add_mitochondrion(
    rng: np.random.Generator,
    region: np.ndarray,
    inside_distance: np.ndarray,
    px: float,
    yy: np.ndarray,
    xx: np.ndarray,
    density: np.ndarray,
    mitochondria: np.ndarray,
) -> None:
    """An elongated mitochondrion with double envelope and transverse cristae, if one fits."""
    width = rng.uniform(70.0, 200.0)  # semi-minor axis
    length = width * rng.uniform(1.2, 3.5)
    room = region & (inside_distance > width + 15.0)
    candidates = np.flatnonzero(room)
    if candidates.size == 0:
        return
    center_index = rng.choice(candidates)
    cy, cx = yy.ravel()[center_index], xx.ravel()[center_index]
    angle = rng.uniform(0, np.pi)
    u = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    v = -(yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    level = np.sqrt((u / length) ** 2 + (v / width) ** 2)
    body = (level <= 1.0) & region
    # shorten until the mitochondrion sits wholly inside its profile, away from the membrane
    while (body & (inside_distance < 10.0)).any() and length > width:
        length *= 0.85
        level = np.sqrt((u / length) ** 2 + (v / width) ** 2)
        body = (level <= 1.0) & region
    if not body.any() or (body & (inside_distance < 10.0)).any():
        return
    if (mitochondria[body] > 0).any():
        return
    mitochondria[body] = mitochondria.max() + 1
    # distance inward from the outline, approximately, in nm
    depth = (1.0 - level) * width
    envelope = (
        np.exp(-0.5 * ((depth - 4.0) / 3.0) ** 2) + np.exp(-0.5 * ((depth - 14.0) / 3.0) ** 2)
    )
    matrix = 0.25 + 0.05 * rng.standard_normal()
    # transverse cristae from the inner membrane, each with its own length and side
    spacing = rng.uniform(35.0, 70.0)
    wobble = 8.0 * np.sin(2 * np.pi * v / rng.uniform(80.0, 200.0) + rng.uniform(0, 2 * np.pi))
    shifted = u + wobble + rng.uniform(0, spacing)
    index = np.floor(shifted / spacing).astype(np.int64) % 64
    phase = shifted - (np.floor(shifted / spacing) + 0.5) * spacing
    half_length = width * rng.uniform(0.3, 0.9, 64)
    offset = (width - half_length) * rng.choice([-1.0, 0.0, 1.0], 64)
    cristae = np.exp(-0.5 * (phase / rng.uniform(3.0, 5.0)) ** 2) * (
        np.abs(v - offset[index]) < half_length[index]
    )
    inner = body & (depth > 14.0)
    density[body] += matrix + 0.6 * envelope[body]
    density[inner] += 0.45 * cristae[inner]


def _add_vesicle_cluster(
    rng: np.random.Generator,
    region: np.ndarray,
    membrane_distance: np.ndarray,
    inside_distance: np.ndarray,
    px: float,
    yy: np.ndarray,
    xx: np.ndarray,
    density: np.ndarray,
    vesicles: np.ndarray,
    mitochondria: np.ndarray,
) -> None:
    """Synaptic-like vesicles gathered next to a thickened stretch of membrane."""
    near_membrane = np.flatnonzero(region & (inside_distance > 8.0) & (inside_distance < 20.0))
    if near_membrane.size == 0:
        return
    anchor = rng.choice(near_membrane)
    ay, ax = yy.ravel()[anchor], xx.ravel()[anchor]
    # post-synaptic-density-like thickening of the membrane next to the cluster
    patch = (np.hypot(yy - ay, xx - ax) < rng.uniform(80.0, 180.0)) & (membrane_distance < 25.0)
    density[patch] += 0.3
    spread = rng.uniform(50.0, 120.0)
    rows, cols = yy[:, 0], xx[0, :]
    for _ in range(int(rng.integers(15, 80))):
        radius = rng.uniform(17.0, 25.0)
        cy, cx = ay + rng.normal(0.0, spread), ax + rng.normal(0.0, spread)
        r0, r1 = np.searchsorted(rows, [cy - radius - 10.0, cy + radius + 10.0])
        c0, c1 = np.searchsorted(cols, [cx - radius - 10.0, cx + radius + 10.0])
        window = (slice(r0, r1), slice(c0, c1))
        distance = np.hypot(yy[window] - cy, xx[window] - cx)
        disc = distance <= radius
        if (
            not disc.any()
            or not region[window][disc].all()
            or (inside_distance[window][disc] < 4.0).any()
        ):
            continue
        if vesicles[window][disc].any() or mitochondria[window][disc].any():
            continue
        vesicles[window][disc] = vesicles.max() + 1
        ring = np.exp(-0.5 * ((distance - radius + 2.5) / 2.0) ** 2)
        density[window] += 0.8 * ring - 0.04 * disc
