"""Plumbing shared by the dock widgets (Segment, Correct, Train, Analyze).

Three concerns live here so that every widget behaves the same way:

* **Background work.** Long computations in the core are generators that
  yield :class:`~napari_organelle.progress.Progress` and return a result.
  :class:`TaskControls` (Run and Cancel buttons, a progress bar, a status
  line) runs one in napari's ``thread_worker``, mirrors its progress in the
  dock and in napari's activity panel, stops it at the next ``yield`` on
  Cancel, and hands the result to a callback in the main thread, the only
  thread allowed to touch layers.
* **Messages.** Every failure reaches the user as one readable sentence, as a
  napari notification and in the widget's status line, never as a traceback
  dialog; unexpected errors are logged with their traceback.
* **Layers.** Finding Image and Labels layers, copying an image's placement
  in the world (scale, translate...) to its labels, and adding or updating
  the Labels layer of one organelle so repeated runs do not pile up copies.

``show_error``, ``show_warning`` and ``show_info`` are looked up in this module
when called, so tests can replace them here to capture what the user sees.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.layers import Image, Labels, Layer
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.progress import cancelable_progress
from psygnal import Signal

from .._compat import avoid_llvm_clash
from ..errors import OrganelleError
from ..progress import Progress

if TYPE_CHECKING:
    import napari

    from ..models import ClassSpec

__all__ = [
    "METADATA_KEY",
    "PROGRESS_STEPS",
    "PROPOSAL_KEY",
    "TaskControls",
    "add_or_update_labels",
    "avoid_llvm_clash",
    "connect_layer_list",
    "describe_error",
    "find_result_layers",
    "full_resolution_data",
    "image_layers",
    "labels_colormap",
    "labels_layers",
    "layer_choices",
    "layer_pixel_size_nm",
    "replace_labels_data",
    "result_tag",
    "scaled_progress",
    "sentence",
    "show_error",
    "show_info",
    "show_warning",
    "spatial_transform",
]

logger = logging.getLogger("napari_organelle")

T = TypeVar("T")

#: Resolution of progress bars: progress is shown in thousandths.
PROGRESS_STEPS = 1000

#: Key in ``layer.metadata`` under which result layers record where they came from.
METADATA_KEY = "napari_organelle"

#: Key in ``layer.metadata`` under which result layers keep the model's proposal, so the
#: Correct widget can count the pixels an annotator changed (painting overwrites the
#: labels): its foreground, ``np.packbits(labels != 0, axis=-1)``, 1 bit per pixel.
PROPOSAL_KEY = f"{METADATA_KEY}_proposal"

#: Updates changing more pixels than this replace the data instead of recording
#: an undo step: napari keeps ~18 bytes of undo history per changed 2-D pixel.
UNDOABLE_UPDATE_MAX_PIXELS = 1 << 24


# --------------------------------------------------------------------------- messages


def sentence(text: str) -> str:
    """``text`` with its first letter capitalised (core messages start in lower case)."""
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


# --------------------------------------------------------------------------- background work


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
        show_error(message)
        self.set_status(f"Error: {message}")

    def report_warning(self, message: str) -> None:
        """A napari warning notification (the status line is left to the caller)."""
        show_warning(sentence(message))

    def report_info(self, message: str) -> None:
        """A napari info notification (the status line is left to the caller)."""
        show_info(sentence(message))

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
        on_returned: Callable[[T], None],
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
                it raises are reported like errors of the task.
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
        if report.message:
            self.set_status(f"{self._task}: {_progress_text(report)}")
        value = min(PROGRESS_STEPS, round(report.fraction * PROGRESS_STEPS))
        # an unknown total (e.g. loading a model) shows a busy bar
        self.progress_bar.max = PROGRESS_STEPS if report.total else 0
        if report.total:
            self.progress_bar.value = value
        activity = self._activity
        if activity is None:
            return
        if activity.is_canceled:  # the Cancel button of napari's activity panel
            self.cancel()
        elif report.total:
            activity.update(value - activity.n)  # may handle other events: nothing after

    def _on_returned(self, on_returned: Callable[[Any], None], outcome: _Outcome) -> None:
        self._handling_result = True
        try:
            if outcome.error is not None:
                self._reset_progress_bar()
                self.report_error(describe_error(outcome.error, self._task))
            else:
                on_returned(outcome.value)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            if not isinstance(error, OrganelleError):
                logger.exception("handling the result of %s failed", self._task)
            self.report_error(describe_error(error, self._task))
        finally:
            self._handling_result = False
            self._finish()

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
        activity, self._activity = self._activity, None
        work, self._work = self._work, None
        if work is not None:
            # A cancelled generator is suspended mid-run, holding its arrays (and
            # GPU memory): close it now rather than when the worker is collected.
            work.close()
        if activity is not None:
            activity.close()
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()


# --------------------------------------------------------------------------- layers


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


def image_layers(viewer: napari.viewer.Viewer) -> list[Image]:
    """The viewer's Image layers, top of the layer list first."""
    return [layer for layer in reversed(viewer.layers) if isinstance(layer, Image)]


