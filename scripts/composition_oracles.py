"""Where pixel mode's remaining error is: oracles that see the truth, on the tuning records of
`tune_noise_bands.py` (seeds 3,300,000-3,300,004 of every family, noise-free and noisy, and
layered scenes with JPEG q80 planes; neither training nor held-out seeds).

Each row scores, pooled over the group's stacks (PSNR of the mean squared error / the same on
hard pixels), the shipped composition ("ours", fill as recorded) beside:

- planes ceiling: the truth clipped to the planes' per-pixel range, the best any output within
  the planes' values can do (`evaluation.heldout.planes_ceiling`);
- cell oracle: the head's logits replaced by the plane nearest the truth in each 8 px cell,
  then upsampled and composed band by band as shipped; pixel oracle: the same per pixel (soft
  weights, the cube of the inverse error), skipping the head's resolution;
- band oracle: in every band of a 3-level Laplacian pyramid, per coefficient, the plane's
  coefficient nearest the truth's (a pyramid fusion with a perfect focus measure); then only
  its detail bands (with our base) and only its base (with our detail bands);
- truth band 0: our image with its finest band replaced by the truth's, clipped to the planes'
  range as the composition clips.

``--more`` prints a second table: the truth's finest band unclipped; the band oracle's choice
made per 8 px cell (8 >> k px in band k) instead of per coefficient, the plane nearest the
truth in the cell (what a head at the latent grid that chose per band could at best do); and
simple rules for the base in place of the head's (the planes' mean, median, darkest,
brightest; no oracle).

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/composition_oracles.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_vaeedof.engine import compose as C

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_noise_bands import load_records, output_mapping


def oracles(rec: dict, more: bool = False) -> dict[str, np.ndarray]:
    """Every variant's (H, W, 3) image in output units for one recorded stack (``more``: the
    second table's variants instead)."""
    _, _, planes, source = rec["args"]
    blend = rec["out"][0]
    scale, offset = output_mapping(rec)
    truth = np.asarray(rec["truth"], np.float64)
    t3 = truth if truth.ndim == 3 else np.repeat(truth[..., None], 3, -1)
    tn = torch.tensor(np.stack([(t3[..., c] - offset[c]) / scale[c] for c in range(3)]),
                      dtype=torch.float32)[None]
    src = source.float()
    lo, hi = src.amin(0, keepdim=True), src.amax(0, keepdim=True)
    err = (planes.float() - tn).square().mean(1, keepdim=True)
    pb, tb = C.laplacian_pyramid(src, 3), C.laplacian_pyramid(tn, 3)
    ob = C.laplacian_pyramid(blend[None].float(), 3)
    picked = []
    for p, t in zip(pb, tb, strict=True):
        i = (p - t).square().sum(1, keepdim=True).argmin(0, keepdim=True)
        picked.append(torch.gather(p, 0, i.expand(1, *p.shape[1:])))
    cell = -torch.log(F.avg_pool2d(err, 8)[:, 0] + 1e-6)
    variants = {
        "ours": blend[None],
        "planes ceiling": torch.minimum(torch.maximum(tn, lo), hi),
        "cell oracle": C.compose_bands(C.selection_weights(cell, planes), planes, source)[None],
        "pixel oracle": C.compose_bands(torch.softmax(-3 * torch.log(err[:, 0] + 1e-6), 0),
                                        planes, source)[None],
        "band oracle": C.collapse(picked),
        "its details, our base": C.collapse([*picked[:-1], ob[-1]]),
        "its base, our details": C.collapse([*ob[:-1], picked[-1]]),
        "truth band 0": torch.minimum(torch.maximum(C.collapse([tb[0], *ob[1:]]), lo), hi),
    }
    if more:
        lum = pb[-1].mean(1, keepdim=True)

        def pick(index):
            return torch.gather(pb[-1], 0, index.expand(1, *pb[-1].shape[1:]))

        per_cell = []
        for k, (p_, t_) in enumerate(zip(pb, tb, strict=True)):
            size = max(8 >> k, 1)
            cell_err = F.avg_pool2d((p_ - t_).square().sum(1, keepdim=True), size,
                                    ceil_mode=True)
            one = torch.zeros_like(cell_err).scatter_(0, cell_err.argmin(0, keepdim=True), 1.0)
            per_cell.append((F.interpolate(one, size=p_.shape[-2:], mode="nearest") * p_)
                            .sum(0, keepdim=True))
        variants = {"ours": blend[None],
                    "truth band 0, unclipped": C.collapse([tb[0], *ob[1:]]),
                    "band oracle per 8 px cell": C.collapse(per_cell),
                    **{f"base: {k}": C.collapse([*ob[:-1], b]) for k, b in (
                        ("mean", pb[-1].mean(0, keepdim=True)),
                        ("median", pb[-1].median(0, keepdim=True).values),
                        ("darkest", pick(lum.argmin(0, keepdim=True))),
                        ("brightest", pick(lum.argmax(0, keepdim=True))))}}
    out = {}
    for name, v in variants.items():
        o = v[0].permute(1, 2, 0).numpy().astype(np.float64) * scale + offset
        out[name] = np.asarray(rec["image"], np.float64) if name == "ours" else o.clip(0, 1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path("runs/noise_bands.pkl"))
    p.add_argument("--more", action="store_true", help="the second table (see above)")
    args = p.parse_args(argv)
    recs = load_records(args.cache)
    groups = sorted({(r["family"], r["split"]) for r in recs})
    names = None
    for group in groups:
        se: dict[str, list] = {}
        for r in (r for r in recs if (r["family"], r["split"]) == group):
            truth = np.asarray(r["truth"], np.float64)
            for name, o in oracles(r, args.more).items():
                o = o if truth.ndim == 3 else o.mean(-1)
                e = (o - truth) ** 2
                e = e.mean(-1) if e.ndim == 3 else e
                se.setdefault(name, [[], []])
                se[name][0].append(e.mean())
                se[name][1].append(e[r["mask"]])
        if names is None:
            names = list(se)
            print("| family | split | " + " | ".join(names) + " |")
            print("|---|---|" + "---:|" * len(names))
        cells = [f"{10 * np.log10(1 / np.mean(se[n][0])):.2f} / "
                 f"{10 * np.log10(1 / np.concatenate(se[n][1]).mean()):.2f}" for n in names]
        print(f"| {group[0]} | {group[1]} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
