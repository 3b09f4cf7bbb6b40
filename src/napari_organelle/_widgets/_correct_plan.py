"""The save plan of the Correct dock: the annotator's choices turned into samples to save.

:func:`build_save_plan` takes a viewer and the annotator's choices
(:class:`SaveChoices`: the image, the corrected Labels layers, the reviewed
region and planes) and copies out of the layers everything a save needs: one
:class:`SampleToSave` per plane, with its image, labels, reviewed pixels, the
model's proposal and its :class:`~napari_organelle.store.Provenance`. It runs
in the main thread, so the layers cannot change under it; every mistake in
the input is found here, before the store is touched. :func:`run_save_plan`
then writes the plan in a background thread.

No Qt is imported here: the builder works on a
:class:`napari.components.ViewerModel` as on a viewer with a window. Also here
are the layer facts the dock shows as defaults (:func:`guess_class_name`,
:func:`guess_objects`, :func:`belongs_to`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes

from ..errors import InputError
from ..progress import Progress
from ..store import Provenance, SaveResult, open_store
from ..store.layout import check_class_name
from ..store.provenance import split_model
from ._correct_regions import (
    bounding_box,
    crop_slices,
    parse_plane_list,
    shapes_region,
    visible_region,
)
from ._layers import (
    full_resolution_data,
    labels_layers,
    layer_pixel_size_yx_nm,
    proposal_plane,
    result_tag,
)

if TYPE_CHECKING:
    import napari

__all__ = [
    "ALL_PLANES",
    "CURRENT_PLANE",
    "CURRENT_VIEW",
    "LISTED_PLANES",
    "NOT_REVIEWED_ROLE",
    "PLANE_CHOICES",
    "REGIONS",
    "SHAPES",
    "WHOLE_IMAGE",
    "ClassLayer",
    "SampleToSave",
    "SaveChoices",
    "SavePlan",
    "belongs_to",
    "build_save_plan",
    "current_plane",
    "guess_class_name",
    "guess_objects",
    "loaded_sample_tag",
    "model_of",
    "plane_axes",
    "run_save_plan",
]

# What the annotator reviewed.
WHOLE_IMAGE = "whole image"
CURRENT_VIEW = "current view"
SHAPES = "areas in a Shapes layer"
#: the reviewed-region choices, in the order the dock offers them
REGIONS = (WHOLE_IMAGE, CURRENT_VIEW, SHAPES)

# Which planes of a stack.
CURRENT_PLANE = "current plane"
ALL_PLANES = "all planes"
LISTED_PLANES = "listed planes"
#: the plane choices, in the order the dock offers them
PLANE_CHOICES = (CURRENT_PLANE, ALL_PLANES, LISTED_PLANES)

#: Tag ``role`` of the layer that shows the unreviewed pixels of a loaded sample.
NOT_REVIEWED_ROLE = "not reviewed"

#: Words in a layer's name that are not class names.
_NOT_CLASS_NAMES = ("labels", "mask", "masks", "layer", "corrected", "sample")


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
class SaveChoices:
    """What the annotator chose: what was corrected, where it was reviewed, where it goes.

    Attributes:
        image: the image layer the labels were corrected on.
        class_layers: the corrected Labels layers, with their classes.
        store_path: the training store folder (created at the first save).
        region: :data:`WHOLE_IMAGE`, :data:`CURRENT_VIEW` or :data:`SHAPES`.
        shapes: the Shapes layer with the reviewed areas (for :data:`SHAPES`).
        planes: for stacks: :data:`CURRENT_PLANE`, :data:`ALL_PLANES` or
            :data:`LISTED_PLANES`.
        plane_list: the listed planes (``"0-4, 7"``), along the stack's last
            non-spatial axis.
        annotator: who corrected; None (or blank) for the operating-system user.
    """

    image: Image | None
    class_layers: Sequence[ClassLayer]
    store_path: Path
    region: str = WHOLE_IMAGE
    shapes: Shapes | None = None
    planes: str = CURRENT_PLANE
    plane_list: str = ""
    annotator: str | None = None

    @property
    def region_description(self) -> str:
        """How the reviewed region was chosen, as recorded in ``provenance.extra["reviewed"]``."""
        if self.region == SHAPES and self.shapes is not None:
            return f"areas in Shapes layer '{self.shapes.name}'"
        return str(self.region)


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
        provenance: where the sample came from, for
            :meth:`~napari_organelle.store.TrainingStore.save`.
    """

    image: np.ndarray
    labels: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    reviewed: bool | np.ndarray
    proposals: dict[str, np.ndarray]
    provenance: Provenance


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


