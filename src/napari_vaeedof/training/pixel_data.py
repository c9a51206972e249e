"""Training data of the selection head: synthetic stacks with their pixels, per-plane "good"
masks (plane within tolerance of the ground truth), latents and the latent fusion's decoded
image, prepared once by the frozen TAEF2 and the shipped Fusion U-Net and cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.families import make_family_stack
from ..data.synth import add_sensor_noise, make_stack
from ..engine.fusion import Models, fuse_latents
from .loop import cache_shards, worker_pool

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
    return _prepared(models, noisy, st.planes, st.ground_truth, latents=True)


def _prepared(models: Models, planes: np.ndarray, clean: np.ndarray, truth: np.ndarray,
              latents: bool) -> dict[str, torch.Tensor]:
    """The prepared record of (Z, H, W, 3) input ``planes``, their noise-free rendering
    ``clean`` (for the good masks) and the (H, W, 3) truth: the shipped U-Net's decoded fusion
    of the planes, and their latents when ``latents``."""
    good = np.abs(clean - truth[None]).max(-1) <= GOOD_TOL
    x = torch.from_numpy(np.ascontiguousarray(planes)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        z = models.ae.encode(x.to(models.device, models.dtype))
        fused, _ = fuse_latents(z, models.unet)
        decoded = models.ae.decode(fused[None])[0].float().clamp(0, 1)
    out = {"planes": x.half(), "good": torch.from_numpy(good)}
    if latents:
        out["latents"] = z.half().cpu()
    return {**out, "decoded": decoded.half().cpu(),
            "truth": torch.from_numpy(truth).permute(2, 0, 1).half()}


def prepare_family_stack(models: Models, family: str, seed: int, size: int,
                         noisy_share: float = 0.5, max_planes: int = 12
                         ) -> dict[str, torch.Tensor]:
    """One stack of a physics family (`data.families`), as `prepare_stack` but without latents
    (a head of kind "bands" does not read them): 2 to ``max_planes`` planes (log-uniform),
    sensor noise on a ``noisy_share`` of the seeds, good masks from the same scene rendered
    noise-free."""
    return _prepared(models, *family_arrays(family, seed, size, noisy_share, max_planes),
                     latents=False)


def family_arrays(family: str, seed: int, size: int, noisy_share: float = 0.5,
                  max_planes: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generated part of `prepare_family_stack` (no networks; a worker process can run
    it): the input planes, the same planes noise-free, the truth."""
    rng = np.random.default_rng([seed, 11])
    n = round(float(np.exp(rng.uniform(np.log(2), np.log(max_planes)))))
    noisy = bool(rng.random() < noisy_share)
    st = make_family_stack(family, seed, size=size, n_planes=n, noise=noisy)
    clean = st if not noisy else make_family_stack(family, seed, size=size, n_planes=n,
                                                   noise=False)
    return st.planes, clean.planes, st.ground_truth


def _family_arrays(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return family_arrays(*args)


def build_pixel_cache(models: Models, out: Path, first_seed: int, n_stacks: int, size: int,
                      log=print, family: str | None = None, noisy_share: float = 0.5,
                      max_planes: int = 12, workers: int = 1) -> list[Path]:
    """Prepare stacks ``first_seed .. first_seed + n_stacks`` in shards (of `family` with
    `prepare_family_stack` when given, else `prepare_stack`); skip finished shards. With
    ``workers`` > 1 a family's stacks are generated in that many processes (the networks stay
    in this one, on their device); the cache is the same either way."""
    if family is None:
        def shard(seeds):
            return {"stacks": [prepare_stack(models, s, size) for s in seeds]}
    else:
        def shard(seeds):
            args = [(family, s, size, noisy_share, max_planes) for s in seeds]
            arrays = pool.map(_family_arrays, args) if pool else map(_family_arrays, args)
            return {"stacks": [_prepared(models, *a, latents=False) for a in arrays]}
    tag = "" if family is None else f"{family}_"
    with worker_pool(workers if family is not None else 1) as pool:
        return cache_shards(out, f"pixels_{tag}", f"_{size}", first_seed, n_stacks, SHARD,
                            shard, log)


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
        cropped to ``crop`` pixels at a latent-aligned position; float32 except ``good``;
        "latents" only where the stack has them."""
        s = self.stacks[int(rng.integers(len(self)))]
        order = rng.permutation(s["planes"].shape[0])
        h, w = s["truth"].shape[-2:]
        y0 = int(rng.integers(0, (h - crop) // 8 + 1)) * 8
        x0 = int(rng.integers(0, (w - crop) // 8 + 1)) * 8
        pix = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        lat = (slice(y0 // 8, (y0 + crop) // 8), slice(x0 // 8, (x0 + crop) // 8))
        idx = torch.from_numpy(order)
        out = {
            "planes": s["planes"][idx][(..., *pix)].float(),
            "good": s["good"][idx][(..., *pix)],
            "decoded": s["decoded"][(..., *pix)].float(),
            "truth": s["truth"][(..., *pix)].float(),
        }
        if "latents" in s:
            out["latents"] = s["latents"][idx][(..., *lat)].float()
        return out
