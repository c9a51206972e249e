"""Registration before fusion on synthetic stacks whose planes drift and breathe (issue 13).

Each stack is a physics family's noise-free rendering (`make_family_stack`, 7 planes, ascending
focus, ``--step-blur`` px of defocus per plane step, as in a handheld or macro stack), rendered
at twice the size with a margin, seen through a known transform per plane about the middle
plane: focus breathing (one scale per plane step, drawn in 0.99-1.01, compounding away from the
middle), drift (a random walk of up to 5 px a plane, clipped to 15 px) and rotation (up to 0.5
degrees); then binned 2x2 like a camera's pixels. The planes before the transforms and the
ground truth are binned alike; the middle plane is untouched, so the truth stays in its frame.

Reported per stack:

- corner error: the largest distance (px, per axis) between where the estimated and the true
  transforms put any plane's corners (``align="similarity"``);
- PSNR of the central crop (``size // 8`` px left out on every side, where filled borders are)
  against the noise-free ground truth, for VAEEDOF (pixel mode) and the Laplacian pyramid,
  fusing (a) the planes before the transforms, (b) the transformed planes with
  ``align="similarity"``, (c) the transformed planes without alignment;
- the alignment's seconds (`engine.align.align_planes`, as `fuse_stack` runs it; the median of
  three runs) and the fusion's (`fuse_stack` of the same planes, no alignment; the first
  stack's includes loading the models), on the CPU.

The issue's bars: (b) within 1 dB of (a), (c) at least 10 dB below (a), alignment at most 20 %
of the fusion's time.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_align.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import cv2
import numpy as np

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.engine.align import align_planes
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED
from napari_vaeedof.evaluation.metrics import psnr

MARGIN = 48  # px rendered around the frame, so transformed planes see real scene content


def similarity(scale: float, degrees: float, shift, centre) -> np.ndarray:
    """3x3: scale and rotation about ``centre``, then ``shift`` (x, y)."""
    a = np.deg2rad(degrees)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.vstack([np.column_stack([lin, np.asarray(shift) + centre - lin @ centre]),
                      [0, 0, 1]])


def draw_transforms(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, 3, 3) plane -> middle-plane transforms: breathing, drift and rotation (docstring)."""
    ref, centre = n // 2, np.full(2, (size - 1) / 2)
    scale = rng.uniform(0.99, 1.01)
    shifts = np.clip(np.cumsum(rng.uniform(-5, 5, (n, 2)), 0), -15, 15)
    shifts -= shifts[ref]
    return np.stack([similarity(scale ** (k - ref), 0.0 if k == ref else rng.uniform(-0.5, 0.5),
                                shifts[k], centre) for k in range(n)])


