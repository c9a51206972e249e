"""Run one focus-fusion method on stacks saved as .npy, in whichever Python runs this file.

The harness (`quality.py`, `speed.py`) starts this script once per method (and, for speed, once
per input size) so that each method runs in a fresh process whose peak RSS is its own:

- our methods (``ours:*``) with the project's Python (napari_vaeedof installed),
- the PyPI peers (``openfocus:*``, ``focusweave:*``, ``zstackr:*``) with the peers venv's Python
  (``benchmarks/.peers-venv``, made by ``setup_peers.sh``) -- they never enter our environment.

Only numpy is imported at the top; each family imports its own package when asked for.

Job file (JSON)::

    {"method": "openfocus:guided_filter", "device": "cpu", "threads": 0, "repeats": 3,
     "repeat_budget_s": 20, "warmup": true, "items": [{"stack": "in.npy", "out": "out.npy"}]}

Each stack is (Z, H, W, 3) uint8 RGB, already aligned: registration is off for every method.
Each output is (H, W, 3) uint8 RGB. The result file (``--result``) holds, per item, the wall
seconds of every repeat (up to ``repeats``, fewer once ``repeat_budget_s`` is spent; the
fusion call only: no file I/O, no imports; a warm-up call on a small
crop first loads models), and for the process its peak RSS (VmHWM, MiB).

    python benchmarks/peer_worker.py --list            # methods this Python can run, as JSON
    python benchmarks/peer_worker.py --job job.json --result result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

Fuse = Callable[[np.ndarray], np.ndarray]  # (Z, H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB

OURS = ("vaeedof", "vaeedof_error", "vaeedof_latent", "vaeedof_nofill", "laplacian_pyramid",
        "variance_argmax")
OPENFOCUS = ("stackmffv3", "stackmffv2", "stackmff", "openfocus_a", "openfocus_b", "openfocus_c",
             "guided_filter", "gfgfgf", "dct", "dtcwt")
FOCUSWEAVE = ("laplacian",)
ZSTACKR = ("apex", "relief", "strata")


def _to_u8(img: np.ndarray, scale: float = 255.0) -> np.ndarray:
    img = np.asarray(img, np.float32)
    return np.clip(np.rint(img * np.float32(scale)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- ours


def _ours(name: str, device: str, tile_size: int = 512) -> Fuse:
    if name in ("vaeedof", "vaeedof_error", "vaeedof_latent", "vaeedof_nofill"):
        from napari_vaeedof import fuse_stack

        unet = os.environ.get("VAEEDOF_BENCH_UNET") or None
        mode = {"vaeedof_latent": {"mode": "latent"}, "vaeedof_nofill": {"fill": False}}.get(
            name, {})  # else the default

        def fuse(stack: np.ndarray) -> np.ndarray:
            res = fuse_stack(stack, axis=0, device=device, tile_size=tile_size,
                             error_map=name == "vaeedof_error", unet_path=unet, **mode)
            return np.asarray(res.image)

        return fuse
    from napari_vaeedof.evaluation import baselines

    fn = getattr(baselines, f"{name}_fusion")
    return lambda stack: _to_u8(fn(stack.astype(np.float32) / np.float32(255)))


# ----------------------------------------------------------------------------- peers


def _openfocus(name: str, device: str) -> Fuse:
    """openfocus's own fusion object, as its headless CLI builds it (``--align none``)."""
    from core.algorithms import get_fusion
    from core.multi_focus_fusion import MultiFocusFusion
    from utils.weights import weights_path

    spec = get_fusion(name)
    kwargs = {}
    if spec.weights:
        path = weights_path(os.path.basename(spec.weights))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"openfocus weights not bundled: {path}")
        kwargs["model_path"] = path
    fusion = MultiFocusFusion(algorithm=name, use_gpu=device != "cpu")

    def fuse(stack: np.ndarray) -> np.ndarray:
        frames = [np.ascontiguousarray(p[..., ::-1]) for p in stack]  # openfocus works in BGR
        out = fusion.fuse(input_source=frames, img_resize=None, thread_count=0, **kwargs)
        out = np.asarray(out)
        if out.dtype != np.uint8:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, -1)
        return np.ascontiguousarray(out[..., 2::-1])

    return fuse


def _focusweave(name: str, device: str) -> Fuse:
    from focusweave import FocusStackConfig, run

    def fuse(stack: np.ndarray) -> np.ndarray:
        cfg = FocusStackConfig(images=[np.ascontiguousarray(p) for p in stack], no_align=True,
                               keep_size=True)
        return np.asarray(run(cfg).image)

    return fuse


