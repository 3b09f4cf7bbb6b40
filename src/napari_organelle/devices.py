"""Pick the fastest device torch can use here."""

from __future__ import annotations

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices usable on this machine, fastest first (always ends with ``cpu``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` means CUDA, else Apple MPS, else the CPU; a device that is absent is an error.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if kind not in available_devices():
        raise InputError(f"device {device!r} is not available here; available: "
                         f"{', '.join(available_devices())}")
    return torch.device(name)
