"""Fusion of one tile: encode planes, fuse groups of 7 level by level, decode; in pixel mode
compose the planes' own pixels with the decoded fusion; depth, fill and error maps.

Everything here works on torch tensors or numpy arrays of one tile; tiling and dtype handling
live in `tiling` and `stack`. Pure: no file or network I/O and no weight registry (training
imports it without side effects); devices, precision, weights and the model cache live in
`runtime`, which builds the `Models` record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fusion_unet import FusionUNet
from ..models.selection_net import SelectionNet
from ..models.tiny_ae import TinyAutoEncoder
from .compose import (
    band_features,
    compose,
    departure,
    depth_and_confidence,
    pixel_blend,
    sharpness,
    sharpness_features,
)
from .options import DEFAULT_MODE, MODES, MULTIPLE
from .stack import Normalization

GROUP = 7


@dataclass(frozen=True)
class Models:
    """The frozen VAE, the Fusion U-Net and the selection head (None when not installed) on one
    device, with their provenance: a plain record, built by `runtime.load_models`."""

    ae: TinyAutoEncoder
    unet: FusionUNet
    selection: SelectionNet | None
    device: torch.device
    dtype: torch.dtype
    hashes: dict[str, str]

    def __reduce__(self):
        raise TypeError("Models hold loaded networks and are not pickled (a dask task would "
                        "carry them); pass runtime.ModelSpec.of(models) and load it there.")


def check_mode(mode: str, models: Models) -> None:
    """A clear error for an unknown mode, or pixel mode without the selection head (the API
    first asks `runtime.require_selection`, whose error says how to get the head)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "pixel" and models.selection is None:
        raise ValueError("mode='pixel' needs the selection head and these models have none "
                         "(runtime.load_models loads the packaged one); use mode='latent'.")


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


def fuse_latents(latents: torch.Tensor, unet: FusionUNet,
                 progress: Callable[[str, int], None] | None = None) -> tuple[torch.Tensor, int]:
    """(N, C, h, w) latents -> ((C, h, w) fused latent, number of group fusions run);
    ``progress("fuse", groups)`` is called after each U-Net call."""
    n_in = unet.config.n_inputs
    calls = 0
    for groups in group_levels(latents.shape[0], n_in):
        fusable = [g for g in groups if len(g) > 1]
        fused = {}
        if fusable:
            batch = torch.stack([latents[pad_group(g, n_in)].flatten(0, 1) for g in fusable])
            out = unet(batch)
            calls += len(fusable)
            if progress is not None:
                progress("fuse", len(fusable))
            fused = {g[0]: out[k] for k, g in enumerate(fusable)}
        latents = torch.stack([fused[g[0]] if len(g) > 1 else latents[g[0]] for g in groups])
    return latents[0], calls


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def _batched(fn, x: torch.Tensor, batch: int, progress: Callable[[str, int], None] | None = None,
             stage: str = "") -> torch.Tensor:
    """fn over batches of x; ``progress(stage, n)`` after each batch of n."""
    out = []
    for i in range(0, x.shape[0], batch):
        out.append(fn(x[i : i + batch]))
        if progress is not None:
            progress(stage, out[-1].shape[0])
    return torch.cat(out)


def head_inputs(kind: str, planes: torch.Tensor, latents: torch.Tensor | None = None
                ) -> torch.Tensor:
    """The selection head's input for (Z, 3, H, W) planes in [0, 1]: (1, Z, C, H/8, W/8).
    Kind "bands": `compose.band_features` of the planes alone; kind "latents": the planes'
    (Z, 32, H/8, W/8) TAEF2 latents and their `compose.sharpness_features`."""
    if kind == "bands":
        return band_features(planes)[None]
    if latents is None:
        raise ValueError("a selection head of kind 'latents' needs the planes' latents")
    return torch.cat([latents.float(), sharpness_features(planes)], 1)[None]


#: Where a head of kind "bands" asks for fill, the VAE runs on windows around it: blocks of
#: FILL_BLOCK px holding fill, grown by FILL_CONTEXT px of context on every side (the encoder
#: and the U-Net see the surroundings as they would in a whole tile). Where the windows would
#: cover more than FILL_WHOLE of the tile, the whole tile is encoded once instead.
#: 32 px of context rather than 64 (`python scripts/measure_fill_context.py
#: ../shared/data/stacks/algae_group`): on its central 1 MPx crop, fill on 5 % of the pixels,
#: the windows cover 0.66 of its 4 tiles instead of all of them, the fusion takes 21.4 s
#: instead of 33.0 s on one thread, and the image moves by 0.03 grey levels on the filled
#: pixels (at most 1.7). 16 px is the same as 32 (whole blocks of context).
FILL_BLOCK = 32
FILL_CONTEXT = 32
FILL_WHOLE = 0.5


