"""Held-out synthetic evaluation: our fusion beside the VAE ceiling and classical baselines.

Seeds from ``HELDOUT_FIRST_SEED`` are never used in training (training seeds start at 0).
Reproduce the committed table with::

    napari-vaeedof evaluate --n 50 --size 256 --out docs/evaluation
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..api import fuse_stack
from ..data.synth import make_stack
from ..engine.fusion import load_models
from .baselines import laplacian_pyramid_fusion, variance_argmax_fusion
from .metrics import METRIC_DIRECTIONS, difficulty_bins, evaluate, hard_pixel_mask

HELDOUT_FIRST_SEED = 1_000_000
METHODS = ("vaeedof_pixel", "vaeedof_latent", "vae_ceiling", "laplacian_pyramid",
           "variance_argmax")


def vae_ceiling(truth: np.ndarray, unet_path=None) -> np.ndarray:
    """D(E(ground truth)): the best any pure latent fusion can do. (H, W, 3) -> (H, W, 3)."""
    models = load_models("cpu", "float32", unet_path)
    x = torch.from_numpy(np.ascontiguousarray(truth)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = models.ae.decode(models.ae.encode(x))
    return y[0].permute(1, 2, 0).numpy()


def method_table(unet_path=None) -> dict[str, Callable]:
    """Each method: (planes (Z, H, W, 3) float, truth) -> fused (H, W, 3) float in [0, 1]."""

    def ours(mode: str) -> Callable:
        return lambda p, t: fuse_stack(p, unet_path=unet_path, device="cpu", mode=mode,
                                       precision="float32", error_map=False).image

    return {
        "vaeedof_pixel": ours("pixel"),
        "vaeedof_latent": ours("latent"),
        "vae_ceiling": lambda p, t: vae_ceiling(t, unet_path),
        "laplacian_pyramid": lambda p, t: laplacian_pyramid_fusion(p),
        "variance_argmax": lambda p, t: variance_argmax_fusion(p),
    }


def run(n: int = 50, size: int = 256, unet_path=None, log=print) -> dict:
    """Evaluate every method on ``n`` held-out stacks; per-stack rows and a summary."""
    methods = method_table(unet_path)
    rows, hard_se = [], {m: [] for m in methods}
    bins = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    for k in range(n):
        seed = HELDOUT_FIRST_SEED + k
        st = make_stack(seed, size=size)
        # Hard pixels are defined on the noise-free rendering of the same scene: where no plane
        # holds the content (defocus spread, occlusion), not where sensor noise moved a value.
        clean = make_stack(seed, size=size, noise=False).planes
        mask = hard_pixel_mask(clean, st.ground_truth)
        for name, fn in methods.items():
            t0 = time.perf_counter()
            pred = np.clip(np.asarray(fn(st.planes, st.ground_truth), np.float32), 0, 1)
            seconds[name] += time.perf_counter() - t0
            scores = evaluate(pred, st.ground_truth, clean)
            rows.append({"seed": seed, "method": name, "kind": st.kind, "gray": st.gray,
                         "n_planes": len(st.focus), **scores})
            hard_se[name].append(((pred - st.ground_truth) ** 2).mean(-1)[mask])
            bins[name].append(difficulty_bins(pred, st.ground_truth, clean))
        if (k + 1) % 10 == 0:
            log(f"{k + 1}/{n} stacks")
    return {"n": n, "size": size, "rows": rows, "summary": summarize(rows, hard_se, bins),
            "seconds_per_stack": {m: s / n for m, s in seconds.items()}}


def summarize(rows: list[dict], hard_se: dict, bins: dict) -> dict:
    """Mean of each metric per method, pooled hard-pixel PSNR, difficulty-binned patch PSNR."""
    out = {}
    for m in hard_se:
        mine = [r for r in rows if r["method"] == m]
        stats = {k: float(np.nanmean([r[k] for r in mine]))
                 for k in (*METRIC_DIRECTIONS, "psnr_hard", "hard_fraction")}
        se = np.concatenate(hard_se[m])
        stats["psnr_hard_pooled"] = float(10 * np.log10(1 / se.mean())) if se.size else np.nan
        per_bin = []
        for i in range(len(bins[m][0])):
            entries = [b[i] for b in bins[m] if b[i]["count"]]
            count = sum(e["count"] for e in entries)
            psnr = sum(e["psnr"] * e["count"] for e in entries) / count if count else np.nan
            per_bin.append({"lo": bins[m][0][i]["lo"], "hi": bins[m][0][i]["hi"],
                            "count": count, "psnr": float(psnr)})
        stats["difficulty_bins"] = per_bin
        out[m] = stats
    return out


def to_markdown(result: dict) -> str:
    """The summary as markdown tables (overall metrics, then difficulty bins)."""
    s = result["summary"]
    cols = ["psnr", "psnr_hard", "psnr_hard_pooled", "ssim", "ms_ssim", "iw_ssim", "haarpsi",
            "mdsi", "ms_gmsd"]
    arrows = {c: "↑" if METRIC_DIRECTIONS.get(c, "higher") == "higher" else "↓" for c in cols}
    lines = [
        f"Held-out synthetic stacks: {result['n']} stacks of {result['size']} px "
        f"(seeds {HELDOUT_FIRST_SEED}..{HELDOUT_FIRST_SEED + result['n'] - 1}); "
        f"mean hard-pixel fraction {s[METHODS[0]]['hard_fraction']:.3f}.",
        "",
        "| method | " + " | ".join(f"{c} {arrows[c]}" for c in cols) + " | s/stack |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    for m, st in s.items():
        vals = " | ".join(f"{st[c]:.4f}" if c not in ("psnr", "psnr_hard", "psnr_hard_pooled")
                          else f"{st[c]:.2f}" for c in cols)
        lines.append(f"| {m} | {vals} | {result['seconds_per_stack'][m]:.2f} |")
    lines += ["", "Patch PSNR (32 px patches) by difficulty (fraction of hard pixels):",
              ""]
    edges = [f"[{b['lo']:.2f}, {b['hi']:.2f}]" for b in s[METHODS[0]]["difficulty_bins"]]
    counts = [str(b["count"]) for b in s[METHODS[0]]["difficulty_bins"]]
    lines += ["| method | " + " | ".join(edges) + " |", "|---|" + "---|" * len(edges),
              "| patches | " + " | ".join(counts) + " |"]
    for m, st in s.items():
        lines.append(f"| {m} | " + " | ".join(f"{b['psnr']:.2f}" for b in st["difficulty_bins"])
                     + " |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.json").write_text(json.dumps(result, indent=1))
    (out / "heldout.md").write_text(to_markdown(result))
