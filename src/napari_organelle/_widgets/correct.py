"""The Correct dock widget: turn an annotator's corrections into training data.

An annotator segments an image (the Segment widget), corrects the Labels
layers with napari's brush, eraser and fill tools, and tells this widget what
was checked: the whole image, what the view shows, or areas drawn in a Shapes
layer, in the current plane or in chosen planes of a stack. **Save corrections**
writes one sample per plane to the training store; pixels outside the
reviewed area are stored as *ignore*, so a partial correction never teaches
the model that unchecked structures are background.

The widget stays thin: it reads layers, turns the annotator's choices into
arrays and provenance (:class:`SavePlan`, built in the main thread so the
layers cannot change under it), and hands them to the training store
(:mod:`napari_organelle.store`), which validates, hashes and writes them in a
background thread. It also lists the store's samples, loads any of them back
into the viewer, excludes or restores them, and exports the store for
training (nnU-Net v2 or TIFF pairs).

Counting the pixels an annotator changed needs the model's original
prediction, which painting overwrites. A result layer may carry it in
``layer.metadata[PROPOSAL_KEY]`` (its foreground, packed eight pixels a byte
along the last axis by :func:`pack_proposal`); without it the changed pixels
of that class are recorded as unknown.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
)
from napari.layers import Image, Labels, Layer, Shapes
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

from ..errors import InputError, OrganelleError, StoreError
from ..models import ClassSpec
from ..progress import Progress
from ..store import (
    ExportResult,
    SampleRecord,
    SaveResult,
    TrainingStore,
    default_store_path,
    export_nnunet,
    export_tiff,
    open_store,
)
from ..store.layout import STORE_FILE, check_class_name
from ..store.provenance import current_user
from . import _common
from ._common import (
    METADATA_KEY,
    PROPOSAL_KEY,
    TaskControls,
    connect_layer_list,
    describe_error,
    full_resolution_data,
    labels_colormap,
    labels_layers,
    layer_choices,
    logger,
    result_tag,
    sentence,
)

__all__ = [
    "PROPOSAL_KEY",
    "ClassLayer",
    "CorrectWidget",
    "LabelLayerRow",
    "SampleToSave",
    "SavePlan",
    "pack_proposal",
    "parse_plane_list",
    "proposal_plane",
    "run_save_plan",
    "shapes_region",
    "visible_region",
]

SAVE_TASK = "Saving corrections"


# What the annotator reviewed (values of CorrectWidget.region_combo).
WHOLE_IMAGE = "whole image"
CURRENT_VIEW = "current view"
SHAPES = "areas in a Shapes layer"

# Which planes of a stack (values of CorrectWidget.planes_combo).
CURRENT_PLANE = "current plane"
ALL_PLANES = "all planes"
LISTED_PLANES = "listed planes"

# How a Labels layer encodes its class (values of LabelLayerRow.kind_combo).
MASK = "mask"
OBJECTS = "objects"

# Which samples the table lists (values of CorrectWidget.show_combo).
SHOW_CURRENT = "current versions"
SHOW_EXCLUDED = "current versions and excluded"
SHOW_ALL = "all versions"

#: Tag ``role`` of the layer that shows the unreviewed pixels of a loaded sample.
NOT_REVIEWED_ROLE = "not reviewed"

SAMPLE_COLUMNS = ("sample", "version", "source", "plane", "crop", "classes", "annotator",
                  "saved", "excluded")

#: Vertices used to draw an ellipse of a Shapes layer as a polygon.
ELLIPSE_VERTICES = 64


# ---------------------------------------------------------------------- what gets saved


@dataclass(frozen=True)
class ClassLayer:
    """A Labels layer chosen for saving, and how to read it.

    Attributes:
        layer: the napari layer.
        class_name: the organelle it holds, as named in the store.
        objects: the layer holds object ids (saved as instances, the class
            mask derived from them); otherwise a 0/1 mask.
    """

    layer: Labels
    class_name: str
    objects: bool


@dataclass(frozen=True)
class SampleToSave:
    """One 2-D sample, copied out of the layers when Save is clicked.

    Attributes:
        image: the image plane, cropped to the reviewed area's bounding box.
        labels: per mask class, a 0/1 uint8 array of the image's shape.
        instances: per object class, the object ids.
        reviewed: where the annotator checked the labels: True (everywhere)
            or a boolean mask; the rest is stored as ignore.
        proposals: per class, the model's foreground before correction (only
            classes whose proposal is known).
        provenance: the sample's provenance for
            :meth:`~napari_organelle.store.TrainingStore.save`.
    """

    image: np.ndarray
    labels: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    reviewed: bool | np.ndarray
    proposals: dict[str, np.ndarray]
    provenance: dict[str, Any]


@dataclass(frozen=True)
class SavePlan:
    """Everything a save needs, so the background thread never reads layers or widgets.

    Attributes:
        store_path: the training store folder (created at the first save).
        classes: the classes saved; added to the store if it lacks them.
        samples: one per plane.
        notes: things the annotator should know (planes skipped, changed
            pixels that cannot be counted).
    """

    store_path: Path
    classes: tuple[str, ...]
    samples: tuple[SampleToSave, ...]
    notes: tuple[str, ...] = ()


def run_save_plan(plan: SavePlan) -> Generator[Progress, None, list[SaveResult]]:
    """Save every sample of ``plan`` in turn (runs in the worker thread).

    Each sample is written atomically by the store; a cancel stops between
    samples and keeps those already saved.

    Returns:
        One :class:`~napari_organelle.store.SaveResult` per sample, in order.

    Raises:
        StoreError: the store cannot be created, read or written.
        InputError: the store refuses a sample (nothing of it is written).
    """
    count = len(plan.samples)
    yield Progress(0, count, f"opening {plan.store_path}")
    store = open_store(plan.store_path, classes=plan.classes)
    results = []
    for done, sample in enumerate(plan.samples, start=1):
        results.append(store.save(sample.image, sample.labels, sample.reviewed,
                                  sample.provenance, instances=sample.instances,
                                  proposals=sample.proposals))
        yield Progress(done, count, "samples")
    return results


# ---------------------------------------------------------------------- proposals


def pack_proposal(labels: np.ndarray) -> np.ndarray:
    """The foreground of a model's labels, packed eight pixels a byte along the last axis.

    This is what ``layer.metadata[PROPOSAL_KEY]`` holds: changed pixels are
    counted as foreground/background flips (see
    :func:`~napari_organelle.store.changed_pixels`), so one bit per pixel
    keeps all that is needed at 1/16 of the memory of uint16 labels.
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


# ---------------------------------------------------------------------- reviewed regions


