"""Layers of the dock widgets: finding them, placing results over their image, tagging them.

* **Finding** Image and Labels layers (top of the layer list first), and
  hearing when the layer list changes.
* **Placing** a result exactly over its image (:func:`spatial_transform`) and
  reading a layer's pixel size (:func:`layer_pixel_size_yx_nm`, the one reader).
* **Tagging**: result layers record where they came from in
  ``layer.metadata[METADATA_KEY]`` (:func:`result_tag`), and
  :func:`update_or_add_layer` updates the layer of an earlier run (found by
  that tag) instead of piling up copies; :func:`add_or_update_labels` does it
  for one organelle's labels, with a run number and the model's proposal.

No Qt is imported here: these work on :class:`napari.components.ViewerModel`
as on a viewer with a window.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import CyclicLabelColormap

from ._messages import logger

if TYPE_CHECKING:
    import napari

    from ..models import ClassSpec

__all__ = [
    "METADATA_KEY",
    "PROPOSAL_KEY",
    "add_or_update_labels",
    "connect_layer_list",
    "find_result_layers",
    "find_tagged_layer",
    "full_resolution_data",
    "image_layers",
    "labels_colormap",
    "labels_layers",
    "layer_choices",
    "layer_pixel_size_nm",
    "layer_pixel_size_yx_nm",
    "pack_proposal",
    "proposal_plane",
    "replace_labels_data",
    "result_tag",
    "spatial_transform",
    "update_or_add_layer",
    "warm_up_labels_display",
    "warm_up_labels_display_soon",
]

#: Key in ``layer.metadata`` under which result layers record where they came from.
METADATA_KEY = "napari_organelle"

#: Key in ``layer.metadata`` under which result layers keep the model's proposal, so the
#: Correct widget can count the pixels an annotator changed (painting overwrites the
#: labels): its foreground, ``np.packbits(labels != 0, axis=-1)``, 1 bit per pixel.
PROPOSAL_KEY = f"{METADATA_KEY}_proposal"

#: Updates changing more pixels than this replace the data instead of recording
#: an undo step: napari keeps ~18 bytes of undo history per changed 2-D pixel.
UNDOABLE_UPDATE_MAX_PIXELS = 1 << 24


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



def layer_pixel_size_yx_nm(layer: Layer) -> tuple[float, float] | None:
    """The layer's ``(y, x)`` pixel size in nanometres, when the layer says what it is.

    The one reader of pixel sizes for the docks. In order:

    1. ``layer.metadata["pixel_size_nm"]``: one number or a ``(y, x)`` pair
       (this package's readers and loaded training samples put it there);
    2. the scale of the Y and X axes, when napari knows their unit is a
       length (``layer.units``);
    3. the ``pixel_size_nm`` entered in the Segment dock, recorded in a
       result layer's tag (:func:`result_tag`).

    None when unknown: napari's default unit is the pixel, which says nothing
    about the physical size.

    Examples:
        >>> layer_pixel_size_yx_nm(Image(np.zeros((4, 4)), metadata={"pixel_size_nm": 4.6}))
        (4.6, 4.6)
        >>> layer_pixel_size_yx_nm(Image(np.zeros((4, 4)), scale=(0.5, 0.25),
        ...                              units=("micrometer", "micrometer")))
        (500.0, 250.0)
        >>> layer_pixel_size_yx_nm(Image(np.zeros((4, 4)), scale=(2, 2))) is None
        True
    """
    metadata = layer.metadata if isinstance(layer.metadata, Mapping) else {}
    declared = _pixel_size_pair(metadata.get("pixel_size_nm"))
    if declared is not None:
        return declared
    sizes = [_axis_size_nm(layer, axis) for axis in (-2, -1)]
    if sizes[0] is not None and sizes[1] is not None:
        return (sizes[0], sizes[1])
    return _pixel_size_pair((result_tag(layer) or {}).get("pixel_size_nm"))


def layer_pixel_size_nm(layer: Layer) -> float | None:
    """The layer's pixel size along X in nanometres (see :func:`layer_pixel_size_yx_nm`)."""
    sizes = layer_pixel_size_yx_nm(layer)
    return None if sizes is None else sizes[1]


def _pixel_size_pair(value: Any) -> tuple[float, float] | None:
    """A positive number, or a pair of them, as ``(y, x)``; None for anything else."""
    values = value if isinstance(value, (list, tuple)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, Real) and not isinstance(v, bool)
                                   and np.isfinite(v) and v > 0 for v in values):
        return None
    return (float(values[0]), float(values[1]))


