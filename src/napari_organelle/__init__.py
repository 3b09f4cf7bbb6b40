"""napari-organelle: segment organelles with deep learning, correct them, fine-tune.

The compute core (this package without ``_widgets``) needs no Qt:

>>> from napari_organelle import segment, load_model, list_models  # doctest: +SKIP
>>> result = segment(image, "em-organelles", pixel_size_nm=5.0)  # doctest: +SKIP
>>> result.labels["mitochondria"].max()  # number of mitochondria  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "segment": "inference",
    "segment_iter": "inference",
    "SegmentationResult": "inference",
    "load_model": "models",
    "list_models": "models",
    "save_model": "models",
    "ModelCard": "models",
    "ClassSpec": "models",
    "read_image": "io",
    "OrganelleError": "errors",
    "InputError": "errors",
    "ModelError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # torch is heavy: importing the package (e.g. by napari's plugin discovery)
    # must not import it until something is actually used.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
