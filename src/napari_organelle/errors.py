"""Errors that carry a message meant for the person at the keyboard.

Every failure a user can cause (a wrong layer, a corrupt model file, a store
written by a newer version) is raised as an :class:`OrganelleError`. The GUI
shows its message as a napari notification and the CLI prints it, so the text
must say what went wrong and what to do, without a traceback.
"""

from __future__ import annotations


class OrganelleError(Exception):
    """A problem the user can understand and fix; ``str(error)`` is shown as is."""


class InputError(OrganelleError, ValueError):
    """The image or layer given cannot be segmented or measured as it is."""


class ModelError(OrganelleError):
    """A model file or card is missing, corrupt, or inconsistent."""


class StoreError(OrganelleError):
    """The training store cannot be read or written safely."""


class Cancelled(OrganelleError):
    """The user stopped a long computation; partial results were discarded."""