def _axis_size_nm(layer: Layer, axis: int) -> float | None:
    """The pixel size along one axis in nm, when the axis has a length unit."""
    try:
        unit = layer.units[axis]
        if unit.dimensionality == {"[length]": 1}:
            size = float((layer.scale[axis] * unit).to("nanometer").magnitude)
            # 0.008 um is 8 nm, not 7.999999999999999 (unit conversion rounds)
            return float(f"{size:.12g}")
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


def labels_colormap(spec: ClassSpec) -> CyclicLabelColormap | None:
    """The colormap for one class's labels, or None for napari's default.

    Instance classes keep napari's random colours so touching objects stay
    distinguishable; a semantic mask is drawn in the class colour, including
    any value a user paints into it: a cycle of one colour after the
    transparent background. (A ``DirectLabelColormap`` draws the same, but
    napari compiles a numba dictionary for it on first use, about 2 s of CPU
    that cannot be cached; the cyclic mapping's compiled code is cached on disk.)

    Examples:
        >>> from napari_organelle.models import ClassSpec
        >>> colormap = labels_colormap(ClassSpec("er", "semantic", color="yellow"))
        >>> colormap.map(np.array([0, 1, 7], np.uint8)).tolist()
        [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]]
    """
    if spec.kind == "instance":
        return None
    return CyclicLabelColormap(colors=["transparent", spec.color], background_value=0)


#: (dtype, own colormap?) pairs whose napari display set-up this process has done
_WARMED_LABELS: set[tuple[str, bool]] = set()
#: vispy's dash patterns are built (see :func:`warm_up_labels_display`)
_line_patterns_built = False
#: held while a warm-up runs, so a second caller waits for it instead of skipping it
_WARM_UP_LOCK = threading.Lock()
_background_warm_up: threading.Thread | None = None


def warm_up_labels_display(layers: Iterable[tuple[np.dtype, ClassSpec]]) -> None:
    """Do napari's one-off set-up for drawing these Labels layers now, in this (worker) thread.

    The first Labels layer of a dtype and colormap in a process makes napari
    compile its numba colour mapping and import lazily loaded modules: 2-4 s of
    CPU on a 2-core machine (``benchmarks/event_loop.py --trace-stalls``). Done
    on the main thread while results are added, that froze the viewer;
    building a tiny layer of each kind here, off the main thread, leaves only
    the per-layer cost there. Layers are models, not Qt objects, so building
    one in a worker is safe; it is never shown.

    Also builds vispy's dash patterns, which the first Labels layer's polygon
    overlay (an "agg" line) otherwise builds in the main thread: 0.3-0.4 s of
    Python, cached for the process after.

    Thread-safe: while one thread warms a kind up, another asking for it waits.

    Args:
        layers: the dtype and class of each layer that will be added.
    """
    global _line_patterns_built
    with _WARM_UP_LOCK:
        if not _line_patterns_built:
            try:
                from vispy.visuals.line.dash_atlas import DashAtlas

                DashAtlas()  # its patterns are kept in an lru_cache
            except Exception:  # noqa: BLE001 - only a speed-up
                logger.debug("warming up vispy's line patterns failed", exc_info=True)
            _line_patterns_built = True
    for dtype, spec in layers:
        colormap = labels_colormap(spec)
        key = (np.dtype(dtype).str, colormap is not None)
        with _WARM_UP_LOCK:
            if key in _WARMED_LABELS:
                continue
            options = {} if colormap is None else {"colormap": colormap}
            try:
                Labels(np.zeros((4, 4), dtype), **options).refresh()
            except Exception:  # noqa: BLE001 - only a speed-up: the real layer reports errors
                logger.debug("warming up the display of %s labels failed", dtype, exc_info=True)
            _WARMED_LABELS.add(key)


