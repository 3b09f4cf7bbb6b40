"""napari dock widgets: thin front ends over the core (no computation lives here).

Each widget is a :class:`magicgui.widgets.Container` registered in ``napari.yaml``
and created by napari, which passes it the viewer. Widgets share their
plumbing through :mod:`napari_organelle._widgets._common`: running a
progress generator in a background thread with Run/Cancel buttons and a
progress bar, reporting errors as napari notifications, finding layers, and
adding or updating the Labels layers a computation produces.

Modules are not imported here, so that importing one widget (or ``_common``)
does not import the others and their dependencies.
"""
