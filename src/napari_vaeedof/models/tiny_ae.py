"""TAESD-family tiny autoencoder (encoder and decoder), with the TAEF2 variant.

Structure follows madebyollin/taesd so that the published state_dicts load strictly.
"""

from __future__ import annotations

import torch
from torch import nn


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3] before decoding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """conv-ReLU-conv-ReLU-conv plus identity, then ReLU; `pooled` adds the TAEF2 pre-branch."""

    def __init__(self, n: int = 64, pooled: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.fuse = nn.ReLU()
        if pooled:
            self.pool = nn.Sequential(
                nn.Conv2d(n, 4 * n, 1, bias=False),
                nn.GroupNorm(4, 4 * n),
                nn.ReLU(),
                nn.Conv2d(4 * n, n, 1, bias=False),
            )
        else:
            self.pool = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def Encoder(latent_channels: int = 32, pooled_low_res: bool = True) -> nn.Sequential:
    """RGB in [0, 1], (B, 3, H, W) -> latents (B, latent_channels, H/8, W/8)."""
    low = pooled_low_res
    return nn.Sequential(
        conv(3, 64), Block(),
        conv(64, 64, stride=2, bias=False), Block(), Block(), Block(),
        conv(64, 64, stride=2, bias=False), Block(), Block(), Block(),
        conv(64, 64, stride=2, bias=False), Block(pooled=low), Block(pooled=low), Block(pooled=low),
        conv(64, latent_channels),
    )  # fmt: skip


def Decoder(latent_channels: int = 32, pooled_low_res: bool = True) -> nn.Sequential:
    """Latents (B, latent_channels, h, w) -> RGB (B, 3, 8h, 8w), roughly in [0, 1]."""
    low = pooled_low_res
    return nn.Sequential(
        Clamp(), conv(latent_channels, 64), nn.ReLU(),
        Block(pooled=low), Block(pooled=low), Block(pooled=low),
        nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        Block(), Block(), Block(), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        Block(), Block(), Block(), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        Block(), conv(64, 3),
    )  # fmt: skip


class TinyAutoEncoder(nn.Module):
    """Frozen encoder/decoder pair; images are RGB in [0, 1], spatial sizes multiples of 8."""

    scale = 8

    def __init__(self, latent_channels: int = 32, pooled_low_res: bool = True):
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = Encoder(latent_channels, pooled_low_res)
        self.decoder = Decoder(latent_channels, pooled_low_res)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def load_taef2(encoder_path, decoder_path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> TinyAutoEncoder:
    """Build the TAEF2 variant and load its two state_dicts strictly; frozen, in eval mode."""
    ae = TinyAutoEncoder(latent_channels=32, pooled_low_res=True)
    ae.encoder.load_state_dict(torch.load(encoder_path, map_location="cpu", weights_only=True))
    ae.decoder.load_state_dict(torch.load(decoder_path, map_location="cpu", weights_only=True))
    ae.requires_grad_(False)
    return ae.eval().to(device=device, dtype=dtype)
