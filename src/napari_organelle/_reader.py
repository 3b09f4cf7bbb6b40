"""napari reader for OME-Zarr folders (NGFF 0.4 / 0.5): lazy, multiscale, with pixel sizes.

Returns layer-data tuples (no napari import: the core stays GUI-free). The image
is one multiscale layer (a dask array per level, nothing loaded until napari
draws it) with the metadata's scale, axis names and units, and
``metadata["pixel_size_nm"]`` for the Segment dock. The image's NGFF labels
(``labels/<class>``, such as this plugin writes) come as lazy multiscale Labels
layers, in the class colour when the labels say it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError
from .ngff import NgffImage, is_ngff, labels_metadata, read_labels, read_ngff

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for an OME-Zarr folder (or a folder holding only NGFF labels), else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if not str(folder).rstrip("/").endswith(".zarr") or not folder.is_dir():
        return None
    if is_ngff(folder) or (folder / "labels").is_dir():
        return read_layers
    return None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """The image (when there is one) and its labels as napari layer data, lazily."""
    folder = Path(path[0] if isinstance(path, list) else path)
    layers: list[LayerData] = []
    reference: NgffImage | None = None
    if is_ngff(folder):
        reference = read_ngff(folder)
        layers.append(image_layer(reference))
    for name, labels in read_labels(folder).items():
        layers.append(labels_layer(name, labels))
    if not layers:
        raise InputError(f"{folder.name} holds no OME-Zarr image or labels")
    return layers


def _spatial(image: NgffImage, level: int = 0) -> tuple[list[float], list[str], list[str]]:
    keep = [i for i, letter in enumerate(image.axes) if letter != "C"]
    return ([image.scales[level][i] for i in keep], [image.axes[i].lower() for i in keep],
            [image.units[i] or "pixel" for i in keep])


def _pixel_size(image: NgffImage) -> tuple[float, float] | None:
    y, x = image.axis_nm("Y"), image.axis_nm("X")
    return (y, x) if y and x else None


def image_layer(image: NgffImage) -> LayerData:
    """One lazy multiscale image layer (channels split by napari when there is a C axis)."""
    scale, names, units = _spatial(image)
    kwargs: dict[str, Any] = {
        "name": image.name or image.path.name.removesuffix(".zarr").removesuffix(".ome"),
        "multiscale": len(image.levels) > 1, "scale": scale, "axis_labels": names,
        "units": units, "metadata": {"path": os.fspath(image.path), "axes": image.axes}}
    pixel = _pixel_size(image)
    if pixel:
        kwargs["metadata"]["pixel_size_nm"] = pixel
    if image.channel_axis is not None:
        kwargs["channel_axis"] = image.channel_axis
        if image.channel_names and len(image.channel_names) == image.data.shape[
                image.channel_axis]:
            kwargs["name"] = image.channel_names
    data = image.levels if len(image.levels) > 1 else image.levels[0]
    return data, kwargs, "image"


def labels_layer(name: str, labels: NgffImage) -> LayerData:
    """One lazy multiscale labels layer, coloured like the class for a semantic mask."""
    scale, axis_names, units = _spatial(labels)
    meta = labels_metadata(labels)
    kwargs: dict[str, Any] = {"name": name, "multiscale": len(labels.levels) > 1,
                              "scale": scale, "axis_labels": axis_names, "units": units,
                              "metadata": {"ngff-labels": meta}}
    pixel = _pixel_size(labels)
    if pixel:
        kwargs["metadata"]["pixel_size_nm"] = pixel
    colors = meta.get("image-label", {}).get("colors") or []
    if colors:
        kwargs["colormap"] = {None: [0, 0, 0, 0], **{
            int(c["label-value"]): [v / 255 for v in c["rgba"]] for c in colors}}
    data = labels.levels if len(labels.levels) > 1 else labels.levels[0]
    return data, kwargs, "labels"
