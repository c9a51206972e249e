"""What the fill earns: pixel mode with and without its fill, per physics family and noise split.

For held-out stacks of each family (seeds 1,000,000 on, 256 px), pixel mode as shipped and the
same with the fill switched off (the head's fill logit pushed to -inf: the planes' band blend
alone), both against the noise-free truth: the share of pixels where the fill is above 0, its
mean, the PSNR of the whole image, and the PSNR on the pixels where the fill fires.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_fill.py --n 3
    ... --selection runs/selection_families/selection_net.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.engine.runtime import load_models
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED


def _psnr(x: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(10 * np.log10(1 / ((x - truth) ** 2)[mask].mean())) if mask.any() else np.nan


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3, help="stacks per family and split")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--selection", default=None, help="another selection head file")
    args = p.parse_args(argv)
    # The process's cached networks (fuse_stack uses the same objects): the fill bias is
    # switched between the trained value and "never" for the second run of each stack.
    head = load_models("cpu", "float32", None, args.selection).selection
    trained = head.fill[1].bias.clone()

    def fuse(planes, fill: bool) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            head.fill[1].bias.copy_(trained if fill else torch.full_like(trained, -1e4))
        r = fuse_stack(planes, selection_path=args.selection, device="cpu",
                       precision="float32", error_map=False)
        return np.clip(r.image, 0, 1), r.fill[..., 0]

    print("| family | split | fill > 0 | mean fill | PSNR with fill | without | on fill "
          "pixels with | without |")
    print("|---|---|---|---|---|---|---|---|")
    for family in FAMILIES:
        for noisy in (False, True):
            rows = []
            for seed in range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + args.n):
                st = make_family_stack(family, seed, size=args.size, noise=noisy)
                gt, everywhere = st.ground_truth, np.ones(st.ground_truth.shape[:2], bool)
                with_fill, fill = fuse(st.planes, True)
                without, _ = fuse(st.planes, False)
                on = fill > 0
                rows.append((on.mean(), fill.mean(), _psnr(with_fill, gt, everywhere),
                             _psnr(without, gt, everywhere), _psnr(with_fill, gt, on),
                             _psnr(without, gt, on)))
            r = np.array(rows, float)
            fired = r[~np.isnan(r[:, 4])]
            on_fill = (f"{fired[:, 4].mean():.2f} | {fired[:, 5].mean():.2f}" if len(fired)
                       else "- | -")
            print(f"| {family} | {'noisy' if noisy else 'none'} | {100 * r[:, 0].mean():.1f} % | "
                  f"{r[:, 1].mean():.3f} | {r[:, 2].mean():.2f} | {r[:, 3].mean():.2f} | "
                  f"{on_fill} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
