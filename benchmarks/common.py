"""Shared harness: which methods exist, running `peer_worker.py` jobs, machine facts, tables.

Runs in the project's environment (napari_vaeedof importable). Peers run only through
``peer_worker.py`` with the peers venv's Python (``benchmarks/.peers-venv``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "peer_worker.py"
PEERS_VENV = Path(os.environ.get("VAEEDOF_PEERS_VENV", HERE / ".peers-venv"))
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
DOCS = REPO / "docs" / "benchmarks"
# other heavy jobs on this machine: training, evaluation, real-stack montages
# (docs/real_stacks.py), test runs
BUSY_PATTERN = "napari_vaeedof.cli|napari-vaeedof (train|evaluate|fuse)|real_stacks\\.py|pytest"


@dataclass(frozen=True)
class Method:
    key: str  # family:name as peer_worker.py knows it
    label: str
    note: str = ""

    @property
    def family(self) -> str:
        return self.key.partition(":")[0]

    @property
    def ours(self) -> bool:
        return self.family == "ours"


METHODS: tuple[Method, ...] = (
    Method("ours:vaeedof", "VAEEDOF pixel-faithful (ours, default)", "error map off"),
    Method("ours:vaeedof_error", "VAEEDOF + error map (ours)", "same image, error map on"),
    Method("ours:vaeedof_latent", "VAEEDOF latent mode (ours)", "the paper's pure latent "
           "fusion, error map off"),
    Method("ours:vaeedof_nofill", "VAEEDOF pixel-faithful, no fill (ours)", "fill=False: the "
           "planes' values only, no VAE; error map off"),
    Method("ours:laplacian_pyramid", "Laplacian pyramid (our baseline)"),
    Method("ours:variance_argmax", "variance argmax (our baseline)"),
    Method("openfocus:stackmffv3", "openfocus StackMFF V3", "neural; openfocus default"),
    Method("openfocus:stackmffv2", "openfocus StackMFF V2", "neural"),
    Method("openfocus:stackmff", "openfocus StackMFF", "neural (V1, 3-D stack net)"),
    Method("openfocus:openfocus_a", "openfocus A", "variance-weighted average"),
    Method("openfocus:openfocus_b", "openfocus B", "variance depth-map pick"),
    Method("openfocus:openfocus_c", "openfocus C", "Laplacian pyramid"),
    Method("openfocus:guided_filter", "openfocus guided filter"),
    Method("openfocus:gfgfgf", "openfocus GFG-FGF"),
    Method("openfocus:dct", "openfocus DCT"),
    Method("openfocus:dtcwt", "openfocus DTCWT"),
    Method("focusweave:laplacian", "focusweave", "Laplacian pyramid (Rust)"),
    Method("zstackr:apex", "z-stackr Apex"),
    Method("zstackr:relief", "z-stackr Relief"),
    Method("zstackr:strata", "z-stackr Strata"),
)
BY_KEY = {m.key: m for m in METHODS}
Z_STACKR_REASON = (
    "z-stackr is published on PyPI as an sdist only (a Rust workspace built by maturin, ~12,000-"
    "line Cargo.lock with wgpu); building it needs crates.io, which this machine cannot reach, "
    "so `pip install z-stackr` fails at `cargo metadata`")


def select_methods(patterns: Sequence[str] | None) -> list[Method]:
    """Methods whose key or family matches any pattern (all when None / 'all')."""
    if not patterns or "all" in patterns:
        return list(METHODS)
    out = [m for m in METHODS if any(p in (m.key, m.family) for p in patterns)]
    unknown = [p for p in patterns if not any(p in (m.key, m.family) for m in METHODS)]
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(unknown)}")
    return out


def python_for(method: Method) -> Path | None:
    """The interpreter that runs ``method``: ours -> this one; peers -> the peers venv."""
    if method.ours:
        return Path(sys.executable)
    return PEERS_PYTHON if PEERS_PYTHON.is_file() else None


def availability(methods: Sequence[Method]) -> dict[str, str]:
    """method key -> "ok" or the reason it cannot run here (peers venv missing, import error)."""
    status: dict[str, str] = {}
    pythons = {python_for(m) for m in methods}
    for py in pythons:
        if py is None:
            continue
        out = subprocess.run([str(py), str(WORKER), "--list"], capture_output=True, text=True,
                             env=worker_env(), check=False)
        if out.returncode == 0:
            listed = json.loads(out.stdout)
            for m in methods:
                if python_for(m) == py:
                    status[m.key] = listed.get(m.key, "not listed by the worker")
    for m in methods:
        if m.key not in status:
            status[m.key] = (f"peers venv not found at {PEERS_VENV} "
                             "(run benchmarks/setup_peers.sh)")
        if m.family == "zstackr" and status[m.key] != "ok":
            status[m.key] = Z_STACKR_REASON
    return status


def worker_env(threads: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VAEEDOF_WEIGHTS_DIR", str(REPO.parent / "shared" / "models"))
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "RAYON_NUM_THREADS"):
            env[var] = str(threads)
    return env


def run_job(method: Method, items: list[dict], *, device: str = "cpu", threads: int = 0,
            repeats: int = 1, repeat_budget_s: float = 0.0, warmup: bool = True,
            timeout_s: float | None = None, workdir: Path | None = None) -> dict:
    """Run one worker process for ``method`` over ``items`` ({"stack", "out"} .npy paths).

    Returns the worker's result (per item "seconds", "max_rss_mib"), or {"error": ...}.
    """
    py = python_for(method)
    if py is None:
        return {"method": method.key, "error": f"peers venv not found at {PEERS_VENV}"}
    workdir = Path(workdir or tempfile.mkdtemp(prefix="vaeedof-bench-"))
    stem = method.key.replace(":", "_")
    job_path, result_path = workdir / f"{stem}_job.json", workdir / f"{stem}_result.json"
    job = {"method": method.key, "device": device, "threads": threads, "repeats": repeats,
           "repeat_budget_s": repeat_budget_s, "warmup": warmup,
           "items": [{k: str(v) for k, v in it.items()} for it in items]}
    job_path.write_text(json.dumps(job, indent=1))
    result_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(py), str(WORKER), "--job", str(job_path), "--result",
                               str(result_path)], capture_output=True, text=True,
                              env=worker_env(threads), timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"method": method.key, "error": f"timed out after {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        tail = (proc.stderr or proc.stdout)[-2000:]
        result = {"method": method.key, "error": f"worker exited {proc.returncode}: {tail}"}
    result["process_seconds"] = wall
    return result


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    n = len(v)
    return float(v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2]))


# ----------------------------------------------------------------------------- machine facts


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def busy_processes(pattern: str = BUSY_PATTERN) -> list[str]:
    """Command lines of other processes matching ``pattern`` (not this one or its parents)."""
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    mine = {os.getpid(), os.getppid()}
    lines = []
    for line in out.stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit() and int(pid) not in mine and "pgrep" not in cmd:
            lines.append(line)
    return lines


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    """pid -> (utime + stime ticks, command) for every process (Linux /proc; empty elsewhere)."""
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out[int(d.name)] = (int(fields[11]) + int(fields[12]), cmd.strip()[:160])
        except (OSError, ValueError, IndexError):
            continue
    return out


def _my_tree() -> set[int]:
    """This process, its ancestors and its descendants (our own workers are not 'others')."""
    parent = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
            parent[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    mine, pid = {os.getpid()}, os.getpid()
    while pid in parent and parent[pid] > 1:
        pid = parent[pid]
        mine.add(pid)
    grew = True
    while grew:
        kids = {p for p, pp in parent.items() if pp in mine and p not in mine}
        mine |= kids
        grew = bool(kids)
    return mine


def cpu_hogs(threshold: float = 0.3, sample_s: float = 2.0) -> list[str]:
    """Other processes using more than ``threshold`` of a core over ``sample_s`` seconds."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    a = _cpu_ticks()
    time.sleep(sample_s)
    b = _cpu_ticks()
    mine = _my_tree()
    hogs = []
    for pid, (ticks, cmd) in b.items():
        if pid in mine or pid not in a or not cmd:
            continue
        share = (ticks - a[pid][0]) / hz / sample_s
        if share > threshold:
            hogs.append(f"{pid} {cmd} ({share:.0%} of a core)")
    return hogs