def labels_layers(viewer: napari.viewer.Viewer) -> list[Labels]:
    """The viewer's Labels layers, top of the layer list first."""
    return [layer for layer in reversed(viewer.layers) if isinstance(layer, Labels)]


def layer_choices(viewer: napari.viewer.Viewer, layer_type: type[Layer] = Image
                  ) -> Callable[[Any], list[tuple[str, Layer]]]:
    """A ``choices`` callable for a magicgui ComboBox listing one type of layer by name."""
    def choices(_widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in reversed(viewer.layers)
                if isinstance(layer, layer_type)]

    return choices


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


def connect_layer_list(viewer: napari.viewer.Viewer, callback: Callable[..., Any]
                       ) -> Callable[[], None]:
    """Call ``callback`` whenever layers are added, removed, moved or renamed.

    napari keeps only a weak reference to a bound method, so connecting a
    widget's method does not keep the widget alive, and neither does the
    returned function: connect it to the widget's ``native.destroyed`` so a
    deleted widget is not called.

    Returns:
        A function that disconnects ``callback`` again.
    """
    events = viewer.layers.events
    emitters = [events.inserted, events.removed, events.reordered, events.renamed]
    for emitter in emitters:
        emitter.connect(callback)
    is_method = hasattr(callback, "__self__")
    reference = weakref.WeakMethod(callback) if is_method else (lambda: callback)

    def disconnect(*_: Any) -> None:
        target = reference()
        if target is None:
            return  # napari dropped its weak reference with the object
        for emitter in emitters:
            emitter.disconnect(target)

    return disconnect


