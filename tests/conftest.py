"""Fixtures shared by the test modules, and the display check of the GUI tests.

GUI test modules mark themselves ``pytestmark = pytest.mark.gui`` and begin with
``pytest.importorskip("napari")`` (napari, magicgui and qtpy are an optional
extra, so the core's tests run without them). Without a display their tests are
skipped here, before any fixture makes a viewer: Qt aborts the whole process
when a QApplication is made without one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAPARI_ORGANELLE_DATA", REPO.parent / "shared" / "data"))
NO_DISPLAY = "needs a display: run under xvfb-run (scripts/test.sh does)"


def has_display() -> bool:
    """Whether Qt can open windows: on Linux only with an X or Wayland display (or a Qt
    platform chosen by hand, e.g. ``QT_QPA_PLATFORM=offscreen``); elsewhere always."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``gui`` when there is no display (see the module's docstring)."""
    if has_display():
        return
    skip = pytest.mark.skip(reason=NO_DISPLAY)
    for item in items:
        if item.get_closest_marker("gui") is not None:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    """The development data sets (../shared/data); tests using it skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    return SHARED_DATA


@pytest.fixture
def no_bundled_models(tmp_path_factory, monkeypatch):
    """Hide the bundled models, for tests that drive widgets with their own tiny models."""
    monkeypatch.setattr("napari_organelle.models.registry.BUNDLED_DIR",
                        tmp_path_factory.mktemp("no-bundled"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: tiny models run much faster so (on a busy machine, ten times)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_em_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-em@0`` (mitochondria: instance, membranes: semantic; random weights), built once."""
    import torch

    from ._models import make_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_tiny_model(tmp_path_factory.mktemp("base") / "tiny-em")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty napari-organelle home (models, runs, default training store) for one test."""
    folder = tmp_path / "home"
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(folder))
    return folder


@pytest.fixture
def home(private_home: Path, tiny_em_model: Path) -> Path:
    """A private napari-organelle home holding ``tiny-em@0`` as a user model."""
    shutil.copytree(tiny_em_model, private_home / "models" / "tiny-em" / "0")
    return private_home


# ------------------------------------------------------------ what the docks tell the user


class Messages:
    """What the docks told the user through ``_widgets._messages``, by severity."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []


@pytest.fixture
def messages(monkeypatch: pytest.MonkeyPatch) -> Messages:
    """Capture the docks' error, warning and info messages instead of showing them.

    The docks look ``show_error``, ``show_warning`` and ``show_info`` up in
    ``napari_organelle._widgets._messages`` when they call them, so they are
    replaced there (napari's own notifications are then not sent).
    """
    from napari_organelle._widgets import _messages

    shown = Messages()
    monkeypatch.setattr(_messages, "show_error", shown.errors.append)
    monkeypatch.setattr(_messages, "show_warning", shown.warnings.append)
    monkeypatch.setattr(_messages, "show_info", shown.infos.append)
    return shown


def _record_notifications(keep: Callable[[Any], bool]) -> Iterator[list[Any]]:
    from napari.utils.notifications import notification_manager

    shown: list[Any] = []

    def record(notification: Any) -> None:
        if keep(notification):
            shown.append(notification)

    notification_manager.notification_ready.connect(record)
    try:
        yield shown
    finally:
        notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def notifications() -> Iterator[list[Any]]:
    """Every napari notification shown during the test (``napari.utils.notifications``)."""
    yield from _record_notifications(lambda notification: True)


@pytest.fixture
def tracebacks() -> Iterator[list[Any]]:
    """Notifications of unhandled exceptions (napari's traceback dialog); should stay empty."""
    from napari.utils.notifications import ErrorNotification

    yield from _record_notifications(lambda notification: isinstance(notification,
                                                                      ErrorNotification))
