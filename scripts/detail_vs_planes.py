"""How much local detail does a fused image hold, against the planes and against the truth?

Local detail = `evaluation.metrics.gradient_energy_map` box-averaged over 9 px. For each
image the ratio of its local detail to the planes' maximum of it, median over the 20 % most
detailed pixels (1 = as detailed as the sharpest plane there; above 1 = more than any plane
holds: detail combined from several planes, or halos and noise). On the real stacks (at
``--max-side``): ours, the Laplacian pyramid, variance argmax. On noise-free synthetic stacks
of every family (tuning seeds): the same, and the truth's own ratio, which says what an
all-in-focus image holds.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/detail_vs_planes.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion, variance_argmax_fusion
from napari_vaeedof.evaluation.metrics import gradient_energy_map

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))
from real_stacks import load_stack  # noqa: E402

TUNING_FIRST_SEED = 3_300_000


def local_detail(image: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter(gradient_energy_map(np.asarray(image, np.float32)), 9)


def ratios(planes: np.ndarray, images: dict[str, np.ndarray]) -> dict[str, float]:
    most = np.max([local_detail(p) for p in planes], 0)
    top = most >= np.quantile(most, 0.8)
    return {k: float(np.median(local_detail(v)[top] / most[top])) for k, v in images.items()}


def classical(planes: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(planes, np.float32)
    scale = 255.0 if planes.dtype == np.uint8 else 1.0
    return {"pyramid": laplacian_pyramid_fusion(x / scale, levels=5) * scale,
            "variance argmax": variance_argmax_fusion(x / scale) * scale}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacks", type=Path, default=REPO.parent / "shared" / "data" / "stacks")
    p.add_argument("--max-side", type=int, default=1024)
    p.add_argument("--n", type=int, default=5, help="synthetic stacks per family")
    args = p.parse_args(argv)
    for folder in sorted(d for d in args.stacks.iterdir() if d.is_dir()):
        planes = np.asarray(load_stack(folder, args.max_side)[0])
        images = {"ours": fuse_stack(planes, error_map=False).image, **classical(planes)}
        print(folder.name, {k: round(v, 3) for k, v in ratios(planes, images).items()},
              flush=True)
    for family in FAMILIES:
        rows = []
        for seed in range(TUNING_FIRST_SEED, TUNING_FIRST_SEED + args.n):
            st = make_family_stack(family, seed, size=256, noise=False)
            planes = np.asarray(st.planes, np.float32)
            images = {"truth": st.ground_truth,
                      "ours": fuse_stack(st.planes, precision="float32", error_map=False).image,
                      "pyramid": laplacian_pyramid_fusion(planes, levels=5)}
            rows.append(ratios(planes, images))
        print(family, {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]},
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
