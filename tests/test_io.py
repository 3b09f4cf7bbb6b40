from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_organelle.errors import InputError
from napari_organelle.io import read_image, write_tiff


def test_ome_tiff_pixel_size_and_axes(tmp_path):
    data = np.zeros((2, 3, 32, 40), np.uint16)  # T C Y X
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCYX", "PhysicalSizeX": 0.065,
                                                      "PhysicalSizeXUnit": "µm"})
    image = read_image(path)
    assert image.axes == "TCYX"
    assert image.channel_axis == 1
    assert image.pixel_size_nm == pytest.approx(65.0)


def test_imagej_tiff_round_trip_keeps_pixel_size(tmp_path):
    labels = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    path = write_tiff(tmp_path / "out" / "mito.tif", labels, pixel_size_nm=5.0)
    image = read_image(path)
    np.testing.assert_array_equal(image.data, labels)
    assert image.pixel_size_nm == pytest.approx(5.0)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mito.tif"]  # no temporary left


def test_png_grey_and_rgb(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "grey.png", np.zeros((20, 30), np.uint8))
    iio.imwrite(tmp_path / "rgb.png", np.zeros((20, 30, 3), np.uint8))
    assert read_image(tmp_path / "grey.png").axes == "YX"
    rgb = read_image(tmp_path / "rgb.png")
    assert rgb.rgb and rgb.pixel_size_nm is None


def test_missing_unsupported_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="cannot read broken.tif"):
        read_image(tmp_path / "broken.tif")
