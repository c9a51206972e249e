"""Recompute rows of a stored by-family evaluation with today's code and report the largest
difference: a refactor that should not change results must give 0 (within float noise).

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/check_heldout_rows.py \
        docs/benchmarks/families/families.json --method vaeedof_pixel --n 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_vaeedof.evaluation import heldout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stored", type=Path, help="a families.json written by `evaluate`")
    p.add_argument("--method", nargs="+", default=["vaeedof_pixel"])
    p.add_argument("--n", type=int, default=2, help="stacks per family (the first n seeds)")
    args = p.parse_args(argv)
    stored = json.loads(args.stored.read_text())
    table = heldout.method_table()
    methods = {m: table[m] for m in args.method}
    result = heldout.evaluate_families(methods, stored["families"], args.n, stored["size"],
                                       stored["noise"], first_seed=stored["first_seed"],
                                       n_planes=stored["n_planes"])
    key = ("family", "split", "seed", "method")
    old = {tuple(r[k] for k in key): r for r in stored["rows"]}
    worst = {"psnr": 0.0, "ssim": 0.0}
    for r in result["rows"]:
        o = old[tuple(r[k] for k in key)]
        for m in worst:
            worst[m] = max(worst[m], abs(r[m] - o[m]))
        print(f"{r['family']:12s} {r['split']:6s} {r['seed']} {r['method']}: PSNR "
              f"{r['psnr']:.3f} (stored {o['psnr']:.3f}), SSIM {r['ssim']:.4f} "
              f"(stored {o['ssim']:.4f})")
    print(f"{len(result['rows'])} rows; largest difference: PSNR {worst['psnr']:.4f} dB, "
          f"SSIM {worst['ssim']:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
