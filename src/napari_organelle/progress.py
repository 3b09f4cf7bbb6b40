"""Progress reports shared by every long computation.

Long work in this package is written as a generator that yields
:class:`Progress` between units of work (tiles, epochs, objects) and returns
its result. The GUI wraps such a generator in napari's ``thread_worker`` (which
can stop it at any ``yield``); the CLI and scripts drive it with :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import Cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long computation.

    Attributes:
        done: units finished so far.
        total: units in all (0 when unknown).
        message: what is being done, for a status line.
        data: optional payload for live displays (e.g. a loss value).
    """

    done: int
    total: int
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def run(
    work: Generator[Progress, None, T],
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Drive a progress generator to the end and return its result.

    Args:
        work: generator that yields :class:`Progress` and returns the result.
        on_progress: called with each progress report.
        should_stop: polled after each report; when it returns True the
            generator is closed and :class:`~napari_organelle.errors.Cancelled`
            is raised.

    Examples:
        >>> def count(n):
        ...     for i in range(n):
        ...         yield Progress(i + 1, n)
        ...     return n
        >>> run(count(3))
        3
    """
    try:
        while True:
            report = next(work)
            if on_progress is not None:
                on_progress(report)
            if should_stop is not None and should_stop():
                work.close()
                raise Cancelled("stopped by the user")
    except StopIteration as finished:
        return finished.value