def bin2(image: np.ndarray) -> np.ndarray:
    """(2H, 2W, C) -> (H, W, C): the mean of each 2x2 block (a camera's pixels)."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return image[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean((1, 3))


def transformed(fine: np.ndarray, transforms: np.ndarray, size: int) -> np.ndarray:
    """Planes rendered at twice the resolution with MARGIN -> (n, size, size, 3), plane k at
    p showing the scene at T_k p: the transform applied on the fine grid (Lanczos), then 2x2
    binned, so the planes carry little resampling loss of their own."""
    up = np.array([[2.0, 0, 0.5 + 2 * MARGIN], [0, 2.0, 0.5 + 2 * MARGIN], [0, 0, 1]])
    down = np.linalg.inv(np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]))
    out = []
    for plane, t in zip(fine, transforms, strict=True):
        m = (up @ t @ down)[:2]  # fine output px -> coarse frame -> T -> fine rendered px
        out.append(bin2(cv2.warpAffine(plane, m, (2 * size, 2 * size),
                                       flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP)))
    return np.stack(out).astype(np.float32)


def corner_error(estimated: np.ndarray, truth: np.ndarray, size: int) -> float:
    c = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]],
                 float).T
    return float(np.abs(np.einsum("zij,jk->zik", estimated - truth, c)[:, :2]).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--n", type=int, default=1, help="stacks per family")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--planes", type=int, default=7)
    p.add_argument("--step-blur", type=float, default=2.0)
    p.add_argument("--optics", type=float, default=0.5,
                   help="a lens's blur (Gaussian sigma, px) on every plane and on the truth; "
                   "0: the render's binned pixels, whose sharp edges alias)")
    p.add_argument("--json", default=None, help="write per-stack rows here")
    p.add_argument("--interpolation", default=None,
                   help="another cv2 INTER_* name for the alignment's resampling (default: "
                   "the engine's, bicubic)")
    args = p.parse_args(argv)
    if args.interpolation:
        import napari_vaeedof.engine.align as engine_align

        engine_align._INTERPOLATION = args.interpolation
    size, crop = args.size, args.size // 8
    rows = []
    header = ("| stack | corner error (px) | ours (a) | ours (b) aligned | ours (c) not aligned "
              "| pyramid (a) | pyramid (b) | pyramid (c) | align s | fusion s | align/fusion |")
    print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    for family in args.families:
        for seed in range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + args.n):
            st = make_family_stack(family, seed, size=2 * (size + 2 * MARGIN),
                                   n_planes=args.planes, noise=False, order="ascending",
                                   step_blur=2 * args.step_blur)
            if args.optics > 0:  # on the fine grid: twice the sigma
                st = dataclasses.replace(st, planes=np.stack([
                    cv2.GaussianBlur(p, (0, 0), 2 * args.optics) for p in st.planes]),
                    ground_truth=cv2.GaussianBlur(st.ground_truth, (0, 0), 2 * args.optics))
            truth_t = draw_transforms(np.random.default_rng(seed), args.planes, size)
            inner = (slice(2 * MARGIN, 2 * (MARGIN + size)),) * 2
            original = np.stack([bin2(p[inner]) for p in st.planes]).astype(np.float32)
            moved = transformed(st.planes, truth_t, size)
            gt = bin2(st.ground_truth[inner]).astype(np.float32)

            def score(image: np.ndarray) -> float:
                c = (slice(crop, size - crop),) * 2
                return psnr(np.clip(image, 0, 1)[c], gt[c])  # noqa: B023

            times = []
            for _ in range(3):  # the median of three: the CPU may be shared
                t0 = time.perf_counter()
                reg = align_planes(moved, model="similarity")
                times.append(time.perf_counter() - t0)
            t_align = float(np.median(times))
            t0 = time.perf_counter()
            plain = fuse_stack(moved, error_map=False).image
            t_fuse = time.perf_counter() - t0
            aligned = fuse_stack(moved, error_map=False, align="similarity")
            row = {
                "family": family, "seed": seed,
                "corner_error_px": corner_error(reg.transforms, truth_t, size),
                "ours_a": score(fuse_stack(original, error_map=False).image),
                "ours_b": score(aligned.image), "ours_c": score(plain),
                "pyramid_a": score(laplacian_pyramid_fusion(original)),
                "pyramid_b": score(laplacian_pyramid_fusion(reg.planes)),
                "pyramid_c": score(laplacian_pyramid_fusion(moved)),
                "align_s": t_align, "fusion_s": t_fuse,
            }
            rows.append(row)
            print(f"| {family} {seed} | {row['corner_error_px']:.2f} | {row['ours_a']:.2f} | "
                  f"{row['ours_b']:.2f} | {row['ours_c']:.2f} | {row['pyramid_a']:.2f} | "
                  f"{row['pyramid_b']:.2f} | {row['pyramid_c']:.2f} | {t_align:.2f} | "
                  f"{t_fuse:.1f} | {t_align / t_fuse:.1%} |", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("family",
                                                                                  "seed")}
    print(f"| mean | {mean['corner_error_px']:.2f} (max "
          f"{max(r['corner_error_px'] for r in rows):.2f}) | {mean['ours_a']:.2f} | "
          f"{mean['ours_b']:.2f} | {mean['ours_c']:.2f} | {mean['pyramid_a']:.2f} | "
          f"{mean['pyramid_b']:.2f} | {mean['pyramid_c']:.2f} | {mean['align_s']:.2f} | "
          f"{mean['fusion_s']:.1f} | {mean['align_s'] / mean['fusion_s']:.1%} |")
    print(f"\nours (b) - (a): worst {min(r['ours_b'] - r['ours_a'] for r in rows):+.2f} dB; "
          f"(c) - (a): least {-max(r['ours_c'] - r['ours_a'] for r in rows):.2f} dB below; "
          f"alignment at most {max(r['align_s'] / r['fusion_s'] for r in rows):.1%} of the "
          f"fusion's time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
