"""The Fusion U-Net: the latents of N planes concatenated on channels -> one fused latent.

Three down and three up residual stages with skip connections, self-attention in the middle
(lower-resolution) stages. The output is a per-pixel soft selection over the input latents plus
a learned residual, so an untrained network starts from the mean latent and training only has to
learn where to look and what to fill in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .serialize import load_module, read_metadata, save_module


@dataclass(frozen=True)
class UNetConfig:
    latent_channels: int = 32
    n_inputs: int = 7
    widths: tuple[int, int, int] = (64, 128, 192)
    attention: tuple[bool, bool, bool] = (False, True, True)
    heads: int = 4
    groups: int = 8

    @property
    def multiple(self) -> int:
        """Latent spatial sizes must be a multiple of this (two 2x downsamplings)."""
        return 2 ** (len(self.widths) - 1)


class ResBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, n_in), nn.SiLU(), nn.Conv2d(n_in, n_out, 3, padding=1),
            nn.GroupNorm(groups, n_out), nn.SiLU(), nn.Conv2d(n_out, n_out, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class SelfAttention(nn.Module):
    def __init__(self, n: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, n)
        self.qkv = nn.Conv2d(n, 3 * n, 1)
        self.out = nn.Conv2d(n, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                           v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Stage(nn.Module):
    """One residual stage, with self-attention where configured."""

    def __init__(self, n_in: int, n_out: int, attention: bool, heads: int, groups: int):
        super().__init__()
        self.res = ResBlock(n_in, n_out, groups)
        self.attn = SelfAttention(n_out, heads, groups) if attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.res(x))


class FusionUNet(nn.Module):
    """(B, N*C, h, w) latents of N planes -> (B, C, h, w) fused latent."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        w, a, g, nh = cfg.widths, cfg.attention, cfg.groups, cfg.heads
        self.stem = nn.Conv2d(cfg.n_inputs * cfg.latent_channels, w[0], 3, padding=1)
        self.down = nn.ModuleList(
            [Stage(w[max(i - 1, 0)], w[i], a[i], nh, g) for i in range(3)]
        )
        self.pool = nn.ModuleList([nn.Conv2d(w[i], w[i], 3, stride=2, padding=1) for i in range(2)])
        self.mid = Stage(w[2], w[2], True, nh, g)
        self.up = nn.ModuleList([Stage(2 * w[i], w[max(i - 1, 0)], a[i], nh, g) for i in range(3)])
        self.norm = nn.GroupNorm(g, w[0])
        self.select = nn.Conv2d(w[0], cfg.n_inputs, 3, padding=1)
        self.residual = nn.Conv2d(w[0], cfg.latent_channels, 3, padding=1)
        for head in (self.select, self.residual):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, _, h, w = latents.shape
        x = self.stem(latents)
        skips = []
        for i, stage in enumerate(self.down):
            x = stage(x)
            skips.append(x)
            if i < 2:
                x = self.pool[i](x)
        x = self.mid(x)
        for i in reversed(range(3)):
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.silu(self.norm(x))
        weights = torch.softmax(self.select(x).float(), dim=1).to(latents.dtype)
        planes = latents.reshape(b, cfg.n_inputs, cfg.latent_channels, h, w)
        return (weights.unsqueeze(2) * planes).sum(1) + self.residual(x)


def save_unet(model: FusionUNet, path: str | Path, metadata: dict[str, str] | None = None,
              dtype: torch.dtype = torch.float16) -> None:
    """Write weights as safetensors with the config (and any provenance) in the header."""
    save_module(model, asdict(model.config), path, metadata, dtype)


def load_unet(path: str | Path, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> FusionUNet:
    """Read a safetensors file written by `save_unet`; strict, eval mode, frozen."""
    cfg = json.loads(read_metadata(path)["config"])
    config = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    return load_module(FusionUNet(config), path, device, dtype)


__all__ = ["FusionUNet", "UNetConfig", "load_unet", "read_metadata", "save_unet"]