def wait_for_quiet(max_minutes: float = 40.0, poll_s: float = 30.0,
                   log: Callable[[str], None] = print) -> dict:
    """Wait until no training / evaluation / test process runs and no other process keeps a core
    busy (polling); report what was seen."""
    t0 = time.monotonic()
    first = busy_processes() + cpu_hogs()
    while True:
        busy = busy_processes() + cpu_hogs()
        if not busy:
            break
        if time.monotonic() - t0 > max_minutes * 60:
            log(f"still busy after {max_minutes} min, going on: {busy}")
            break
        log(f"waiting for: {busy[0][:120]} ({len(busy)} process(es))")
        time.sleep(poll_s)
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_at_start": first,
            "busy_at_end": busy, "load_average_at_start": load_average()}


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


VERSION_SNIPPET = """
import importlib.metadata as md, json, sys
out = {"python": sys.version.split()[0]}
for d in ("numpy", "torch", "opencv-python-headless", "openfocus", "focusweave", "z-stackr",
          "napari-vaeedof", "matplotlib"):
    try:
        out[d] = md.version(d)
    except md.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def versions() -> dict:
    """Package versions in this environment ("ours") and in the peers venv ("peers")."""
    out = {}
    for name, py in (("ours", Path(sys.executable)), ("peers", PEERS_PYTHON)):
        if not py.is_file():
            continue
        res = subprocess.run([str(py), "-c", VERSION_SNIPPET], capture_output=True, text=True,
                             check=False)
        if res.returncode == 0:
            out[name] = json.loads(res.stdout)
    return out


def weights_status() -> dict:
    """The packaged (or VAEEDOF_BENCH_UNET) Fusion U-Net's metadata status and file hash."""
    import hashlib

    from napari_vaeedof.models.fusion_unet import read_metadata

    path = os.environ.get("VAEEDOF_BENCH_UNET") or str(
        Path(__import__("napari_vaeedof").__file__).parent / "models" / "weights"
        / "fusion_unet.safetensors")
    meta = read_metadata(path)
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "status": meta.get("status", ""), "steps": meta.get("steps", ""),
            "sha256": sha}


