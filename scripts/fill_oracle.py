"""Could a fill earn its place? On held-out stacks of every physics family, pixel mode without
fill and latent mode are compared with the noise-free truth per cell of the latent grid (8 px);
an oracle takes latent mode's pixels on the cells where its squared error is below ``margin``
times pixel mode's. Prints PSNR of pixel mode, latent mode and the oracle, and the share of
cells the oracle swaps: the most a learned fill could add with this U-Net.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/fill_oracle.py --n 3 --margin 0.64
    ... --unet runs/train_pixel/fusion_unet.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED

CELL = 8


def cell_means(error: np.ndarray) -> np.ndarray:
    """(H, W) -> (H // CELL, W // CELL) mean over each cell."""
    h, w = (s // CELL * CELL for s in error.shape)
    return error[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL).mean((1, 3))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unet", help="a U-Net for latent mode (default: the shipped one)")
    p.add_argument("--n", type=int, default=3, help="stacks per family and split")
    p.add_argument("--margin", type=float, default=1.0)
    args = p.parse_args(argv)
    for family in FAMILIES:
        for noise in (False, True):
            rows = []
            for seed in range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + args.n):
                st = make_family_stack(family, seed, size=256, noise=noise)
                truth = np.asarray(st.ground_truth, np.float64)
                common = dict(error_map=False, precision="float32", device="cpu")
                pixel = np.asarray(fuse_stack(st.planes, fill=False, **common).image, np.float64)
                latent = np.asarray(fuse_stack(st.planes, mode="latent", unet_path=args.unet,
                                               **common).image, np.float64)
                errs = [(x - truth) ** 2 for x in (pixel, latent)]
                ep, el = (e.mean(-1) if e.ndim == 3 else e for e in errs)
                cp, cl = cell_means(ep), cell_means(el)
                swap = cl < args.margin * cp
                oracle = np.where(swap, cl, cp).mean()
                rows.append([10 * np.log10(1 / ep.mean()), 10 * np.log10(1 / el.mean()),
                             10 * np.log10(1 / oracle), swap.mean()])
            r = np.mean(rows, 0)
            print(f"{family:12s} {'noisy' if noise else 'none':5s} pixel {r[0]:.2f}  latent "
                  f"{r[1]:.2f}  oracle {r[2]:.2f}  swapped {100 * r[3]:.1f} % of cells",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
