"""Held-out synthetic evaluation: our fusion beside the VAE ceiling and classical baselines.

Seeds from ``HELDOUT_FIRST_SEED`` are never used in training (training seeds start at 0); each
physics family (`data.families`) has its own random streams, so its seeds from
``HELDOUT_FIRST_SEED`` are its own held-out split. Reproduce the committed tables with (from
the repository root)::

    napari-vaeedof evaluate --family all --noise both --n 6 --size 256 --out docs/evaluation
    napari-vaeedof evaluate --legacy --n 50 --size 256 --out docs/evaluation   # heldout.*

A method is any callable ``(planes (Z, H, W, 3) float in [0, 1], truth (H, W, 3)) -> fused``
where ``fused`` is an (H, W, 3) image in [0, 1] or a pair ``(image, index)`` whose ``index``
(H, W) is the (fractional) plane each pixel was taken from, scored as a depth map, or None.
Pass your own table to `evaluate_families` to compare variants in the same run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..api import fuse_stack
from ..data.families import FAMILIES, make_family_stack
from ..data.synth import make_stack
from ..engine.runtime import load_models
from .baselines import laplacian_pyramid_fusion, max_projection, variance_argmax_fusion
from .metrics import METRIC_DIRECTIONS, difficulty_bins, evaluate, hard_pixel_mask, psnr, ssim

HELDOUT_FIRST_SEED = 1_000_000
REFERENCES = ("vae_ceiling", "planes_ceiling")  # they see the ground truth: shown, never ranked
METHODS = ("vaeedof_pixel", "vaeedof_latent", "vae_ceiling", "planes_ceiling",
           "laplacian_pyramid", "variance_argmax", "max_projection")
NOISE_SPLITS = {"none": ("none",), "noisy": ("noisy",), "both": ("none", "noisy")}
Method = Callable[[np.ndarray, np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray | None]"]


def vae_ceiling(truth: np.ndarray, unet_path=None, device: str = "cpu") -> np.ndarray:
    """D(E(ground truth)): the best any pure latent fusion can do. (H, W, 3) -> (H, W, 3)."""
    models = load_models(device, "float32", unet_path)
    x = torch.from_numpy(np.ascontiguousarray(truth)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = models.ae.decode(models.ae.encode(x.to(models.device)))
    return y[0].permute(1, 2, 0).cpu().numpy()


def planes_ceiling(planes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The truth clipped, per pixel and channel, to the range the planes span there: the best
    any output can do whose every value lies between the planes' smallest and largest, as pixel
    mode's does where its fill is 0 (its guarantee). (Z, H, W, 3), (H, W, 3) -> (H, W, 3).
    What separates pixel mode from it is the composition; what separates it from the truth
    only a fill (content no plane holds) can bring."""
    p = np.asarray(planes, np.float32)
    return np.clip(np.asarray(truth, np.float32), p.min(0), p.max(0))


def method_table(unet_path=None, selection_path=None, device: str = "cpu"
                 ) -> dict[str, Method]:
    """Our modes, the VAE ceiling and the classical baselines, as evaluation methods (with
    other weights than the packaged ones where ``unet_path`` / ``selection_path`` are given;
    ours and the ceiling on ``device``).

    Each maps (planes (Z, H, W, 3) float in [0, 1], truth (H, W, 3)) to the fused (H, W, 3)
    image, or to (image, plane index (H, W)) for the methods that say where each pixel came
    from (pixel mode's depth map, variance argmax, max projection).
    """

    def ours(mode: str) -> Method:
        def fuse(p: np.ndarray, t: np.ndarray):
            r = fuse_stack(p, unet_path=unet_path, selection_path=selection_path,
                           device=device, mode=mode, precision="float32", error_map=False)
            return r.image, r.depth

        return fuse

    return {
        "vaeedof_pixel": ours("pixel"),
        "vaeedof_latent": ours("latent"),
        "vae_ceiling": lambda p, t: vae_ceiling(t, unet_path, device),
        "planes_ceiling": planes_ceiling,
        "laplacian_pyramid": lambda p, t: laplacian_pyramid_fusion(p),
        "variance_argmax": lambda p, t: variance_argmax_fusion(p, return_index=True),
        "max_projection": lambda p, t: max_projection(p, return_index=True),
    }


