"""Tile size and overlap versus speed and seams, on one CPU machine -> docs/tiling.md.

Run from the repository root::

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_tiling.py
"""

import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_vaeedof import fuse_stack  # noqa: E402
from napari_vaeedof.data.synth import make_stack, quantize  # noqa: E402
from napari_vaeedof.engine.tiling import TileGrid  # noqa: E402
from napari_vaeedof.evaluation.seams import seam_report  # noqa: E402

SIZE, PLANES = 1024, 3
SETTINGS = [(1024, 0), (256, 32), (256, 64), (512, 64), (512, 128), (768, 192)]


def main() -> None:
    stack = quantize(make_stack(11, size=SIZE, n_planes=PLANES, kind="photo").planes, np.uint8)
    fuse_stack(stack[:, :64, :64], error_map=False)  # load the models once
    rows, untiled = [], None
    for tile, overlap in SETTINGS:
        t0 = time.perf_counter()
        image = fuse_stack(stack, tile_size=tile, overlap=overlap, error_map=False).image
        seconds = time.perf_counter() - t0
        if untiled is None:
            untiled = image
            rows.append((tile, overlap, 1, seconds, 0.0, 0.0, 1.0))
            continue
        grid = TileGrid.build(SIZE, SIZE, tile, overlap)
        r = seam_report(image, untiled, grid)
        rows.append((tile, overlap, len(grid), seconds, r["mean_abs_diff"], r["p99_abs_diff"],
                     r["border_excess"]))
        print(rows[-1], flush=True)
    lines = [
        "# Tile size and overlap",
        "",
        f"One {SIZE}x{SIZE} RGB uint8 synthetic stack of {PLANES} planes (seed 11), fused on the "
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        "threads, float32, error map off) untiled and with each tiling. Differences are to the "
        "untiled output, in grey levels (0-255); border excess is the gradient across tile "
        "borders relative to the untiled output's on the same lines (1 = no seam; a 0.5-level "
        "step along the borders gives 1.05). Made by `python scripts/measure_tiling.py`.",
        "",
        "| tile | overlap | tiles | seconds | mean abs diff | p99 abs diff | border excess |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {t} | {o} | {n} | {s:.1f} | {m:.2f} | {p:.1f} | {b:.3f} |"
              for t, o, n, s, m, p, b in rows]
    (REPO / "docs" / "tiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
