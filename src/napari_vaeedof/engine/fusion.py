"""Latent fusion of one tile: encode planes, fuse groups of 7 level by level, decode, error map.

Everything here works on torch tensors or numpy arrays of one tile; tiling and dtype handling
live in `tiling` and `stack`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fusion_unet import FusionUNet, load_unet
from ..models.tiny_ae import TinyAutoEncoder, load_taef2
from ..models.weights import fusion_unet_path, sha256_of, weight_path

GROUP = 7
#: Spatial multiple the models need: 8 for the VAE times 4 for the U-Net's two downsamplings.
MULTIPLE = 32


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
def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX), read on Linux."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


@dataclass(frozen=True)
class Models:
    """The frozen VAE and the Fusion U-Net on one device, with their provenance."""

    ae: TinyAutoEncoder
    unet: FusionUNet
    device: torch.device
    dtype: torch.dtype
    hashes: dict[str, str]


@functools.lru_cache(maxsize=4)
def _load_models_cached(device: str, dtype: torch.dtype, unet_file: str, stamp: tuple) -> Models:
    enc, dec = weight_path("taef2_encoder"), weight_path("taef2_decoder")
    ae = load_taef2(enc, dec, device=device, dtype=dtype)
    unet = load_unet(unet_file, device=device, dtype=dtype)
    hashes = {
        "taef2_encoder": sha256_of(enc),
        "taef2_decoder": sha256_of(dec),
        "fusion_unet": sha256_of(Path(unet_file)),
    }
    return Models(ae, unet, torch.device(device), dtype, hashes)


def load_models(device: str | torch.device = "auto", precision: str = "auto",
                unet_path: str | os.PathLike | None = None) -> Models:
    """TAEF2 (from the registry) and a Fusion U-Net (the packaged one by default), cached."""
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    path = Path(unet_path) if unet_path is not None else fusion_unet_path()
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, os.environ.get("VAEEDOF_WEIGHTS_DIR"))
    return _load_models_cached(str(dev), dtype, str(path), stamp)


def group_levels(n: int, group: int = GROUP) -> list[list[list[int]]]:
    """Hierarchical grouping: per level, contiguous groups of indices into that level's inputs."""
    levels = []
    while n > 1:
        groups = [list(range(s, min(s + group, n))) for s in range(0, n, group)]
        levels.append(groups)
        n = len(groups)
    return levels


def unet_calls(n: int, group: int = GROUP) -> int:
    """Number of group fusions for n planes (a group of one passes through unfused)."""
    return sum(len(g) > 1 for level in group_levels(n, group) for g in level)


def pad_group(indices: list[int], group: int = GROUP) -> list[int]:
    """A short group padded to ``group`` entries by repeating its planes in order."""
    return [indices[i % len(indices)] for i in range(group)]


def fuse_latents(latents: torch.Tensor, unet: FusionUNet) -> tuple[torch.Tensor, int]:
    """(N, C, h, w) latents -> ((C, h, w) fused latent, number of group fusions run)."""
    n_in = unet.config.n_inputs
    calls = 0
    for groups in group_levels(latents.shape[0], n_in):
        fusable = [g for g in groups if len(g) > 1]
        fused = {}
        if fusable:
            batch = torch.stack([latents[pad_group(g, n_in)].flatten(0, 1) for g in fusable])
            out = unet(batch)
            calls += len(fusable)
            fused = {g[0]: out[k] for k, g in enumerate(fusable)}
        latents = torch.stack([fused[g[0]] if len(g) > 1 else latents[g[0]] for g in groups])
    return latents[0], calls


def sharpness(planes: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """(Z, 3, H, W) -> (Z, H, W) local energy of the Laplacian of luminance, box-smoothed."""
    lum = planes.float().mean(1, keepdim=True)
    kernel = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=lum.dtype, device=lum.device)
    lap = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), kernel[None, None])
    size = 2 * radius + 1
    return F.avg_pool2d(lap.square(), size, stride=1, padding=radius,
                        count_include_pad=False)[:, 0]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def _batched(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@torch.inference_mode()
def fuse_planes(planes: torch.Tensor, models: Models, *, error_map: bool = True,
                batch: int = 8) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(Z, 3, H, W) RGB in [0, 1] -> fused (3, H, W) and error map (H, W) in the same units."""
    x, (h, w) = _pad_to_multiple(planes.to(models.device, models.dtype), MULTIPLE)
    latents = _batched(models.ae.encode, x, batch)
    fused, _ = fuse_latents(latents, models.unet)
    image = models.ae.decode(fused[None])[0, :, :h, :w].float()
    if not error_map:
        return image, None
    recon = _batched(models.ae.decode, latents, batch)[..., :h, :w].float()
    x = x[..., :h, :w].float()
    err = (x - recon).abs().mean(1)
    s = sharpness(x) + 1e-8
    error = (err * s).sum(0) / s.sum(0)
    return image, error


def fuse_tile(tile: np.ndarray, lo: np.ndarray, scale: np.ndarray, rgb: bool, models: Models,
              *, error_map: bool = True, batch: int = 8) -> np.ndarray:
    """Raw (Z, h, w, C) tile -> (h, w, C + E) float32: normalised fused channels, then E error
    channels (E = 1 for RGB, C otherwise), each channel or RGB triple fused as one unit."""
    x = (np.asarray(tile, np.float32) - lo.astype(np.float32)) / scale.astype(np.float32)
    t = torch.from_numpy(np.clip(x, 0, 1)).permute(0, 3, 1, 2)  # (Z, C, h, w)
    units = [t] if rgb else [t[:, c : c + 1].expand(-1, 3, -1, -1) for c in range(t.shape[1])]
    images, errors = [], []
    for unit in units:
        image, error = fuse_planes(unit, models, error_map=error_map, batch=batch)
        images.append(image if rgb else image.mean(0, keepdim=True))
        if error is not None:
            errors.append(error[None])
    out = torch.cat(images + errors).permute(1, 2, 0)
    return out.cpu().numpy().astype(np.float32)