def _unpack(out) -> tuple[np.ndarray, np.ndarray | None]:
    """A method's output -> (image (H, W, 3) float32 in [0, 1], plane index (H, W) or None)."""
    image, index = out if isinstance(out, tuple) else (out, None)
    return np.clip(np.asarray(image, np.float32), 0, 1), index


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
            pred, _ = _unpack(fn(st.planes, st.ground_truth))
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


# --------------------------------------------------------------------------------------------
# Evaluation by physics family

DEPTH_MIN_CONTRAST = 0.02  # depth is scored where the truth's 5x5 luma std is at least this


def depth_error(
    index: np.ndarray | None, stack, truth: np.ndarray
) -> float:
    """Mean |estimated - true depth| in plane steps, or NaN.

    ``index`` (H, W) is a method's (fractional) plane index, mapped to focus depth through the
    stack's focus positions (``np.interp`` over the plane order given to the method). The true
    depth is clipped to the focus range (no plane can do better) and scored where it is defined
    (finite) and the truth has detail (5x5 luma std >= ``DEPTH_MIN_CONTRAST``): a flat patch has
    no measurable focus. NaN without an index or without such pixels.
    """
    if index is None:
        return float("nan")
    focus = np.asarray(stack.focus, np.float64)
    step = (focus.max() - focus.min()) / max(len(focus) - 1, 1)
    luma = np.asarray(truth, np.float64).mean(axis=-1)
    mean = ndimage.uniform_filter(luma, 5)
    std = np.sqrt(np.maximum(ndimage.uniform_filter(luma * luma, 5) - mean * mean, 0))
    true = np.clip(stack.depth, focus.min(), focus.max())
    mask = np.isfinite(true) & (std >= DEPTH_MIN_CONTRAST)
    if not mask.any() or step <= 0:
        return float("nan")
    est = np.interp(np.asarray(index, np.float64), np.arange(len(focus)), focus)
    return float(np.mean(np.abs(est - true)[mask]) / step)