def full_resolution_data(layer: Layer) -> Any:
    """The layer's data at full resolution (level 0 of a multiscale pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def spatial_transform(layer: Layer) -> dict[str, Any]:
    """Keyword arguments placing a new layer exactly over ``layer`` in the world.

    Labels computed from an image have its shape (without the RGB axis), so
    they take its scale, translation, rotation, shear, affine, units and axis
    labels unchanged.
    """
    return {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "rotate": np.array(layer.rotate),
        "shear": np.array(layer.shear),
        "affine": np.array(layer.affine.affine_matrix),
        "units": tuple(layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }


def layer_pixel_size_nm(layer: Layer) -> float | None:
    """The layer's pixel size in nanometres, when the layer says what it is.

    Read from ``layer.metadata["pixel_size_nm"]`` (readers of this package put
    it there), else from the X axis' scale when napari knows its unit is a
    length (``layer.units``). None when unknown: napari's default unit is the
    pixel, which says nothing about the physical size.
    """
    value = layer.metadata.get("pixel_size_nm") if isinstance(layer.metadata, Mapping) else None
    if isinstance(value, (int, float)) and np.isfinite(value) and value > 0:
        return float(value)
    try:
        unit = layer.units[-1]
        if unit.dimensionality == {"[length]": 1}:
            return float((layer.scale[-1] * unit).to("nanometer").magnitude)
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return None


def result_tag(layer: Layer) -> dict[str, Any] | None:
    """What a result layer records about its origin (source, class, run...), or None."""
    tag = layer.metadata.get(METADATA_KEY) if isinstance(layer.metadata, Mapping) else None
    return tag if isinstance(tag, Mapping) else None


def find_result_layers(viewer: napari.viewer.Viewer, *, source: str | None = None,
                       class_name: str | None = None) -> list[Labels]:
    """Labels layers produced by napari-organelle, optionally for one source layer and class.

    Args:
        viewer: the viewer.
        source: name of the image layer the labels were computed from.
        class_name: organelle name (``mitochondria``).

    Returns:
        Matching layers, oldest run first.
    """
    found = []
    for layer in labels_layers(viewer):
        tag = result_tag(layer)
        if tag is None:
            continue
        if source is not None and tag.get("source") != source:
            continue
        if class_name is not None and tag.get("class") != class_name:
            continue
        found.append(layer)
    return sorted(found, key=lambda layer: _run_number(result_tag(layer)))


def labels_colormap(spec: ClassSpec) -> DirectLabelColormap | None:
    """The colormap for one class's labels, or None for napari's default.

    Instance classes keep napari's random colours so touching objects stay
    distinguishable; a semantic mask is drawn in the class colour, including
    any value a user paints into it.
    """
    if spec.kind == "instance":
        return None
    return DirectLabelColormap(color_dict={None: spec.color, 0: "transparent"})


#: (dtype, direct colormap?) pairs whose napari display set-up this process has done
_WARMED_LABELS: set[tuple[str, bool]] = set()


def warm_up_labels_display(layers: Iterable[tuple[np.dtype, ClassSpec]]) -> None:
    """Do napari's one-off set-up for drawing these Labels layers now, in this (worker) thread.

    The first Labels layer of a dtype and colormap in a process makes napari
    compile its numba colour mapping and import lazily loaded modules: 2-4 s of
    CPU on a 2-core machine (``benchmarks/event_loop.py --trace-stalls``). Done
    on the main thread while results are added, that froze the viewer;
    building a tiny layer of each kind here, off the main thread, leaves only
    the per-layer cost there. Layers are models, not Qt objects, so building
    one in a worker is safe; it is never shown.

    Args:
        layers: the dtype and class of each layer that will be added.
    """
    for dtype, spec in layers:
        colormap = labels_colormap(spec)
        key = (np.dtype(dtype).str, colormap is not None)
        if key in _WARMED_LABELS:
            continue
        _WARMED_LABELS.add(key)
        options = {} if colormap is None else {"colormap": colormap}
        try:
            Labels(np.zeros((4, 4), dtype), **options).refresh()
        except Exception:  # noqa: BLE001 - only a speed-up: the real layer will report errors
            logger.debug("warming up the display of %s labels failed", dtype, exc_info=True)


def replace_labels_data(layer: Labels, data: np.ndarray) -> None:
    """Put ``data`` into ``layer`` so that the viewer's undo (Ctrl+Z) restores the old labels.

    When the new labels fit the old array (same shape, values within its dtype)
    only the changed pixels are written, as one step of the layer's undo
    history, which also keeps earlier edits undoable. Otherwise the data is
    replaced and the history is cleared, because napari's history records
    pixel positions in the old array and replaying it on new data would
    corrupt the labels.
    """
    old = layer.data
    if (isinstance(old, np.ndarray) and old.shape == data.shape and old.dtype.kind in "ui"
            and (data.size == 0 or int(data.max()) <= np.iinfo(old.dtype).max)):
        changed = np.nonzero(old != data)
        if changed[0].size <= UNDOABLE_UPDATE_MAX_PIXELS:
            if changed[0].size:
                layer.data_setitem(changed, data[changed])
            return
    layer.data = data
    # napari offers no public "clear history"; making a layer read-only clears it.
    layer.editable = False
    layer.editable = True


def add_or_update_labels(
    viewer: napari.viewer.Viewer,
    data: np.ndarray,
    *,
    spec: ClassSpec,
    source: str,
    transform: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    keep_previous: bool = False,
) -> Labels:
    """Show one class's labels: update the previous result's layer, or add a named one.

    The layer is found by its tag in ``layer.metadata[METADATA_KEY]`` (source
    layer and class), not by name, so a renamed result layer is still updated.
    New layers are named after the class (``mitochondria``); if that name
    belongs to another layer, after the class and source
    (``mitochondria (cells)``); with ``keep_previous``, a run number is added
    (``mitochondria [run 2]``).

    Args:
        viewer: the viewer.
        data: the label image (object ids or a 0/1 mask).
        spec: the class: name, ``instance``/``semantic``, colour.
        source: name of the image layer the labels were computed from.
        transform: placement in the world, usually :func:`spatial_transform`
            of the source layer.
        provenance: more facts to record in the tag (model, settings...).
        keep_previous: add a new, numbered layer instead of updating the
            latest result for this source and class.

    Returns:
        The updated or added layer.
    """
    previous = find_result_layers(viewer, source=source, class_name=spec.name)
    run = 1 + max((_run_number(result_tag(layer)) for layer in previous), default=0)
    tag = {"source": source, "class": spec.name, "kind": spec.kind, "run": run,
           **(provenance or {})}
    colormap = labels_colormap(spec)
    proposal = np.packbits(np.asarray(data) != 0, axis=-1)
    if previous and not keep_previous:
        layer = previous[-1]
        replace_labels_data(layer, data)
        for attribute, value in transform.items():
            setattr(layer, attribute, value)  # the image may have been moved since
        if colormap is not None:
            layer.colormap = colormap
        layer.metadata = {**layer.metadata, METADATA_KEY: tag, PROPOSAL_KEY: proposal}
        return layer
    name = _result_name(viewer, spec.name, source, run if previous else None)
    options = {"colormap": colormap} if colormap is not None else {}
    layer = viewer.add_labels(data, name=name,
                              metadata={METADATA_KEY: tag, PROPOSAL_KEY: proposal},
                              **transform, **options)
    if spec.kind == "semantic":
        layer.selected_label = 1  # painting corrections then adds to the mask
    return layer


def _run_number(tag: Mapping[str, Any] | None) -> int:
    run = tag.get("run") if tag else None
    return run if isinstance(run, int) else 0


def _result_name(viewer: napari.viewer.Viewer, class_name: str, source: str,
                 run: int | None) -> str:
    """``class``, or ``class (source)`` when the plain name is another layer's."""
    def belongs_to_others(layer: Layer) -> bool:
        tag = result_tag(layer)
        return tag is None or tag.get("source") != source

    clash = any(layer.name == class_name and belongs_to_others(layer) for layer in viewer.layers)
    clash |= any(belongs_to_others(layer)
                 for layer in find_result_layers(viewer, class_name=class_name))
    base = f"{class_name} ({source})" if clash else class_name
    # Should the name still be taken (a user's own "mitochondria (cells)"), napari
    # appends " [1]", which is as clear as anything chosen here.
    return f"{base} [run {run}]" if run else base
