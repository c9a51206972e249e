"""How the noise constants of the band composition were chosen (engine/compose.py:
NOISE_FLOOR, NOISE_SMOOTH, NOISE_AVERAGE).

Records, once per stack, what the selection head gives `pixel_blend` (tuning seeds of every
physics family, noise-free and noisy, plus layered scenes with JPEG q80 planes; neither
training nor held-out seeds), then recomposes each stack with `band_weights` under other
constants and scores PSNR / SSIM / pooled hard-pixel PSNR against the noise-free truth. The
fill and the decoded latent fusion are kept as recorded, so a variant costs a recomposition,
not a fusion.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/tune_noise_bands.py
    ... --first 3300000 --n 5 --cache runs/noise_bands.pkl   # the defaults
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.engine import compose, fusion
from napari_vaeedof.evaluation.metrics import hard_pixel_mask, psnr, ssim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_compose import jpeg


def record(first: int, n: int) -> list[dict]:
    """Fuse every tuning stack once (single 256 px tile), keeping pixel_blend's inputs and
    outputs and the fused image."""
    real, box, recs = compose.pixel_blend, {}, []

    def spy(logits, fill_logit, planes, source=None):
        out = real(logits, fill_logit, planes, source)
        box["args"] = (logits, fill_logit, planes, planes if source is None else source)
        box["out"] = out
        return out

    fusion.pixel_blend = spy
    try:
        for family in (*FAMILIES, "jpeg"):
            for seed in range(first, first + n):
                clean = make_family_stack("layered" if family == "jpeg" else family, seed,
                                          size=256, noise=False)
                splits = {"jpeg": jpeg(clean.planes)} if family == "jpeg" else {
                    "none": clean.planes,
                    "noisy": make_family_stack(family, seed, size=256, noise=True).planes}
                for split, planes in splits.items():
                    box.clear()
                    image = fuse_stack(planes, device="cpu", precision="float32",
                                       error_map=False).image
                    recs.append(dict(family=family, split=split, truth=clean.ground_truth,
                                     mask=hard_pixel_mask(clean.planes, clean.ground_truth),
                                     image=image, **box))
                    print(family, seed, split, planes.shape[0], "planes", flush=True)
    finally:
        fusion.pixel_blend = real
    return recs


def load_records(cache: Path, first: int = 3_300_000, n: int = 5) -> list[dict]:
    """The records in ``cache``, or `record` them there first."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    recs = record(first, n)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(recs))
    return recs


def output_mapping(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, offset) with image = blend * scale + offset (the stack's
    normalisation), fitted on the recorded blend and image."""
    x = rec["out"][0].permute(1, 2, 0).numpy().reshape(-1, 3)
    y = np.asarray(rec["image"], np.float64).reshape(-1, 3)
    fit = [np.polyfit(x[:, c], y[:, c], 1) if x[:, c].std() > 0 else (1.0, 0.0)
           for c in range(3)]
    return np.array([f[0] for f in fit]), np.array([f[1] for f in fit])


def recompose(rec: dict, sharpen: float = compose.BAND_SHARPEN,
              levels: int = compose.BAND_LEVELS, weights=None) -> np.ndarray:
    """The recorded stack's image with the module's current composition constants (and the
    head's full-resolution ``weights``, default the recorded ones)."""
    _, _, planes, source = rec["args"]
    blend, recorded, fill = rec["out"]
    new = compose.compose_bands(recorded if weights is None else weights, planes, source,
                                levels, sharpen)
    delta = ((1 - fill)[None] * (new - blend)).permute(1, 2, 0).numpy()
    scale, _ = output_mapping(rec)
    return np.clip(np.asarray(rec["image"], np.float64) + delta * scale, 0, 1).astype(np.float32)


def score(outs: list[np.ndarray], recs: list[dict]) -> str:
    """A table cell for ``outs``, the images of records ``recs``: mean PSNR / mean SSIM /
    pooled hard-pixel PSNR against the noise-free truth."""
    pairs = list(zip(outs, recs, strict=True))
    hard = sum(float(((o - r["truth"]) ** 2).mean(-1)[r["mask"]].sum()) for o, r in pairs)
    hard /= max(sum(int(r["mask"].sum()) for r in recs), 1)
    return (f"{np.mean([psnr(o, r['truth']) for o, r in pairs]):.2f}"
            f" / {np.mean([ssim(o, r['truth']) for o, r in pairs]):.3f}"
            f" / {10 * np.log10(1 / max(hard, 1e-12)):.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--first", type=int, default=3_300_000)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--cache", type=Path, default=Path("runs/noise_bands.pkl"))
    p.add_argument("--floor", type=float, nargs="+", default=[0.0, 10.0, 30.0])
    p.add_argument("--smooth", type=float, nargs="+", default=[0.0, 10.0])
    p.add_argument("--average", type=float, nargs="+", default=[0.0, 3.0, 10.0])
    p.add_argument("--sharpen", type=float, nargs="+", default=[compose.BAND_SHARPEN])
    p.add_argument("--levels", type=int, nargs="+", default=[compose.BAND_LEVELS])
    p.add_argument("--prior", type=float, nargs="+", default=[compose.BAND_PRIOR])
    args = p.parse_args(argv)
    recs = load_records(args.cache, args.first, args.n)
    groups = sorted({(r["family"], r["split"]) for r in recs})
    print("| levels | sharpen | floor | smooth | average | prior | "
          + " | ".join(f"{f} {s}" for f, s in groups) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(groups))
    saved = compose.NOISE_FLOOR, compose.NOISE_SMOOTH, compose.NOISE_AVERAGE, compose.BAND_PRIOR
    try:
        for levels, sharpen, floor, smooth, average, prior in itertools.product(
                args.levels, args.sharpen, args.floor, args.smooth, args.average, args.prior):
            compose.NOISE_FLOOR, compose.NOISE_SMOOTH, compose.NOISE_AVERAGE = \
                floor, smooth, average
            compose.BAND_PRIOR = prior
            cells = []
            for group in groups:
                rs = [r for r in recs if (r["family"], r["split"]) == group]
                outs = [recompose(r, sharpen, levels) for r in rs]
                cells.append(score(outs, rs))
            print(f"| {levels} | {sharpen:g} | {floor:g} | {smooth:g} | {average:g} | {prior:g} | "
                  + " | ".join(cells) + " |",
                  flush=True)
    finally:
        (compose.NOISE_FLOOR, compose.NOISE_SMOOTH, compose.NOISE_AVERAGE,
         compose.BAND_PRIOR) = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