def evaluate_families(
    methods: dict[str, Method],
    families: Sequence[str] = FAMILIES,
    n: int = 6,
    size: int = 256,
    noise: str = "both",
    *,
    first_seed: int = HELDOUT_FIRST_SEED,
    n_planes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Score every method on ``n`` held-out stacks of each family and noise split.

    Parameters
    ----------
    methods : dict of name -> callable
        ``(planes (Z, H, W, 3), truth (H, W, 3)) -> image (H, W, 3)`` or
        ``(image, plane index (H, W) or None)``; e.g. `method_table()` or variants of it.
    families : sequence of str
        Subset of `data.families.FAMILIES`.
    n : int
        Stacks per family: seeds ``first_seed .. first_seed + n - 1``.
    size : int
        Plane size in px.
    noise : {"none", "noisy", "both"}
        Which splits: the noise-free rendering (quantised to the stack's bit depth), the same
        scene with sensor noise, or both. Every score is against the noise-free ground truth;
        hard pixels (no noise-free plane within 2/255 of the truth) come from the noise-free
        planes in both splits.
    first_seed : int
        First seed (default the held-out split).
    n_planes : int or None
        Planes per stack; None uses each stack's drawn 2-30.
    log : callable or None
        Progress messages.

    Returns
    -------
    dict
        ``rows`` (one per stack, split and method: psnr, ssim, psnr_hard, hard_fraction,
        depth_mae in plane steps, seconds, and the stack's settings), ``summary``
        (family -> split -> method -> means, see `summarize_families`), ``stacks`` and the
        arguments.
    """
    splits = NOISE_SPLITS.get(noise)
    if splits is None:
        raise ValueError(f"noise must be one of {tuple(NOISE_SPLITS)}, got {noise!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; expected some of {FAMILIES}")
    log = log or (lambda msg: None)
    rows, stacks, hard_se = [], [], {}
    machine = {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}
    t_start = time.perf_counter()
    for family in families:
        for k in range(n):
            seed = first_seed + k
            clean = make_family_stack(family, seed, size=size, n_planes=n_planes, noise=False)
            mask = hard_pixel_mask(clean.planes, clean.ground_truth)
            for split in splits:
                st = clean if split == "none" else make_family_stack(
                    family, seed, size=size, n_planes=n_planes, noise=True)
                meta = {"family": family, "split": split, "seed": seed, "kind": st.kind,
                        "gray": st.gray, "n_planes": len(st.focus), "order": st.info["order"],
                        "bits": st.info["bits"],
                        "photons": st.info["photons"] if split == "noisy" else None,
                        "hard_fraction": float(mask.mean())}
                stacks.append(meta)
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    image, index = _unpack(fn(st.planes, st.ground_truth))
                    seconds = time.perf_counter() - t0
                    truth = st.ground_truth
                    rows.append({**meta, "method": name, "psnr": psnr(image, truth),
                                 "ssim": ssim(image, truth), "psnr_hard": psnr(image, truth, mask),
                                 "depth_mae": depth_error(index, st, truth),
                                 "seconds": seconds})
                    hard_se.setdefault((family, split, name), []).append(
                        ((image - truth) ** 2).mean(-1)[mask])
            log(f"{family}: {k + 1}/{n} stacks ({time.perf_counter() - t_start:.0f} s)")
    return {"families": list(families), "n": n, "size": size, "noise": noise,
            "first_seed": first_seed, "n_planes": n_planes, "methods": list(methods),
            "rows": rows, "stacks": stacks, "summary": summarize_families(rows, hard_se),
            "seconds": time.perf_counter() - t_start,
            "machine": {**machine, "load_average_at_end": list(os.getloadavg())}}


def pooled_psnr(values: Sequence[float]) -> float:
    """PSNR of the mean squared error of equally sized images, from their PSNRs (data range 1).

    The mean of PSNRs weighs a near-perfect image's 77 dB against another's 70 dB, errors a
    fraction of a grey level that nobody can see, as much as 25 dB against 32 dB; pooling
    weighs each image by its error.

    >>> round(pooled_psnr([20.0, 40.0]), 2)  # mean squared errors 1e-2 and 1e-4
    22.97
    """
    mse = np.power(10.0, -np.asarray(values, np.float64) / 10)  # inf dB -> 0
    return float(10 * np.log10(1 / mse.mean())) if mse.size and mse.mean() > 0 else float(
        "inf" if mse.size else "nan")


def summarize_families(rows: list[dict], hard_se: dict | None = None) -> dict:
    """family -> split -> method -> mean psnr, ssim, psnr_hard (over stacks with hard pixels),
    psnr_pooled (`pooled_psnr` of the stacks), psnr_hard_pooled (PSNR of all hard pixels
    together, when ``hard_se`` holds their squared errors by (family, split, method)),
    depth_mae (NaN for methods without a depth), seconds."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["family"], {}).setdefault(r["split"], {}).setdefault(r["method"], [])
        out[r["family"]][r["split"]][r["method"]].append(r)
    for family, splits in out.items():
        for split, methods in splits.items():
            for name, mine in methods.items():
                stats = {}
                for key in ("psnr", "ssim", "psnr_hard", "depth_mae", "seconds"):
                    vals = np.array([r[key] for r in mine], np.float64)
                    vals = vals[np.isfinite(vals)] if key != "psnr" else vals
                    stats[key] = float(vals.mean()) if vals.size else float("nan")
                stats["psnr_pooled"] = pooled_psnr([r["psnr"] for r in mine])
                se = (hard_se or {}).get((family, split, name))
                se = np.concatenate(se) if se else np.zeros(0)
                stats["psnr_hard_pooled"] = (float(10 * np.log10(1 / max(se.mean(), 1e-12)))
                                             if se.size else float("nan"))
                stats["n"] = len(mine)
                methods[name] = stats
    return out


def _best(values: dict[str, float], higher: bool, tol: float) -> set[str]:
    """Names whose value (not NaN) is the best or within ``tol`` of it."""
    known = {k: v for k, v in values.items() if not np.isnan(v)}
    if not known:
        return set()
    top = max(known.values()) if higher else min(known.values())
    return {k for k, v in known.items() if v == top or abs(v - top) <= tol}


def families_markdown(result: dict, references: Sequence[str] = REFERENCES) -> str:
    """One table per family: every method's scores per noise split; the best of each column
    among the methods that do not see the truth (all but ``references``) in bold."""
    splits = NOISE_SPLITS[result["noise"]]
    cols = [("psnr", "PSNR", True, "{:.2f}", 0.005),
            ("psnr_pooled", "pooled PSNR", True, "{:.2f}", 0.005),
            ("ssim", "SSIM", True, "{:.4f}", 5e-5),
            ("psnr_hard", "hard PSNR", True, "{:.2f}", 0.005),
            ("depth_mae", "depth err", False, "{:.2f}", 0.005)]
    first, last = result["first_seed"], result["first_seed"] + result["n"] - 1
    intro = (
        f"{result['n']} stacks per family of {result['size']} px, seeds {first}..{last} (never "
        "used in training), each scored against its noise-free ground truth. Splits: `none` = "
        "noise-free planes (quantised to the stack's bit depth), `noisy` = the same scenes with "
        "Poisson-Gaussian sensor noise. PSNR: the mean of the stacks' PSNRs; pooled PSNR: "
        "the PSNR of their mean squared error (a near-perfect stack's 70 or 77 dB moves the "
        "mean, not the pooled value). PSNR and hard-pixel PSNR in dB (hard pixels: no "
        "noise-free plane within 2/255 of the truth; pooled over the stacks), SSIM on luma; "
        "depth err = mean |estimated - true depth| in plane steps, where the truth has a depth "
        f"and detail (5x5 std >= {DEPTH_MIN_CONTRAST}); `-` where a method gives no depth or no "
        "pixel qualifies. Best of each column in bold, among the methods that see only the "
        f"planes (not the references {', '.join(references)}, which see the truth: "
        "vae_ceiling encodes and decodes it, the best a latent fusion can do; planes_ceiling "
        "clips it to the range the planes span at each pixel, the best an output within the "
        "planes' values can do, as pixel mode's is where its fill is 0). pixel ahead: on how "
        "many stacks vaeedof_pixel's PSNR is above that method's. s/stack: mean seconds per "
        "stack on this run's CPU."
    )
    lines = ["# Held-out evaluation by physics family", "", intro, ""]
    for family in result["families"]:
        fam = result["summary"][family]
        st = [s for s in result["stacks"] if s["family"] == family and s["split"] == splits[0]]
        planes = [s["n_planes"] for s in st]
        bits = sorted({s["bits"] for s in st})
        orders = {o: sum(s["order"] == o for s in st) for o in ("ascending", "descending",
                                                                "shuffled")}
        looks = sorted({s["kind"].partition(":")[2] for s in st})
        lines += [f"## {family}", "",
                  f"{len(st)} stacks: {min(planes)}-{max(planes)} planes (median "
                  f"{int(np.median(planes))}); {sum(s['gray'] for s in st)} gray; bits "
                  f"{', '.join(map(str, bits))}; looks {', '.join(looks)}; order "
                  + ", ".join(f"{o} {c}" for o, c in orders.items() if c)
                  + f"; mean hard-pixel fraction {np.mean([s['hard_fraction'] for s in st]):.3f}.",
                  ""]
        header = ["method"] + [f"{label} {sp}" for _, label, _, _, _ in cols for sp in splits]
        header += [f"pixel ahead {sp}" for sp in splits]
        lines += ["| " + " | ".join(header) + " | s/stack |",
                  "|---|" + "---:|" * (len(header) - 1) + "---:|"]
        value = {key: key if key != "psnr_hard" else "psnr_hard_pooled" for key, *_ in cols}
        ranked = [m for m in fam[splits[0]] if m not in references]
        best = {(key, sp): _best({m: fam[sp][m][value[key]] for m in ranked}, hi, tol)
                for key, _, hi, _, tol in cols for sp in splits}
        for m in fam[splits[0]]:
            cells = []
            for key, _, _, fmt, _ in cols:
                for sp in splits:
                    v = fam[sp][m][value[key]]
                    text = fmt.format(v) if np.isfinite(v) else ("inf" if v == np.inf else "-")
                    cells.append(f"**{text}**" if m in best[(key, sp)] else text)
            cells += [_pixel_ahead(result, family, sp, m) for sp in splits]
            sec = np.mean([fam[sp][m]["seconds"] for sp in splits])
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {sec:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _pixel_ahead(result: dict, family: str, split: str, method: str) -> str:
    """"k/n": on how many of the family's stacks pixel mode's (METHODS[0]) PSNR is above
    ``method``'s; "-" for our own modes or without pixel mode in the run."""
    ours = METHODS[0]
    if method.startswith("vaeedof") or ours not in result["methods"]:
        return "-"
    by: dict = {}
    for r in result["rows"]:
        if r["family"] == family and r["split"] == split and r["method"] in (ours, method):
            by.setdefault(r["seed"], {})[r["method"]] = r["psnr"]
    pairs = [v for v in by.values() if len(v) == 2]
    return f"{sum(v[ours] > v[method] for v in pairs)}/{len(pairs)}"


def write_families(result: dict, out: Path) -> None:
    """``families.json`` (every row) and ``families.md`` (the tables) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "families.json").write_text(json.dumps(result, indent=1))
    (out / "families.md").write_text(families_markdown(result))
