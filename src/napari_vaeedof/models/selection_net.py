"""The selection head: per-plane selection logits and a fill logit at latent resolution.

A small network on per-plane inputs at the latent grid (1/8 resolution): of kind "latents", the
same TAEF2 latents as the Fusion U-Net plus each plane's local sharpness pooled to the grid; of
kind "bands", cheap band-energy and colour features of the planes alone
(`engine.compose.band_features`), so that the VAE runs only where the fill is used. It is
permutation-invariant over planes, as in deep sets:
every plane is processed by shared convolutions and exchanges information with the others only
through the mean and max over planes, so one network serves any number of planes without
grouping. Selection logits are per plane (softmax over planes); the fill logit says where no
plane holds the content and the decoded latent fusion should be used instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .serialize import load_module, read_metadata, save_module

#: The kinds of per-plane input a head is trained on (see the module docstring).
INPUTS = ("latents", "bands")


@dataclass(frozen=True)
class SelectionConfig:
    latent_channels: int = 32
    width: int = 48
    groups: int = 8
    inputs: str = "latents"
    band_channels: int = 8

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"selection head inputs must be one of {INPUTS}, got "
                             f"{self.inputs!r}")

    @property
    def in_channels(self) -> int:
        """Channels of the per-plane input: latents plus sharpness, or band features."""
        return self.latent_channels + 1 if self.inputs == "latents" else self.band_channels

    @property
    def multiple(self) -> int:
        """Latent spatial sizes must be a multiple of this (two 2x downsamplings)."""
        return 4


def _block(n_in: int, n_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.GroupNorm(groups, n_out),
                         nn.SiLU())


class Exchange(nn.Module):
    """Per-plane features (B, Z, C, h, w) -> the same, after mixing in the mean and max over Z."""

    def __init__(self, n: int, groups: int):
        super().__init__()
        self.mix = _block(3 * n, n, groups)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, z = f.shape[:2]
        ctx = torch.cat([f.mean(1), f.amax(1)], 1)
        x = torch.cat([f, ctx[:, None].expand(-1, z, -1, -1, -1)], 2)
        return f + self.mix(x.flatten(0, 1)).unflatten(0, (b, z))


class SelectionNet(nn.Module):
    """(B, Z, config.in_channels, h, w) per-plane inputs -> selection (B, Z, h, w) and fill
    (B, h, w) logits. ``detail`` is a learned scalar of the first composition (a full-resolution
    sharpness refinement); the band-by-band composition (`engine.compose.band_weights`) does
    not use it. It stays so that the shipped file, trained with it, loads strictly."""

    def __init__(self, config: SelectionConfig | None = None):
        super().__init__()
        cfg = self.config = config or SelectionConfig()
        n, g = cfg.width, cfg.groups
        self.stem = nn.Sequential(_block(cfg.in_channels, n, g), _block(n, n, g))
        self.ex0 = Exchange(n, g)
        self.down1 = _block(n, n, g)
        self.ex1 = Exchange(n, g)
        self.down2 = _block(n, n, g)
        self.ex2 = Exchange(n, g)
        self.up1 = _block(2 * n, n, g)
        self.up0 = _block(2 * n, n, g)
        self.ex3 = Exchange(n, g)
        self.score = nn.Conv2d(n, 1, 3, padding=1)
        self.fill = nn.Sequential(_block(3 * n, n, g), nn.Conv2d(n, 1, 3, padding=1))
        self.detail = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, z = x.shape[:2]

        def per_plane(layer, f):
            return layer(f.flatten(0, 1)).unflatten(0, (b, z))

        def pool(f):
            return F.avg_pool2d(f.flatten(0, 1), 2).unflatten(0, (b, z))

        def up(f):
            return F.interpolate(f.flatten(0, 1), scale_factor=2, mode="nearest").unflatten(
                0, (b, z))

        f0 = self.ex0(per_plane(self.stem, x))
        f1 = self.ex1(per_plane(self.down1, pool(f0)))
        f2 = self.ex2(per_plane(self.down2, pool(f1)))
        g1 = per_plane(self.up1, torch.cat([up(f2), f1], 2))
        g0 = self.ex3(per_plane(self.up0, torch.cat([up(g1), f0], 2)))
        logits = per_plane(self.score, g0)[:, :, 0]
        w = torch.softmax(logits.float(), 1).to(g0.dtype)
        pooled = torch.cat([g0.mean(1), g0.amax(1), (w[:, :, None] * g0).sum(1)], 1)
        return logits, self.fill(pooled)[:, 0]


def save_selection(model: SelectionNet, path: str | Path,
                   metadata: dict[str, str] | None = None,
                   dtype: torch.dtype = torch.float16) -> None:
    """Write weights as safetensors with the config (and any provenance) in the header."""
    save_module(model, asdict(model.config), path, metadata, dtype)


def load_selection(path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> SelectionNet:
    """Read a safetensors file written by `save_selection`; strict, eval mode, frozen."""
    config = SelectionConfig(**json.loads(read_metadata(path)["config"]))
    return load_module(SelectionNet(config), path, device, dtype)
