"""Round organelles: lysosomes (puncta 0.3-1 um) and lipid droplets (0.5-2 um).

Both are spheres placed without overlap in the cytoplasm, optionally biased
towards the nucleus and (lipid droplets) gathered in clusters. A dye may fill
them ("lumen": LysoTracker, BODIPY) or only coat them ("membrane": LAMP1-FP,
perilipin), which makes large ones look like rings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._random import Range
from .cells import CellLayout
from .grid import Grid
from .organelle import OrganelleGeometry
from .render import Profile, paint_balls

#: cytoplasm area that densities refer to, nm^2 (100 um^2)
_PER_AREA_NM2 = 100.0 * 1e6


@dataclass(frozen=True)
class LysosomeParams:
    """How lysosomes (and late endosomes) look.

    Attributes:
        density_per_100um2: lysosomes per 100 um^2 of cytoplasm.
        diameter_nm: mean diameter.
        diameter_cv: spread of diameters (log-normal sigma); diameters are kept within 250-1200 nm.
        perinuclear_bias: how strongly they gather around the nucleus (0 = uniform).
        brightness_cv: spread of brightness (pH and loading differ between lysosomes).
        profile: "lumen" for acidotropic dyes, "membrane" for LAMP1 fusions.
    """

    density_per_100um2: float = 8.0
    diameter_nm: float = 500.0
    diameter_cv: float = 0.3
    perinuclear_bias: float = 0.5
    brightness_cv: float = 0.4
    profile: Profile = "lumen"

    RANGES: ClassVar[dict[str, Range]] = {
        "density_per_100um2": Range(0.5, 30.0, log=True),
        "diameter_nm": Range(300.0, 900.0),
        "diameter_cv": Range(0.1, 0.45),
        "perinuclear_bias": Range(0.0, 1.0),
        "brightness_cv": Range(0.1, 0.8),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> LysosomeParams:
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        return cls(profile="membrane" if rng.random() < 0.3 else "lumen", **values)


@dataclass(frozen=True)
class LipidDropletParams:
    """How lipid droplets look.

    Attributes:
        density_per_100um2: droplets per 100 um^2 of cytoplasm.
        diameter_nm: mean diameter.
        diameter_cv: spread of diameters; diameters are kept within 450-2200 nm.
        clustering: fraction of droplets that sit in clusters.
        perinuclear_bias: how strongly they gather around the nucleus.
        brightness_cv: spread of brightness.
        profile: "lumen" for neutral-lipid dyes, "membrane" for perilipin coats.
    """

    density_per_100um2: float = 2.0
    diameter_nm: float = 1000.0
    diameter_cv: float = 0.3
    clustering: float = 0.5
    perinuclear_bias: float = 0.5
    brightness_cv: float = 0.15
    profile: Profile = "lumen"

    RANGES: ClassVar[dict[str, Range]] = {
        "density_per_100um2": Range(0.2, 10.0, log=True),
        "diameter_nm": Range(500.0, 1800.0),
        "diameter_cv": Range(0.1, 0.5),
        "clustering": Range(0.0, 1.0),
        "perinuclear_bias": Range(0.0, 1.0),
        "brightness_cv": Range(0.05, 0.4),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> LipidDropletParams:
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        return cls(profile="membrane" if rng.random() < 0.3 else "lumen", **values)


def generate_lysosomes(
    rng: np.random.Generator, layout: CellLayout, params: LysosomeParams, fine: Grid
) -> OrganelleGeometry:
    """Lysosomes of every cell: instance labels on the world grid, density on ``fine``."""
    return _balls(
        "lysosomes", rng, layout, fine,
        density_per_100um2=params.density_per_100um2,
        diameter_nm=params.diameter_nm,
        diameter_cv=params.diameter_cv,
        diameter_limits=(250.0, 1200.0),
        perinuclear_bias=params.perinuclear_bias,
        clustering=0.0,
        brightness_cv=params.brightness_cv,
        profile=params.profile,
    )


def generate_lipid_droplets(
    rng: np.random.Generator, layout: CellLayout, params: LipidDropletParams, fine: Grid
) -> OrganelleGeometry:
    """Lipid droplets of every cell: instance labels on the world grid, density on ``fine``."""
    return _balls(
        "lipid_droplets", rng, layout, fine,
        density_per_100um2=params.density_per_100um2,
        diameter_nm=params.diameter_nm,
        diameter_cv=params.diameter_cv,
        diameter_limits=(450.0, 2200.0),
        perinuclear_bias=params.perinuclear_bias,
        clustering=params.clustering,
        brightness_cv=params.brightness_cv,
        profile=params.profile,
    )


def _balls(
    name: str,
    rng: np.random.Generator,
    layout: CellLayout,
    fine: Grid,
    *,
    density_per_100um2: float,
    diameter_nm: float,
    diameter_cv: float,
    diameter_limits: tuple[float, float],
    perinuclear_bias: float,
    clustering: float,
    brightness_cv: float,
    profile: Profile,
) -> OrganelleGeometry:
    world = layout.grid
    px = world.pixel_size_nm
    area = np.count_nonzero(layout.cytoplasm) * px**2
    n_target = rng.poisson(density_per_100um2 * area / _PER_AREA_NM2)
    radii = (
        np.clip(diameter_nm * np.exp(rng.normal(0.0, diameter_cv, n_target)), *diameter_limits)
        / 2.0
    )
    radii = np.sort(radii)[::-1]  # big ones first pack better
    weight = (1.0 - perinuclear_bias) + perinuclear_bias * layout.perinuclear_weight(4000.0)
    candidates = _candidates(rng, layout, len(radii), weight, clustering)
    gap = max(2.0 * px, 50.0)
    centers, kept_radii = _place_without_overlap(layout, candidates, radii, gap)

    labels = np.zeros(world.shape, dtype=np.int32)
    density = np.zeros(fine.shape, dtype=np.float32)
    brightness = np.exp(rng.normal(0.0, brightness_cv, len(centers)))
    paint_balls(
        world, centers, kept_radii, labels=labels, density=density, density_grid=fine,
        brightness=brightness, profile=profile,
    )
    labels[~layout.cytoplasm] = 0
    return OrganelleGeometry(
        name=name,
        labels=labels,
        density=density,
        truth={"centers_nm": centers, "diameters_nm": 2.0 * kept_radii},
    )


def _candidates(
    rng: np.random.Generator, layout: CellLayout, n: int, weight: np.ndarray, clustering: float
) -> np.ndarray:
    """Proposed centres, three per wanted object, a share of them scattered around cluster seeds."""
    n_proposals = 3 * n + 10
    n_clustered = int(round(clustering * n_proposals))
    scattered = layout.sample_points(rng, n_proposals - n_clustered, 0.0, weight=weight)
    if n_clustered == 0:
        return scattered
    n_clusters = max(1, n_clustered // int(rng.integers(6, 20)))
    seeds = layout.sample_points(rng, n_clusters, 0.0, weight=weight)
    if len(seeds) == 0:
        return scattered
    spread = rng.uniform(700.0, 2000.0)
    members = seeds[rng.integers(0, len(seeds), n_clustered)] + rng.normal(
        0.0, spread, (n_clustered, 2)
    )
    mixed = np.concatenate([members, scattered])
    return mixed[rng.permutation(len(mixed))]


def _place_without_overlap(
    layout: CellLayout, candidates: np.ndarray, radii: np.ndarray, gap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy placement: each radius takes the next candidate where it fits."""
    px = layout.grid.pixel_size_nm
    centers = np.zeros((len(radii), 2))
    kept = np.zeros(len(radii))
    n_kept, next_candidate = 0, 0
    for radius in radii:
        while next_candidate < len(candidates):
            center = candidates[next_candidate]
            next_candidate += 1
            if not layout.allowed(center[None], radius + px)[0]:
                continue
            if n_kept:
                distance = np.hypot(*(centers[:n_kept] - center).T)
                if np.any(distance < kept[:n_kept] + radius + gap):
                    continue
            centers[n_kept], kept[n_kept] = center, radius
            n_kept += 1
            break
    return centers[:n_kept], kept[:n_kept]
