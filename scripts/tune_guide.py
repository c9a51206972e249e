"""The guided filter that carries the head's choice to full resolution (engine/compose.py:
GUIDE_RADIUS, GUIDE_EPS), swept on the tuning records of `tune_noise_bands.py`: each stack's
weights are recomputed from its recorded logits and composed band by band; PSNR / SSIM /
pooled hard-pixel PSNR per family and split against the noise-free truth.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/tune_guide.py --radius 4 8 16 \\
        --eps 1e-4 1e-3 1e-2
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from napari_vaeedof.engine import compose

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_noise_bands import load_records, recompose, score


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path("runs/noise_bands.pkl"))
    p.add_argument("--radius", type=int, nargs="+", default=[compose.GUIDE_RADIUS])
    p.add_argument("--eps", type=float, nargs="+", default=[compose.GUIDE_EPS])
    args = p.parse_args(argv)
    recs = load_records(args.cache)
    groups = sorted({(r["family"], r["split"]) for r in recs})
    print("| radius | eps | " + " | ".join(f"{f} {s}" for f, s in groups) + " |")
    print("|---|---|" + "---|" * len(groups))
    saved = compose.guided_filter.__defaults__
    try:
        for radius, eps in itertools.product(args.radius, args.eps):
            compose.guided_filter.__defaults__ = (radius, eps)
            cells = []
            for group in groups:
                rs = [r for r in recs if (r["family"], r["split"]) == group]
                outs = [recompose(r, weights=compose.selection_weights(r["args"][0],
                                                                        r["args"][2]))
                        for r in rs]
                cells.append(score(outs, rs))
            print(f"| {radius} | {eps:g} | " + " | ".join(cells) + " |", flush=True)
    finally:
        compose.guided_filter.__defaults__ = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