def fill_windows(fill: torch.Tensor, block: int = FILL_BLOCK, context: int = FILL_CONTEXT
                 ) -> list[tuple[slice, slice]]:
    """(H, W) fill, H and W multiples of ``block`` -> windows (rows, cols) in px, multiples of
    ``block``, that together hold every pixel with fill above 0 plus ``context`` px around it:
    one per connected group of blocks (scipy.ndimage), the whole tile when they would cover
    more than FILL_WHOLE of it, none without fill."""
    from scipy import ndimage

    h, w = fill.shape
    used = (fill > 0).reshape(h // block, block, w // block, block).any(3).any(1).cpu().numpy()
    if not used.any():
        return []
    grown = ndimage.binary_dilation(used, iterations=-(-context // block))
    labels, _ = ndimage.label(grown)
    boxes = [(slice(r.start * block, r.stop * block), slice(c.start * block, c.stop * block))
             for r, c in ndimage.find_objects(labels)]
    area = sum((r.stop - r.start) * (c.stop - c.start) for r, c in boxes)
    return [(slice(0, h), slice(0, w))] if area > FILL_WHOLE * h * w else boxes


def output_maps(mode: str, error_map: bool) -> tuple[str, ...]:
    """The maps `fuse_tile` returns after the image, in order."""
    pixel = ("depth", "confidence", "fill") if mode == "pixel" else ()
    return (("error",) if error_map else ()) + pixel


@dataclass(frozen=True)
class TileChannels:
    """The channel layout of a tile's result (and of the blended output, which the tiles'
    results are blended into channel by channel): the C normalised image channels, then for
    each map of `maps` one channel per fusion unit (U units: 1 for RGB, else C, each channel
    being fused on its own). The one owner of packing (`pack`, in `fuse_tile`) and unpacking
    (`split`, in the API)."""

    channels: int
    units: int
    maps: tuple[str, ...]

    @classmethod
    def of(cls, channels: int, rgb: bool, mode: str, error_map: bool) -> TileChannels:
        return cls(channels, 1 if rgb else channels, output_maps(mode, error_map))

    @property
    def size(self) -> int:
        """Channels of a tile's result."""
        return self.channels + self.units * len(self.maps)

    def pack(self, image: torch.Tensor, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        """(C, h, w) image and {name: (U, h, w)} -> (h, w, size)."""
        return torch.cat([image, *(maps[name] for name in self.maps)]).permute(1, 2, 0)

    def split(self, a):
        """(..., size) -> {"image": (..., C), name: (..., U)} (views)."""
        c, u = self.channels, self.units
        out = {"image": a[..., :c]}
        for k, name in enumerate(self.maps):
            out[name] = a[..., c + k * u : c + (k + 1) * u]
        return out


@torch.inference_mode()
def fuse_planes(planes: torch.Tensor, models: Models, *, mode: str = DEFAULT_MODE,
                error_map: bool = True, fill: bool = True, batch: int = 8,
                pixels: torch.Tensor | None = None,
                progress: Callable[[str, int], None] | None = None) -> dict[str, torch.Tensor]:
    """(Z, 3, H, W) RGB in [0, 1] -> {"image": (3, H, W)} plus (H, W) maps: "error" (with
    error_map), and in pixel mode "depth" (expected plane index), "confidence" and "fill".

    ``pixels`` (same shape, default ``planes``) are the values pixel mode blends: the tile's
    unclipped values, so input pixels come out exactly as they went in.

    In pixel mode with a selection head of kind "bands" the VAE and the U-Net run only on
    `fill_windows` around the fill, not at all in a tile without fill; with a head of kind
    "latents" (and in latent mode) every plane is encoded whole. ``fill=False`` (pixel mode):
    the fill map is 0 everywhere, the image is the planes' band blend alone.

    ``progress(stage, n)``, if given, is called after each step of work: ("encode", planes)
    after each encoder batch, ("fuse", groups) after each U-Net call, ("compose", 1) once the
    image is made (decoded, and composed in pixel mode), ("decode", planes) after each decoder
    batch of the error map. It may raise to stop the fusion (the exception goes through;
    nothing is returned).
    """
    check_mode(mode, models)
    x, (h, w) = _pad_to_multiple(planes.to(models.device, models.dtype), MULTIPLE)
    xf = x.float()
    kind = "latents" if mode == "latent" else models.selection.config.inputs
    latents = _batched(models.ae.encode, x, batch, progress, "encode") \
        if kind == "latents" else None

    def decode_fused(z: torch.Tensor) -> torch.Tensor:
        fused, _ = fuse_latents(z, models.unet, progress)
        return models.ae.decode(fused[None])[0].float()

    out = {}
    if mode == "latent":
        out["image"] = decode_fused(latents)
    else:
        source = xf if pixels is None else \
            _pad_to_multiple(pixels.to(models.device, torch.float32), MULTIPLE)[0]
        if x.shape[0] == 1:
            weights = torch.ones_like(xf[:, 0])
            blend, fill_map = source[0], torch.zeros_like(xf[0, 0])
        else:
            logits, fill_logit = models.selection(head_inputs(kind, xf, latents))
            if not fill:  # below the dead zone everywhere: exactly no fill
                fill_logit = torch.full_like(fill_logit, -torch.inf)
            blend, weights, fill_map = pixel_blend(logits[0], fill_logit[0], xf, source)
        # The decoded latent fusion only where it is used: not at all in a tile without fill.
        if fill_map.any() and latents is not None:
            out["image"] = compose(blend, decode_fused(latents), fill_map)
        elif fill_map.any():
            decoded = torch.zeros_like(blend)
            for rows, cols in fill_windows(fill_map):
                z = _batched(models.ae.encode, x[..., rows, cols], batch, progress, "encode")
                decoded[:, rows, cols] = decode_fused(z)
            out["image"] = compose(blend, decoded, fill_map)
        else:
            out["image"] = blend
        out["depth"], out["confidence"] = depth_and_confidence(weights)
        out["fill"] = fill_map
    if progress is not None:
        progress("compose", 1)
    if error_map and mode == "pixel":
        # The output is composed from the input values: its departure from what the planes
        # show (fill, composition) is what a user needs to see; no VAE decode of the planes.
        out["error"] = departure(out["image"], source)
    elif error_map:
        recon = _batched(models.ae.decode, latents, batch, progress, "decode").float()
        err = (xf - recon).abs().mean(1)
        s = sharpness(xf) + 1e-8
        out["error"] = (err * s).sum(0) / s.sum(0)
    return {k: v[..., :h, :w] for k, v in out.items()}


def fuse_tile(tile: np.ndarray, norm: Normalization, rgb: bool, models: Models,
              *, mode: str = DEFAULT_MODE, error_map: bool = True, fill: bool = True,
              batch: int = 8, progress: Callable[[str, int], None] | None = None
              ) -> np.ndarray:
    """Raw (Z, h, w, C) tile and the stack's `Normalization` -> (h, w, TileChannels.size)
    float32, laid out by `TileChannels.of(C, rgb, mode, error_map)`: the normalised fused
    channels, then each map for each fusion unit (an RGB triple, or one channel). ``progress``
    as in `fuse_planes`, for each unit in turn."""
    raw = torch.from_numpy(norm.forward(tile)).permute(0, 3, 1, 2)  # (Z, C, h, w), unclipped
    t = raw.clamp(0, 1)

    def as_units(a: torch.Tensor) -> list[torch.Tensor]:
        return [a] if rgb else [a[:, c : c + 1].expand(-1, 3, -1, -1) for c in range(a.shape[1])]

    results = [fuse_planes(u, models, mode=mode, error_map=error_map, fill=fill, batch=batch,
                           pixels=p, progress=progress)
               for u, p in zip(as_units(t), as_units(raw), strict=True)]
    layout = TileChannels.of(tile.shape[-1], rgb, mode, error_map)
    image = torch.cat([r["image"] if rgb else r["image"].mean(0, keepdim=True)
                       for r in results])
    maps = {name: torch.stack([r[name] for r in results]) for name in layout.maps}
    return layout.pack(image, maps).cpu().numpy().astype(np.float32)
