"""How far each class of a model can be trusted: tested on real images, or simulation only.

A model card holds the evidence (:class:`~.card.ModelCard`):

* ``metrics["test"]``: scores per test set and class. A set whose name starts
  with :data:`SIMULATED_SET_PREFIX` holds simulated images (the recipes'
  ``"simulated"`` test entries are named ``simulated-test``); any other set
  is real images.
* ``extra["class_evidence"]``: ``{class: "simulation only"}`` for the classes
  learnt from simulated images only, written by the training recipe
  (:func:`simulation_only_classes`).

:func:`class_evidence` reads both: a class with a Dice on a real test set is
:data:`REAL` (whatever it was trained on); else a class the card calls
simulation-only, or scored on simulated images only, is
:data:`SIMULATION_ONLY`; else :data:`UNTESTED`. The Segment dock shows it as
a tooltip on each class and marks simulation-only classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .card import CLASS_SYNONYMS, ModelCard

__all__ = [
    "EVIDENCE_KEY",
    "REAL",
    "SIMULATED_SET_PREFIX",
    "SIMULATION_ONLY",
    "SIMULATION_ONLY_MARK",
    "UNTESTED",
    "ClassEvidence",
    "class_evidence",
    "continued_simulation_only",
    "is_simulated_set",
    "real_trained_classes",
    "simulation_only_classes",
]

#: ``card.extra`` key of the classes learnt from simulated images only.
EVIDENCE_KEY = "class_evidence"
#: Test sets whose name starts with this hold simulated images.
SIMULATED_SET_PREFIX = "simulated"

REAL = "real"
SIMULATION_ONLY = "simulation only"
UNTESTED = "untested"

#: What the Segment dock adds to the name of a simulation-only class.
SIMULATION_ONLY_MARK = " (simulation only)"


@dataclass(frozen=True)
class ClassEvidence:
    """What a card says about one class.

    Attributes:
        name: the class.
        status: :data:`REAL`, :data:`SIMULATION_ONLY` or :data:`UNTESTED`.
        scores: Dice per test set: real sets for :data:`REAL`, simulated ones
            for :data:`SIMULATION_ONLY` (may be empty).
        validation: Dice on held-out training images, if the card has it.
        parent: the model this one was fine-tuned from (``name@version``), if any.
    """

    name: str
    status: str
    scores: dict[str, float] = field(default_factory=dict)
    validation: float | None = None
    parent: str | None = None

    @property
    def mark(self) -> str:
        """Text shown after the class name: :data:`SIMULATION_ONLY_MARK` or nothing."""
        return SIMULATION_ONLY_MARK if self.status == SIMULATION_ONLY else ""

    def describe(self) -> str:
        """One line for people.

        Examples:
            >>> ClassEvidence("mitochondria", REAL, {"em-drosophila-vnc": 0.8802}).describe()
            'tested on em-drosophila-vnc: Dice 0.88'
            >>> ClassEvidence("er", SIMULATION_ONLY).describe()
            'simulation only: no real test data'
        """
        scores = "; ".join(f"{name}: Dice {dice:.2f}" for name, dice in self.scores.items())
        if self.status == REAL:
            return f"tested on {scores}"
        if self.status == SIMULATION_ONLY:
            text = "simulation only: no real test data"
            return f"{text} (simulated images: {scores})" if scores else text
        text = "not tested on a held-out test set"
        if self.validation is not None:
            text += f"; validation Dice {self.validation:.2f} on held-out training images"
        if self.parent:
            text += f" (fine-tuned from {self.parent})"
        return text


def is_simulated_set(name: str) -> bool:
    """Whether the test set called ``name`` holds simulated images."""
    return name.lower().startswith(SIMULATED_SET_PREFIX)


def class_evidence(card: ModelCard) -> dict[str, ClassEvidence]:
    """The evidence for each class of ``card``, in the card's order.

    Test scores are matched to classes by name, through the class map of the
    card's recipe entry for that set, or by synonym (``membranes`` scores
    ``cell_boundary``). A set marked ``skipped`` or a missing Dice counts as
    no score.
    """
    names = card.class_names
    real: dict[str, dict[str, float]] = {name: {} for name in names}
    simulated: dict[str, dict[str, float]] = {name: {} for name in names}
    maps = {entry.get("path"): entry.get("class_map") or {}
            for entry in card.recipe.get("datasets") or [] if isinstance(entry, Mapping)}
    tests = card.metrics.get("test")
    for set_name, classes in (tests.items() if isinstance(tests, Mapping) else ()):
        if not isinstance(classes, Mapping):
            continue
        found = simulated if is_simulated_set(set_name) else real
        for data_class, scores in classes.items():
            model_class = _model_class(data_class, names, maps.get(set_name, {}))
            dice = scores.get("dice") if isinstance(scores, Mapping) else None
            if model_class is not None and isinstance(dice, (int, float)) \
                    and not isinstance(dice, bool):
                found[model_class][set_name] = float(dice)
    declared = card.extra.get(EVIDENCE_KEY) or {}
    validation = card.metrics.get("validation") or {}
    evidence = {}
    for name in names:
        if real[name]:
            evidence[name] = ClassEvidence(name, REAL, real[name])
        elif simulated[name] or declared.get(name) == SIMULATION_ONLY:
            evidence[name] = ClassEvidence(name, SIMULATION_ONLY, simulated[name])
        else:
            value = validation.get(name)
            evidence[name] = ClassEvidence(
                name, UNTESTED, validation=float(value) if isinstance(value, (int, float))
                else None, parent=card.parent)
    return evidence


def _model_class(data_class: str, names: Sequence[str], class_map: Mapping[str, str]
                 ) -> str | None:
    for candidate in (class_map.get(data_class), data_class, CLASS_SYNONYMS.get(data_class)):
        if candidate in names:
            return candidate
    return None


# ---------------------------------------------------------------------- writing it


def real_trained_classes(datasets: Iterable[Mapping[str, Any]], names: Sequence[str]
                         ) -> set[str]:
    """Classes of ``names`` that real data sets train, from recipe entries' class maps.

    An entry without a class map trains the classes named as in the model
    (or by synonym); its data set is not read, so only the model's classes
    are assumed.
    """
    trained: set[str] = set()
    for entry in datasets:
        class_map = entry.get("class_map") or {}
        if class_map:
            trained.update(target for target in class_map.values() if target in names)
        else:
            trained.update(names)
    return trained


def simulation_only_classes(recipe: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The classes a recipe teaches from simulated images only.

    A recipe with a ``"simulated"`` section trains every class on simulated
    images; those no real data set of its ``"datasets"`` trains are
    simulation-only. A recipe without simulated images has none.
    """
    if not recipe.get("simulated"):
        return []
    real = real_trained_classes(recipe.get("datasets") or [], names)
    return [name for name in names if name not in real]


def continued_simulation_only(simulation_only: Iterable[str], base: ModelCard) -> list[str]:
    """Of the classes a run teaches from simulated images only, those still so after it.

    A run that continues from ``base`` keeps what ``base`` learnt: a class of
    ``base`` that its card does not call simulation-only (a card without
    ``extra["class_evidence"]`` calls none so) was learnt from real images
    and stays so. Classes ``base`` lacks are taken as they are.
    """
    declared = base.extra.get(EVIDENCE_KEY)
    base_simulated = {name for name, value in declared.items() if value == SIMULATION_ONLY} \
        if isinstance(declared, Mapping) else set()
    return [name for name in simulation_only
            if name not in base.class_names or name in base_simulated]
