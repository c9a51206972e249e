"""dask.distributed on this machine (issue 14): batch throughput by worker count, and a stack
whose float32 working set is larger than a worker's memory fused into OME-Zarr.

1. Batch: ``--stacks`` (10) synthetic RGB stacks of ``--planes`` (7) planes of ``--size``
   (512) px written as TIFFs, fused by ``napari-vaeedof batch`` in this process (no cluster,
   torch on all cores) and with ``--scheduler`` on a LocalCluster of 1 and of 2 worker processes
   (one thread each; dask sets OMP_NUM_THREADS=1 in workers); wall time of the command, cluster
   start-up and model loading not included.
2. Big: ``--big-planes`` (3) RGB planes of ``--big`` (8192) px, an uncompressed TIFF read
   lazily, fused with ``fuse_to_zarr`` on a LocalCluster of 2 workers with ``--worker-memory``
   (2 GiB) each; the workers' RSS is sampled every second, and their process ids before and after
   tell whether one was killed.

    python benchmarks/cluster.py --out docs/benchmarks/cluster

Writes ``cluster.json`` and ``cluster.md`` into ``--out``; work files go to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import tifffile


def _stacks(work: Path, n: int, planes: int, size: int) -> list[Path]:
    from napari_vaeedof.data.synth import make_stack, quantize

    paths = []
    for seed in range(n):
        path = work / "in" / f"stack_{seed:02d}.tif"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            st = make_stack(10_000 + seed, size=size, n_planes=planes, gray=False)
            tifffile.imwrite(path, quantize(st.planes, np.uint8), photometric="rgb",
                             metadata={"axes": "ZYXS"})
        paths.append(path)
    return paths


def _batch(paths: list[Path], out: Path, scheduler: str | None) -> float:
    from napari_vaeedof.cli import main

    shutil.rmtree(out, ignore_errors=True)
    args = ["batch", *map(str, paths), "--out-dir", str(out), "-q"]
    if scheduler:
        args += ["--scheduler", scheduler]
    t0 = time.perf_counter()
    if main(args) != 0:
        raise RuntimeError(f"batch failed: {args}")
    return time.perf_counter() - t0


def _load_models() -> None:
    from napari_vaeedof.engine.runtime import load_models

    load_models()


def run_batch(work: Path, n: int, planes: int, size: int) -> dict:
    from distributed import Client, LocalCluster

    paths = _stacks(work, n, planes, size)
    warm = _stacks(work / "warm", 1, 3, 128)
    rows = {"stacks": n, "planes": planes, "size": size}
    _batch(warm, work / "out_warm", None)  # this process's models
    rows["local (no cluster)"] = _batch(paths, work / "out_local", None)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster:
            with Client(cluster.scheduler_address) as client:  # every worker's models
                client.run(_load_models)
            rows[f"{workers} worker(s)"] = _batch(paths, work / f"out_{workers}",
                                                  cluster.scheduler_address)
        print(f"batch on {workers} worker(s): {rows[f'{workers} worker(s)']:.1f} s", flush=True)
    return rows


def _rss_sampler(client, stop: threading.Event, peaks: dict) -> None:
    def rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    while not stop.is_set():
        try:
            for worker, value in client.run(rss).items():
                peaks[worker] = max(peaks.get(worker, 0), value)
        except Exception:  # a worker going away mid-call: seen in the pid check
            pass
        stop.wait(1.0)


def run_big(work: Path, size: int, planes: int, memory: str, tile: int | None) -> dict:
    from distributed import Client, LocalCluster

    from napari_vaeedof import fuse_to_zarr
    from napari_vaeedof.data.synth import make_stack, quantize
    from napari_vaeedof.io import read_stack

    path = work / f"big_{size}_{planes}.tif"
    if not path.exists():
        block = quantize(make_stack(20_000, size=1024, n_planes=planes, gray=False).planes,
                         np.uint8)
        reps = -(-size // 1024)
        with tifffile.TiffWriter(path, bigtiff=True) as tif:  # one plane in memory at a time
            for p in block:
                tif.write(np.tile(p, (reps, reps, 1))[:size, :size], photometric="rgb",
                          contiguous=True, metadata={"axes": "ZYXS"} if p is block[0] else None)
    stack = read_stack(path, lazy=True)
    working = int(np.prod(stack.data.shape)) * 4
    out = work / "big.ome.zarr"
    shutil.rmtree(out, ignore_errors=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=memory) as cluster, \
            Client(cluster.scheduler_address) as client:
        pids = lambda: sorted(client.run(os.getpid).values())  # noqa: E731
        before = pids()
        peaks: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_rss_sampler, args=(client, stop, peaks), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        meta = fuse_to_zarr(stack.data, out, maps={"error": work / "big_error.ome.zarr"},
                            scheduler=client, tile_size=tile)
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        after = pids()
    return {"shape": list(stack.data.shape), "float32 working set GiB": working / 2**30,
            "worker memory limit": memory, "seconds": seconds, "tiles": meta["n_tiles"],
            "tile_size": meta["tile_size"],
            "peak worker RSS GiB": sorted(v / 2**30 for v in peaks.values()),
            "workers killed": before != after}


def markdown(result: dict) -> str:
    lines = ["# dask.distributed on the 2-core CPU", ""]
    if "batch" in result:
        b = result["batch"]
        lines += [f"Batch of {b['stacks']} RGB stacks, {b['planes']} planes of {b['size']} px "
                  f"(`napari-vaeedof batch`, default pixel mode, no maps), wall seconds:", "",
                  "| run | seconds | stacks/min | speed-up over 1 worker |", "|---|---|---|---|"]
        one = b["1 worker(s)"]
        for k in ("local (no cluster)", "1 worker(s)", "2 worker(s)"):
            lines.append(f"| {k} | {b[k]:.1f} | {60 * b['stacks'] / b[k]:.2f} | "
                         f"{one / b[k]:.2f} |")
        lines.append("")
    if "big" in result:
        g = result["big"]
        lines += ["Big stack into OME-Zarr (`fuse_to_zarr`, lazy TIFF input, 2 workers):", "",
                  "| shape | float32 working set | worker limit | tiles | seconds | "
                  "peak worker RSS | workers killed |", "|---|---|---|---|---|---|---|",
                  f"| {' x '.join(map(str, g['shape']))} | {g['float32 working set GiB']:.2f} "
                  f"GiB | {g['worker memory limit']} | {g['tiles']} ({g['tile_size']} px) | "
                  f"{g['seconds']:.0f} | "
                  f"{', '.join(f'{v:.2f}' for v in g['peak worker RSS GiB'])} GiB | "
                  f"{'yes' if g['workers killed'] else 'no'} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacks", type=int, default=10)
    p.add_argument("--planes", type=int, default=7)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--big", type=int, default=8192)
    p.add_argument("--big-planes", type=int, default=3)
    p.add_argument("--worker-memory", default="2GiB")
    p.add_argument("--big-tile", type=int, help="tile size of the big run (default: automatic)")
    p.add_argument("--skip", choices=["batch", "big"], action="append", default=[])
    p.add_argument("--work", type=Path, default=Path("runs/cluster"))
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"cpu_count": os.cpu_count()}
    if "batch" not in args.skip:
        result["batch"] = run_batch(args.work, args.stacks, args.planes, args.size)
    if "big" not in args.skip:
        result["big"] = run_big(args.work, args.big, args.big_planes, args.worker_memory,
                                args.big_tile)
        print(json.dumps(result["big"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(result, indent=2))
    (args.out / "cluster.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
