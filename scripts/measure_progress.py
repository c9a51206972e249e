"""When each progress report of one fusion arrives, and how soon a Cancel takes effect.

One synthetic RGB uint8 stack (seed 3), fused with the defaults on the CPU (2 torch threads);
prints every `FusionProgress` with the seconds since the previous one (the longest gap bounds
how long a Cancel waits). With --cancel-at S a Cancel is pressed S seconds in (the callback
raises FusionCancelled at the next report) and the delay is printed.
Run:  python scripts/measure_progress.py [--size 768] [--planes 10] [--cancel-at 10]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
import torch

from napari_vaeedof import FusionCancelled, fuse_stack
from napari_vaeedof.data.synth import make_stack, quantize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--planes", type=int, default=10)
    parser.add_argument("--cancel-at", type=float, help="press Cancel after this many seconds")
    args = parser.parse_args()
    torch.set_num_threads(2)
    stack = quantize(make_stack(3, size=args.size, n_planes=args.planes).planes, np.uint8)
    cancel, pressed, reports = threading.Event(), [], []
    t0 = time.perf_counter()

    def progress(p) -> None:
        reports.append((time.perf_counter() - t0, p))
        if cancel.is_set():
            raise FusionCancelled

    def press() -> None:
        pressed.append(time.perf_counter() - t0)
        cancel.set()

    if args.cancel_at:
        threading.Timer(args.cancel_at, press).start()
    print(f"{args.planes} planes of {args.size} px (load average "
          f"{open('/proc/loadavg').read().split()[0]})")
    try:
        fuse_stack(stack, progress=progress)
    except FusionCancelled:
        stopped = time.perf_counter() - t0
        print(f"Cancel pressed at {pressed[0]:.1f} s, stopped at {stopped:.1f} s: "
              f"{stopped - pressed[0]:.1f} s later")
    last = None
    for t, p in reports:
        gap = "" if last is None else f"+{t - last:.1f} s"
        print(f"{t:7.1f} s {gap:>9}  {p.fraction:6.1%}  {p}")
        last = t
    return 0


if __name__ == "__main__":
    sys.exit(main())
