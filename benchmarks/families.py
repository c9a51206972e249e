"""Every physics family beside the PyPI peers, in one run, against the noise-free truth.

`napari-vaeedof evaluate` (the package's `evaluation.heldout.evaluate_families`) scores our
modes and the classical baselines by family; this adds the peers a user would pick instead
(openfocus StackMFF V3, openfocus C, openfocus DTCWT, focusweave) through `peer_worker.py` in
the peers venv (`benchmarks/setup_peers.sh`), one worker process per stack. The peers read
8-bit RGB, so their planes are the float planes rounded to 8 bits (12/16-bit families lose
precision for them only; every score is against the float noise-free truth).

    python benchmarks/families.py --n 6 --out docs/benchmarks/families
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from quality import _u8

PEERS = ("openfocus:stackmffv3", "openfocus:openfocus_c", "openfocus:dtcwt",
         "focusweave:laplacian")


def peer(method: common.Method, work: Path):
    """An `evaluate_families` method that runs ``method`` in its own worker process."""

    def fuse(planes: np.ndarray, truth: np.ndarray) -> np.ndarray:
        src, out = work / "in.npy", work / "out.npy"
        np.save(src, _u8(planes))
        out.unlink(missing_ok=True)
        res = common.run_job(method, [{"stack": src, "out": out}], warmup=False, workdir=work)
        if "error" in res:
            raise RuntimeError(f"{method.key}: {res['error']}")
        return np.load(out).astype(np.float32) / np.float32(255)

    return fuse


def main(argv=None) -> int:
    from napari_vaeedof.evaluation.heldout import evaluate_families, method_table, write_families

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=6, help="held-out stacks per family")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--noise", default="both", choices=("none", "noisy", "both"))
    p.add_argument("--peers", nargs="*", default=list(PEERS))
    p.add_argument("--out", type=Path, default=common.DOCS / "families")
    args = p.parse_args(argv)

    peers = [common.BY_KEY[k] for k in args.peers]
    status = common.availability(peers)
    work = Path(tempfile.mkdtemp(prefix="vaeedof-families-"))
    methods = method_table()
    for m in peers:
        if status[m.key] == "ok":
            methods[m.label] = peer(m, work)
        else:
            print(f"skipped {m.key}: {status[m.key]}")
    result = evaluate_families(methods, n=args.n, size=args.size, noise=args.noise, log=print)
    result["command"] = "python benchmarks/families.py " + " ".join(argv or sys.argv[1:])
    write_families(result, args.out)
    print(f"wrote {args.out / 'families.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
