"""Where the plugin's docks go: tabs in one dock area, not a column taller than the screen.

napari stacks dock widgets opened from the Plugins menu one under the other;
four of ours stacked that way are about 2,300 pixels tall. Each of our docks
therefore joins the others as a tab once napari has placed it, and
:func:`open_docks` (the demo, scripts) opens them all as tabs at once.
"""

from __future__ import annotations

from typing import Any

import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

PLUGIN = "napari-organelle"
#: The plugin's dock widgets, by their display names in napari.yaml, in tab order.
DOCK_NAMES = ("Segment", "Correct", "Train", "Analyze")
#: Qt property that marks the inner widget of one of our docks.
_MARK = "napari_organelle_dock"


def join_organelle_tabs(widget: QWidget) -> None:
    """Mark ``widget`` as one of ours and, once it is docked, make it a tab beside the others.

    Call from a dock widget's constructor: napari docks the widget only after
    constructing it, so the tabbing waits for the event loop.
    """
    widget.setProperty(_MARK, True)
    QTimer.singleShot(0, lambda: _tabify(widget))


def open_docks(viewer: napari.viewer.Viewer, shown: str = "Segment") -> dict[str, Any]:
    """Open every dock of the plugin as tabs of one dock area, with ``shown`` in front.

    Returns:
        The dock widgets' inner widgets by display name.
    """
    widgets = {}
    docks = {}
    for name in DOCK_NAMES:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        widgets[name], docks[name] = widget, dock
    docks[shown].show()
    docks[shown].raise_()
    return widgets


def open_demo(viewer: napari.viewer.Viewer, sample: str = "live_cell") -> dict[str, Any]:
    """What ``napari-organelle demo`` shows: a sample image and every dock, Segment in front.

    Args:
        viewer: the viewer to fill.
        sample: ``live_cell`` or ``em`` (the plugin's sample data keys).

    Returns:
        The dock widgets' inner widgets by display name.
    """
    viewer.open_sample(PLUGIN, sample)
    return open_docks(viewer, shown="Segment")


def _tabify(widget: QWidget) -> None:
    try:
        dock = _dock_of(widget)
    except RuntimeError:  # deleted before the event loop ran (closed at once, tests)
        return
    if dock is None or not isinstance(dock.parent(), QMainWindow):
        return
    window: QMainWindow = dock.parent()
    area = window.dockWidgetArea(dock)
    siblings = [other for other in window.findChildren(QDockWidget)
                if other is not dock and other.isVisible() and not other.isFloating()
                and window.dockWidgetArea(other) == area and _is_ours(other)]
    if not siblings or dock in window.tabifiedDockWidgets(siblings[0]):
        return
    window.tabifyDockWidget(siblings[0], dock)
    dock.show()
    dock.raise_()


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    return parent


def _is_ours(dock: QDockWidget) -> bool:
    inner = dock.widget()
    if inner is None:
        return False
    return bool(inner.property(_MARK)) or any(
        bool(child.property(_MARK)) for child in inner.findChildren(QWidget))
