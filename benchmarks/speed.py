"""Speed beside the tools users would pick instead: time versus planes and versus plane size.

- Planes sweep: synthetic RGB stacks of ``--plane-size`` (512) px with 2, 3, 5, 7, 15, 30 planes
  (``make_stack``; timing does not depend on the content much).
- Size sweep: ``--size-planes`` (3) planes of the real algae_group stack (planes 0, 2, 4 of 5,
  5440x3648 = 19.8 MPx; more than 5: its planes repeat in order) cropped at the centre to
  512x512, 1024x1024 (1 MPx), 3840x2160 (4K), and the full frame (20 MPx).

Each (method, input) pair runs in a fresh `peer_worker.py` process (peers in the peers venv):
an untimed warm-up on a 128 px crop (loads models), then the wall time of the fusion call,
median of up to ``--repeats`` runs while they fit in ``--repeat-budget`` seconds; peak RSS is
the process's VmHWM (Python, imports, the stack and the method together).
A run predicted (from the same method's last rate in MPx-planes/s) to take longer than
``--cap`` seconds is skipped, a run that passes ``2 * cap`` (at least 60 s) is killed, and
nothing new starts once ``--budget-min`` minutes are spent; every skip is recorded with its
reason.

    python benchmarks/speed.py                  # all methods, both sweeps, CPU
    python benchmarks/speed.py --device cuda    # the same on a GPU (peers get use_gpu too)

Writes ``speed_planes.{csv,md}``, ``speed_size.{csv,md}``, ``speed_meta.json`` and (with the
peers venv's matplotlib) ``speed_planes.png``, ``speed_size.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "docs"))  # real_stacks.py

import common
from common import Method

SIZES = {"512": (512, 512), "1MPx": (1024, 1024), "4K": (2160, 3840), "20MPx": None}
ALGAE_PLANES = (0, 2, 4)


def planes_inputs(counts, size: int, work: Path) -> list[dict]:
    from napari_vaeedof.data.synth import make_stack
    from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED

    out = []
    for n in counts:
        st = make_stack(HELDOUT_FIRST_SEED + 500 + n, size=size, n_planes=n)
        path = work / f"planes_{n}.npy"
        np.save(path, np.clip(np.rint(st.planes * 255), 0, 255).astype(np.uint8))
        out.append({"sweep": "planes", "name": f"{n} planes", "path": path, "planes": n,
                    "height": size, "width": size})
    return out


def size_inputs(names, n_planes: int, stacks_dir: Path, work: Path) -> list[dict]:
    from real_stacks import load_stack

    full, _, _ = load_stack(stacks_dir / "algae_group")
    # more planes than the stack has (7 of its 5): they repeat, in order (time does not depend
    # on the content much; where the fill fires it does, and repeats do not add any)
    pick = list(ALGAE_PLANES[:n_planes]) if n_planes <= len(ALGAE_PLANES) else \
        [k % len(full) for k in range(n_planes)]
    full = full[pick]
    if full.ndim == 3:
        full = np.repeat(full[..., None], 3, -1)
    h, w = full.shape[1:3]
    out = []
    for name in names:
        ch, cw = SIZES[name] or (h, w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        path = work / f"size_{name}.npy"
        np.save(path, np.ascontiguousarray(full[:, y0:y0 + ch, x0:x0 + cw]))
        out.append({"sweep": "size", "name": name, "path": path, "planes": len(pick),
                    "height": ch, "width": cw})
    return out


def run_sweep(inputs: list[dict], methods: list[Method], status: dict[str, str], args,
              work: Path, clock: dict, log=print) -> list[dict]:
    """Every method on every input; ``clock["run_s"]`` adds up the seconds spent running (not
    waiting), against ``--budget-min``. Unless ``--no-wait``, each run first waits until no
    training / evaluation / test process is running, and the row records the load average."""
    rows = []
    rate: dict[str, float] = {}  # method -> last MPx-planes/s in this sweep
    dead: dict[str, str] = {}  # method -> why larger inputs are skipped
    for inp in inputs:
        mpx = inp["height"] * inp["width"] / 1e6
        mpx_planes = mpx * inp["planes"]
        for m in methods:
            row = {"sweep": inp["sweep"], "input": inp["name"], "method": m.key,
                   "label": m.label, "planes": inp["planes"], "height": inp["height"],
                   "width": inp["width"], "mpx": round(mpx, 4), "mpx_planes": round(mpx_planes, 4)}
            reason = None
            if status[m.key] != "ok":
                reason = f"not available: {status[m.key]}"
            elif m.key in dead:
                reason = dead[m.key]
            elif m.key in rate and mpx_planes / rate[m.key] > args.cap:
                reason = (f"predicted {mpx_planes / rate[m.key]:.0f} s > cap {args.cap:.0f} s "
                          f"(at {rate[m.key]:.3g} MPx-planes/s)")
            elif clock["run_s"] > args.budget_min * 60:
                reason = f"total budget of {args.budget_min:g} min spent"
            if reason:
                rows.append({**row, "status": "skipped", "note": reason})
                if status[m.key] == "ok":
                    log(f"{inp['name']:>9} {m.key:<24} skipped: {reason}")
                continue
            if not args.no_wait:
                waited = common.wait_for_quiet(max_minutes=args.max_wait_min, log=log)
                clock["waited_s"] += waited["waited_s"]
                if waited["busy_at_end"]:
                    clock["busy_runs"] += 1
            row["load1"] = round(common.load_average()[0], 2)
            t0 = time.perf_counter()
            res = common.run_job(m, [{"stack": inp["path"], "out": ""}], device=args.device,
                                 threads=args.threads, repeats=args.repeats,
                                 repeat_budget_s=args.repeat_budget,
                                 timeout_s=max(2 * args.cap, 60.0),
                                 workdir=work)
            clock["run_s"] += time.perf_counter() - t0
            if "error" in res:
                note = res["error"].splitlines()[0][:300]
                rows.append({**row, "status": "failed", "note": note})
                dead[m.key] = f"failed on a smaller input ({inp['name']}): {note}"
                log(f"{inp['name']:>9} {m.key:<24} FAILED: {note}")
                continue
            secs = res["items"][0]["seconds"]
            t = common.median(secs)
            rate[m.key] = mpx_planes / t
            row["load1_after"] = round(common.load_average()[0], 2)
            rows.append({**row, "status": "ok", "seconds": t, "repeats": len(secs),
                         "seconds_min": min(secs), "seconds_max": max(secs),
                         "mpx_planes_per_s": mpx_planes / t, "max_rss_mib": res["max_rss_mib"],
                         "max_gpu_mib": res.get("max_gpu_mib") or "", "note": m.note})
            log(f"{inp['name']:>9} {m.key:<24} {t:9.3f} s  x{len(secs)}  "
                f"{mpx_planes / t:8.3f} MPx-planes/s  {res['max_rss_mib']:7.0f} MiB  "
                f"load {row['load1']}->{row['load1_after']}")
    return rows


COLUMNS = [("label", "method"), ("input", "input"), ("planes", "planes"), ("mpx", "MPx"),
           ("seconds", "wall s (median)"), ("repeats", "runs"),
           ("mpx_planes_per_s", "MPx-planes/s"), ("max_rss_mib", "peak RSS MiB"),
           ("max_gpu_mib", "peak GPU MiB"), ("load1", "load before"),
           ("load1_after", "load after"), ("status", "status"), ("note", "note")]


def pivot(rows: list[dict], value: str) -> str:
    """Methods as rows, inputs as columns, ``value`` in the cells ('-' where skipped)."""
    inputs = list(dict.fromkeys(r["input"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows
                                if any(q["label"] == r["label"] and q["status"] == "ok"
                                       for q in rows)))
    table = []
    for label in labels:
        cells = {"label": label}
        for inp in inputs:
            hit = [r for r in rows if r["label"] == label and r["input"] == inp]
            cells[inp] = common.fmt(hit[0][value]) if hit and hit[0]["status"] == "ok" else "-"
        table.append(cells)
    return common.markdown_table(table, [("label", "method"), *((i, i) for i in inputs)])


def sweep_markdown(rows: list[dict], title: str) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    skipped = [r for r in rows if r["status"] != "ok" and not r["note"].startswith("not avail")]
    unavailable = sorted({(r["label"], r["note"]) for r in rows
                          if r["note"].startswith("not avail")})
    loads = [r[k] for r in ok for k in ("load1", "load1_after") if r.get(k) not in (None, "")]
    if loads:
        title += (f" 1-minute load average before/after each run: {min(loads):.2f} to "
                  f"{max(loads):.2f} (the run itself adds up to ~2 on 2 cores).")
    parts = [title, "", "Wall seconds (median of the runs):", "", pivot(rows, "seconds"),
             "MPx-planes per second (higher is faster):", "", pivot(rows, "mpx_planes_per_s"),
             "Peak RSS of the process, MiB:", "", pivot(rows, "max_rss_mib")]
    if any(r.get("max_gpu_mib") not in (None, "") for r in ok):
        parts += ["Peak GPU memory torch allocated, MiB:", "", pivot(rows, "max_gpu_mib")]
    if skipped:
        parts += ["Skipped or failed:", ""]
        parts += [f"- {r['label']}, {r['input']}: {r['status']} ({r['note']})" for r in skipped]
        parts.append("")
    if unavailable:
        parts += ["Not run here:", ""]
        parts += [f"- {label}: {note}" for label, note in unavailable]
        parts.append("")
    parts += ["<details><summary>All rows</summary>", "",
              common.markdown_table(ok, COLUMNS), "</details>", ""]
    return "\n".join(parts)


def _number(v: str):
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v else f


def merge(path: Path, new: list[dict]) -> list[dict]:
    """The rows of ``path`` (an earlier run's CSV) with those re-run now replaced."""
    if not path.is_file():
        return new
    with path.open() as f:
        old = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    fresh = {(r["input"], r["method"]): r for r in new}
    rows = [fresh.pop((r["input"], r["method"]), r) for r in old]
    rows += list(fresh.values())
    order = {k: i for i, k in enumerate(dict.fromkeys([r["input"] for r in old] +
                                                      [r["input"] for r in new]))}
    methods = {m.key: i for i, m in enumerate(common.METHODS)}
    return sorted(rows, key=lambda r: (order[r["input"]], methods.get(r["method"], 99)))


def plot(out: Path, log=print) -> None:
    """Draw the PNGs with the peers venv's matplotlib (not a dependency of the package)."""
    py = common.PEERS_PYTHON
    if not py.is_file():
        log("no peers venv: plots skipped")
        return
    res = subprocess.run([str(py), str(common.HERE / "plots.py"), "--dir", str(out)],
                         capture_output=True, text=True, check=False)
    log(res.stdout.strip() or res.stderr.strip()[-2000:])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planes", type=int, nargs="*", default=[2, 3, 5, 7, 15, 30])
    p.add_argument("--plane-size", type=int, default=512)
    p.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--size-planes", type=int, default=3)
    p.add_argument("--stacks-dir", type=Path, default=common.REPO.parent / "shared" / "data"
                   / "stacks")
    p.add_argument("--methods", nargs="+", default=["all"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (passed to every method)")
    p.add_argument("--threads", type=int, default=0, help="threads per method (0: all cores)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--repeat-budget", type=float, default=20.0,
                   help="stop repeating a run once this many seconds are spent on it")
    p.add_argument("--cap", type=float, default=600.0, help="longest predicted run, seconds")
    p.add_argument("--budget-min", type=float, default=60.0, help="total minutes")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for training/evaluation/tests to finish before each run")
    p.add_argument("--max-wait-min", type=float, default=40.0,
                   help="longest wait for a quiet machine before a run, minutes")
    p.add_argument("--out", type=Path, default=common.DOCS)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of an earlier run's CSVs that this run does not redo")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    methods = common.select_methods(args.methods)
    status = common.availability(methods)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vaeedof-speed-", dir=args.work))
    meta = {"command": command, "versions": common.versions(), "weights": common.weights_status(),
            "status": status}
    try:
        planes = planes_inputs(args.planes, args.plane_size, work) if args.planes else []
        sizes = size_inputs(args.sizes, args.size_planes, args.stacks_dir, work) \
            if args.sizes else []
        meta["load_average_start"] = common.load_average()
        clock = {"run_s": 0.0, "waited_s": 0.0, "busy_runs": 0}
        for name, inputs, title in (
                ("planes", planes, f"Time versus number of planes, {args.plane_size}x"
                 f"{args.plane_size} RGB uint8 (synthetic)."),
                ("size", sizes, f"Time versus plane size, {args.size_planes} RGB uint8 planes "
                 "of algae_group (centre crops; 20MPx = the full 5440x3648 frame).")):
            if not inputs:
                continue
            rows = run_sweep(inputs, methods, status, args, work, clock, log)
            if args.merge:
                rows = merge(args.out / f"speed_{name}.csv", rows)
            info = common.machine(args.device)
            meta[f"{name}_machine"] = info
            common.write_csv(args.out / f"speed_{name}.csv", rows)
            (args.out / f"speed_{name}.md").write_text(
                "\n".join(common.header_lines(info, command)) + sweep_markdown(rows, title))
        meta["clock"] = {"run_minutes": round(clock["run_s"] / 60, 2),
                         "waited_minutes": round(clock["waited_s"] / 60, 2),
                         "runs_started_while_busy": clock["busy_runs"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta_path = args.out / "speed_meta.json"
    if args.merge and meta_path.is_file():
        earlier = json.loads(meta_path.read_text())
        meta["earlier_runs"] = [*earlier.pop("earlier_runs", []), earlier]
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    if not args.no_plot:
        plot(args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
