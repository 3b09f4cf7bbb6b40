"""Training and fine-tuning (no Qt): data sets, augmentation, the training loop, recipes."""

from .augment import AugmentSettings, sample_batch
from .datasets import IGNORE, DatasetSpec, TrainingImage, load_dataset, split_by_image
from .recipe import load_recipe
from .trainer import TrainConfig, TrainResult, masked_loss, train, train_iter, validate

__all__ = [
    "IGNORE",
    "AugmentSettings",
    "DatasetSpec",
    "TrainConfig",
    "TrainResult",
    "TrainingImage",
    "load_dataset",
    "load_recipe",
    "masked_loss",
    "sample_batch",
    "split_by_image",
    "train",
    "train_iter",
    "validate",
]