def warm_up_labels_display_soon() -> None:
    """Start :func:`warm_up_labels_display` for the usual result layers in a background thread.

    Once per process, for what segmentations return: uint16 object ids and
    uint8 masks. Called when a dock that adds labels opens, so napari's
    one-off set-up (1.5-4 s of CPU) is usually done before the first Run;
    a Run that comes sooner waits for it in its worker, never in the main thread.
    """
    global _background_warm_up
    if _background_warm_up is not None:
        return
    from ..models import ClassSpec

    kinds = [(np.dtype(np.uint16), ClassSpec("objects", "instance")),
             (np.dtype(np.uint8), ClassSpec("mask", "semantic"))]
    _background_warm_up = threading.Thread(target=warm_up_labels_display, args=(kinds,),
                                           name="napari-organelle labels warm-up", daemon=True)
    _background_warm_up.start()


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
    if not isinstance(data, np.ndarray):  # lazy labels (a pyramid, a dask array)
        layer.data = data
        return
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



def pack_proposal(labels: np.ndarray) -> np.ndarray:
    """The foreground of a model's labels, packed eight pixels a byte along the last axis.

    This is what ``layer.metadata[PROPOSAL_KEY]`` holds: changed pixels are
    counted as foreground/background flips (see
    :func:`~napari_organelle.store.changed_pixels`), so one bit per pixel
    keeps all that is needed at 1/16 of the memory of uint16 labels.

    Examples:
        >>> pack_proposal(np.array([[0, 3, 0, 0, 0, 0, 0, 0, 1]])).tolist()
        [[64, 128]]
    """
    return np.packbits(np.asarray(labels) != 0, axis=-1)


