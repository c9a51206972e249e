"""The benchmark harness on tiny inputs, with our own methods only (no peers venv needed)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import quality  # noqa: E402
import speed  # noqa: E402


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_worker_lists_our_methods_as_runnable():
    out = subprocess.run([sys.executable, str(common.WORKER), "--list"], capture_output=True,
                         text=True, check=True, env=common.worker_env())
    listed = json.loads(out.stdout)
    assert all(listed[m.key] == "ok" for m in common.METHODS if m.ours)


def test_worker_fuses_a_stack_and_reports_time_and_memory(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    np.save(tmp_path / "s.npy", stack)
    res = common.run_job(common.BY_KEY["ours:variance_argmax"],
                         [{"stack": tmp_path / "s.npy", "out": tmp_path / "o.npy"}],
                         threads=1, repeats=2, workdir=tmp_path)
    assert "error" not in res, res
    assert len(res["items"][0]["seconds"]) == 2 and res["max_rss_mib"] > 10
    fused = np.load(tmp_path / "o.npy")
    assert fused.shape == (40, 56, 3) and fused.dtype == np.uint8
    # a per-pixel plane selection: every output pixel is one of the planes' pixels
    assert (np.abs(stack.astype(int) - fused.astype(int)).max(-1).min(0) == 0).all()


def test_worker_reports_an_unknown_method_as_an_error(tmp_path):
    res = common.run_job(common.Method("ours:nope", "nope"), [], workdir=tmp_path)
    assert "unknown method" in res["error"]


def test_quality_synthetic_table_has_every_method_and_the_ceiling(tmp_path, weights_dir):
    rc = quality.main(["--n", "1", "--size", "64", "--methods", "ours:vaeedof",
                       "ours:laplacian_pyramid", "--threads", "1", "--out", str(tmp_path),
                       "--no-wait", "--quiet"])
    assert rc == 0
    means = {r["method"]: r for r in _rows(tmp_path / "quality_synthetic.csv")}
    assert set(means) == {"vae_ceiling", "ours:vaeedof", "ours:laplacian_pyramid"}
    for r in means.values():
        assert math.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1
    md = (tmp_path / "quality_synthetic.md").read_text()
    assert "VAEEDOF pixel-faithful (ours, default)" in md
    assert "Machine:" in md and "load average" in md
    meta = json.loads((tmp_path / "quality_meta.json").read_text())
    assert meta["weights"]["status"] and meta["status"]["ours:vaeedof"] == "ok"


def test_quality_real_table_is_written_and_merged(tmp_path):
    from PIL import Image

    folder = tmp_path / "stacks" / "tiny"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"p{k}.png")
    common_args = ["--n", "0", "--real", "--stacks-dir", str(tmp_path / "stacks"), "--threads",
                   "1", "--out", str(tmp_path / "out"), "--no-wait", "--quiet"]
    assert quality.main([*common_args, "--methods", "ours:variance_argmax"]) == 0
    rows = _rows(tmp_path / "out" / "quality_real.csv")
    assert {r["method"] for r in rows} == {"sharpest_plane", "ours:variance_argmax"}
    # a per-pixel plane selection holds only the planes' values
    assert float(next(r for r in rows if r["method"] == "ours:variance_argmax")
                 ["consistency"]) == 0
    assert quality.main([*common_args, "--methods", "ours:laplacian_pyramid", "--merge"]) == 0
    merged = {r["method"] for r in _rows(tmp_path / "out" / "quality_real.csv")}
    assert {"ours:variance_argmax", "ours:laplacian_pyramid"} <= merged
    assert "Laplacian pyramid" in (tmp_path / "out" / "quality_real.md").read_text()


def test_quality_crops_grid_keeps_crops_at_one_to_one(tmp_path):
    from PIL import Image

    cells = [("a", np.zeros((32, 48, 3), np.uint8)), ("b", np.full((32, 48, 3), 255, np.uint8))]
    quality.crops_png(tmp_path / "c.png", "title", cells, columns=4)
    with Image.open(tmp_path / "c.png") as im:
        assert im.width >= 2 * 48 and im.height >= 32


def test_speed_sweep_records_time_memory_and_skips(tmp_path):
    rc = speed.main(["--planes", "2", "3", "--plane-size", "64", "--sizes", "--methods",
                     "ours:laplacian_pyramid", "--threads", "1", "--repeats", "1",
                     "--no-wait", "--no-plot", "--out", str(tmp_path)])
    assert rc == 0
    rows = _rows(tmp_path / "speed_planes.csv")
    assert [r["planes"] for r in rows] == ["2", "3"]
    for r in rows:
        assert r["status"] == "ok" and float(r["seconds"]) > 0 and float(r["max_rss_mib"]) > 10
    assert "MPx-planes per second" in (tmp_path / "speed_planes.md").read_text()


def test_speed_skips_a_run_predicted_to_pass_the_cap(tmp_path):
    m = common.BY_KEY["ours:laplacian_pyramid"]
    args = speed.build_parser().parse_args(["--cap", "1e-9", "--repeats", "1", "--threads", "1",
                                            "--no-wait"])
    stack = np.zeros((2, 32, 32, 3), np.uint8)
    inputs = []
    for i, side in enumerate((32, 64)):
        np.save(tmp_path / f"{i}.npy", np.resize(stack, (2, side, side, 3)))
        inputs.append({"sweep": "size", "name": str(side), "path": tmp_path / f"{i}.npy",
                       "planes": 2, "height": side, "width": side})
    clock = {"run_s": 0.0, "waited_s": 0.0, "busy_runs": 0}
    rows = speed.run_sweep(inputs, [m], {m.key: "ok"}, args, tmp_path, clock, log=lambda s: None)
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "skipped" and "cap" in rows[1]["note"]


def test_peers_without_their_venv_are_recorded_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "PEERS_PYTHON", tmp_path / "missing" / "python")
    status = common.availability([common.BY_KEY["focusweave:laplacian"],
                                  common.BY_KEY["ours:variance_argmax"]])
    assert status["ours:variance_argmax"] == "ok"
    assert "setup_peers.sh" in status["focusweave:laplacian"]
