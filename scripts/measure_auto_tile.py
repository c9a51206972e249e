"""Time and peak memory of the default (automatic) tile size against fixed 512 px tiles.

One synthetic RGB uint8 stack (seed 3) per run, fused with the defaults (pixel-faithful mode,
error map) on the CPU with 2 torch threads, each configuration in its own process so that peak
RSS is its own. Run:  python scripts/measure_auto_tile.py [--size 768] [--planes 10]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def _one(size: int, planes: int, tile: str) -> None:
    import numpy as np
    import torch

    from napari_vaeedof import fuse_stack
    from napari_vaeedof.data.synth import make_stack, quantize

    torch.set_num_threads(2)
    stack = quantize(make_stack(3, size=size, n_planes=planes).planes, np.uint8)
    kwargs = {} if tile == "auto" else {"tile_size": int(tile)}
    t0 = time.perf_counter()
    meta = fuse_stack(stack, **kwargs).metadata
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {tile} | {meta['n_tiles']} x {meta['tile_size']} px | {seconds:.1f} | {rss:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--planes", type=int, default=10)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.size, args.planes, args.one)
        return 0
    print(f"{args.planes} planes of {args.size} px, RGB uint8 (load average before: "
          f"{open('/proc/loadavg').read().split()[0]})\n")
    print("| tile_size | tiles | seconds | peak RSS (MB) |\n|---|---|---|---|", flush=True)
    for tile in ("auto", "512"):
        subprocess.run([sys.executable, __file__, "--size", str(args.size), "--planes",
                        str(args.planes), "--one", tile], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