# ---------------------------------------------------------------------- building the plan


def build_save_plan(viewer: napari.viewer.Viewer, choices: SaveChoices) -> SavePlan:
    """What Save writes for these choices, checked and copied from the layers.

    Everything that can be wrong with the input is found here, before the
    store is touched, so a bad choice writes nothing.

    Args:
        viewer: the viewer (or a :class:`napari.components.ViewerModel`):
            its dims give the current plane, its camera the current view, and
            its layers a loaded sample's 'not reviewed' layer.
        choices: what the annotator chose.

    Returns:
        One sample per reviewed plane; planes with nothing reviewed are left
        out and named in the plan's notes.

    Raises:
        InputError: no image or labels chosen, layers that do not match
            the image, label values the class cannot hold, an empty
            reviewed region, or a bad plane list.
    """
    image = choices.image
    if image is None:
        raise InputError("choose the image layer the labels were corrected on (open an "
                         "image first)")
    if image.rgb:
        raise InputError(f"'{image.name}' is an RGB colour image; samples are single-channel:"
                         " split it (right-click the layer > Split RGB) and choose a channel")
    image_data = full_resolution_data(image)
    if image_data.ndim < 2:
        raise InputError(f"'{image.name}' is not an image: it has {image_data.ndim} axis")
    class_layers = _checked_class_layers(choices.class_layers)
    for class_layer in class_layers:
        shape = full_resolution_data(class_layer.layer).shape
        if shape != image_data.shape:
            raise InputError(
                f"layer '{class_layer.layer.name}' is {_shape_text(shape)} but the image "
                f"'{image.name}' is {_shape_text(image_data.shape)}: choose the labels made "
                "for this image")
    plane_shape = image_data.shape[-2:]
    region_of = _region_function(viewer, choices, image, plane_shape)
    loaded = loaded_sample_tag(image)
    not_reviewed = _not_reviewed_layer(viewer, loaded, image_data.shape)
    stored = (loaded or {}).get("provenance")
    original = Provenance.from_dict(stored) if stored else None
    annotator = (choices.annotator or "").strip() or None
    pixel_size = next((size for layer in (image, *(c.layer for c in class_layers))
                       if (size := layer_pixel_size_yx_nm(layer)) is not None), None)
    common = Provenance(
        source_path=image.source.path, image_layer=image.name, plane_axes=plane_axes(image),
        pixel_size_nm=pixel_size, annotator=annotator)
    extra = {"reviewed": choices.region_description}
    modality = image.metadata.get("modality") if isinstance(image.metadata, Mapping) else None
    if isinstance(modality, str):
        extra["modality"] = modality

    samples: list[SampleToSave] = []
    skipped: list[tuple[int, ...]] = []
    unknown_proposals: set[str] = set()
    for plane in _chosen_planes(viewer, choices, image, image_data.shape):
        region = region_of(plane)
        if not_reviewed is not None:
            unreviewed = np.asarray(not_reviewed.data[plane]) != 0
            region = ~unreviewed if region is True else region & ~unreviewed
        box = None if region is True else bounding_box(region)
        if region is not True and box is None:
            skipped.append(plane)
            continue
        crop = crop_slices(box, plane_shape)
        sample = _sample(image_data, image.name, class_layers, plane, crop,
                         True if region is True else region[crop], unknown_proposals,
                         common, extra)
        if original is not None:
            sample = _replace_provenance(sample, sample.provenance.cut_from(original))
        samples.append(sample)
    if not samples:
        raise InputError(_nothing_reviewed_message(choices, skipped))

    notes = []
    if skipped:
        notes.append(f"nothing reviewed in plane(s) {_planes_text(skipped)}: not saved")
    if unknown_proposals:
        names = ", ".join(sorted(unknown_proposals))
        notes.append(f"changed pixels not counted for {names}: no model proposal is known "
                     "for that layer")
    classes = tuple(dict.fromkeys(c.class_name for c in class_layers))
    return SavePlan(choices.store_path, classes, tuple(samples), tuple(notes))


