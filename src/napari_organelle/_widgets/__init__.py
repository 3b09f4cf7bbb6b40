"""napari dock widgets: thin front ends over the core (no computation lives here).

Each widget is a :class:`magicgui.widgets.Container` registered in ``napari.yaml``
and created by napari, which passes it the viewer. Widgets share their
plumbing:

* :mod:`._tasks`: running a progress generator in a background thread with
  Run/Cancel buttons and a progress bar;
* :mod:`._messages`: errors as one readable sentence, shown as napari
  notifications;
* :mod:`._layers` (no Qt): finding layers, reading their pixel size, and
  updating or adding the tagged layers a computation produces.

Modules are not imported here, so that importing one widget (or one of those)
does not import the others and their dependencies.
"""