def _zstackr(name: str, device: str) -> Fuse:
    """z-stackr's in-RAM path, as its README documents it (``stack_arrays``). Written from its
    sdist's source and README: the package builds only where cargo can reach crates.io, so this
    adapter has not run on the machine the committed tables come from."""
    import zstackr

    settings = zstackr.PyStackingSettings()
    settings.alignment_mode = "None"  # inputs are aligned: registration off, as for every method
    settings.crop_to_common_area = False  # keep the input's frame so outputs compare pixelwise

    def fuse(stack: np.ndarray) -> np.ndarray:
        out = zstackr.stack_arrays([np.ascontiguousarray(p) for p in stack], settings, mode=name)
        return np.asarray(out)

    return fuse


FAMILIES: dict[str, tuple[tuple[str, ...], Callable[[str, str], Fuse]]] = {
    "ours": (OURS, _ours),
    "openfocus": (OPENFOCUS, _openfocus),
    "focusweave": (FOCUSWEAVE, _focusweave),
    "zstackr": (ZSTACKR, _zstackr),
}


def make_method(method: str, device: str = "cpu") -> Fuse:
    family, _, name = method.partition(":")
    if family not in FAMILIES or name not in FAMILIES[family][0]:
        raise ValueError(f"unknown method {method!r}")
    return FAMILIES[family][1](name, device)


def available() -> dict[str, str]:
    """Every method -> "ok" if its package imports here, else the reason it cannot run."""
    probes = {"ours": "napari_vaeedof", "openfocus": "core.multi_focus_fusion",
              "focusweave": "focusweave", "zstackr": "zstackr"}
    out = {}
    for family, (names, _) in FAMILIES.items():
        try:
            __import__(probes[family])
            status = "ok"
        except Exception as exc:  # any import failure is a reason to report
            status = f"{type(exc).__name__}: {exc}"
        for name in names:
            out[f"{family}:{name}"] = status
    return out


# ----------------------------------------------------------------------------- the job


def peak_rss_mib() -> float:
    """This process's peak resident set: VmHWM (Linux; per process image, so unlike ru_maxrss it
    does not inherit the parent's peak across fork + exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_gpu_mib(device: str) -> float | None:
    """Peak GPU memory torch allocated in this process (MiB) on a CUDA ``device``, else None
    (a method that does not use torch on the GPU does not import it)."""
    torch = sys.modules.get("torch")
    if not device.startswith("cuda") or torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def _set_threads(threads: int) -> None:
    """Limit torch's threads when asked (0: leave every library its default, all cores); torch
    is not imported for methods that do not use it, so it does not weigh on their peak RSS."""
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def run_job(job: dict) -> dict:
    method, device = job["method"], job.get("device", "cpu")
    repeats = max(1, int(job.get("repeats", 1)))
    budget = float(job.get("repeat_budget_s", 0) or 0)  # stop repeating once this is spent
    t0 = time.perf_counter()
    fuse = make_method(method, device)
    _set_threads(int(job.get("threads", 0)))
    items = []
    for k, item in enumerate(job["items"]):
        stack = np.load(item["stack"])
        if k == 0 and job.get("warmup", True):  # load models, warm caches: not timed
            try:
                fuse(np.ascontiguousarray(stack[:2, :128, :128]))
            except Exception:
                pass  # a method that refuses a tiny input still runs on the real one below
        seconds = []
        out = None
        for _ in range(repeats):
            t = time.perf_counter()
            out = fuse(stack)
            seconds.append(time.perf_counter() - t)
            if budget and sum(seconds) >= budget:
                break
        out = np.asarray(out)
        if out.shape != stack.shape[1:] or out.dtype != np.uint8:
            raise ValueError(f"{method}: got {out.shape} {out.dtype}, want {stack.shape[1:]} uint8")
        if item.get("out"):
            np.save(item["out"], out)
        items.append({"stack": item["stack"], "seconds": seconds})
    return {"method": method, "device": device, "items": items,
            "total_seconds": time.perf_counter() - t0,
            "max_rss_mib": peak_rss_mib(), "max_gpu_mib": peak_gpu_mib(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true", help="print the methods this Python can run")
    p.add_argument("--job", type=Path, help="job JSON")
    p.add_argument("--result", type=Path, help="result JSON (default: stdout)")
    args = p.parse_args(argv)
    if args.list:
        print(json.dumps(available(), indent=1))
        return 0
    if args.job is None:
        p.error("--job is required unless --list")
    job = json.loads(args.job.read_text())
    try:
        result = run_job(job)
        rc = 0
    except Exception as exc:
        result = {"method": job.get("method"), "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
        rc = 1
    text = json.dumps(result, indent=1)
    if args.result:
        args.result.write_text(text)
    else:
        print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
