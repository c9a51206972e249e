"""Synthetic stacks encoded once by the frozen TAEF2 encoder, cached on disk as latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.families import make_family_stack
from ..data.synth import make_stack
from ..engine.fusion import pad_group
from ..models.tiny_ae import TinyAutoEncoder
from .loop import cache_shards, worker_pool

SHARD = 100


def encode_stack(ae: TinyAutoEncoder, planes: np.ndarray, truth: np.ndarray,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z, H, W, 3) planes, (H, W, 3) truth in [0, 1] -> float16 latents (Z, C, h, w), (C, h, w)
    on the CPU, encoded on the encoder's device."""
    x = torch.from_numpy(np.concatenate([planes, truth[None]])).permute(0, 3, 1, 2)
    device = next(ae.parameters()).device
    with torch.inference_mode():
        z = ae.encode(x.to(device, dtype)).to("cpu", torch.float16)
    return z[:-1].clone(), z[-1].clone()


def training_stack(family: str | None, seed: int, size: int, noisy_share: float = 0.5):
    """Stack `seed` of the training data: `synth.make_stack` (shuffled, noisy) when `family` is
    None, else `make_family_stack` of that family, with sensor noise on a `noisy_share` of the
    seeds (drawn from the seed, so a cache rebuilds identically)."""
    if family is None:
        return make_stack(seed, size=size, shuffle=True)
    noisy = np.random.default_rng([seed, 7]).random() < noisy_share
    return make_family_stack(family, seed, size=size, noise=bool(noisy))


def _stack_arrays(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """`training_stack`'s planes and truth, for a worker process."""
    st = training_stack(*args)
    return st.planes, st.ground_truth


def build_cache(ae: TinyAutoEncoder, out: Path, first_seed: int, n_stacks: int, size: int,
                dtype: torch.dtype = torch.float32, log=print, family: str | None = None,
                noisy_share: float = 0.5, workers: int = 1) -> list[Path]:
    """Generate and encode stacks ``first_seed .. first_seed + n_stacks`` (of `family`, see
    `training_stack`); skip finished shards. With ``workers`` > 1 the stacks are generated in
    that many processes (the encoder stays in this one, on its device); the cache is the same
    either way."""
    enc = ae.to(dtype)

    def prepare(seeds: list[int]) -> dict:
        args = [(family, seed, size, noisy_share) for seed in seeds]
        stacks = pool.map(_stack_arrays, args) if pool else map(_stack_arrays, args)
        planes, truths = [], []
        for stack, truth in stacks:
            p, t = encode_stack(enc, stack, truth, dtype)
            planes.append(p)
            truths.append(t)
        return {"planes": planes, "truth": torch.stack(truths)}

    tag = "" if family is None else f"{family}_"
    try:
        with worker_pool(workers) as pool:
            return cache_shards(out, f"shard_{tag}", f"_{size}", first_seed, n_stacks, SHARD,
                                prepare, log)
    finally:
        ae.float()


class LatentStacks:
    """All cached examples in memory; draws padded, cropped, plane-permuted training batches."""

    def __init__(self, paths: list[Path], n_inputs: int = 7):
        self.planes: list[torch.Tensor] = []
        truths = []
        for p in paths:
            shard = torch.load(p, weights_only=True)
            self.planes.extend(shard["planes"])
            truths.append(shard["truth"])
        self.truth = torch.cat(truths)
        self.n_inputs = n_inputs

    def __len__(self) -> int:
        return len(self.planes)

    def batch(self, rng: np.random.Generator, size: int, crop: int) -> tuple[torch.Tensor, ...]:
        """(B, N*C, crop, crop) padded input latents and (B, C, crop, crop) target latents."""
        xs, ys = [], []
        for i in rng.integers(0, len(self), size):
            planes, truth = self.planes[i], self.truth[i]
            # More planes than inputs: a random subset (spread over the stack's depth range).
            order = rng.permutation(planes.shape[0])[: self.n_inputs].tolist()
            h, w = truth.shape[-2:]
            y0, x0 = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            window = (slice(None), slice(y0, y0 + crop), slice(x0, x0 + crop))
            xs.append(planes[pad_group(order, self.n_inputs)][(slice(None), *window)].flatten(0, 1))
            ys.append(truth[window])
        return torch.stack(xs).float(), torch.stack(ys).float()
