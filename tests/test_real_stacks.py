"""docs/real_stacks.py (the real-stack montage run, research code outside the package) on a
small crop of focusstack_pcb with the packaged weights, and its helpers."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "docs"))

import real_stacks as rs  # noqa: E402

PCB = REPO.parent / "shared" / "data" / "stacks" / "focusstack_pcb"


@pytest.fixture
def pcb_crop(tmp_path) -> Path:
    if not (PCB / "00.jpg").is_file():
        pytest.skip(f"real stacks not found at {PCB}")
    folder = tmp_path / "stacks" / "pcb_crop"
    folder.mkdir(parents=True)
    for i in (0, 3, 6):  # near, middle and far focus; 96x128 from the detailed centre
        with Image.open(PCB / f"{i:02d}.jpg") as im:
            im.crop((960, 700, 1088, 796)).save(folder / f"{i:02d}.png")
    return folder.parent


def test_real_stacks_on_a_crop(pcb_crop, tmp_path, weights_dir):
    out = tmp_path / "out"
    rc = rs.main(["--stacks-dir", str(pcb_crop), "--out", str(out), "--tile-size", "64",
                  "--crop", "48", "--device", "cpu", "--quiet"])
    assert rc == 0
    for name in ("pcb_crop_montage.png", "pcb_crop_crops.png", "real_stacks.csv",
                 "real_stacks.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pcb_crop_montage.png").stat().st_size < rs.MAX_PNG_BYTES
    with Image.open(out / "pcb_crop_crops.png") as im:  # 2 rows of 7 crops of 48 px, 1:1
        assert im.width > 7 * 48 and im.height > 2 * 48
    with open(out / "real_stacks.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(rs.METHODS)
    for method, row in rows.items():
        assert (row["height"], row["width"], row["planes"]) == ("96", "128", "3")
        keys = ["grad_energy", "consistency", "border_ratio", "seconds"]
        if method == "vaeedof":
            keys += ["fill_fraction", "error_mean", "error_p99", "n_tiles"]
        for key in keys:
            assert math.isfinite(float(row[key])), (method, key, row[key])
    assert float(rows["variance_argmax"]["consistency"]) == 0  # per-pixel plane selection
    assert float(rows["vaeedof"]["n_tiles"]) > 1  # the border ratio is on a real tile grid
    md = (out / "real_stacks.md").read_text()
    assert "| pcb_crop | VAEEDOF pixel-faithful (ours) |" in md and "pcb_crop_crops.png" in md


def test_downsampling_and_spots():
    assert rs.downsample_factor((3648, 5440), 384) == pytest.approx(5440 / 384)
    assert rs.downsample_factor((100, 80), None) == 1.0
    energy = np.zeros((40, 50))
    energy[30:35, 2:6] = 1
    y0, y1, x0, x1 = rs.best_window(energy, 16)
    assert (y1 - y0, x1 - x0) == (16, 16) and y0 <= 30 and y1 >= 35 and x0 <= 2 and x1 >= 6
    assert rs.crop_box((0, 49), 16, (40, 50)) == (0, 16, 34, 50)
    colours = rs.inferno(np.array([0.0, 1.0]), 0, 1)
    assert colours[0].max() < 10 and colours[1].min() > 150  # black to light yellow
