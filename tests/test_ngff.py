"""OME-Zarr (NGFF 0.4 and 0.5) reading, labels writing and the napari reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_organelle._reader import get_reader, read_layers
from napari_organelle.errors import InputError
from napari_organelle.ngff import (
    create_labels,
    finish_labels,
    is_ngff,
    labels_metadata,
    read_labels,
    read_ngff,
    write_ngff_image,
)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_read_is_lazy_multiscale_with_axes_and_pixel_sizes(tmp_path, version):
    data = np.arange(2 * 3 * 64 * 80, dtype=np.uint16).reshape(2, 3, 64, 80)
    path = tmp_path / "cells.ome.zarr"
    write_ngff_image(path, data, axes="CZYX", pixel_size_nm=8.0, z_step_nm=40.0, chunks=32,
                     n_levels=3, version=version)
    marker = "zarr.json" if version == "0.5" else ".zattrs"
    assert (path / marker).exists() and is_ngff(path)
    image = read_ngff(path)
    assert image.version == version and image.axes == "CZYX" and image.channel_axis == 0
    assert [level.shape for level in image.levels] == [(2, 3, 64, 80), (2, 3, 32, 40),
                                                       (2, 3, 16, 20)]
    assert hasattr(image.data, "dask")  # lazy
    assert image.pixel_size_nm == 8.0 and image.z_step_nm == 40.0
    assert image.axis_nm("X", 2) == 32.0
    np.testing.assert_array_equal(image.data[1, 2].compute(), data[1, 2])


def test_reads_hand_written_ngff_04_in_micrometres(tmp_path):
    import zarr

    path = tmp_path / "em.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("s0", shape=(40, 50), chunks=(20, 25), dtype="uint8")[:] = 7
    root.attrs.update({"multiscales": [{
        "version": "0.4", "name": "em",
        "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.004, 0.005]}]}]}]})
    image = read_ngff(path)
    assert image.axes == "YX" and image.pixel_size_nm == pytest.approx(5.0)
    assert image.axis_nm("Y") == pytest.approx(4.0) and image.name == "em"


def test_not_an_ome_zarr_is_a_readable_error(tmp_path):
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(InputError, match="not a Zarr folder"):
        read_ngff(tmp_path / "plain.zarr")
    with pytest.raises(InputError, match="does not exist"):
        read_ngff(tmp_path / "missing.zarr")
    assert not is_ngff(tmp_path / "plain.zarr") and get_reader(str(tmp_path / "plain.zarr")) is None
    assert get_reader(str(tmp_path / "image.tif")) is None


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_have_a_nearest_neighbour_pyramid_and_class_metadata(tmp_path, version):
    path = tmp_path / "image.ome.zarr"
    write_ngff_image(path, np.zeros((128, 96), np.uint8), axes="YX", pixel_size_nm=4.0,
                     chunks=32, version=version)
    labels = np.zeros((128, 96), np.uint32)
    labels[10:50, 10:30] = 7
    labels[60:100, 40:90] = 70000
    target = create_labels(path, "mitochondria", labels.shape, (32, 32), np.uint32, "YX",
                           [4.0, 4.0], version=version)
    assert read_labels(path) == {}  # not listed before it is finished
    target.open()[:] = labels
    finish_labels(target, color="#ff8000", kind="instance")
    mask = create_labels(path, "er", labels.shape, (32, 32), np.uint8, "YX", [4.0, 4.0],
                         version=version)
    mask.open()[:] = (labels > 0).astype(np.uint8)
    finish_labels(mask, color="#00ff00", kind="semantic")
    found = read_labels(path)
    assert sorted(found) == ["er", "mitochondria"]
    mito = found["mitochondria"]
    assert len(mito.levels) == 2
    np.testing.assert_array_equal(mito.levels[1].compute(), labels[::2, ::2])
    assert mito.axis_nm("X", 1) == 8.0
    meta = labels_metadata(mito)
    assert meta["class"] == "mitochondria" and meta["color"] == "#ff8000"
    assert meta["image-label"]["source"] == {"image": "../../"}
    er = labels_metadata(found["er"])["image-label"]
    assert er["colors"] == [{"label-value": 1, "rgba": [0, 255, 0, 255]}]
    assert er["properties"] == [{"label-value": 1, "class": "er"}]
    # the image's metadata is untouched
    assert read_ngff(path).axes == "YX"
    if version == "0.5":
        attrs = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]
        assert attrs["ome"]["labels"] == ["mitochondria", "er"]


def test_reader_gives_lazy_layers_napari_accepts(tmp_path):
    path = tmp_path / "image.ome.zarr"
    write_ngff_image(path, np.ones((2, 96, 64), np.uint16), axes="CYX", pixel_size_nm=5.0,
                     chunks=32, n_levels=2)
    target = create_labels(path, "membranes", (96, 64), (32, 32), np.uint8, "YX", [5.0, 5.0])
    target.open()[:40, :40] = 1
    finish_labels(target, color="#ff0000", kind="semantic", n_levels=2)
    reader = get_reader(str(path))
    assert reader is read_layers
    layers = reader(str(path))
    (image, image_kwargs, kind), (labels, labels_kwargs, labels_kind) = layers
    assert kind == "image" and labels_kind == "labels"
    assert image_kwargs["multiscale"] and image_kwargs["channel_axis"] == 0
    assert image_kwargs["scale"] == [5.0, 5.0] and image_kwargs["units"] == ["nanometer"] * 2
    assert image_kwargs["metadata"]["pixel_size_nm"] == (5.0, 5.0)
    assert all(hasattr(level, "dask") for level in image)
    napari_layers = pytest.importorskip("napari.layers")
    made = napari_layers.Layer.create(labels, labels_kwargs, labels_kind)
    assert made.multiscale and tuple(made.scale) == (5.0, 5.0)
    single = napari_layers.Layer.create(image[0][0], {k: v for k, v in image_kwargs.items()
                                                      if k not in ("channel_axis",
                                                                   "multiscale")}, "image")
    assert tuple(single.scale) == (5.0, 5.0)


def test_napari_finds_the_reader_for_an_ome_zarr_folder(tmp_path):
    npe2 = pytest.importorskip("npe2")
    path = tmp_path / "a.ome.zarr"
    write_ngff_image(path, np.ones((64, 64), np.uint8), axes="YX", pixel_size_nm=4.0,
                     chunks=32, n_levels=2)
    npe2.PluginManager.instance().discover()
    layers = npe2.read([str(path)], stack=False, plugin_name="napari-organelle")
    (data, kwargs, kind), = layers
    assert kind == "image" and kwargs["multiscale"] and len(data) == 2
