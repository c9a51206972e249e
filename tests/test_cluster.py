"""dask.distributed: batches and tile graphs on a 2-process LocalCluster equal local fusion;
tasks carry a small model spec and each worker process loads the networks once."""

import dataclasses
import pickle

import numpy as np
import pytest
import tifffile
from distributed import Client, LocalCluster

from napari_vaeedof.api import fuse_stack
from napari_vaeedof.cli import main
from napari_vaeedof.data.synth import make_stack, quantize
from napari_vaeedof.engine.runtime import ModelSpec, load_models
from napari_vaeedof.models.weights import WeightsError


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


def _loads_per_worker(address: str) -> list[int]:
    def loads() -> int:
        from napari_vaeedof.engine.runtime import _load_models_cached

        return _load_models_cached.cache_info().misses

    with Client(address) as client:
        return list(client.run(loads).values())


def test_batch_on_a_cluster_equals_local_fuse(tmp_path, batch_inputs, batch_matches_fuse,
                                              random_unet, cluster, capsys):
    out = tmp_path / "out"
    opts = ["--unet", str(random_unet), "--tile-size", "64"]
    assert main(["batch", *map(str, batch_inputs), "--out-dir", str(out), "--scheduler",
                 cluster.scheduler_address, *opts]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert sorted(line.split(":")[0] for line in lines[:3]) == ["[1/3] alpha", "[2/3] beta",
                                                                "[3/3] gamma"]
    assert lines[-1] == "3 stacks: 3 fused, 0 skipped, 0 failed"
    batch_matches_fuse(batch_inputs, out, opts)
    # Three stacks, at most one load of the networks in each of the two worker processes.
    assert 1 <= sum(_loads_per_worker(cluster.scheduler_address)) <= 2


def test_fuse_stack_tiles_on_a_client_or_an_address_equal_local(cluster, random_unet):
    planes = quantize(make_stack(4, size=160, n_planes=3).planes, np.uint8)
    opts = dict(unet_path=random_unet, tile_size=64)  # 3 x 3 tiles
    local = fuse_stack(planes, **opts)
    with Client(cluster.scheduler_address) as client:
        on_client = fuse_stack(planes, scheduler=client, **opts)
    by_address = fuse_stack(planes, scheduler=cluster.scheduler_address, **opts)
    for result in (on_client, by_address):
        assert result.image.shape == local.image.shape == (160, 160, 3)
        assert np.abs(result.image.astype(int) - local.image.astype(int)).max() <= 1
        assert np.abs(result.depth - local.depth).max() < 0.05
    assert all(n <= 1 for n in _loads_per_worker(cluster.scheduler_address))


def test_models_are_not_pickled_and_the_spec_checks_the_weights(random_unet):
    models = load_models("cpu", "float32", random_unet)
    with pytest.raises(TypeError, match="ModelSpec"):
        pickle.dumps(models)
    spec = ModelSpec.of(models, random_unet)
    assert len(pickle.dumps(spec)) < 2000  # names and hashes, not networks
    assert pickle.loads(pickle.dumps(spec)).load() is models  # this process's cache
    other = dataclasses.replace(spec, hashes=tuple((k, "0" * 64) for k, _ in spec.hashes))
    with pytest.raises(WeightsError, match="same napari-vaeedof version"):
        other.load()


def test_bad_schedulers_are_refused_before_any_work(tmp_path, batch_inputs, capsys):
    with pytest.raises(ValueError, match="scheduler must be one of"):
        fuse_stack(np.zeros((2, 64, 64), np.uint8), scheduler="bogus")
    out = tmp_path / "out"
    assert main(["batch", str(batch_inputs[0]), "--out-dir", str(out), "--scheduler",
                 "threads"]) == 2
    assert "--scheduler takes the address" in capsys.readouterr().err
    assert not out.exists()


def test_fuse_to_ome_zarr_on_the_cluster_equals_local(tmp_path, batch_inputs, random_unet,
                                                      cluster):
    import zarr

    opts = ["--unet", str(random_unet), "--tile-size", "64", "-q"]
    src = batch_inputs[0]
    assert main(["fuse", str(src), "-o", str(tmp_path / "local.tif"), *opts]) == 0
    assert main(["fuse", str(src), "-o", str(tmp_path / "remote.ome.zarr"), "--error-map",
                 str(tmp_path / "remote_error.ome.zarr"), "--scheduler",
                 cluster.scheduler_address, *opts]) == 0
    got = zarr.open_group(tmp_path / "remote.ome.zarr", mode="r")["0"][:]
    want = tifffile.imread(tmp_path / "local.tif")
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
