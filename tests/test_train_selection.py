"""The selection head's training command on a tiny prepared set: runs, logs, resumes, exports."""

import csv

import torch

from napari_vaeedof.engine.fusion import fuse_planes
from napari_vaeedof.engine.runtime import load_models
from napari_vaeedof.training.cli import RECIPES
from napari_vaeedof.training.train import load_config
from napari_vaeedof.training.train_selection import train_selection


def _cfg(tmp_path, steps: int) -> dict:
    from pathlib import Path

    import napari_vaeedof.training as training

    cfg = load_config(Path(training.__file__).with_name(RECIPES["selection"]),
                      [f"train.steps={steps}", "train.batch=2", "train.crop=64",
                       "data.n_stacks=2", "data.size=64", "train.checkpoint_every=2"])
    cfg["data"]["cache"] = str(tmp_path / "cache")
    cfg["train"]["out"] = str(tmp_path / "out")
    return cfg


def test_training_runs_resumes_and_exports_a_usable_head(tmp_path, weights_dir):
    logs = []
    train_selection(_cfg(tmp_path, 2), log=logs.append)
    path = train_selection(_cfg(tmp_path, 4), log=logs.append)
    assert "resumed at step 2" in logs
    with open(tmp_path / "out" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]  # logged at the end of each run
    assert all(float(r["pixel"]) > 0 for r in rows)
    models = load_models("cpu", "float32", selection_path=path)
    out = fuse_planes(torch.rand(3, 3, 64, 64), models, error_map=False)
    assert out["image"].shape == (3, 64, 64) and out["fill"].shape == (64, 64)
