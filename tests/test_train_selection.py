"""The selection head's training command on a tiny prepared set: runs, logs, resumes, exports."""

import csv

import pytest
import torch
import torch.nn.functional as F

from napari_vaeedof.engine.fusion import fuse_planes, head_inputs
from napari_vaeedof.engine.runtime import load_models
from napari_vaeedof.training.cli import RECIPES
from napari_vaeedof.training.train import load_config
from napari_vaeedof.training.train_selection import example_losses, train_selection


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


def test_fill_target_blend_asks_for_the_fill_where_the_decoded_fusion_is_closer(weights_dir):
    torch.manual_seed(0)
    model = load_models("cpu", "float32").selection
    truth = torch.rand(3, 64, 64)
    planes = (truth[None] + 0.1 * torch.randn(3, 3, 64, 64)).clamp(0, 1)
    ex = {"planes": planes, "truth": truth, "good": torch.zeros(3, 64, 64, dtype=torch.bool)}
    with torch.no_grad():
        _, fill_logit = model(head_inputs(model.config.inputs, planes, None))
    want_fill = F.softplus(-fill_logit[0]).mean()  # BCE against 1 everywhere
    want_none = F.softplus(fill_logit[0]).mean()  # against 0
    exact = example_losses(model, {**ex, "decoded": truth}, 0.8, "blend")["fill"]
    wrong = example_losses(model, {**ex, "decoded": 1 - truth}, 0.8, "blend")["fill"]
    assert float(exact) == pytest.approx(float(want_fill), rel=1e-5)
    assert float(wrong) == pytest.approx(float(want_none), rel=1e-5)
    with pytest.raises(ValueError, match="fill_target"):
        example_losses(model, {**ex, "decoded": truth}, 0.8, "nope")


def test_workers_prepare_the_same_family_stacks(tmp_path, weights_dir):
    """Stacks generated in worker processes (a device call's cores) are prepared into the
    cache a single process writes."""
    from napari_vaeedof.training.pixel_data import build_pixel_cache

    models = load_models("cpu", "float32")
    shards = [build_pixel_cache(models, tmp_path / name, 7, 2, 64, family="fluorescence",
                                workers=workers, log=lambda _: None)[0]
              for name, workers in (("one", 1), ("two", 2))]
    one, two = (torch.load(p, weights_only=True)["stacks"] for p in shards)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
