"""The runtime around the pure fusion code: device and precision choice, weight loading and
hashing, and the model cache. The API calls this module; `fusion` stays free of file I/O.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.fusion_unet import load_unet
from ..models.selection_net import load_selection
from ..models.tiny_ae import load_taef2
from ..models.weights import (
    SELECTION_NET_FILE,
    WeightsError,
    fusion_unet_path,
    selection_net_path,
    sha256_of,
    weight_path,
)
from .fusion import Models, fuse_tile
from .stack import Normalization


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use 'cpu'.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was asked for but MPS is not available; use 'cpu'.")
    return dev


def available_devices() -> list[str]:
    """Devices that exist on this machine, best first."""
    devs = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devs.append("mps")
    return [*devs, "cpu"]


@functools.cache
def _cpu_flags() -> str:
    """The CPU feature flags (Linux /proc/cpuinfo), or "" where they cannot be read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX), read on Linux."""
    return "avx512_bf16" in _cpu_flags() or "amx_bf16" in _cpu_flags()


def cpu_has_fp16() -> bool:
    """True on CPUs with native float16 arithmetic (AVX512-FP16 or AMX-FP16), read on Linux."""
    return "avx512_fp16" in _cpu_flags() or "amx_fp16" in _cpu_flags()


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'auto': float16 on a GPU; on the CPU bfloat16 where it is native, else float32.

    Measured on an AMD EPYC with avx512_bf16 (6 synthetic 256 px stacks): bfloat16 fused 1.8x
    faster than float32 and 0.02 dB lower in PSNR.
    """
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if precision == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if precision not in table:
        raise ValueError(f"precision must be 'auto' or one of {sorted(table)}, got {precision!r}")
    return table[precision]


@functools.lru_cache(maxsize=4)
def _load_models_cached(device: str, dtype: torch.dtype, unet_file: str, selection_file: str,
                        stamp: tuple) -> Models:
    enc, dec = weight_path("taef2_encoder"), weight_path("taef2_decoder")
    # Channels-last weights: oneDNN's convolutions run faster on them. 7 x 512 px RGB, pixel
    # mode with the error map, bfloat16 on the 2-core CPU (`python benchmarks/speed.py
    # --planes 7 --sizes --methods ours:vaeedof_error openfocus:stackmffv3 --repeats 2`):
    # 3.05 -> 2.75 s (StackMFF V3 1.92 / 1.87 s in the same runs); the image within 1 grey
    # level of the contiguous weights' (max 1, mean 0.0001 on one such stack).
    ae = load_taef2(enc, dec, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    unet = load_unet(unet_file, device=device, dtype=dtype).to(
        memory_format=torch.channels_last)
    hashes = {
        "taef2_encoder": sha256_of(enc),
        "taef2_decoder": sha256_of(dec),
        "fusion_unet": sha256_of(Path(unet_file)),
    }
    selection = None
    if selection_file:
        # The head is small and its softmax/guided filter want range: always float32.
        selection = load_selection(selection_file, device=device, dtype=torch.float32)
        hashes["selection_net"] = sha256_of(Path(selection_file))
    return Models(ae, unet, selection, torch.device(device), dtype, hashes)


def load_models(device: str | torch.device = "auto", precision: str = "auto",
                unet_path: str | os.PathLike | None = None,
                selection_path: str | os.PathLike | None = None) -> Models:
    """TAEF2 (from the registry), a Fusion U-Net and a selection head (the packaged ones by
    default; the head only if its file exists), cached."""
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    path = Path(unet_path) if unet_path is not None else fusion_unet_path()
    if selection_path is not None:
        sel = Path(selection_path)
    elif SELECTION_NET_FILE.exists():
        sel = selection_net_path()  # verified: a damaged file is an error, not a silent skip
    else:
        sel = SELECTION_NET_FILE
    sel_file = str(sel) if sel.is_file() or selection_path is not None else ""
    stamps = [(p.stat().st_size, p.stat().st_mtime_ns) for p in (path, sel) if p.is_file()]
    stamp = (*stamps, os.environ.get("VAEEDOF_WEIGHTS_DIR"))
    return _load_models_cached(str(dev), dtype, str(path), sel_file, stamp)


def require_selection(mode: str, models: Models) -> None:
    """In pixel mode, the registry's WeightsError (what to do) when the models have no selection
    head; `fusion.check_mode` does the rest of the checking."""
    if mode == "pixel" and models.selection is None:
        selection_net_path()  # raises WeightsError with what to do


@dataclass(frozen=True)
class ModelSpec:
    """Which networks a fusion uses, small and picklable: what tile tasks carry instead of the
    loaded networks, so that each process (a dask worker, a process pool) loads them once, from
    its own weights, into `load_models`'s cache, and checks they are the planned ones.

    The weight files are named as the caller gave them (None: the packaged / registry ones, as
    each process resolves them); ``hashes`` are the sha256 of the files the plan used.
    """

    device: str
    precision: str
    unet_path: str | None
    selection_path: str | None
    hashes: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, models: Models, unet_path=None, selection_path=None) -> ModelSpec:
        """The spec that loads `models` again (loaded with these weight arguments)."""
        return cls(str(models.device), str(models.dtype).removeprefix("torch."),
                   None if unet_path is None else str(unet_path),
                   None if selection_path is None else str(selection_path),
                   tuple(sorted(models.hashes.items())))

    def load(self) -> Models:
        """The networks, from this process's cache; WeightsError if this process's weight
        files are not the ones the fusion was planned with."""
        models = load_models(self.device, self.precision, self.unet_path, self.selection_path)
        if tuple(sorted(models.hashes.items())) != self.hashes:
            differ = sorted(k for k, v in self.hashes if models.hashes.get(k) != v)
            raise WeightsError(
                f"The weights found in this process ({', '.join(differ)}) are not the ones the "
                f"fusion was planned with; give every dask worker the same napari-vaeedof "
                f"version and VAEEDOF_WEIGHTS_DIR as the client.")
        return models


def fuse_tile_task(tile: np.ndarray, norm: Normalization, rgb: bool, spec: ModelSpec,
                   **options) -> np.ndarray:
    """`fusion.fuse_tile` with the networks named by `spec` (loaded once per process): the
    function the tile graph's tasks call. ``options`` as in `fuse_tile`."""
    return fuse_tile(tile, norm, rgb, spec.load(), **options)