def _checked_class_layers(class_layers: Sequence[ClassLayer]) -> list[ClassLayer]:
    """The chosen layers with their class names checked: allowed, and one layer per class."""
    if not class_layers:
        raise InputError("tick at least one corrected Labels layer under Labels")
    checked = []
    seen: dict[str, str] = {}
    for class_layer in class_layers:
        layer, name = class_layer.layer, class_layer.class_name.strip()
        if not name:
            raise InputError(f"give layer '{layer.name}' a class name (e.g. 'er')")
        try:
            check_class_name(name)
        except InputError as error:
            raise InputError(f"layer '{layer.name}': {error}") from None
        other = seen.setdefault(name, layer.name)
        if other != layer.name:
            raise InputError(f"layers '{other}' and '{layer.name}' are both class '{name}': "
                             "tick one, or rename a class")
        checked.append(ClassLayer(layer, name, class_layer.objects))
    return checked


def _chosen_planes(viewer: napari.viewer.Viewer, choices: SaveChoices, image: Image,
                   shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Indices along the non-spatial axes of every plane to save."""
    leading = shape[:-2]
    if not leading:
        return [()]
    current = current_plane(viewer, image, shape)
    if choices.planes == ALL_PLANES:
        return list(itertools.product(*(range(n) for n in leading)))
    if choices.planes == LISTED_PLANES:
        indices = parse_plane_list(choices.plane_list, leading[-1])
        return [(*current[:-1], index) for index in indices]
    if choices.planes != CURRENT_PLANE:
        raise InputError(f"unknown plane choice {choices.planes!r}: choose one of "
                         f"{', '.join(PLANE_CHOICES)}")
    return [current]


def current_plane(viewer: napari.viewer.Viewer, image: Layer,
                  shape: tuple[int, ...]) -> tuple[int, ...]:
    """The plane of ``image`` the viewer shows (from the dims sliders)."""
    point = np.asarray(image.world_to_data(viewer.dims.point))
    return tuple(int(np.clip(np.round(point[axis]), 0, shape[axis] - 1))
                 for axis in range(len(shape) - 2))


def _region_function(viewer: napari.viewer.Viewer, choices: SaveChoices, image: Image,
                     plane_shape: tuple[int, int]
                     ) -> Callable[[tuple[int, ...]], bool | np.ndarray]:
    """A function giving the reviewed pixels of a plane: True (all) or a mask."""
    if choices.region == CURRENT_VIEW:
        visible = visible_region(viewer, image, plane_shape)
        if not visible.any():
            raise InputError(f"the view does not show the image '{image.name}': pan to the "
                             "reviewed area (or press Home)")
        full = bool(visible.all())
        return lambda _plane: True if full else visible
    if choices.region == SHAPES:
        shapes = choices.shapes
        if shapes is None:
            raise InputError("add a Shapes layer and draw rectangles around the areas you "
                             "reviewed, or choose another reviewed region")
        if len(shapes.data) == 0:
            raise InputError(f"the Shapes layer '{shapes.name}' is empty: draw rectangles "
                             "around the areas you reviewed")
        return partial(shapes_region, shapes, image, plane_shape=plane_shape)
    if choices.region != WHOLE_IMAGE:
        raise InputError(f"unknown reviewed region {choices.region!r}: choose one of "
                         f"{', '.join(REGIONS)}")
    return lambda _plane: True


def _not_reviewed_layer(viewer: napari.viewer.Viewer, loaded: Mapping[str, Any] | None,
                        shape: tuple[int, ...]) -> Labels | None:
    """The 'not reviewed' layer of a loaded sample: its pixels stay ignored when re-saved."""
    if loaded is None:
        return None
    for layer in labels_layers(viewer):
        tag = result_tag(layer) or {}
        if (tag.get("role") == NOT_REVIEWED_ROLE and tag.get("sample") == loaded["sample"]
                and full_resolution_data(layer).shape == shape):
            return layer
    return None


def _nothing_reviewed_message(choices: SaveChoices, skipped: list[tuple[int, ...]]) -> str:
    planes = [plane for plane in skipped if plane]
    if choices.region == SHAPES and choices.shapes is not None:
        name = choices.shapes.name
        if planes:
            return (f"no shape of '{name}' lies on plane(s) {_planes_text(planes)}: draw "
                    "the reviewed areas on the planes you save, or choose other planes")
        return f"no shape of '{name}' covers the image: draw the reviewed areas over it"
    where = f" in plane(s) {_planes_text(planes)}" if planes else ""
    return (f"nothing was reviewed{where}: every pixel is in the 'not reviewed' layer; "
            "erase the parts you checked")


def _sample(image_data: Any, image_name: str, class_layers: Sequence[ClassLayer],
            plane: tuple[int, ...], crop: tuple[slice, slice], reviewed: bool | np.ndarray,
            unknown_proposals: set[str], common: Provenance,
            extra: Mapping[str, Any]) -> SampleToSave:
    """Copy one plane's image and labels out of the layers, checked."""
    pixels = np.array(image_data[plane][crop])  # a copy: painting may go on meanwhile
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise InputError(f"the image '{image_name}' has NaN or infinite pixels"
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
        models[name] = model_of(layer)

    known_models = list(dict.fromkeys(m for m in models.values() if m))
    model_name, model_version = split_model(known_models[0] if known_models else None)
    sample_extra = dict(extra)
    if len(known_models) > 1 or (known_models and None in models.values()):
        sample_extra["class_models"] = models  # classes corrected from different proposals
    missing = sorted(name for name in models if name not in proposals)
    if missing:
        sample_extra["changed_pixels_unknown"] = missing
    whole_plane = pixels.shape == tuple(image_data.shape[-2:])
    provenance = Provenance(
        source_path=common.source_path,
        image_layer=common.image_layer,
        label_layers=label_layers,
        plane=plane,
        plane_axes=common.plane_axes,
        crop=None if whole_plane else (crop[0].start, crop[1].start, crop[0].stop,
                                       crop[1].stop),
        pixel_size_nm=common.pixel_size_nm,
        model_name=model_name,
        model_version=model_version,
        annotator=common.annotator,
        extra=sample_extra,
    )
    return SampleToSave(pixels, labels, instances, reviewed, proposals, provenance)


def _replace_provenance(sample: SampleToSave, provenance: Provenance) -> SampleToSave:
    return SampleToSave(sample.image, sample.labels, sample.instances, sample.reviewed,
                        sample.proposals, provenance)


# ---------------------------------------------------------------------- layer facts


def model_of(layer: Labels) -> str | None:
    """``name@version`` of the model whose proposal the layer started as, if it says."""
    model = (result_tag(layer) or {}).get("model")
    return model if isinstance(model, str) and model else None


def plane_axes(image: Layer) -> str:
    """Names of the image's non-spatial axes (``"TZ"``), when the user gave them names.

    napari's default axis labels are numbers (``"-3"``), which say nothing.
    """
    labels = [str(label) for label in image.axis_labels[:-2]]
    if not labels or any(re.fullmatch(r"-?\d+", label) for label in labels):
        return ""
    return "".join(labels) if all(len(label) == 1 for label in labels) else ",".join(labels)


def guess_class_name(layer: Labels) -> str:
    """The class a Labels layer holds: from Segment's tag, else from its name if it is one.

    Examples:
        >>> guess_class_name(Labels(np.zeros((2, 2), np.uint8), name="ER mask [1]"))
        'er'
    """
    tag = result_tag(layer) or {}
    if isinstance(tag.get("class"), str):
        return tag["class"]
    words = re.findall(r"[A-Za-z][A-Za-z0-9_-]*", layer.name)
    for word in words:
        try:
            check_class_name(word.lower())
        except InputError:
            continue
        if word.lower() not in _NOT_CLASS_NAMES:
            return word.lower()
    return ""


def guess_objects(layer: Labels) -> bool:
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


def belongs_to(layer: Labels, image: Image | None) -> bool:
    """Segment made ``layer`` from ``image``, or it is an untagged layer of the image's shape."""
    if image is None:
        return False
    tag = result_tag(layer)
    if tag is not None and "source" in tag:
        return tag["source"] == image.name
    image_data = full_resolution_data(image)
    return not image.rgb and full_resolution_data(layer).shape == image_data.shape


def loaded_sample_tag(layer: Layer) -> dict[str, Any] | None:
    """The tag of a layer the Correct dock loaded from the store, or None."""
    tag = result_tag(layer)
    return dict(tag) if tag is not None and isinstance(tag.get("sample"), str) else None


# ---------------------------------------------------------------------- texts


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape) + " pixels"


def _in_plane(plane: tuple[int, ...]) -> str:
    return f" in plane {_planes_text([plane])}" if plane else ""


def _planes_text(planes: Sequence[tuple[int, ...]]) -> str:
    return ", ".join(",".join(str(i) for i in plane) if len(plane) > 1 else str(plane[0])
                     for plane in planes if plane)
