"""Work-arounds for clashes between the libraries napari and torch load."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("napari_organelle")


def avoid_llvm_clash() -> None:
    """Keep torch from loading triton where that would crash the process.

    napari draws with OpenGL; with Mesa drivers (software rendering, AMD) that
    loads Mesa's libLLVM. triton, which torch imports on first use of
    ``torch._dynamo`` (segmentation-models-pytorch does), bundles its own
    LLVM, and loading it after Mesa's crashes the process with a segmentation
    fault. Inference does not need triton, so when libLLVM is already loaded
    and triton is not, triton is marked unavailable (torch then does without).
    """
    if "triton" in sys.modules:
        return
    try:
        with open("/proc/self/maps") as maps:
            llvm_loaded = any("libLLVM" in line for line in maps)
    except OSError:  # not Linux: Mesa's LLVM is a Linux concern
        return
    if llvm_loaded:
        sys.modules["triton"] = None  # type: ignore[assignment] - makes `import triton` fail
        logger.info("Mesa's LLVM is loaded (OpenGL); triton disabled to avoid a crash")
