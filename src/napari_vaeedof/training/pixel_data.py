"""Training data of the selection head: synthetic stacks with their pixels, per-plane "good"
masks (plane within tolerance of the ground truth), latents and the latent fusion's decoded
image, prepared once by the frozen TAEF2 and the shipped Fusion U-Net and cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.synth import add_sensor_noise, make_stack
from ..engine.fusion import Models, fuse_latents
from .loop import cache_shards

SHARD = 50
#: A plane "holds" a pixel when it is within this of the ground truth (max over colour), as in
#: the evaluation's hard-pixel definition.
GOOD_TOL = 2 / 255


def prepare_stack(models: Models, seed: int, size: int) -> dict[str, torch.Tensor]:
    """One stack: noisy planes, good masks from the noise-free rendering, latents, decoded fusion.

    Tensors: planes (Z, 3, H, W) f16, good (Z, H, W) bool, latents (Z, C, h, w) f16,
    decoded (3, H, W) f16, truth (3, H, W) f16.
    """
    st = make_stack(seed, size=size, noise=False, shuffle=True)
    # The same noise model as make_stack(noise=True), drawn on one channel for gray scenes.
    base = st.planes[..., :1] if st.gray else st.planes
    noisy = add_sensor_noise(np.random.default_rng([seed, 1]), base)
    if st.gray:
        noisy = np.repeat(noisy, 3, axis=-1)
    good = np.abs(st.planes - st.ground_truth[None]).max(-1) <= GOOD_TOL
    x = torch.from_numpy(np.ascontiguousarray(noisy)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        latents = models.ae.encode(x.to(models.device, models.dtype))
        fused, _ = fuse_latents(latents, models.unet)
        decoded = models.ae.decode(fused[None])[0].float().clamp(0, 1)
    return {
        "planes": x.half(),
        "good": torch.from_numpy(good),
        "latents": latents.half().cpu(),
        "decoded": decoded.half().cpu(),
        "truth": torch.from_numpy(st.ground_truth).permute(2, 0, 1).half(),
    }


def build_pixel_cache(models: Models, out: Path, first_seed: int, n_stacks: int, size: int,
                      log=print) -> list[Path]:
    """Prepare stacks ``first_seed .. first_seed + n_stacks`` in shards; skip finished shards."""
    return cache_shards(out, "pixels_", f"_{size}", first_seed, n_stacks, SHARD,
                        lambda seeds: {"stacks": [prepare_stack(models, s, size) for s in seeds]},
                        log)


class PixelStacks:
    """All prepared stacks in memory; draws aligned random crops (image crop a multiple of 8)."""

    def __init__(self, paths: list[Path]):
        self.stacks: list[dict[str, torch.Tensor]] = []
        for p in paths:
            self.stacks.extend(torch.load(p, weights_only=True)["stacks"])

    def __len__(self) -> int:
        return len(self.stacks)

    def sample(self, rng: np.random.Generator, crop: int) -> dict[str, torch.Tensor]:
        """One stack, all its planes in random order (the decoded fusion saw all of them),
        cropped to ``crop`` pixels at a latent-aligned position; float32 except ``good``."""
        s = self.stacks[int(rng.integers(len(self)))]
        order = rng.permutation(s["planes"].shape[0])
        h, w = s["truth"].shape[-2:]
        y0 = int(rng.integers(0, (h - crop) // 8 + 1)) * 8
        x0 = int(rng.integers(0, (w - crop) // 8 + 1)) * 8
        pix = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        lat = (slice(y0 // 8, (y0 + crop) // 8), slice(x0 // 8, (x0 + crop) // 8))
        idx = torch.from_numpy(order)
        return {
            "planes": s["planes"][idx][(..., *pix)].float(),
            "good": s["good"][idx][(..., *pix)],
            "latents": s["latents"][idx][(..., *lat)].float(),
            "decoded": s["decoded"][(..., *pix)].float(),
            "truth": s["truth"][(..., *pix)].float(),
        }
