"""Test a freshly trained bundled model and write its model card for people.

A recipe lists, besides its training data, the held-out test splits it is
judged on (``"evaluate"``). After training, :func:`evaluate_recipe` scores the
kept model on them with the same code as ``napari-organelle evaluate``, and
:func:`write_model_card` writes ``MODEL_CARD.md`` next to the weights: what the
model segments, the data sets with licences and citations, the recipe, a
summary of the training curve and every test score.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from ..models import Model, load_model_folder, save_model
from ..models.io import CARD_FILE, WEIGHTS_FILE
from ..models.registry import BUNDLED_DIR


def evaluate_recipe(model: Model, recipe: dict[str, Any], data_root: Path | None,
                    device: str = "auto") -> dict[str, Any]:
    """Score ``model`` on the recipe's test splits; returns ``{set: {class: scores}}``.

    Real data sets are read under ``data_root`` and scored by
    :func:`napari_organelle.evaluation.evaluate_dataset` (so pixels a set marks
    as not annotated count neither way); ``{"simulated": {...}}`` entries draw
    held-out simulated images (seeds never used in training).
    """
    from ..evaluation import evaluate_dataset, model_predictor

    results: dict[str, Any] = {}
    kinds = {spec.name: spec.kind for spec in model.card.classes}
    for entry in recipe.get("evaluate", []):
        if "simulated" in entry:
            results[entry.get("name", "simulated-test")] = _evaluate_simulated(
                model, entry["simulated"])
            continue
        folder = Path(data_root or ".") / entry["path"]
        if not folder.is_dir():
            results[entry["path"]] = {"skipped": f"{folder} not found"}
            continue
        class_map = entry.get("class_map", {})
        predict = model_predictor(model, classes=sorted(set(class_map.values())) or None,
                                  device=device)
        evaluation = evaluate_dataset(folder, entry.get("split", "test"), predict, class_map,
                                      model_classes=kinds)
        results[entry["path"]] = {
            name: _scores_dict(scores) for name, scores in evaluation.scores.items()}
    return results


def _scores_dict(scores: Any) -> dict[str, float | None]:
    values = {"dice": scores.dice, "iou": scores.iou, "precision": scores.precision,
              "recall": scores.recall}
    if scores.objects is not None:
        values["object_f1"] = scores.object_f1
    return {k: (None if v is None or math.isnan(v) else round(float(v), 4))
            for k, v in values.items()}


def _evaluate_simulated(model: Model, settings: dict[str, Any]) -> dict[str, Any]:
    """Dice per class on held-out simulated images (seeds never used in training).

    Fluorescence scenes are read through the output of the organelle each
    shows; EM cell sections (``"simulator": "em-cells"``) score every class
    the section teaches.
    """
    import numpy as np

    from ..inference import segment
    from ..metrics import MetricAccumulator
    from ..simulation.scene import training_sample

    accumulator = MetricAccumulator()
    names = model.card.class_names
    if settings.get("simulator") == "em-cells":
        from ..simulation.em_cells import simulate_em_cell

        taught = [name for name in settings.get("classes") or names if name in names]
        shape = tuple(settings.get("shape", (512, 512)))
        pixel = float(model.card.pixel_size_nm or 8.0)
        for index in range(int(settings.get("n", 40))):
            em = simulate_em_cell(int(settings.get("seed", 99_000_001)) + index, shape, pixel)
            result = segment(em.image, model, classes=taught, pixel_size_nm=pixel)
            for name in taught:
                objects = model.card.class_spec(name).kind == "instance"
                truth = em.labels[name] if objects else em.labels[name] > 0
                accumulator.add(name, result.labels[name], truth, objects=objects)
        return {name: _scores_dict(scores) for name, scores in accumulator.scores().items()}
    rng = np.random.default_rng(int(settings.get("seed", 99_000_001)))
    shape = tuple(settings.get("shape", (256, 256)))
    for index in range(int(settings.get("n", 70))):
        shown = names[index % len(names)]
        image, targets = training_sample(rng, shape, names, shown=shown)
        result = segment(image, model, classes=[shown])
        accumulator.add(shown, result.labels[shown], targets[shown],
                        objects=model.card.class_spec(shown).kind == "instance")
    return {name: _scores_dict(scores) for name, scores in accumulator.scores().items()}


def write_model_card(folder: Path, test_scores: dict[str, Any] | None = None) -> Path:
    """Store ``test_scores`` in the card and write ``MODEL_CARD.md``; returns its path."""
    model = load_model_folder(folder)
    card = model.card
    if test_scores is not None:
        card.metrics["test"] = test_scores
        save_model(model, folder)  # rewrites the card; weights unchanged in value
    lines = [f"# {card.name} {card.version}", "", card.description, "",
             "## What it segments", "",
             "| class | kind | threshold | minimum object size (px) |", "| --- | --- | --- | --- |"]
    for spec in card.classes:
        lines.append(f"| {spec.name} | {spec.kind} | {spec.threshold} | {spec.min_size_px} |")
    lines += ["", "## Network", "", *_network_lines(card),
              (f"- Input normalised between the {card.normalization.low} and "
              f"{card.normalization.high} percentiles of each plane."),
              f"- Pixel size: {card.pixel_size_nm} nm (images with a known, different pixel size "
              "are rescaled to it)." if card.pixel_size_nm else
              "- Pixel size: any (trained over a range; images are not rescaled).",
              (f"- Tile size {card.tile_size} px. Weights: float16 safetensors, "
              f"{(folder / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB."), "",
              "## Training data", ""]
    for entry in card.training_data:
        lines.append(f"- **{entry.get('name')}**. Licence: {entry.get('licence')}. "
                     f"Cite: {entry.get('citation')}.")
    lines += ["", "## Test scores", "",
              ("Held-out test splits, never used for training or model selection. Pixel scores "
              "pooled over the split, pixels a set marks as not annotated (its `ignore_value`) "
              "left out; object F1 at IoU 0.5."), "",
              "| data set | class | Dice | IoU | precision | recall | object F1 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, classes in card.metrics.get("test", {}).items():
        if "skipped" in classes:
            lines.append(f"| {dataset} | (skipped: {classes['skipped']}) | | | | | |")
            continue
        for name, scores in classes.items():
            cells = [_fmt(scores.get(key)) for key in
                     ("dice", "iou", "precision", "recall", "object_f1")]
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    notes = card.extra.get("notes", [])
    if notes:
        # What was measured about the model after training: what helped, what did not.
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    validation = card.metrics.get("validation", {})
    if validation:
        lines += ["", "Validation Dice of the kept checkpoint (held-out training images): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in validation.items()) + "."]
    curve = card.extra.get("training_curve", [])
    if curve:
        lines += ["", "## Training curve", "", "| step | seconds | loss | validation Dice |",
                  "| --- | --- | --- | --- |"]
        for point in [p for p in curve if "val" in p] or curve[-5:]:
            dice = ", ".join(f"{k} {v:.3f}" for k, v in point.get("val", {}).items())
            lines.append(f"| {point['step']} | {point.get('seconds', '')} | "
                         f"{point['loss']:.4f} | {dice} |")
    lines += ["", "## Recipe", "", "```json", json.dumps(card.recipe, indent=2), "```", "",
              f"Created {card.created}; parent: {card.parent or 'none (trained from scratch)'}.",
              ""]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def _network_lines(card: Any) -> list[str]:
    from ..models.composite import is_composite, members

    if not is_composite(card):
        return [f"- {card.architecture} with a `{card.encoder}` encoder trained from scratch "
                f"(no ImageNet weights), {card.in_channels} input channel(s), "
                f"options {json.dumps(card.arch_kwargs)}."]
    lines = ["- A composite: these networks run side by side on each tile, and each class is "
             "exactly the output of the network that learnt it "
             "(`napari_organelle.models.composite`):"]
    for entry in members(card):
        pixel = (f"{card.pixel_size_nm * entry['scale']:g} nm pixels"
                 if card.pixel_size_nm else f"{entry['scale']}x coarser pixels")
        lines.append(f"  - `{entry.get('source') or 'unnamed'}`: {entry['architecture']} with a "
                     f"`{entry['encoder']}` encoder, {', '.join(entry['classes'])}, at {pixel}; "
                     f"options {json.dumps(entry.get('arch_kwargs', {}))}.")
    lines.append(f"- {card.in_channels} input channel(s); no ImageNet weights.")
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def install_bundled(folder: Path, name: str) -> Path:
    """Copy a model folder (weights, card, MODEL_CARD.md) into the package's bundled models."""
    target = BUNDLED_DIR / name
    target.mkdir(parents=True, exist_ok=True)
    for file_name in (WEIGHTS_FILE, CARD_FILE, "MODEL_CARD.md"):
        if (folder / file_name).exists():
            shutil.copy2(folder / file_name, target / file_name)
    return target