def parse_plane_list(text: str, count: int) -> list[int]:
    """Plane indices from text such as ``"0-4, 7"`` (ranges include both ends).

    Args:
        text: comma- or space-separated indices and ``a-b`` ranges.
        count: planes along the axis; indices must be below it.

    Raises:
        InputError: the text is empty, malformed, or names a plane out of range.
    """
    planes: list[int] = []
    for part in filter(None, re.split(r"[,\s]+", text.strip())):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError(f"'{part}' is not a plane number or range: write e.g. '0-4, 7'")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first:
            raise InputError(f"the range '{part}' runs backwards: write it as {last}-{first}")
        if last >= count:
            raise InputError(f"plane {last} does not exist: the planes are numbered 0 to "
                             f"{count - 1}")
        planes.extend(index for index in range(first, last + 1) if index not in planes)
    if not planes:
        raise InputError("list the reviewed planes, e.g. '0-4, 7'")
    return planes


def visible_region(viewer: napari.viewer.Viewer, layer: Layer,
                   plane_shape: tuple[int, int]) -> np.ndarray:
    """The pixels of ``layer``'s planes that the canvas shows now.

    Computed from the camera (centre and zoom) and the canvas size, then
    taken into the layer's data coordinates, so a scaled, translated or
    rotated layer is handled. A pixel counts as visible when its centre is.

    Args:
        viewer: the viewer.
        layer: the image layer.
        plane_shape: ``(height, width)`` of the layer's planes.

    Returns:
        A boolean mask of ``plane_shape``; all False when nothing is visible.

    Raises:
        InputError: the view is 3-D, in grid mode, or shows other axes than
            the layer's last two (Y and X).
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise InputError("'current view' needs the 2-D view: switch off 3-D (the cube button "
                         "under the layer list) or choose another reviewed region")
    if viewer.canvas.grid.enabled:
        raise InputError("'current view' cannot be used in grid mode: switch grid mode off")
    world_ndim = dims.ndim
    spatial_axes = {world_ndim - 2, world_ndim - 1}  # the layer's Y and X, right-aligned
    displayed = tuple(dims.displayed)
    if set(displayed) != spatial_axes:
        raise InputError(f"the view shows other axes than the Y and X of '{layer.name}': "
                         "show them with the dimension order, or choose another reviewed "
                         "region")
    height, width = viewer.canvas.size
    zoom = viewer.scene.camera.zoom
    center = viewer.scene.camera.center[-2:]  # in the order of the displayed axes
    half = (height / 2 / zoom, width / 2 / zoom)
    point = np.asarray(dims.point, dtype=float)
    corners = []
    for sign_0, sign_1 in ((-1, -1), (-1, 1), (1, 1), (1, -1)):  # around the rectangle
        corner = point.copy()
        corner[displayed[0]] = center[0] + sign_0 * half[0]
        corner[displayed[1]] = center[1] + sign_1 * half[1]
        corners.append(np.asarray(layer.world_to_data(corner))[-2:])
    return _polygon_mask(np.array(corners), plane_shape)


def shapes_region(shapes: Shapes, image: Layer, plane: tuple[int, ...],
                  plane_shape: tuple[int, int]) -> np.ndarray:
    """The pixels of one plane of ``image`` covered by the areas drawn in ``shapes``.

    Rectangles, polygons and ellipses count, wherever the Shapes layer is
    placed in the world: their vertices are taken into the image's data
    coordinates. A shape drawn on a plane of a stack counts for that plane
    only; shapes of a 2-D Shapes layer count for every plane. A pixel is
    covered when its centre lies inside a shape or on its edge.

    Raises:
        InputError: a shape is a line or path (it encloses nothing), or it
            spans several planes.
    """
    mask = np.zeros(plane_shape, dtype=bool)
    # Non-spatial axes the Shapes layer has in common with the image (right-aligned,
    # as napari aligns layers): along those, each shape lies in one plane.
    shared = min(shapes.ndim, len(plane) + 2) - 2
    for number, (vertices, kind) in enumerate(zip(shapes.data, shapes.shape_type), start=1):
        if kind not in ("rectangle", "polygon", "ellipse"):
            raise InputError(f"shape {number} of '{shapes.name}' is a {kind}, which encloses "
                             "no area: mark reviewed areas with rectangles, polygons or "
                             "ellipses")
        in_image = np.array([np.asarray(image.world_to_data(shapes.data_to_world(vertex)))
                             for vertex in vertices])
        if shared > 0:
            shape_planes = np.round(in_image[:, -2 - shared:-2]).astype(int)
            if (shape_planes != shape_planes[0]).any():
                raise InputError(f"shape {number} of '{shapes.name}' is not drawn in one plane; "
                                 "draw reviewed areas in the 2-D view")
            if tuple(shape_planes[0]) != tuple(plane[-shared:]):
                continue
        corners = in_image[:, -2:]
        if kind == "ellipse":
            corners = _ellipse_polygon(corners)
        mask |= _polygon_mask(corners, plane_shape)
    return mask


def _ellipse_polygon(corners: np.ndarray) -> np.ndarray:
    """The ellipse inscribed in a parallelogram (napari's four corners) as a polygon."""
    center = corners.mean(axis=0)
    first_half_axis = (corners[1] - corners[0]) / 2
    second_half_axis = (corners[3] - corners[0]) / 2
    angles = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return center + np.cos(angles) * first_half_axis + np.sin(angles) * second_half_axis


def _polygon_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (or on its edge), in ``(row, col)`` vertices."""
    from skimage.draw import polygon2mask

    return polygon2mask(shape, vertices)


def _bounding_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, x0, y1, x1)`` (half-open) around the True pixels, or None if there are none."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


# ---------------------------------------------------------------------- layer facts


def _pixel_size_yx(image: Layer, class_layers: Sequence[ClassLayer]) -> list[float] | None:
    """The ``(y, x)`` pixel size in nm: declared by the image, else entered in Segment.

    The image declares it in ``metadata["pixel_size_nm"]`` (one number, or a
    ``(y, x)`` pair) or by a length unit on its Y and X axes (``layer.units``).
    """
    declared = image.metadata.get("pixel_size_nm") if isinstance(image.metadata, Mapping) else None
    if isinstance(declared, (list, tuple)) and len(declared) == 2:
        return [float(declared[0]), float(declared[1])]
    if isinstance(declared, (int, float)) and declared > 0:
        return [float(declared), float(declared)]
    sizes = [_axis_size_nm(image, axis) for axis in (-2, -1)]
    if all(size is not None for size in sizes):
        return sizes  # type: ignore[return-value] - checked just above
    for class_layer in class_layers:
        entered = (result_tag(class_layer.layer) or {}).get("pixel_size_nm")
        if isinstance(entered, (int, float)) and entered > 0:
            return [float(entered), float(entered)]
    return None


def _axis_size_nm(layer: Layer, axis: int) -> float | None:
    """The pixel size along one axis in nm, when the axis has a length unit."""
    try:
        unit = layer.units[axis]
        if unit.dimensionality == {"[length]": 1}:
            return float((layer.scale[axis] * unit).to("nanometer").magnitude)
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return None


def _model_of(layer: Labels) -> str | None:
    """``name@version`` of the model whose proposal the layer started as, if it says."""
    model = (result_tag(layer) or {}).get("model")
    return model if isinstance(model, str) and model else None


def _split_model(full_name: str) -> tuple[str, str | None]:
    name, _, version = full_name.rpartition("@")
    return (name, version or None) if name else (full_name, None)


def _plane_axes(image: Layer) -> str:
    """Names of the image's non-spatial axes (``"TZ"``), when the user gave them names.

    napari's default axis labels are numbers (``"-3"``), which say nothing.
    """
    labels = [str(label) for label in image.axis_labels[:-2]]
    if not labels or any(re.fullmatch(r"-?\d+", label) for label in labels):
        return ""
    return "".join(labels) if all(len(label) == 1 for label in labels) else ",".join(labels)


def _guess_class_name(layer: Labels) -> str:
    """The class a Labels layer holds: from Segment's tag, else from its name if it is one."""
    tag = result_tag(layer) or {}
    if isinstance(tag.get("class"), str):
        return tag["class"]
    words = re.findall(r"[A-Za-z][A-Za-z0-9_-]*", layer.name)
    for word in words:
        try:
            check_class_name(word.lower())
        except InputError:
            continue
        if word.lower() not in ("labels", "mask", "masks", "layer", "corrected", "sample"):
            return word.lower()
    return ""


def _guess_objects(layer: Labels) -> bool:
    """Does the layer hold object ids? Segment's tag says; else ids above 1 say so."""
    kind = (result_tag(layer) or {}).get("kind")
    if kind in ("instance", "semantic"):
        return kind == "instance"
    data = full_resolution_data(layer)
    try:
        # One plane is enough to tell, and cheap even for a large stack.
        plane = np.asarray(data[(0,) * (data.ndim - 2)]) if data.ndim > 2 else np.asarray(data)
    except Exception:  # noqa: BLE001 - an unreadable lazy array: assume a mask
        return False
    return bool(plane.size and plane.max() > 1)


def _loaded_sample_tag(layer: Layer) -> dict[str, Any] | None:
    """The tag of a layer this widget loaded from the store, or None."""
    tag = result_tag(layer)
    return dict(tag) if tag is not None and isinstance(tag.get("sample"), str) else None


# ---------------------------------------------------------------------- the widget


class LabelLayerRow(Container):
    """One Labels layer in the widget: use it or not, its class name, mask or objects.

    Attributes:
        layer: the Labels layer.
        use_check: save this layer (its text is the layer's name).
        class_edit: the class the layer holds, as named in the store.
        kind_combo: ``mask`` (0/1) or ``objects`` (one id per object).
    """

    def __init__(self, layer: Labels, *, use: bool, class_name: str, objects: bool) -> None:
        super().__init__(layout="horizontal", labels=False)
        self.margins = (0, 0, 0, 0)
        self.layer = layer
        self.use_check = CheckBox(text=layer.name, value=use,
                                  tooltip=f"Save the labels of layer '{layer.name}'")
        self.class_edit = LineEdit(value=class_name,
                                   tooltip="The organelle this layer holds, as named in the "
                                           "store (e.g. 'er', 'mitochondria')")
        self.kind_combo = ComboBox(choices=[MASK, OBJECTS], value=OBJECTS if objects else MASK,
                                   tooltip="mask: 0 = background, 1 = the organelle; "
                                           "objects: each object has its own label")
        self.class_edit.min_width = 80  # a long layer name must not squeeze the class away
        self.extend([self.use_check, self.class_edit, self.kind_combo])

    @property
    def selected(self) -> bool:
        """The layer is to be saved."""
        return bool(self.use_check.value)

    def class_layer(self) -> ClassLayer:
        """The layer with its class, checked.

        Raises:
            InputError: the class name is missing or not allowed.
        """
        name = str(self.class_edit.value).strip()
        if not name:
            raise InputError(f"give layer '{self.layer.name}' a class name (e.g. 'er')")
        try:
            check_class_name(name)
        except InputError as error:
            raise InputError(f"layer '{self.layer.name}': {error}") from None
        return ClassLayer(self.layer, name, self.kind_combo.value == OBJECTS)


class CorrectWidget(Container):
    """Save corrected labels as training samples; browse, load and export the store.

    Args:
        viewer: the napari viewer (napari passes it when it opens the widget).

    Attributes:
        viewer: the viewer.
        image_combo: the image layer that was corrected.
        layers_box: one :class:`LabelLayerRow` per Labels layer.
        layer_rows: those rows, top layer first.
        region_combo: what was reviewed: whole image, current view, or areas
            in a Shapes layer.
        shapes_combo: the Shapes layer with the reviewed areas.
        planes_combo: for stacks: the current plane, all planes, or listed planes.
        planes_edit: the listed planes (``0-4, 7``), along the stack's last
            non-spatial axis (e.g. Z of a T, Z, Y, X stack).
        annotator_edit: who corrected; recorded with every sample.
        store_edit: the training store folder.
        save_controls: Save/Cancel buttons, progress bar and status line.
        save_button: saves the corrections (``save_controls.run_button``).
        show_combo: which samples the table lists.
        samples_table: the store's samples, one row each.
        load_button, exclude_button, restore_button, refresh_button: act on
            the selected samples (refresh re-reads the store).
        exclude_reason_edit: why samples are excluded (recorded in the store).
        samples_status: the outcome of the latest load, exclude or restore.
        samples_check: shows the samples section (shown at first).
        export_check: shows the export section (folded at first).
        export_format_combo: ``nnunet`` or ``tiff``.
        export_folder_edit: nnU-Net's raw folder, or the folder to put the
            TIFF data set in.
        dataset_name_edit: the data set's name (its folder for TIFF pairs).
        dataset_id_spin: the nnU-Net dataset ID; 0 picks the first free one from 500.
        licence_edit: the licence of the exported data.
        export_controls: Export/Cancel buttons, progress bar and status line.
        export_button: starts the export (``export_controls.run_button``).
        last_save: the results of the latest completed save (one per sample).
        last_export: the result of the latest completed export, or None.
        sample_ids: the sample id of each row of the table.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.last_save: list[SaveResult] = []
        self.last_export: ExportResult | None = None
        self.sample_ids: list[str] = []
        self.layer_rows: list[LabelLayerRow] = []
        self._store: TrainingStore | None = None

        # -- what was corrected
        self.image_combo = ComboBox(name="image", label="Image", choices=layer_choices(viewer),
                                    tooltip="The image layer the labels were corrected on")
        self.layers_box = Container(name="label_layers", label="Labels", labels=False,
                                    tooltip="Tick the corrected Labels layers and name the "
                                            "organelle each holds")
        self.region_combo = ComboBox(
            name="reviewed", label="Reviewed", choices=[WHOLE_IMAGE, CURRENT_VIEW, SHAPES],
            value=WHOLE_IMAGE,
            tooltip="Where you checked the labels; everywhere else is saved as 'ignore', "
                    "so it teaches neither organelle nor background")
        self.shapes_combo = ComboBox(name="shapes", label="Shapes layer",
                                     choices=layer_choices(viewer, Shapes),
                                     tooltip="Rectangles, polygons or ellipses around the "
                                             "areas you reviewed")
        self.planes_combo = ComboBox(
            name="planes", label="Planes", choices=[CURRENT_PLANE, ALL_PLANES, LISTED_PLANES],
            value=CURRENT_PLANE, tooltip="Which planes (or time points) of the stack you "
                                         "reviewed; each is saved as its own sample")
        self.planes_edit = LineEdit(name="plane_list", label="Plane list", value="",
                                    tooltip="e.g. '0-4, 7' (ranges include both ends)")
        correction = Container(name="correction", labels=True, widgets=[
            self.image_combo, self.layers_box, self.region_combo, self.shapes_combo,
            self.planes_combo, self.planes_edit])

        # -- where it goes
        self.annotator_edit = LineEdit(name="annotator", label="Annotator",
                                       value=current_user() or "",
                                       tooltip="Your name, recorded with every sample")
        self.store_edit = FileEdit(name="store", label="Store folder", mode="d",
                                   value=default_store_path(),
                                   tooltip="The training store: an existing one, or an empty "
                                           "folder (created at the first save)")
        self.save_controls = TaskControls(
            "Save corrections",
            run_tooltip="Save each reviewed plane as a training sample")
        self.save_button = self.save_controls.run_button
        saving = Container(name="saving", labels=True,
                           widgets=[self.annotator_edit, self.store_edit])

        # -- the store's samples
        self.show_combo = ComboBox(name="show", label="Show",
                                   choices=[SHOW_CURRENT, SHOW_EXCLUDED, SHOW_ALL],
                                   value=SHOW_CURRENT)
        self.samples_table = Table(name="samples",
                                   value={"data": [], "index": [], "columns": SAMPLE_COLUMNS})
        self.samples_table.read_only = True
        table = self.samples_table.native
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setMinimumHeight(120)
        # The table takes only the height left over, so on a short screen it shrinks
        # rather than squeezing the wrapped status lines.
        table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.load_button = PushButton(name="load", text="Load",
                                      tooltip="Add the selected samples to the viewer")
        self.exclude_button = PushButton(name="exclude", text="Exclude",
                                         tooltip="Leave the selected samples out of training "
                                                 "(reversible: nothing is deleted)")
        self.restore_button = PushButton(name="restore", text="Restore",
                                         tooltip="Use excluded samples for training again")
        self.refresh_button = PushButton(name="refresh", text="Refresh",
                                         tooltip="Read the store again")
        self.exclude_reason_edit = LineEdit(name="exclude_reason", label="Exclude reason",
                                            value="", tooltip="Optional; kept in the store")
        self.samples_status = Label(name="samples_status", value="")
        self.samples_status.native.setWordWrap(True)
        buttons = Container(layout="horizontal", labels=False, widgets=[
            self.load_button, self.exclude_button, self.restore_button, self.refresh_button])
        buttons.margins = (0, 0, 0, 0)
        samples = Container(name="samples_box", labels=True, widgets=[
            self.show_combo, self.exclude_reason_edit])

        # -- export
        self.export_format_combo = ComboBox(
            name="export_format", label="Format",
            choices=[("nnU-Net v2", "nnunet"), ("TIFF pairs", "tiff")], value="nnunet")
        self.export_folder_edit = FileEdit(
            name="export_folder", label="Output folder", mode="d", value="",
            tooltip="nnU-Net: its raw folder ($nnUNet_raw), the data set goes in "
                    "DatasetNNN_<name>; TIFF: the data set goes in <folder>/<name>")
        self.dataset_name_edit = LineEdit(name="dataset_name", label="Dataset name",
                                          value="Organelles")
        self.dataset_id_spin = SpinBox(name="dataset_id", label="Dataset ID", min=0, max=999,
                                       value=0, tooltip="nnU-Net dataset ID; 0 takes the first "
                                                        "free one from 500")
        self.licence_edit = LineEdit(name="licence", label="Licence", value="",
                                     tooltip="e.g. CC-BY-4.0; recorded in the dataset card")
        self.export_controls = TaskControls("Export", run_tooltip="Export the store's current, "
                                                                  "non-excluded samples")
        self.export_button = self.export_controls.run_button
        exporting = Container(name="export_box", labels=True, widgets=[
            self.export_format_combo, self.export_folder_edit, self.dataset_name_edit,
            self.dataset_id_spin, self.licence_edit])

        # The two lower sections fold away, so the dock fits a laptop screen.
        self.samples_check = _section_toggle("Samples in the store", shown=True)
        self.export_check = _section_toggle("Export for training", shown=False)
        self._samples_section = [samples, self.samples_table, buttons, self.samples_status]
        self._export_section = [exporting, self.export_controls]
        self.extend([
            _heading("Correction"), correction,
            _heading("Training store"), saving, self.save_controls,
            self.samples_check, *self._samples_section,
            self.export_check, *self._export_section,
        ])

        layout = self.native.layout()
        layout.setStretchFactor(table, 1)  # spare height goes to the table...
        layout.addStretch()  # ...or, while it is folded away, below everything
        for status in (self.save_controls.status_label, self.samples_status,
                       self.export_controls.status_label):
            # Qt sizes a wrapped label for one line when space is short; keep two.
            status.native.setMinimumHeight(2 * status.native.fontMetrics().lineSpacing() + 4)

        self.image_combo.changed.connect(self._on_image_changed)
        self.region_combo.changed.connect(self._show_choices)
        self.planes_combo.changed.connect(self._show_choices)
        self.store_edit.changed.connect(self._on_store_changed)
        self.show_combo.changed.connect(self.refresh_samples)
        self.export_format_combo.changed.connect(self._show_choices)
        self.samples_check.changed.connect(self._show_choices)
        self.export_check.changed.connect(self._show_choices)
        self.save_button.clicked.connect(self.save)
        self.export_button.clicked.connect(self.export)
        self.load_button.clicked.connect(self.load_selected)
        self.exclude_button.clicked.connect(self.exclude_selected)
        self.restore_button.clicked.connect(self.restore_selected)
        self.refresh_button.clicked.connect(self.refresh_samples)
        table.doubleClicked.connect(self._on_table_double_clicked)
        self._disconnect_layers = connect_layer_list(viewer, self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect_layers)

        self._rebuild_rows(keep_choices=False)
        self._show_choices()
        self.refresh_samples()

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """A save or an export is in progress."""
        return self.save_controls.running or self.export_controls.running

    @property
    def store_path(self) -> Path:
        """The chosen store folder (the default one when the field is empty)."""
        text = str(self.store_edit.line_edit.value).strip()
        return Path(text).expanduser().absolute() if text else default_store_path()

    @property
    def selected_sample_ids(self) -> list[str]:
        """Ids of the samples selected in the table, top row first."""
        rows = sorted(index.row() for index in
                      self.samples_table.native.selectionModel().selectedRows())
        return [self.sample_ids[row] for row in rows if row < len(self.sample_ids)]

    def select_samples(self, sample_ids: Sequence[str]) -> None:
        """Select these samples in the table (others are deselected)."""
        table = self.samples_table.native
        table.clearSelection()
        mode = table.selectionMode()
        table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, sample_id in enumerate(self.sample_ids):
            if sample_id in sample_ids:
                table.selectRow(row)
        table.setSelectionMode(mode)

    def store(self) -> TrainingStore | None:
        """The training store in the chosen folder, or None if there is none yet.

        Reading never writes: a missing store is created by the first save.

        Raises:
            StoreError: the folder holds a damaged store, one written by a newer
                napari-organelle, or something that is not a store.
        """
        path = self.store_path
        if not (path / STORE_FILE).is_file():
            self._store = None
            if path.is_dir() and any(path.iterdir()):
                raise StoreError(f"{path} is not a training store (it has no {STORE_FILE}) "
                                 "and is not empty; pick an empty folder or an existing store")
            return None
        if self._store is None or self._store.path != path:
            self._store = None
            self._store = TrainingStore(path)
        return self._store

    # ------------------------------------------------------------------ layout

    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image_combo.reset_choices()
        self.shapes_combo.reset_choices()
        self._rebuild_rows(keep_choices=True)
        self._show_choices()

    def _on_image_changed(self, _value: Any = None) -> None:
        self._rebuild_rows(keep_choices=False)
        self._show_choices()

    def _rebuild_rows(self, keep_choices: bool) -> None:
        """One row per Labels layer, ticked by default when it belongs to the image.

        With ``keep_choices``, rows of layers that were already listed keep
        what the annotator chose.
        """
        previous = {row.layer.name: row for row in self.layer_rows} if keep_choices else {}
        image = self.image_combo.value
        self.layers_box.clear()
        self.layer_rows = []
        for layer in labels_layers(self.viewer):
            tag = result_tag(layer) or {}
            if tag.get("role") == NOT_REVIEWED_ROLE:
                continue  # shown with a loaded sample, not a class
            old = previous.get(layer.name)
            if old is not None and old.layer == layer:
                use, name = old.selected, str(old.class_edit.value)
                objects = old.kind_combo.value == OBJECTS
            else:
                use = self._belongs_to(layer, image)
                name, objects = _guess_class_name(layer), _guess_objects(layer)
            row = LabelLayerRow(layer, use=use, class_name=name, objects=objects)
            self.layer_rows.append(row)
            self.layers_box.append(row)
        if not self.layer_rows:
            self.layers_box.append(Label(value="No Labels layer: segment the image first, "
                                               "or add a Labels layer and paint"))

    @staticmethod
    def _belongs_to(layer: Labels, image: Image | None) -> bool:
        """Segment made it from ``image``, or it is an untagged layer of the image's shape."""
        if image is None:
            return False
        tag = result_tag(layer)
        if tag is not None and "source" in tag:
            return tag["source"] == image.name
        image_data = full_resolution_data(image)
        return not image.rgb and full_resolution_data(layer).shape == image_data.shape

    def _show_choices(self, _value: Any = None) -> None:
        image = self.image_combo.value
        stack = image is not None and not image.rgb and full_resolution_data(image).ndim > 2
        self.shapes_combo.visible = self.region_combo.value == SHAPES
        self.planes_combo.visible = stack
        self.planes_edit.visible = stack and self.planes_combo.value == LISTED_PLANES
        if stack:
            axis = _plane_axes(image)[-1:] or "the last stack axis"
            self.planes_edit.tooltip = f"Planes along {axis}, e.g. '0-4, 7'"
        self.dataset_id_spin.visible = self.export_format_combo.value == "nnunet"
        for widget in self._samples_section:
            widget.visible = bool(self.samples_check.value)
        for widget in self._export_section:
            widget.visible = bool(self.export_check.value)

    # ------------------------------------------------------------------ saving

    def save(self) -> None:
        """Check the choices and save the corrections in the background (the Save button)."""
        controls = self.save_controls
        plan = None if controls.running else controls.checked(self.plan_save, SAVE_TASK)
        if plan is None:
            return
        self.save_controls.start(
            run_save_plan(plan), task=SAVE_TASK, on_returned=partial(self._on_saved, plan),
            on_finished=self.refresh_samples,
            cancelled_message="Cancelled: samples saved before the cancel are kept.")

    def plan_save(self) -> SavePlan:
        """What Save would write with the current choices, checked and copied from the layers.

        Everything that can be wrong with the input is found here, before the
        store is touched, so a bad choice writes nothing.

        Raises:
            InputError: no image or labels chosen, layers that do not match
                the image, label values the class cannot hold, an empty
                reviewed region, or a bad plane list.
        """
        image = self.image_combo.value
        if image is None:
            raise InputError("choose the image layer the labels were corrected on (open an "
                             "image first)")
        if image.rgb:
            raise InputError(f"'{image.name}' is an RGB colour image; samples are single-channel:"
                             " split it (right-click the layer > Split RGB) and choose a channel")
        image_data = full_resolution_data(image)
        if image_data.ndim < 2:
            raise InputError(f"'{image.name}' is not an image: it has {image_data.ndim} axis")
        class_layers = self._chosen_class_layers()
        for class_layer in class_layers:
            shape = full_resolution_data(class_layer.layer).shape
            if shape != image_data.shape:
                raise InputError(
                    f"layer '{class_layer.layer.name}' is {_shape_text(shape)} but the image "
                    f"'{image.name}' is {_shape_text(image_data.shape)}: choose the labels made "
                    "for this image")
        plane_shape = image_data.shape[-2:]
        region_of = self._region_function(image, plane_shape)
        loaded = _loaded_sample_tag(image)
        not_reviewed = self._not_reviewed_layer(loaded, image_data.shape)
        base = (loaded or {}).get("provenance") or {}
        annotator = str(self.annotator_edit.value).strip() or None

        samples: list[SampleToSave] = []
        skipped: list[tuple[int, ...]] = []
        unknown_proposals: set[str] = set()
        for plane in self._chosen_planes(image, image_data.shape):
            region = region_of(plane)
            if not_reviewed is not None:
                unreviewed = np.asarray(not_reviewed.data[plane]) != 0
                region = ~unreviewed if region is True else region & ~unreviewed
            box = None if region is True else _bounding_box(region)
            if region is not True and box is None:
                skipped.append(plane)
                continue
            crop = _crop_slices(box, plane_shape)
            sample = self._sample(image, image_data, class_layers, plane, crop,
                                  True if region is True else region[crop], annotator,
                                  unknown_proposals)
            samples.append(_with_base_provenance(sample, base))
        if not samples:
            raise InputError(self._nothing_reviewed_message(skipped))

        notes = []
        if skipped and len(samples):
            notes.append(f"nothing reviewed in plane(s) {_planes_text(skipped)}: not saved")
        if unknown_proposals:
            names = ", ".join(sorted(unknown_proposals))
            notes.append(f"changed pixels not counted for {names}: no model proposal is known "
                         "for that layer")
        return SavePlan(self.store_path, tuple(dict.fromkeys(c.class_name for c in class_layers)),
                        tuple(samples), tuple(notes))

    def _chosen_class_layers(self) -> list[ClassLayer]:
        chosen = [row.class_layer() for row in self.layer_rows if row.selected]
        if not chosen:
            raise InputError("tick at least one corrected Labels layer under Labels")
        seen: dict[str, str] = {}
        for class_layer in chosen:
            other = seen.setdefault(class_layer.class_name, class_layer.layer.name)
            if other != class_layer.layer.name:
                raise InputError(f"layers '{other}' and '{class_layer.layer.name}' are both "
                                 f"class '{class_layer.class_name}': tick one, or rename a class")
        return chosen

    def _chosen_planes(self, image: Image, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Indices along the non-spatial axes of every plane to save."""
        leading = shape[:-2]
        if not leading:
            return [()]
        current = self._current_plane(image, shape)
        choice = self.planes_combo.value
        if choice == ALL_PLANES:
            return list(itertools.product(*(range(n) for n in leading)))
        if choice == LISTED_PLANES:
            indices = parse_plane_list(str(self.planes_edit.value), leading[-1])
            return [(*current[:-1], index) for index in indices]
        return [current]

    def _current_plane(self, image: Image, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The plane of ``image`` the viewer shows (from the dims sliders)."""
        point = np.asarray(image.world_to_data(self.viewer.dims.point))
        return tuple(int(np.clip(np.round(point[axis]), 0, shape[axis] - 1))
                     for axis in range(len(shape) - 2))

    def _region_function(self, image: Image, plane_shape: tuple[int, int]
                         ) -> Callable[[tuple[int, ...]], bool | np.ndarray]:
        """A function giving the reviewed pixels of a plane: True (all) or a mask."""
        choice = self.region_combo.value
        if choice == CURRENT_VIEW:
            visible = visible_region(self.viewer, image, plane_shape)
            if not visible.any():
                raise InputError(f"the view does not show the image '{image.name}': pan to the "
                                 "reviewed area (or press Home)")
            full = bool(visible.all())
            return lambda _plane: True if full else visible
        if choice == SHAPES:
            shapes = self.shapes_combo.value
            if shapes is None:
                raise InputError("add a Shapes layer and draw rectangles around the areas you "
                                 "reviewed, or choose another reviewed region")
            if len(shapes.data) == 0:
                raise InputError(f"the Shapes layer '{shapes.name}' is empty: draw rectangles "
                                 "around the areas you reviewed")
            return partial(shapes_region, shapes, image, plane_shape=plane_shape)
        return lambda _plane: True

    def _not_reviewed_layer(self, loaded: dict[str, Any] | None,
                            shape: tuple[int, ...]) -> Labels | None:
        """The 'not reviewed' layer of a loaded sample: its pixels stay ignored when re-saved."""
        if loaded is None:
            return None
        for layer in labels_layers(self.viewer):
            tag = result_tag(layer) or {}
            if (tag.get("role") == NOT_REVIEWED_ROLE and tag.get("sample") == loaded["sample"]
                    and full_resolution_data(layer).shape == shape):
                return layer
        return None

    def _nothing_reviewed_message(self, skipped: list[tuple[int, ...]]) -> str:
        planes = [plane for plane in skipped if plane]
        if self.region_combo.value == SHAPES:
            name = self.shapes_combo.value.name
            if planes:
                return (f"no shape of '{name}' lies on plane(s) {_planes_text(planes)}: draw "
                        "the reviewed areas on the planes you save, or choose other planes")
            return f"no shape of '{name}' covers the image: draw the reviewed areas over it"
        where = f" in plane(s) {_planes_text(planes)}" if planes else ""
        return (f"nothing was reviewed{where}: every pixel is in the 'not reviewed' layer; "
                "erase the parts you checked")

    def _sample(self, image: Image, image_data: Any, class_layers: Sequence[ClassLayer],
                plane: tuple[int, ...], crop: tuple[slice, slice], reviewed: bool | np.ndarray,
                annotator: str | None, unknown_proposals: set[str]) -> SampleToSave:
        """Copy one plane's image and labels out of the layers, checked."""
        pixels = np.array(image_data[plane][crop])  # a copy: painting may go on meanwhile
        if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
            raise InputError(f"the image '{image.name}' has NaN or infinite pixels"
                             f"{_in_plane(plane)}; replace them before saving")
        inside = np.ones(pixels.shape, bool) if reviewed is True else reviewed
        labels: dict[str, np.ndarray] = {}
        instances: dict[str, np.ndarray] = {}
        proposals: dict[str, np.ndarray] = {}
        label_layers: dict[str, str] = {}
        models: dict[str, str | None] = {}
        for class_layer in class_layers:
            layer, name = class_layer.layer, class_layer.class_name
            values = np.asarray(full_resolution_data(layer)[plane][crop])
            # What lies outside the reviewed area is stored as ignore, so only the
            # inside must make sense.
            values = np.where(inside, values, 0)
            if class_layer.objects:
                if values.size and values.min() < 0:
                    raise InputError(f"layer '{layer.name}' has negative labels"
                                     f"{_in_plane(plane)}; object labels must be 0 or above")
                instances[name] = values
            else:
                wrong = np.unique(values[(values != 0) & (values != 1)])
                if wrong.size:
                    shown = ", ".join(str(v) for v in wrong[:5]) + (", ..." if wrong.size > 5
                                                                   else "")
                    raise InputError(
                        f"layer '{layer.name}' holds label(s) {shown}{_in_plane(plane)}, but "
                        f"'{name}' is saved as a mask (0 = background, 1 = {name}): paint "
                        "with label 1, or set the layer to 'objects' if each label is one "
                        "object")
                labels[name] = values.astype(np.uint8)
            proposal = proposal_plane(layer, plane)
            if proposal is None:
                unknown_proposals.add(name)
            else:
                proposals[name] = proposal[crop]
            label_layers[name] = layer.name
            models[name] = _model_of(layer)

        known_models = list(dict.fromkeys(m for m in models.values() if m))
        model_name, model_version = _split_model(known_models[0]) if known_models else (None,
                                                                                        None)
        extra: dict[str, Any] = {"reviewed": self._region_description()}
        if len(known_models) > 1 or (known_models and None in models.values()):
            extra["class_models"] = models  # classes corrected from different proposals
        missing = sorted(name for name in models if name not in proposals)
        if missing:
            extra["changed_pixels_unknown"] = missing
        modality = image.metadata.get("modality") if isinstance(image.metadata, Mapping) else None
        if isinstance(modality, str):
            extra["modality"] = modality
        box = (crop[0].start, crop[1].start, crop[0].stop, crop[1].stop)
        provenance = {
            "source_path": image.source.path,
            "image_layer": image.name,
            "label_layers": label_layers,
            "plane": list(plane),
            "plane_axes": _plane_axes(image),
            "crop": None if pixels.shape == image_data.shape[-2:] else list(box),
            "pixel_size_nm": _pixel_size_yx(image, class_layers),
            "model_name": model_name,
            "model_version": model_version,
            "annotator": annotator,
            "extra": extra,
        }
        return SampleToSave(pixels, labels, instances, reviewed, proposals, provenance)

    def _region_description(self) -> str:
        choice = self.region_combo.value
        if choice == SHAPES and self.shapes_combo.value is not None:
            return f"areas in Shapes layer '{self.shapes_combo.value.name}'"
        return str(choice)

    def _on_saved(self, plan: SavePlan, results: list[SaveResult]) -> None:
        """Tell the annotator what was saved (main thread)."""
        self.last_save = results
        new = [result.sample for result in results if not result.duplicate]
        duplicates = [result.sample for result in results if result.duplicate]
        for record in duplicates:
            excluded = " (it is excluded from training: select it and Restore)" \
                if record.excluded else ""
            self.save_controls.report_info(
                f"Already saved as sample {record.id}{excluded}; nothing new was written.")
        parts = []
        if len(new) == 1:
            # The store's path is in the Store folder field: keep the status short.
            parts.append(f"Saved sample {new[0].id} (version {new[0].version}).")
        elif new:
            parts.append(f"Saved {len(new)} samples.")
        if duplicates:
            ids = ", ".join(record.id for record in duplicates)
            parts.append(f"Already saved, unchanged: {ids}.")
        parts.extend(sentence(note) + "." for note in plan.notes)
        self.save_controls.set_status(" ".join(parts))

    # ------------------------------------------------------------------ samples

    def _on_store_changed(self, _value: Any = None) -> None:
        self.refresh_samples()

    def refresh_samples(self, _value: Any = None) -> None:
        """List the store's samples in the table (the Refresh button)."""
        try:
            store = self.store()
            records = self._listed_records(store) if store is not None else []
        except OrganelleError as error:
            self._fill_table([])
            self.samples_status.value = f"Error: {sentence(str(error))}"
            return
        self._fill_table(records)
        if store is None:
            self.samples_status.value = (f"No training store at {self.store_path} yet: the "
                                         "first save creates it.")
        else:
            hidden = "" if self.show_combo.value != SHOW_CURRENT else " (excluded ones hidden)"
            count = f"{len(records)} sample{'s' if len(records) != 1 else ''}"
            self.samples_status.value = f"{count} in the store{hidden}."

    def _listed_records(self, store: TrainingStore) -> list[SampleRecord]:
        choice = self.show_combo.value
        current = store.samples(include_excluded=choice != SHOW_CURRENT)
        if choice != SHOW_ALL:
            return current
        return [version for record in current for version in store.history(record.key)]

    def _fill_table(self, records: Sequence[SampleRecord]) -> None:
        self.sample_ids = [record.id for record in records]
        rows = [_table_row(record) for record in records]
        self.samples_table.value = {"data": rows, "index": list(range(1, len(rows) + 1)),
                                    "columns": SAMPLE_COLUMNS}

    def _on_table_double_clicked(self, _index: Any) -> None:
        self.load_selected()

    def load_selected(self) -> None:
        """Add the selected samples to the viewer (the Load button)."""
        self._for_selected("load", self.load_sample)

    def exclude_selected(self) -> None:
        """Leave the selected samples out of training (the Exclude button)."""
        reason = str(self.exclude_reason_edit.value).strip()
        self._for_selected("exclude", lambda sample_id: self._exclude(sample_id, reason))

    def restore_selected(self) -> None:
        """Use the selected excluded samples for training again (the Restore button)."""
        self._for_selected("restore", self._restore)

    def _for_selected(self, action: str, act: Callable[[str], Any]) -> None:
        """Apply ``act`` to each selected sample; stop at the first error and report it."""
        ids = self.selected_sample_ids
        if not ids:
            self._report_sample_error(f"select the sample(s) to {action} in the table first")
            return
        done: list[str] = []
        error_message = None
        try:
            for sample_id in ids:
                act(sample_id)
                done.append(sample_id)
        except OrganelleError as error:
            error_message = str(error)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            logger.exception("%s failed", action)
            error_message = describe_error(error, action.capitalize())
        if action != "load":
            self.refresh_samples()
            self.select_samples(ids)
        if error_message is not None:
            self._report_sample_error(error_message)
            return
        past = {"load": "Loaded", "exclude": "Excluded", "restore": "Restored"}[action]
        self.samples_status.value = f"{past} {', '.join(done)}."

    def _report_sample_error(self, message: str) -> None:
        message = sentence(message)
        _common.show_error(message)
        self.samples_status.value = f"Error: {message}"

    def _existing_store(self) -> TrainingStore:
        store = self.store()
        if store is None:
            raise StoreError(f"there is no training store at {self.store_path} yet: save "
                             "corrections first, or choose the store folder")
        return store

    def _exclude(self, sample_id: str, reason: str) -> None:
        self._existing_store().exclude(sample_id, reason)

    def _restore(self, sample_id: str) -> None:
        self._existing_store().restore(sample_id)

    def load_sample(self, sample_id: str) -> list[Layer]:
        """Add a stored sample to the viewer: its image, one layer per class, what was not reviewed.

        The layers are tagged so that saving them again (after more
        corrections) makes a new version of the same sample, and pixels left
        in the 'not reviewed' layer stay ignored; erase parts of that layer
        to mark them reviewed. The loaded image becomes the chosen image and
        the reviewed region 'whole image'.

        Returns:
            The added layers: image, classes, and the 'not reviewed' layer
            when part of the sample was not reviewed.

        Raises:
            InputError: no sample has this id.
            StoreError: the store or the sample's files cannot be read.
        """
        store = self._existing_store()
        record = store.get(sample_id)
        image, labels, ignore, provenance = store.load(sample_id)
        instances = store.load_instances(sample_id)
        short = f"sample {sample_id}"
        metadata: dict[str, Any] = {METADATA_KEY: {"sample": sample_id, "provenance": provenance}}
        if provenance.get("pixel_size_nm"):
            metadata["pixel_size_nm"] = list(provenance["pixel_size_nm"])
        modality = (provenance.get("extra") or {}).get("modality")
        if modality:
            metadata["modality"] = modality
        image_layer = self.viewer.add_image(image, name=short, metadata=metadata)
        added: list[Layer] = [image_layer]
        model = provenance.get("model_name")
        if model and provenance.get("model_version"):
            model = f"{model}@{provenance['model_version']}"
        for name in record.classes:
            objects = name in instances
            data = instances[name] if objects else labels[name]
            spec = ClassSpec(name, "instance" if objects else "semantic")
            tag = {"source": image_layer.name, "class": name, "kind": spec.kind,
                   "sample": sample_id, **({"model": model} if model else {})}
            colormap = labels_colormap(spec)
            options = {"colormap": colormap} if colormap is not None else {}
            layer = self.viewer.add_labels(data, name=f"{name} ({short})",
                                           metadata={METADATA_KEY: tag}, **options)
            if not objects:
                layer.selected_label = 1
            added.append(layer)
        unreviewed = np.logical_or.reduce([mask for mask in ignore.values()]) if ignore else None
        if unreviewed is not None and unreviewed.any():
            tag = {"source": image_layer.name, "sample": sample_id, "role": NOT_REVIEWED_ROLE}
            layer = self.viewer.add_labels(
                unreviewed.astype(np.uint8), name=f"not reviewed ({short})", opacity=0.5,
                metadata={METADATA_KEY: tag},
                colormap=DirectLabelColormap(color_dict={None: "gray", 0: "transparent"}))
            added.append(layer)
        self.image_combo.value = image_layer
        # Its unreviewed pixels are in the 'not reviewed' layer; shapes drawn on the
        # source image do not fit the loaded crop.
        self.region_combo.value = WHOLE_IMAGE
        return added

    # ------------------------------------------------------------------ export

    def export(self) -> None:
        """Export the store's current, non-excluded samples in the background (Export button)."""
        if self.export_controls.running:
            return
        try:
            work, task = self._export_work()
        except OrganelleError as error:
            self.export_controls.report_error(str(error))
            return
        self.export_controls.start(work, task=task, on_returned=self._on_exported,
                                   cancelled_message="Cancelled: nothing was exported.")

    def _export_work(self) -> tuple[Generator[Progress, None, ExportResult], str]:
        store = self._existing_store()
        folder_text = str(self.export_folder_edit.line_edit.value).strip()
        if not folder_text:
            raise InputError("choose the output folder for the export")
        folder = Path(folder_text).expanduser().absolute()
        name = str(self.dataset_name_edit.value).strip()
        licence = str(self.licence_edit.value).strip() or None
        if self.export_format_combo.value == "nnunet":
            dataset_id = int(self.dataset_id_spin.value) or None
            return (export_nnunet(store.path, folder, dataset_id=dataset_id, name=name,
                                  licence=licence), "nnU-Net export")
        if not name or Path(name).name != name or name in (".", ".."):
            raise InputError(f"the dataset name {name!r} must be a plain folder name")
        # The path, not the open store: the export reads it in its own thread.
        return export_tiff(store.path, folder / name, licence=licence), "TIFF export"

    def _on_exported(self, result: ExportResult) -> None:
        self.last_export = result
        skipped = (f"; {len(result.skipped)} sample(s) skipped (see dataset_card.md)"
                   if result.skipped else "")
        self.export_controls.set_status(f"Exported {result.cases} case(s) to {result.path}"
                                        f"{skipped}.")


# ---------------------------------------------------------------------- helpers


def _heading(text: str) -> Label:
    """A bold section title."""
    return Label(value=f"<b>{text}</b>")


def _section_toggle(text: str, shown: bool) -> CheckBox:
    """A bold section title that shows or hides its section."""
    toggle = CheckBox(text=text, value=shown, tooltip=f"Show or hide '{text}'")
    toggle.native.setStyleSheet("font-weight: bold")
    return toggle


def _crop_slices(box: tuple[int, int, int, int] | None,
                 plane_shape: tuple[int, int]) -> tuple[slice, slice]:
    if box is None:
        return (slice(0, plane_shape[0]), slice(0, plane_shape[1]))
    y0, x0, y1, x1 = box
    return (slice(y0, y1), slice(x0, x1))


def _with_base_provenance(sample: SampleToSave, base: Mapping[str, Any]) -> SampleToSave:
    """Place a sample cut from a loaded sample back in its original source, plane and crop.

    Saving a loaded sample again then makes a new version of it rather than
    a new sample.
    """
    if not base:
        return sample
    provenance = dict(sample.provenance)
    for key in ("source_path", "source_sha256", "source_sha256_of", "plane", "plane_axes",
                "pixel_size_nm"):
        if base.get(key) is not None:
            provenance[key] = base[key]
    original = base.get("crop")
    crop = provenance.get("crop")
    if original is not None:
        y0, x0 = original[0], original[1]
        if crop is None:
            provenance["crop"] = list(original)
        else:
            provenance["crop"] = [y0 + crop[0], x0 + crop[1], y0 + crop[2], x0 + crop[3]]
    return SampleToSave(sample.image, sample.labels, sample.instances, sample.reviewed,
                        sample.proposals, provenance)


def _table_row(record: SampleRecord) -> list[str]:
    provenance = record.provenance
    source = provenance.get("source_path")
    source = Path(source).name if source else provenance.get("image_layer") or ""
    plane = ", ".join(str(i) for i in provenance.get("plane") or ()) or "-"
    crop = provenance.get("crop")
    crop_text = "-" if not crop else f"{crop[0]}:{crop[2]}, {crop[1]}:{crop[3]}"
    return [record.id, str(record.version), source, plane, crop_text,
            ", ".join(record.classes), provenance.get("annotator") or "",
            record.saved.replace("T", " ").replace("+00:00", " UTC"),
            "yes" if record.excluded else "no"]


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape) + " pixels"


def _in_plane(plane: tuple[int, ...]) -> str:
    return f" in plane {_planes_text([plane])}" if plane else ""


def _planes_text(planes: Sequence[tuple[int, ...]]) -> str:
    return ", ".join(",".join(str(i) for i in plane) if len(plane) > 1 else str(plane[0])
                     for plane in planes if plane)
