"""What the dock widgets tell the user: one readable sentence, never a traceback.

Every failure reaches the user as one sentence, as a napari notification and
in the widget's status line; unexpected errors are logged with their
traceback (to the ``napari_organelle`` logger).

``show_error``, ``show_warning`` and ``show_info`` are looked up in this module
when called (``_messages.show_error(...)``), so tests can replace them here to
capture what the user sees. No Qt is imported here.
"""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import OrganelleError

__all__ = ["describe_error", "logger", "sentence", "show_error", "show_info", "show_warning"]

logger = logging.getLogger("napari_organelle")


def sentence(text: str) -> str:
    """``text`` with its first letter capitalised (core messages start in lower case).

    Examples:
        >>> sentence("  the store is read-only ")
        'The store is read-only'
    """
    text = text.strip()
    return text[:1].upper() + text[1:]


def describe_error(error: BaseException, task: str = "The task") -> str:
    """One readable sentence about an error, for a notification or a status line.

    :class:`~napari_organelle.errors.OrganelleError` messages are written for
    users and are shown as they are; running out of memory gets advice; any
    other error is a bug, named in one line (its traceback goes to the log).

    Args:
        error: the exception.
        task: what was being done, e.g. ``"Segmentation"``; starts the message
            for unexpected errors.

    Examples:
        >>> from napari_organelle.errors import InputError
        >>> describe_error(InputError("choose an image layer"))
        'Choose an image layer'
        >>> describe_error(KeyError("tile"), "Export").split(";")[0]
        "Export failed with an unexpected error (KeyError: 'tile')"
    """
    if isinstance(error, OrganelleError):
        return sentence(str(error))
    if isinstance(error, MemoryError):
        return (f"{task} ran out of memory: work on a crop or fewer classes, or close other "
                "programs.")
    # torch.OutOfMemoryError (a RuntimeError), matched by name so torch is not imported here.
    if type(error).__name__ == "OutOfMemoryError":
        return (f"{task} ran out of GPU memory: use smaller tiles or batches, or choose the "
                "CPU device.")
    lines = str(error).strip().splitlines()
    detail = f": {lines[0]}" if lines else ""
    return (f"{task} failed with an unexpected error ({type(error).__name__}{detail}); "
            "the full traceback is in the log.")
