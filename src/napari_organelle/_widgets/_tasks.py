"""Background work of the dock widgets: Run, Cancel, progress, and one result.

Long computations in the core are generators that yield
:class:`~napari_organelle.progress.Progress` and return a result.
:class:`TaskControls` (Run and Cancel buttons, a progress bar, a status line)
runs one in napari's ``thread_worker``, mirrors its progress in the dock and
in napari's activity panel, stops it at the next ``yield`` on Cancel, and
hands the result to a callback in the main thread, the only thread allowed to
touch layers. Its messages go through :mod:`._messages`.

It is also careful with the main thread, which napari needs for drawing and
the worker shares through the GIL. On a machine drawing with software OpenGL
(Mesa's llvmpipe: Xvfb, remote desktops, many VMs), every repaint of any
widget composes the whole napari window on the CPU, tens of milliseconds
(``benchmarks/event_loop.py`` measures it). So progress is shown at most
every :data:`PROGRESS_INTERVAL_S`, the bar never animates (an unknown total
shows its message only), napari's animated "in progress" indicator is held
still while a task runs (it repaints the window 33 times a second), and a
result callback may add its layers one per turn of the event loop.

Also here: :func:`scaled_progress` (chain several progress generators into
one), :func:`import_in_background` (a dock's heavy imports, done before its
first Run) and :data:`model_list_events` (a model was trained or chosen: every
dock that lists models hears of it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.progress import cancelable_progress
from psygnal import Signal
from qtpy.QtCore import QTimer
from qtpy.QtGui import QMovie
from qtpy.QtWidgets import QLabel

from .._compat import avoid_llvm_clash
from ..errors import OrganelleError
from ..progress import Progress
from . import _messages
from ._messages import describe_error, logger, sentence

__all__ = [
    "PROGRESS_INTERVAL_S",
    "PROGRESS_STEPS",
    "SingleTaskDock",
    "TaskControls",
    "avoid_llvm_clash",
    "connect_model_list",
    "import_in_background",
    "model_list_events",
    "scaled_progress",
    "wait_for_background_imports",
]

T = TypeVar("T")

#: Resolution of progress bars: progress is shown in thousandths.
PROGRESS_STEPS = 1000
#: Shortest time between two progress updates on screen (seconds); the latest
#: report is shown when the interval has passed. Each update repaints the window
#: twice (Qt's progress bar repaints at once, the status line later): about 35 ms
#: of CPU with software OpenGL at 1280 x 1024, so 2 a second cost under 4 % of a core.
#: napari's own progress bar also processes pending events whenever it is updated.
PROGRESS_INTERVAL_S = 0.5


@dataclass
class _Outcome(Generic[T]):
    """What a guarded background generator ends with: its result or its error."""

    value: T | None = None
    error: Exception | None = None


@thread_worker(start_thread=False, ignore_errors=True)
def _run_guarded(work: Generator[Progress, None, T]) -> Generator[Progress, None, _Outcome[T]]:
    """Relay ``work``'s progress and return its result or error as an :class:`_Outcome`.

    Errors are returned rather than raised because a raised error would reach
    napari's own handler (a notification with a traceback), and superqt
    silently drops any ``RuntimeError`` raised by a generator, which would
    hide, for example, torch's errors.
    """
    try:
        value = yield from work
    except Exception as error:  # noqa: BLE001 - every error is reported to the user
        if not isinstance(error, OrganelleError):
            logger.exception("background task failed")
        return _Outcome(error=error)
    return _Outcome(value=value)


def _progress_text(report: Progress) -> str:
    """The message as given (``tile 3/16``), or with the count when it names a unit.

    A one-word message such as ``planes`` names what is counted and becomes
    ``2/5 planes``.
    """
    message = report.message
    if report.total and message.isalpha():
        return f"{report.done}/{report.total} {message}"
    return message


#: modules that never import triton, so can be imported before Mesa's OpenGL is loaded
_WITHOUT_TRITON = ("onnx", "onnxruntime")
_background_imports: list[threading.Thread] = []
_imports_lock = threading.Lock()
_requested_imports: set[str] = set()


def import_in_background(modules: Sequence[str]) -> None:
    """Import ``modules`` in a background thread, so a dock's first Run need not.

    A first segmentation imports the network library (``segmentation_models_pytorch``,
    which brings torchvision), ONNX Runtime and onnx: several seconds of CPU, and
    moments of up to a second in which the importing thread holds the GIL (an
    extension module's initialisation), freezing the viewer whichever thread
    imports. Started when a dock opens, this is usually over before Run is clicked.
    Modules asked for before are skipped, and so are modules that would import
    triton while it can still clash with Mesa's OpenGL (:func:`avoid_llvm_clash`):
    those are left to the run. Workers call :func:`wait_for_background_imports`
    first, so a module is never imported by two threads at once.
    """
    avoid_llvm_clash()
    triton_settled = "triton" in sys.modules or importlib.util.find_spec("triton") is None
    with _imports_lock:
        wanted = [name for name in modules if name not in _requested_imports
                  and (triton_settled or name in _WITHOUT_TRITON)]
        _requested_imports.update(wanted)
        if not wanted:
            return
        thread = threading.Thread(target=_import_quietly, args=(wanted,), daemon=True,
                                  name="napari-organelle imports")
        _background_imports.append(thread)
        thread.start()


def _import_quietly(modules: Sequence[str]) -> None:
    # As models.io.build_network does before importing segmentation_models_pytorch:
    # the huggingface_hub it imports must never reach a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - only a speed-up: the run reports what is missing
            logger.debug("importing %s in the background failed", name, exc_info=True)


def wait_for_background_imports() -> None:
    """Block until the imports started by :func:`import_in_background` are done."""
    with _imports_lock:
        threads = list(_background_imports)
    for thread in threads:
        thread.join()


def scaled_progress(work: Generator[Progress, None, T], start: float, stop: float,
                    prefix: str = "") -> Generator[Progress, None, T]:
    """Run ``work``, re-expressing its progress as the ``[start, stop]`` part of a larger job.

    Use it to chain several progress generators into one, e.g. one
    segmentation per channel layer.

    Args:
        work: the sub-task.
        start: fraction of the whole job done when ``work`` starts.
        stop: fraction done when it ends.
        prefix: put before each progress message (e.g. the layer's name).

    Returns:
        ``work``'s result.
    """
    try:
        while True:
            try:
                step = next(work)
            except StopIteration as finished:
                return finished.value
            fraction = start + (stop - start) * step.fraction
            yield Progress(round(fraction * PROGRESS_STEPS), PROGRESS_STEPS,
                           f"{prefix}{_progress_text(step)}", step.data)
    finally:
        work.close()  # when the whole job is cancelled, stop the sub-task too


class TaskControls(Container):
    """Run and Cancel buttons, a progress bar and a status line for one background task.

    The owning widget connects :attr:`run_button` to its own run method,
    which validates the inputs and calls :meth:`start` with the work to do.
    One task runs at a time: Run is disabled while it does.

    Attributes:
        run_button: starts the owner's task (connect it to the owner's run method).
        cancel_button: stops the running task at its next progress report.
        progress_bar: progress of the running task, in :data:`PROGRESS_STEPS`.
        status_label: what is happening, or what went wrong, in one or two lines.
        worker: the napari worker of the latest task, kept so it is not
            garbage-collected while it runs; None before the first task.
        cancelled: the latest task was cancelled by the user.
        last_error: the message shown for the latest task's error, or None.
    """

    def __init__(self, run_text: str = "Run", *, run_tooltip: str | None = None) -> None:
        # magicgui containers must be initialised before attributes are set on them.
        super().__init__(labels=False)
        self.run_button = PushButton(text=run_text, name="run", tooltip=run_tooltip)
        self.cancel_button = PushButton(text="Cancel", name="cancel", enabled=False,
                                        tooltip="Stop after the current step; nothing is added")
        self.progress_bar = ProgressBar(min=0, max=PROGRESS_STEPS, value=0, name="progress")
        self.status_label = Label(value="", name="status")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([buttons, self.progress_bar, self.status_label])
        self.margins = (0, 0, 0, 0)
        self.status_label.native.setWordWrap(True)
        # A word-wrapped label in a crowded dock is squeezed below its text height: keep
        # room for two lines and let it take the dock's width.
        from qtpy.QtWidgets import QSizePolicy

        self.status_label.native.setMinimumHeight(
            2 * self.status_label.native.fontMetrics().lineSpacing() + 4)
        self.status_label.native.setSizePolicy(QSizePolicy.Policy.Expanding,
                                               QSizePolicy.Policy.Preferred)
        self.cancel_button.clicked.connect(self.cancel)

        self.worker: GeneratorWorker | None = None
        self.cancelled = False
        self.last_error: str | None = None
        self._running = False
        self._handling_result = False
        self._task_number = 0  # tells the signals of an earlier task's worker apart
        self._task = ""
        self._work: Generator[Progress, None, Any] | None = None
        self._activity: cancelable_progress | None = None
        self._on_done: Callable[[], None] | None = None
        self._pending: Progress | None = None  # the latest report, not shown yet
        self._shown_at = -float("inf")  # when progress was last shown (perf_counter)
        self._show_timer = QTimer()
        self._show_timer.setSingleShot(True)
        self._show_timer.timeout.connect(self._show_pending)
        self._held_movies: list[QMovie] = []
        self._look_for_indicator = False  # once more, at the first progress shown
        self._result_steps: Iterator[Any] | None = None

    @property
    def running(self) -> bool:
        """A task is running (from :meth:`start` until its results have been handled)."""
        return self._running

    # -- reporting

    def set_status(self, text: str) -> None:
        """Show ``text`` in the status line."""
        self.status_label.value = text
        self.status_label.tooltip = text

    def report_error(self, message: str) -> None:
        """Tell the user something failed: a napari error notification and the status line."""
        message = sentence(message)
        self.last_error = message
        _messages.show_error(message)
        self.set_status(f"Error: {message}")

    def report_warning(self, message: str) -> None:
        """A napari warning notification (the status line is left to the caller)."""
        _messages.show_warning(sentence(message))

    def report_info(self, message: str) -> None:
        """A napari info notification (the status line is left to the caller)."""
        _messages.show_info(sentence(message))

    # -- running

    def checked(self, make: Callable[[], T], task: str) -> T | None:
        """``make()``, or None after telling the user why it failed.

        For building a run's plan from the widget's choices before starting
        it: a wrong choice (an :class:`OrganelleError`) is shown as it is,
        anything else (e.g. an unreadable lazy array) is logged and described.
        """
        try:
            return make()
        except OrganelleError as error:
            self.report_error(str(error))
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            logger.exception("preparing the %s failed", task.lower())
            self.report_error(describe_error(error, task))
        return None

    def start(
        self,
        work: Generator[Progress, None, T],
        *,
        task: str,
        on_returned: Callable[[T], Iterator[Any] | None],
        on_finished: Callable[[], None] | None = None,
        cancelled_message: str = "Cancelled.",
    ) -> GeneratorWorker:
        """Run ``work`` in a background thread and hand its result to ``on_returned``.

        Args:
            work: a progress generator that has not been started (creating a
                generator runs none of its code, so it can be made here, in the
                main thread, with the inputs it needs).
            task: what is being done, for progress bars and messages
                (``"Segmentation"``).
            on_returned: called in the main thread with the result, unless the
                task failed or was cancelled; add or update layers here. Errors
                it raises are reported like errors of the task. It may return
                an iterator (be a generator function): each of its steps then
                runs in its own turn of the event loop, so the viewer draws and
                handles input between, say, two large layers; the task ends
                after the last step.
            on_finished: called in the main thread at the very end, whatever
                happened.
            cancelled_message: status line after the user cancels.

        Returns:
            The started worker (also kept in :attr:`worker`).

        Raises:
            RuntimeError: a task is already running.
        """
        if self._running:
            raise RuntimeError("a task is already running")
        avoid_llvm_clash()  # the worker may import torch's compiler stack
        self.cancelled = False
        self.last_error = None
        self._task_number += 1
        self._task = task
        self._work = work
        self._on_done = on_finished
        self._pending = None
        self._shown_at = -float("inf")
        self._set_running(True)  # first: napari may process events (a 2nd click) below
        self._reset_progress_bar()
        self.set_status(f"{task}: starting…")
        self.worker = worker = _run_guarded(work)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(partial(self._on_returned, on_returned))
        worker.aborted.connect(partial(self._on_aborted, cancelled_message))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(partial(self._on_finished, self._task_number))
        # napari's own thread_worker(progress=...) advances one step per yield; core
        # generators report fractions instead, so the activity bar is driven here.
        self._activity = cancelable_progress(total=PROGRESS_STEPS, desc=task)
        self._hold_activity_indicator()
        self._look_for_indicator = not self._held_movies
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running task to stop; it stops at its next progress report."""
        if not self._running or self.worker is None or self.cancelled:
            return
        self.cancelled = True
        self.worker.quit()
        self.cancel_button.enabled = False
        self.set_status(f"{self._task}: cancelling after the current step…")

    def _reset_progress_bar(self) -> None:
        self.progress_bar.max = PROGRESS_STEPS
        self.progress_bar.value = 0

    def _set_running(self, running: bool) -> None:
        self._running = running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    # The handlers below may be re-entered: napari's progress bar widgets call
    # QApplication.processEvents() when updated, so later signals of the worker
    # (even `finished`) can be handled in the middle of `_on_yielded`.

    def _on_yielded(self, report: object) -> None:
        if not self._running or self.cancelled or not isinstance(report, Progress):
            return
        activity = self._activity
        if activity is not None and activity.is_canceled:  # Cancel in napari's activity panel
            self.cancel()
            return
        self._pending = report
        wait = self._shown_at + PROGRESS_INTERVAL_S - time.perf_counter()
        if wait <= 0:
            self._show_pending()
        elif not self._show_timer.isActive():
            self._show_timer.start(int(wait * 1000) + 1)

    def _show_pending(self) -> None:
        """Show the latest progress report in the dock and in napari's activity panel."""
        report, self._pending = self._pending, None
        if report is None or not self._running or self.cancelled:
            return
        self._shown_at = time.perf_counter()
        if report.message:
            self.set_status(f"{self._task}: {_progress_text(report)}")
        if not report.total:  # unknown (e.g. loading a model): the message says what happens
            return
        value = min(PROGRESS_STEPS, round(report.fraction * PROGRESS_STEPS))
        self.progress_bar.value = value
        activity = self._activity
        if activity is not None:
            if self._look_for_indicator:  # napari may have started its indicator since
                self._look_for_indicator = False
                self._hold_activity_indicator()
            activity.update(value - activity.n)  # may handle other events: nothing after

    def _hold_activity_indicator(self) -> None:
        """Hold napari's animated "in progress" indicator still while this task runs.

        napari shows a 33 frames-a-second GIF in its status bar while any of its
        progress bars exists. Each frame repaints the window: with software
        OpenGL that took about 0.45 of a CPU core and, because the main thread
        holds the GIL while it paints, halved the speed of Python code in the
        worker (model loading, imports), measured with ``benchmarks/event_loop.py``.
        The indicator stays visible, on one frame; it is released in :meth:`_finish`.
        """
        try:
            window = self.native.window()
            for label in window.findChildren(QLabel):
                movie = label.movie()
                if movie is not None and movie.state() == QMovie.MovieState.Running:
                    movie.setPaused(True)
                    self._held_movies.append(movie)
        except (AttributeError, RuntimeError):  # a deleted widget: nothing to hold
            logger.debug("could not hold napari's activity indicator", exc_info=True)

    def _release_activity_indicator(self) -> None:
        movies, self._held_movies = self._held_movies, []
        for movie in movies:
            try:
                if movie.state() == QMovie.MovieState.Paused:
                    # napari stops it once none of its progress bars is left
                    movie.setPaused(False)
            except RuntimeError:  # deleted with its window
                pass

    def _on_returned(self, on_returned: Callable[[Any], Iterator[Any] | None],
                     outcome: _Outcome) -> None:
        self._handling_result = True
        steps = None
        try:
            if outcome.error is not None:
                self._reset_progress_bar()
                self.report_error(describe_error(outcome.error, self._task))
            else:
                self._show_timer.stop()
                self._show_pending()  # the final report, however recent the last one shown
                steps = on_returned(outcome.value)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            self._report_result_error(error)
            steps = None
        if isinstance(steps, Iterator):
            self._result_steps = steps
            self.cancel_button.enabled = False  # the results are being shown: too late
            QTimer.singleShot(0, self._next_result_step)
            return
        self._handling_result = False
        self._finish()

    def _next_result_step(self) -> None:
        """Run one step of the result callback; the next one in the next turn of the loop."""
        steps = self._result_steps
        if steps is None:
            return
        try:
            next(steps)
        except StopIteration:
            pass
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            self._report_result_error(error)
        else:
            QTimer.singleShot(0, self._next_result_step)
            return
        self._result_steps = None
        self._handling_result = False
        self._finish()

    def _report_result_error(self, error: Exception) -> None:
        if not isinstance(error, OrganelleError):
            logger.exception("handling the result of %s failed", self._task)
        self.report_error(describe_error(error, self._task))

    def _on_aborted(self, message: str) -> None:
        self.cancelled = True  # also when stopped from napari's task status
        self._reset_progress_bar()
        self.set_status(message)
        self._finish()

    def _on_errored(self, error: Exception) -> None:
        # Only errors outside the guarded generator get here (worker plumbing).
        logger.error("background task crashed", exc_info=error)
        self._reset_progress_bar()
        self.report_error(describe_error(error, self._task))
        self._finish()

    def _on_finished(self, task_number: int) -> None:
        # `finished` follows `returned`, `aborted` or `errored`, which already finish;
        # this covers a worker that ends with none of them. The worker thread emits it
        # last, so it can arrive after the next task has started: it must not end that.
        if task_number == self._task_number and not self._handling_result:
            self._finish()

    def _finish(self) -> None:
        """End the task once: release its resources and re-enable Run."""
        if not self._running:
            return
        self._set_running(False)
        self._show_timer.stop()
        self._pending = None
        activity, self._activity = self._activity, None
        work, self._work = self._work, None
        if work is not None:
            # A cancelled generator is suspended mid-run, holding its arrays (and
            # GPU memory): close it now rather than when the worker is collected.
            work.close()
        if activity is not None:
            activity.close()
        self._release_activity_indicator()
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()


class SingleTaskDock:
    """``worker``, ``running`` and ``cancel`` of a dock whose one task runs in ``controls``."""

    controls: TaskControls

    @property
    def worker(self) -> GeneratorWorker | None:
        """The napari worker of the latest run (None before the first)."""
        return self.controls.worker

    @property
    def running(self) -> bool:
        """A run is in progress (until its results have been shown)."""
        return self.controls.running

    def cancel(self) -> None:
        """Stop the run after its current step (the Cancel button)."""
        self.controls.cancel()


class _ModelListEvents:
    """Models or versions changed: a version was trained, chosen, imported or rolled back."""

    #: emitted with the version that became the one in use, or None when only the list changed
    changed = Signal(object)


#: One emitter for every dock in the process, so a model trained in the Train dock
#: shows up in the Segment dock without the user having to reopen it.
model_list_events = _ModelListEvents()


def connect_model_list(callback: Callable[[Any], Any]) -> Callable[..., None]:
    """Call ``callback(info_or_none)`` whenever :data:`model_list_events` fires.

    The connection is weak, as for :func:`connect_layer_list`; connect the
    returned function to the widget's ``native.destroyed``.

    Returns:
        A function that disconnects ``callback`` again.
    """
    model_list_events.changed.connect(callback)
    reference = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (
        lambda: callback)

    def disconnect(*_: Any) -> None:
        target = reference()
        if target is not None:
            model_list_events.changed.disconnect(target)

    return disconnect
