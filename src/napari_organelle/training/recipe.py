"""Recipes: JSON files that rebuild a bundled model from scratch, exactly.

A recipe holds the new model's card (architecture, classes, pixel size...),
the data sets with their class maps (paths relative to a data root, by default
``../shared/data`` beside the repository), and the training settings. The
classes it teaches from simulated images only are written into the card's
``extra["class_evidence"]`` (:mod:`napari_organelle.models.evidence`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models import ModelCard
from ..models.evidence import EVIDENCE_KEY, SIMULATION_ONLY, simulation_only_classes
from .augment import AugmentSettings
from .datasets import DatasetSpec
from .trainer import TrainConfig

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def find_recipe(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = RECIPES_DIR / f"{name_or_path}.json"
    if bundled.exists():
        return bundled
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.json")))
    raise InputError(f"no recipe {name_or_path!r}; bundled recipes: {known}")


def load_recipe(name_or_path: str | Path, out: Path, data_root: Path | None = None,
                **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """Read a recipe into a :class:`TrainConfig`; returns it with the raw recipe.

    Args:
        name_or_path: a recipe file, or the name of a bundled one (``em-organelles``).
        out: output folder of the run.
        data_root: folder the recipe's data set paths are relative to.
        overrides: TrainConfig fields to replace (``iterations``, ``device``...).
    """
    path = find_recipe(name_or_path)
    recipe = json.loads(path.read_text())
    card = ModelCard.from_dict(recipe["card"])
    # Classes no real data set teaches are marked in the card (unless the recipe says).
    simulated_only = simulation_only_classes(recipe, card.class_names)
    if simulated_only and EVIDENCE_KEY not in card.extra:
        card.extra[EVIDENCE_KEY] = {name: SIMULATION_ONLY for name in simulated_only}
    root = Path(data_root) if data_root else Path(recipe.get("data_root", "."))
    datasets = []
    for entry in recipe.get("datasets", []):
        folder = root / entry["path"]
        if not folder.is_dir():
            raise InputError(f"data set {folder} is missing; pass --data-root (the folder "
                             "holding the shared data sets)")
        datasets.append(DatasetSpec(folder, entry.get("split", "train"),
                                    entry.get("class_map", {}), float(entry.get("weight", 1.0))))
    settings = dict(recipe.get("training", {}))
    augment = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in settings.pop("augment", {}).items()})
    allowed = {f.name for f in fields(TrainConfig)}
    unknown = set(settings) - allowed
    if unknown:
        raise InputError(f"recipe {path.name}: unknown training settings {sorted(unknown)}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(out=out, card=card, datasets=datasets, augment=augment, **settings)
    simulated = recipe.get("simulated")
    if simulated:
        config.images, config.val_images = recipe_simulated_images(simulated, card)
        if simulated.get("share") is not None:
            config.images_share = float(simulated["share"])
    return config, recipe


def recipe_simulated_images(simulated: dict[str, Any], card: ModelCard
                            ) -> tuple[list[Any], list[Any]]:
    """The training and validation images of a recipe's ``"simulated"`` section.

    ``"simulator"`` names the simulator: ``"fluo-scene"`` (the default: one
    organelle per fluorescence image) or ``"em-cells"`` (EM sections of
    cultured cells and hepatocytes, teaching only the classes listed in
    ``"classes"``). Validation images use seeds far from the training ones.
    """
    from .simulated import SIMULATORS, simulated_em_images, simulated_images

    simulator = simulated.get("simulator", "fluo-scene")
    if simulator not in SIMULATORS:
        raise InputError(f"unknown simulator {simulator!r}; known: {', '.join(SIMULATORS)}")
    norm = (card.normalization.low, card.normalization.high)
    seed = int(simulated.get("seed", 1))
    if simulator == "em-cells":
        shape = tuple(simulated.get("shape", (512, 512)))
        taught = list(simulated.get("classes") or [])
        if not taught:
            raise InputError("an em-cells simulated section must list the classes it teaches")
        pixel = float(card.pixel_size_nm or 8.0)
        return (simulated_em_images(int(simulated["n_train"]), card.class_names, seed, taught,
                                    shape, pixel, norm),
                simulated_em_images(int(simulated["n_val"]), card.class_names, seed + 1_000_003,
                                    taught, shape, pixel, norm, name="simulated-em-validation"))
    shape = tuple(simulated.get("shape", (256, 256)))
    return (simulated_images(int(simulated["n_train"]), card.class_names, seed, shape, norm),
            simulated_images(int(simulated["n_val"]), card.class_names, seed + 1_000_003, shape,
                             norm, name="simulated-validation"))