def machine(device: str = "cpu") -> dict:
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _lscpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_mem_gib(), 1),
        "device": device,
        "load_average": [round(x, 2) for x in load_average()],
    }
    if device != "cpu":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        except Exception as exc:
            info["gpu"] = f"unknown ({exc})"
    else:
        info["gpu"] = "none used"
    return info


# ----------------------------------------------------------------------------- tables


def write_csv(path: Path, rows: list[dict], fields: Sequence[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(fields or dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in fields})


def _cell(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def fmt(v, digits: int = 3) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        if v != v:  # nan
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{max(digits - 1, 1)}f}"
    return str(v)


TEXT_COLUMNS = ("label", "method", "stack", "sweep", "status", "note")


def markdown_table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> str:
    """rows -> a markdown table; columns = (key, header) pairs; all but text right-aligned."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    align = "| " + " | ".join("---" if k in TEXT_COLUMNS else "---:" for k, _ in columns) + " |"
    body = ["| " + " | ".join(fmt(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, align, *body]) + "\n"


def header_lines(info: dict, command: str) -> list[str]:
    return [f"Command: `{command}`", "",
            f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
            f"device {info['device']} (GPU: {info['gpu']}); {info['date']}; load average "
            f"{' / '.join(str(x) for x in info['load_average'])} (1/5/15 min) at the end.", ""]
