"""Golgi apparatus: a perinuclear ribbon of mini-stacks, or stacks dispersed through the cell.

Each stack is a short, thick, slightly curved cisterna drawn as a tube. In a
compact Golgi the stacks line up tangentially along an arc next to the
nucleus and merge into a ribbon at light-microscope resolution; with low
compactness (e.g. after microtubule disruption) they scatter as separate
puncta. Dim transport vesicles around the stacks are rendered but not
labelled, since Golgi markers see them only faintly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._random import Range, smooth_noise
from .cells import CellLayout
from .grid import Grid
from .organelle import OrganelleGeometry
from .render import densify, paint_balls, tube_field


@dataclass(frozen=True)
class GolgiParams:
    """How the Golgi looks.

    Attributes:
        n_stacks: mean number of mini-stacks per cell.
        compactness: fraction of stacks in the perinuclear ribbon (the rest are dispersed).
        arc_degrees: angular extent of the ribbon around the nucleus.
        distance_nm: distance of the ribbon from the nuclear envelope.
        stack_length_nm: mean stack length.
        stack_width_nm: stack thickness as seen from above.
        vesicles: mean number of unlabelled transport vesicles per cell.
    """

    n_stacks: float = 14.0
    compactness: float = 0.85
    arc_degrees: float = 120.0
    distance_nm: float = 800.0
    stack_length_nm: float = 1000.0
    stack_width_nm: float = 300.0
    vesicles: float = 20.0

    RANGES: ClassVar[dict[str, Range]] = {
        "n_stacks": Range(4.0, 30.0),
        "compactness": Range(0.0, 1.0),
        "arc_degrees": Range(40.0, 240.0),
        "distance_nm": Range(200.0, 2500.0),
        "stack_length_nm": Range(400.0, 2000.0),
        "stack_width_nm": Range(200.0, 500.0),
        "vesicles": Range(0.0, 60.0),
    }

    @classmethod
    def random(cls, rng: np.random.Generator) -> GolgiParams:
        values = {name: r.draw(rng) for name, r in cls.RANGES.items()}
        # most cells have a compact ribbon; a dispersed Golgi is the exception
        values["compactness"] = float(np.clip(1.2 * values["compactness"] ** 0.5, 0.0, 1.0))
        return cls(**values)


def generate_golgi(
    rng: np.random.Generator, layout: CellLayout, params: GolgiParams, fine: Grid
) -> OrganelleGeometry:
    """Golgi of every cell: a binary mask on the world grid, density on ``fine``."""
    world = layout.grid
    px = world.pixel_size_nm
    radius = params.stack_width_nm / 2.0
    clearance = radius + px
    stacks: list[np.ndarray] = []
    vesicle_centers: list[np.ndarray] = []
    weight = layout.perinuclear_weight(4000.0)
    for cell_id, nucleus in enumerate(layout.nucleus_shapes, start=1):
        n_stacks = rng.poisson(params.n_stacks)
        ribbon_angle = rng.uniform(0, 2 * np.pi)
        in_ribbon = rng.random(n_stacks) < params.compactness
        dispersed = iter(
            layout.sample_points(
                rng, int(np.count_nonzero(~in_ribbon)), clearance, weight, cell_id
            )
        )
        for ribbon in in_ribbon:
            if ribbon:
                phi = ribbon_angle + np.deg2rad(params.arc_degrees) * rng.uniform(-0.5, 0.5)
                reach = (
                    nucleus.radius_at(np.array([phi]))[0]
                    + radius
                    + params.distance_nm * rng.uniform(0.5, 1.5)
                )
                center = np.asarray(nucleus.center_nm) + reach * np.array(
                    [np.sin(phi), np.cos(phi)]
                )
                direction = phi + np.pi / 2 + rng.normal(0.0, 0.35)
            else:
                center = next(dispersed, None)
                if center is None:
                    continue
                direction = rng.uniform(0, 2 * np.pi)
            length = params.stack_length_nm * rng.uniform(0.6, 1.4)
            path = _stack_path(center, direction, length, bow=rng.normal(0.0, 0.12) * length)
            if layout.allowed(path, clearance, cell_id).all():
                stacks.append(path)
                n_vesicles = rng.poisson(params.vesicles / max(params.n_stacks, 1.0))
                vesicle_centers.append(center + rng.normal(0.0, 900.0, (n_vesicles, 2)))

    labels = np.zeros(world.shape, dtype=bool)
    density = np.zeros(fine.shape, dtype=np.float32)
    if stacks:
        fine_field = tube_field(
            fine, densify(stacks, fine.pixel_size_nm / 2.5), radius, radius + fine.pixel_size_nm
        )
        label_field = (
            fine_field
            if fine == world
            else tube_field(world, densify(stacks, px / 2.5), radius, radius)
        )
        labels = label_field.mask() & layout.cytoplasm
        density = fine_field.density("lumen")
        # cisternae and budding vesicles make stacks lumpy
        density *= np.clip(
            1.0 + 0.4 * smooth_noise(rng, fine.shape, 150.0 / fine.pixel_size_nm), 0.2, None
        )
    if vesicle_centers:
        centers = np.concatenate(vesicle_centers)
        centers = centers[layout.allowed(centers, 100.0)]
        paint_balls(
            fine, centers, rng.uniform(40.0, 80.0, len(centers)), density=density,
            brightness=np.full(len(centers), 0.3),
        )
    return OrganelleGeometry(name="golgi", labels=labels.astype(np.uint8), density=density)


def _stack_path(center: np.ndarray, direction: float, length: float, bow: float) -> np.ndarray:
    t = np.linspace(-0.5, 0.5, 16)
    along = np.array([np.sin(direction), np.cos(direction)])
    across = np.array([-along[1], along[0]])
    return center + t[:, None] * length * along + (bow * (1.0 - 4.0 * t**2))[:, None] * across
