"""Pixel-faithful mode against the classical baselines on held-out layered scenes whose planes
are noise-free, JPEG-compressed (quality 80) or noisy (the generator's sensor noise), always
scored against the noise-free ground truth. ``--selection PATH`` uses another selection head.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_compose.py --n 30
    ... --first 3100004 --n 6      # the seeds the composition constants were chosen on

Hard pixels: no noise-free plane within 2/255 of the truth (as `napari-vaeedof evaluate`).
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
from PIL import Image

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.synth import make_stack
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion, variance_argmax_fusion
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED
from napari_vaeedof.evaluation.metrics import hard_pixel_mask, psnr, ssim


def jpeg(planes: np.ndarray, quality: int = 80) -> np.ndarray:
    """(Z, H, W, 3) float in [0, 1] -> the same after an 8-bit JPEG round trip per plane."""
    out = []
    for p in planes:
        buf = io.BytesIO()
        Image.fromarray(np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)).save(
            buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255)
    return np.stack(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--first", type=int, default=HELDOUT_FIRST_SEED)
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", default=None, help="write per-stack rows here")
    p.add_argument("--selection", default=None,
                   help="another selection head file (e.g. runs/selection_bands/...)")
    args = p.parse_args(argv)

    def ours(planes):
        return fuse_stack(planes, device="cpu", precision="float32", error_map=False,
                          selection_path=args.selection).image

    methods = {"vaeedof_pixel": ours, "laplacian_pyramid": laplacian_pyramid_fusion,
               "variance_argmax": variance_argmax_fusion}
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.first, args.first + args.n):
        clean = make_stack(seed, size=args.size, noise=False)
        noisy = make_stack(seed, size=args.size, noise=True).planes
        gt = clean.ground_truth
        mask = hard_pixel_mask(clean.planes, gt)
        for cond, planes in (("noise-free", clean.planes), ("JPEG q80", jpeg(clean.planes)),
                             ("noisy", noisy)):
            for name, fn in methods.items():
                out = np.clip(np.asarray(fn(np.ascontiguousarray(planes)), np.float32), 0, 1)
                rows.append({"seed": seed, "planes": cond, "method": name,
                             "psnr": psnr(out, gt), "ssim": ssim(out, gt),
                             "hard_se": float(((out - gt) ** 2).mean(-1)[mask].sum()),
                             "hard_n": int(mask.sum())})
    print(f"{args.n} stacks of {args.size} px, seeds {args.first}..{args.first + args.n - 1}, "
          f"{time.perf_counter() - t0:.0f} s")
    print("| planes | method | PSNR | SSIM | hard-pixel PSNR (pooled) |")
    print("|---|---|---|---|---|")
    for cond in ("noise-free", "JPEG q80", "noisy"):
        for name in methods:
            r = [x for x in rows if x["planes"] == cond and x["method"] == name]
            hard = sum(x["hard_se"] for x in r) / max(sum(x["hard_n"] for x in r), 1)
            print(f"| {cond} | {name} | {np.mean([x['psnr'] for x in r]):.2f} | "
                  f"{np.mean([x['ssim'] for x in r]):.4f} | {10 * np.log10(1 / hard):.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
