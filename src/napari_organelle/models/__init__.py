"""Models: cards, safetensors weights, and where to find them."""

from .card import ORGANELLE_COLORS, ClassSpec, ModelCard, Normalization
from .io import Model, build_network, clear_cache, load_model_folder, save_model
from .registry import (
    BUNDLED_DIR,
    ModelInfo,
    default_model_name,
    list_models,
    load_model,
    resolve_model,
    user_data_dir,
    user_models_dir,
)

__all__ = [
    "BUNDLED_DIR",
    "ORGANELLE_COLORS",
    "ClassSpec",
    "Model",
    "ModelCard",
    "ModelInfo",
    "Normalization",
    "build_network",
    "clear_cache",
    "default_model_name",
    "list_models",
    "load_model",
    "load_model_folder",
    "resolve_model",
    "save_model",
    "user_data_dir",
    "user_models_dir",
]
