"""How much context the fill windows need (engine/fusion.py: FILL_CONTEXT).

Fuses the central crop of a real stack in pixel mode once per context, in one process, and
prints the time, the share of each tile the fill windows cover, and how far the image moves
against the first context given (grey levels of 8 bits, on the pixels with fill above 0).

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_fill_context.py \\
        ../shared/data/stacks/algae_group --crop 1024 --contexts 64 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_vaeedof import fuse_stack
from napari_vaeedof.engine import fusion
from napari_vaeedof.io import read_stack


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stack")
    p.add_argument("--crop", type=int, default=1024)
    p.add_argument("--contexts", type=int, nargs="+", default=[64, 32])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    planes = np.asarray(read_stack(args.stack).data)
    h, w = planes.shape[1:3]
    c = args.crop // 2
    crop = planes[:, h // 2 - c : h // 2 + c, w // 2 - c : w // 2 + c]
    real, saved = fusion.fill_windows, fusion.FILL_CONTEXT
    results = {}
    try:
        for context in args.contexts:
            cover = []

            def spy(fill, block=fusion.FILL_BLOCK, context=context, cover=cover):
                windows = real(fill, block, context)
                cover.append(sum((r.stop - r.start) * (c.stop - c.start) for r, c in windows)
                             / fill.numel())
                return windows

            fusion.fill_windows = spy
            t0 = time.perf_counter()
            r = fuse_stack(crop, error_map=False, device="cpu", precision="float32")
            seconds = time.perf_counter() - t0
            results[context] = r
            print(f"context {context} px: {seconds:.1f} s, {len(cover)} tiles with fill, "
                  f"windows cover {np.mean(cover) if cover else 0:.2f} of them, fill above 0 on "
                  f"{(r.fill > 0).mean():.3f} of the pixels", flush=True)
    finally:
        fusion.fill_windows, fusion.FILL_CONTEXT = real, saved
    first = results[args.contexts[0]]
    ref = first.image.astype(np.float64)
    scale = 255 / np.iinfo(crop.dtype).max if crop.dtype.kind in "ui" else 255
    filled = np.squeeze(first.fill) > 0
    for context in args.contexts[1:]:
        d = np.abs(results[context].image.astype(np.float64) - ref) * scale
        d = d.mean(-1) if d.ndim == 3 else d
        print(f"context {context} px against {args.contexts[0]} px: "
              f"{d[filled].mean() if filled.any() else 0:.3f} grey levels on the filled pixels, "
              f"at most {d.max():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