def proposal_plane(layer: Labels, plane: tuple[int, ...]) -> np.ndarray | None:
    """The model's foreground in one plane of ``layer`` before it was corrected.

    Returns:
        A boolean array of the plane's shape, or None when the layer carries
        no proposal (drawn by hand, opened from a file, or made before
        proposals were kept) or one that does not fit its data.
    """
    packed = layer.metadata.get(PROPOSAL_KEY) if isinstance(layer.metadata, Mapping) else None
    shape = full_resolution_data(layer).shape
    if not isinstance(packed, np.ndarray) or packed.shape != (*shape[:-1], -(-shape[-1] // 8)):
        return None
    return np.unpackbits(packed[plane], axis=-1, count=shape[-1]).astype(bool)


def find_tagged_layer(viewer: napari.viewer.Viewer, layer_type: type[Layer],
                      match: Mapping[str, Any]) -> Layer | None:
    """The topmost ``layer_type`` layer whose tag holds every entry of ``match``, or None.

    Examples:
        >>> from napari.components import ViewerModel
        >>> viewer = ViewerModel()
        >>> layer = viewer.add_labels(np.zeros((4, 4), np.uint8), name="er skeleton",
        ...                           metadata={METADATA_KEY: {"source": "er", "role": "x"}})
        >>> find_tagged_layer(viewer, Labels, {"source": "er"}) is layer
        True
        >>> find_tagged_layer(viewer, Image, {"source": "er"}) is None
        True
    """
    for layer in reversed(viewer.layers):
        tag = result_tag(layer)
        if (isinstance(layer, layer_type) and tag is not None
                and all(key in tag and tag[key] == value for key, value in match.items())):
            return layer
    return None


def update_or_add_layer(
    viewer: napari.viewer.Viewer,
    layer_type: type[Layer],
    data: Any,
    *,
    tag: Mapping[str, Any],
    name: str | Callable[[], str],
    transform: Mapping[str, Any] | None = None,
    match: Mapping[str, Any] | None = None,
    previous: Layer | None = None,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
) -> Layer:
    """Show a tagged result: update the layer an earlier run made, or add a new one.

    The one update-or-add of the docks. The earlier layer is found by its tag
    (``layer.metadata[METADATA_KEY]``), not by its name, so a renamed result
    layer is still updated and running again does not pile up copies. On an
    update, Labels data is replaced so that the viewer's undo restores the old
    labels (:func:`replace_labels_data`), the layer is moved to ``transform``
    (the image may have been moved since) and ``options`` are applied again
    where they differ (napari refreshes the layer at every assignment: 0.1 s
    each for a 1024 x 1024 Labels layer under software OpenGL, even when the
    value is the same); the layer keeps its name.

    Args:
        viewer: the viewer (or a :class:`napari.components.ViewerModel`).
        layer_type: :class:`~napari.layers.Labels`, :class:`~napari.layers.Image`,
            :class:`~napari.layers.Points`...
        data: the layer's data.
        tag: what the layer records about its origin (kept under ``METADATA_KEY``).
        name: the name of a new layer, or a function giving it (called only
            when a layer is added).
        transform: placement in the world, usually :func:`spatial_transform`
            of the source layer.
        match: the tag entries that identify the earlier layer (default: the
            whole ``tag``).
        previous: the layer to update, found by the caller (``match`` is then
            not used).
        metadata: more ``layer.metadata`` entries, next to the tag.
        **options: keyword arguments of ``layer_type`` (colormap, size...).

    Returns:
        The updated or added layer.
    """
    transform = dict(transform or {})
    layer = previous if previous is not None else find_tagged_layer(
        viewer, layer_type, tag if match is None else match)
    entries = {METADATA_KEY: dict(tag), **(metadata or {})}
    if layer is None:
        new_name = name() if callable(name) else name
        return viewer.add_layer(layer_type(data, name=new_name, metadata=entries, **transform,
                                           **options))
    if isinstance(layer, Labels):
        replace_labels_data(layer, data)
    else:
        layer.data = data
    for attribute, value in {**transform, **options}.items():
        if not _has_value(layer, attribute, value):
            setattr(layer, attribute, value)
    layer.metadata = {**layer.metadata, **entries}
    return layer


#: layer attributes that are arrays of numbers (``affine`` is read as its matrix)
_NUMERIC_ATTRIBUTES = ("scale", "translate", "rotate", "shear", "affine")


def _has_value(layer: Layer, attribute: str, value: Any) -> bool:
    """Whether ``layer.<attribute>`` already equals ``value`` (False when unsure).

    Examples:
        >>> layer = Labels(np.zeros((4, 4), np.uint8), scale=(2, 2))
        >>> _has_value(layer, "scale", (2.0, 2.0)), _has_value(layer, "scale", (1, 2))
        (True, False)
        >>> _has_value(layer, "affine", np.eye(3)), _has_value(layer, "axis_labels", ("y", "x"))
        (True, False)
    """
    try:
        current = getattr(layer, attribute)
        if attribute in _NUMERIC_ATTRIBUTES:
            current = getattr(current, "affine_matrix", current)
            return np.array_equal(np.asarray(current, dtype=float), np.asarray(value, dtype=float))
        return bool(current == value)
    except Exception:  # noqa: BLE001 - not comparable: assign it
        return False


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
    updated = previous[-1] if previous and not keep_previous else None
    # Lazy labels (blockwise results, read from an OME-Zarr) are never read whole: no
    # proposal is kept, and they replace only a layer that is lazy too.
    lazy = not isinstance(data, np.ndarray)
    if updated is not None and lazy != (not isinstance(updated.data, np.ndarray)):
        updated = None
    layer = update_or_add_layer(
        viewer, Labels, data, tag=tag, transform=transform, previous=updated,
        name=lambda: _result_name(viewer, spec.name, source, run if previous else None),
        metadata={} if lazy else {PROPOSAL_KEY: pack_proposal(data)},
        **({"colormap": colormap} if colormap is not None else {}))
    if updated is None and spec.kind == "semantic":
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
