"""The Fusion U-Net's training command on a tiny family set: caches, warm-starts, resumes."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_vaeedof.training as training
from napari_vaeedof.models.fusion_unet import load_unet
from napari_vaeedof.models.weights import fusion_unet_path
from napari_vaeedof.training.cli import RECIPES
from napari_vaeedof.training.dataset import LatentStacks
from napari_vaeedof.training.train import load_config, train


def _cfg(tmp_path, steps: int, lr: float = 2e-4, recipe: str = "families") -> dict:
    cfg = load_config(Path(training.__file__).with_name(RECIPES[recipe]),
                      [f"train.steps={steps}", "train.batch=2", "train.crop=4", f"train.lr={lr}",
                       "train.warmup=1", "data.n_stacks=2", "data.size=64",
                       "train.checkpoint_every=2", 'data.families=["fluorescence", "brightfield"]'])
    cfg["data"]["cache"] = str(tmp_path / "cache")
    cfg["train"]["out"] = str(tmp_path / "out")
    return cfg


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(),
                                                          strict=True))


def test_family_cache_warm_start_and_resume(tmp_path, weights_dir):
    logs = []
    # A learning rate of ~0 keeps the weights where the warm start put them.
    train(_cfg(tmp_path, 2, lr=1e-12), log=logs.append)
    shards = sorted(p.name for p in (tmp_path / "cache").glob("*.pt"))
    assert shards == ["shard_brightfield_0000000_2_64.pt", "shard_fluorescence_0000000_2_64.pt"]
    assert any("warm start" in m for m in logs)
    shipped = load_unet(fusion_unet_path())
    exported = load_unet(tmp_path / "out" / "fusion_unet.safetensors")
    assert _max_diff(exported, shipped) < 1e-3  # float16 storage; a fresh init differs by ~1

    path = train(_cfg(tmp_path, 4, lr=1e-12), log=logs.append)
    assert "resumed at step 2" in logs
    with open(tmp_path / "out" / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4]
    assert load_unet(path).config == shipped.config


def test_pixel_term_through_the_decoder_is_added_with_its_weight(tmp_path, weights_dir):
    cfg = _cfg(tmp_path, 2, recipe="families-pixel")  # its pixel_weight is 10
    cfg["train"].update(pixel_crop=2)
    train(cfg, log=lambda _: None)
    with open(tmp_path / "out" / "loss.csv") as f:
        (row,) = csv.DictReader(f)
    latent, pixel = float(row["latent"]), float(row["pixel"])
    assert pixel > 0
    assert abs(float(row["loss"]) - (latent + 10.0 * pixel)) < 1e-4

    cfg["train"].update(pixel_crop=5, out=str(tmp_path / "bad"))  # larger than the 4-cell crop
    with pytest.raises(ValueError, match="pixel_crop"):
        train(cfg, log=lambda _: None)


def test_batches_take_at_most_seven_planes_of_deep_stacks(tmp_path):
    planes = [torch.arange(z, dtype=torch.float16)[:, None, None, None].expand(z, 2, 4, 4).clone()
              for z in (2, 12)]
    shard = tmp_path / "shard.pt"
    torch.save({"seeds": [0, 1], "planes": planes, "truth": torch.zeros(2, 2, 4, 4)}, shard)
    data = LatentStacks([shard])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        x, y = data.batch(rng, 4, 4)
        assert x.shape == (4, 7 * 2, 4, 4) and y.shape == (4, 2, 4, 4)
        for sample in x:
            ids = sample[::2, 0, 0].tolist()  # plane index of each of the 7 inputs
            if max(ids) > 1:  # the 12-plane stack: 7 different planes
                assert len(set(ids)) == 7
            seen.update(ids)
    assert seen == set(range(12))  # every plane of the deep stack gets drawn


def test_workers_build_the_same_cache(tmp_path, weights_dir):
    """Stacks generated in worker processes (a device call's 16 cores) encode to the cache the
    single process writes."""
    from napari_vaeedof.models.tiny_ae import load_taef2
    from napari_vaeedof.models.weights import weight_path
    from napari_vaeedof.training.dataset import build_cache

    ae = load_taef2(weight_path("taef2_encoder"), weight_path("taef2_decoder"))
    shards = [build_cache(ae, tmp_path / name, 5, 3, 64, family="layered", workers=workers,
                          log=lambda _: None)[0]
              for name, workers in (("one", 1), ("two", 2))]
    one, two = (torch.load(p, weights_only=True) for p in shards)
    assert one["seeds"] == two["seeds"] == [5, 6, 7]
    torch.testing.assert_close(one["truth"], two["truth"], atol=0, rtol=0)
    for a, b in zip(one["planes"], two["planes"], strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_time_budget_stops_with_weights_written_and_resumes(tmp_path, weights_dir):
    logs = []
    cfg = _cfg(tmp_path, 50)
    cfg["train"].update(max_seconds=0, checkpoint_every=100)
    path = train(cfg, log=logs.append)
    assert any("stopped at step 1 after train.max_seconds" in m for m in logs)
    assert path.exists() and (tmp_path / "out" / "checkpoint.pt").exists()
    with open(tmp_path / "out" / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1]
    cfg["train"]["max_seconds"] = 0
    train(cfg, log=logs.append)
    assert "resumed at step 1" in logs and any("stopped at step 2" in m for m in logs)
