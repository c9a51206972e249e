"""Synthetic stacks encoded once by the frozen TAEF2 encoder, cached on disk as latents."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.families import make_family_stack
from ..data.synth import make_stack
from ..engine.fusion import pad_group
from ..models.tiny_ae import TinyAutoEncoder

SHARD = 100


def encode_stack(ae: TinyAutoEncoder, planes: np.ndarray, truth: np.ndarray,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z, H, W, 3) planes, (H, W, 3) truth in [0, 1] -> float16 latents (Z, C, h, w), (C, h, w)."""
    x = torch.from_numpy(np.concatenate([planes, truth[None]])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        z = ae.encode(x.to(dtype)).to(torch.float16)
    return z[:-1].clone(), z[-1].clone()


def training_stack(family: str | None, seed: int, size: int, noisy_share: float = 0.5):
    """Stack `seed` of the training data: `synth.make_stack` (shuffled, noisy) when `family` is
    None, else `make_family_stack` of that family, with sensor noise on a `noisy_share` of the
    seeds (drawn from the seed, so a cache rebuilds identically)."""
    if family is None:
        return make_stack(seed, size=size, shuffle=True)
    noisy = np.random.default_rng([seed, 7]).random() < noisy_share
    return make_family_stack(family, seed, size=size, noise=bool(noisy))


def build_cache(ae: TinyAutoEncoder, out: Path, first_seed: int, n_stacks: int, size: int,
                dtype: torch.dtype = torch.float32, log=print, family: str | None = None,
                noisy_share: float = 0.5) -> list[Path]:
    """Generate and encode stacks ``first_seed .. first_seed + n_stacks`` (of `family`, see
    `training_stack`); skip finished shards."""
    out.mkdir(parents=True, exist_ok=True)
    enc = ae.to(dtype)
    paths = []
    tag = "" if family is None else f"{family}_"
    for s0 in range(first_seed, first_seed + n_stacks, SHARD):
        seeds = list(range(s0, min(s0 + SHARD, first_seed + n_stacks)))
        path = out / f"shard_{tag}{s0:07d}_{len(seeds)}_{size}.pt"
        paths.append(path)
        if path.exists():
            continue
        t0 = time.perf_counter()
        planes, truths = [], []
        for seed in seeds:
            st = training_stack(family, seed, size, noisy_share)
            p, t = encode_stack(enc, st.planes, st.ground_truth, dtype)
            planes.append(p)
            truths.append(t)
        tmp = path.with_suffix(".tmp")
        torch.save({"seeds": seeds, "planes": planes, "truth": torch.stack(truths)}, tmp)
        tmp.replace(path)
        log(f"cached {path.name}: {len(seeds)} stacks in {time.perf_counter() - t0:.1f} s")
    ae.float()
    return paths


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
