"""Blockwise segmentation on a real dask LocalCluster, and the CLI for OME-Zarr inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_organelle.blockwise import segment_blockwise
from napari_organelle.cli import main
from napari_organelle.inference import segment
from napari_organelle.ngff import read_labels, write_ngff_image

from ._models import make_tiny_model
from .test_blockwise import blobs, blur_model, same_partition

distributed = pytest.importorskip("distributed")


def test_cluster_result_equals_in_memory(tmp_path):
    from napari_organelle import blockwise
    from napari_organelle.distributed import ClusterExecutor

    blockwise._PREDICTORS.clear()
    image = blobs((140, 150), 35, seed=2)
    model = blur_model()
    expected = segment(image, model, batch_size=1, device="cpu", backend="torch")
    path = tmp_path / "image.ome.zarr"
    write_ngff_image(path, image, axes="YX", pixel_size_nm=4.0, chunks=32)
    from napari_organelle.ngff import read_ngff

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = segment_blockwise(read_ngff(path).data, model, path, batch_size=1,
                                   device="cpu", backend="torch", block_size=64, halo=40,
                                   executor=ClusterExecutor(client))
    got = {name: np.asarray(labels.data) for name, labels in read_labels(path).items()}
    assert np.array_equal(got["membranes"], expected.labels["membranes"])
    assert same_partition(got["mitochondria"], expected.labels["mitochondria"])
    assert result.blocks == 9
    assert len(blockwise._PREDICTORS) == 1  # 9 blocks, 2 worker threads: the model built once


def test_cli_segments_an_ome_zarr_on_a_local_cluster(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "tiny")
    image = blobs((96, 160), 20, seed=4)
    source = tmp_path / "big.ome.zarr"
    write_ngff_image(source, image, axes="YX", pixel_size_nm=4.0, chunks=32, version="0.4")
    common = ["segment", str(source), "--model", str(model), "--tile", "64", "--block", "64",
              "--device", "cpu", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "results.ome.zarr"), "--workers", "1",
                 "--threads-per-worker", "1"]) == 0
    captured = capsys.readouterr()
    assert "dashboard" in captured.err and "results.ome.zarr" in captured.out
    assert main([*common, "--out", str(tmp_path / "local.ome.zarr"), "--local"]) == 0
    cluster = read_labels(tmp_path / "results.ome.zarr")
    local = read_labels(tmp_path / "local.ome.zarr")
    assert sorted(cluster) == ["membranes", "mitochondria"]
    for name in cluster:
        assert np.array_equal(np.asarray(cluster[name].data), np.asarray(local[name].data))
        assert cluster[name].data.shape == (96, 160)
    summary = json.loads((tmp_path / "results.ome.zarr.summary.json").read_text())
    assert summary["blocks"] == 6 and summary["pixel_size_nm"] == 4.0


def test_default_cluster_size_and_bad_inputs(tmp_path, capsys):
    from napari_organelle.distributed import default_workers

    assert default_workers(4, 1 << 30) == (1, 4)
    (tmp_path / "plain.zarr").mkdir()
    model = make_tiny_model(tmp_path / "tiny")
    assert main(["segment", str(tmp_path / "plain.zarr"), "--model", str(model), "--out",
                 str(tmp_path / "o.ome.zarr"), "--local", "--quiet"]) == 1
    assert "not a Zarr folder" in capsys.readouterr().err
    source = tmp_path / "img.ome.zarr"
    write_ngff_image(source, blobs((64, 64), 3), axes="YX", pixel_size_nm=4.0, chunks=32,
                     n_levels=2)
    assert main(["segment", str(source), "--model", str(model), "--out",
                 str(tmp_path / "o.ome.zarr"), "--local", "--quiet", "--level", "5"]) == 1
    assert "has levels 0 to 1" in capsys.readouterr().err
    assert main(["segment", str(source), "--out", str(tmp_path / "o.ome.zarr"), "--local",
                 "--quiet"]) == 1
    assert "need --model" in capsys.readouterr().err
