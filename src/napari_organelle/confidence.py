"""Is this image like the ones the model learned? A cheap answer from its own probabilities.

A network trained on a few labs' images rarely fails with a clean, empty
mask; on an image unlike its training data it produces broad areas of middling
probability (grey blebs half-called mitochondria, noise half-called ER). So
while tiles are predicted, :class:`ConfidenceMeter` counts, per class, how
many of the pixels the model considers at all (probability >= 0.1) it is
unsure of (probability between 0.1 and 0.9). That *unsure share* is low on
images like the training data (only object edges are unsure) and high on
strange ones.

What counts as high is measured, not guessed: ``benchmarks/confidence.py``
scores the share on the real test splits and writes, per class, the highest
share seen on images the model does well on into the model card
(``extra["confidence"]``). :func:`confidence_warning` turns a result into the
sentence Segment shows and the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Probabilities at or above this are "considered" by the model.
CONSIDERED = 0.1
#: Probabilities at or above this are "sure"; between the two, "unsure".
SURE = 0.9
#: Fewer considered pixels than this (per class) say nothing either way.
MIN_PIXELS = 2_000


@dataclass
class ConfidenceMeter:
    """Running counts of considered and unsure pixels, per class.

    Examples:
        >>> meter = ConfidenceMeter(["er"])
        >>> probabilities = np.zeros((1, 1, 100, 100), np.float32)
        >>> probabilities[..., :50] = 0.95          # sure foreground
        >>> probabilities[..., 50:60] = 0.5         # unsure
        >>> meter.add(probabilities)
        >>> round(meter.unsure_share()["er"], 3)
        0.167
    """

    classes: Sequence[str]
    considered: np.ndarray = field(init=False)
    unsure: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.considered = np.zeros(len(self.classes), np.int64)
        self.unsure = np.zeros(len(self.classes), np.int64)

    def add(self, probabilities: np.ndarray, channels: Sequence[int] | None = None) -> None:
        """Count a batch of probabilities ``(B, K, Y, X)`` in [0, 1].

        Args:
            probabilities: the batch.
            channels: for each of its K channels, the index of its class in
                :attr:`classes` (default: the same order).
        """
        targets = range(probabilities.shape[1]) if channels is None else channels
        for channel, target in enumerate(targets):
            values = probabilities[:, channel]
            considered = int(np.count_nonzero(values >= CONSIDERED))
            self.considered[target] += considered
            if considered:
                self.unsure[target] += considered - int(np.count_nonzero(values >= SURE))

    def unsure_share(self) -> dict[str, float]:
        """Per class, unsure / considered pixels; NaN where too few pixels were considered."""
        return {name: (float(self.unsure[i] / self.considered[i])
                       if self.considered[i] >= MIN_PIXELS else float("nan"))
                for i, name in enumerate(self.classes)}


@dataclass
class FeatureMeter:
    """Pooled deepest encoder features of every tile, to compare with the training images'.

    The network's own view of an image is the surest sign of whether it has
    seen such images before: each tile's deepest encoder features, averaged
    over the tile, are compared channel by channel with their mean and spread
    over the training images (stored in the card), and the image's *feature
    distance* is the mean over tiles of the root-mean-square z-score.

    Examples:
        >>> meter = FeatureMeter()
        >>> meter.add(np.ones((2, 4, 3, 3), np.float32))
        >>> meter.distance(np.zeros(4), np.ones(4))
        1.0
    """

    pooled: list[np.ndarray] = field(default_factory=list)

    def add(self, features: np.ndarray) -> None:
        """Record a batch of deepest features ``(B, C, h, w)``."""
        self.pooled.append(features.reshape(*features.shape[:2], -1).mean(axis=-1))

    def vectors(self) -> np.ndarray:
        """Every tile's pooled features, ``(tiles, C)``."""
        return np.concatenate(self.pooled) if self.pooled else np.zeros((0, 0), np.float32)

    def distance(self, mean: np.ndarray, std: np.ndarray) -> float:
        """Mean over tiles of the RMS z-score against ``mean`` and ``std``; NaN without tiles."""
        vectors = self.vectors()
        if not len(vectors):
            return float("nan")
        z = (vectors - np.asarray(mean)) / np.maximum(np.asarray(std), 1e-6)
        return float(np.sqrt((z ** 2).mean(axis=1)).mean())


def feature_reference(card_extra: Mapping[str, Any] | None
                      ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The training images' feature mean, spread and distance limit from a card, if calibrated."""
    section = (card_extra or {}).get("confidence", {})
    if not isinstance(section, Mapping):
        return None
    try:
        mean = np.asarray(section["feature_mean"], np.float32)
        std = np.asarray(section["feature_std"], np.float32)
        limit = float(section["feature_distance_limit"])
    except (KeyError, TypeError, ValueError):
        return None
    return (mean, std, limit) if mean.shape == std.shape and mean.ndim == 1 else None


def unfamiliar_classes(unsure_share: Mapping[str, float], limits: Mapping[str, float]
                       ) -> dict[str, float]:
    """The classes whose unsure share is above the model's calibrated limit.

    Examples:
        >>> unfamiliar_classes({"mitochondria": 0.7, "er": 0.2}, {"mitochondria": 0.45, "er": 0.5})
        {'mitochondria': 0.7}
    """
    return {name: share for name, share in unsure_share.items()
            if name in limits and share == share and share > limits[name]}


def confidence_limits(card_extra: Mapping[str, Any] | None) -> dict[str, float]:
    """The per-class limits a model card carries (empty when it was never calibrated)."""
    section = (card_extra or {}).get("confidence", {})
    limits = section.get("unsure_share_limit", {}) if isinstance(section, Mapping) else {}
    return {str(k): float(v) for k, v in limits.items() if isinstance(v, (int, float))}


def confidence_warning(unfamiliar: Mapping[str, float], model_name: str,
                       feature_distance: float | None = None,
                       feature_limit: float | None = None) -> str | None:
    """The sentence shown when an image looks unlike the model's training data, or None.

    Args:
        unfamiliar: classes over their unsure-share limit, with their share.
        model_name: the model's full name.
        feature_distance: the image's feature distance, when over its limit.
        feature_limit: that limit (the most seen on images the model handles well).

    Examples:
        >>> print(confidence_warning({"mitochondria": 0.71}, "em-organelles@2.0.0"))
        This image looks unlike what em-organelles@2.0.0 learned from (unsure about 71% of \
the pixels it considers mitochondria): check the masks before trusting them, correct them \
(Correct dock) and fine-tune on them (Train dock).
        >>> confidence_warning({}, "em-organelles@2.0.0") is None
        True
    """
    reasons = [f"unsure about {100 * share:.0f}% of the pixels it considers {name}"
               for name, share in unfamiliar.items()]
    if feature_distance is not None:
        within = (f"; images it handles well score up to {feature_limit:.1f}"
                  if feature_limit else "")
        reasons.append(f"what the network sees in it is far from its training images: "
                       f"distance {feature_distance:.1f}{within}")
    if not reasons:
        return None
    return (f"This image looks unlike what {model_name} learned from ({'; '.join(reasons)}): "
            "check the masks before trusting them, correct them (Correct dock) and fine-tune "
            "on them (Train dock).")
