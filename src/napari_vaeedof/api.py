"""The public entry point: fuse a focus stack into one all-in-focus image."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np

from . import __version__
from .engine.fusion import (
    DEFAULT_MODE,
    GROUP,
    Models,
    check_mode,
    fuse_tile,
    load_models,
    output_maps,
    unet_calls,
)
from .engine.stack import (
    StackError,
    StackLayout,
    canonical,
    fit_normalization,
    resolve_layout,
    stack_planes,
    to_dtype,
    to_output_layout,
)
from .engine.tiling import TileGrid, assemble

DEFAULT_TILE = 512


@dataclass
class FusionResult:
    """Fused image in the input's dtype and range (focus axis removed), the reconstruction-error
    map in the input's intensity units (None if not asked for), and what produced them.

    In pixel mode also: ``depth``, the expected focus position of each pixel (in ``z_positions``
    units, plane indices by default), ``confidence`` in [0, 1] (1: one plane holds the pixel) and
    ``fill`` in [0, 1] (where the content was synthesised from the latent fusion instead of taken
    from the planes); None in latent mode. Maps are float32 with the image's spatial shape (and
    its channel axis for multichannel input, each channel being fused on its own).
    """

    image: np.ndarray
    error: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    depth: np.ndarray | None = None
    confidence: np.ndarray | None = None
    fill: np.ndarray | None = None


@dataclass
class _Plan:
    layout: StackLayout
    grid: TileGrid
    tiles: list  # dask Delayed, one per tile
    n_out: int
    lo: np.ndarray
    scale: np.ndarray
    maps: tuple[str, ...]
    z_positions: np.ndarray
    metadata: dict


def _plan(stack, *, axis: int, channel_axis: int | None, rgb: bool | None, tile_size: int,
          overlap: int | None, device: str, precision: str, error_map: bool,
          batch_size: int | None, unet_path: str | os.PathLike | None, mode: str,
          z_positions) -> _Plan:
    if isinstance(stack, list | tuple):
        stack = stack_planes(list(stack))
        if axis != 0:
            raise StackError("A list of planes is stacked on axis 0; leave axis at 0.")
    if not isinstance(stack, da.Array):
        stack = np.asarray(stack)
    layout = resolve_layout(stack.shape, stack.dtype, axis=axis, channel_axis=channel_axis,
                            rgb=rgb)
    if tile_size < 64 or tile_size % 32:
        raise ValueError(f"tile_size must be a multiple of 32 and at least 64, got {tile_size}")
    overlap = tile_size // 4 if overlap is None else overlap
    x = canonical(stack, layout)
    norm = fit_normalization(x, layout.dtype, joint=layout.mode == "rgb")
    models: Models = load_models(device, precision, unet_path)
    check_mode(mode, models)
    z = x.shape[0]
    positions = np.arange(z, dtype=np.float64) if z_positions is None else \
        np.asarray(z_positions, np.float64)
    if positions.shape != (z,) or not np.all(np.isfinite(positions)):
        raise StackError(f"z_positions needs one finite number per plane ({z}), got "
                         f"{positions.shape[0] if positions.ndim == 1 else positions.shape}.")
    batch = batch_size or (32 if models.device.type != "cpu" else 8)
    z, height, width, channels = x.shape
    grid = TileGrid.build(height, width, tile_size, overlap)
    task = dask.delayed(fuse_tile, pure=True)
    tiles = [
        task(x[:, y0:y1, x0:x1, :], norm.lo, norm.scale, layout.mode == "rgb", models,
             mode=mode, error_map=error_map, batch=batch,
             dask_key_name=f"vaeedof-tile-{i}-{mode}-{id(models)}")
        for i, (y0, y1, x0, x1) in enumerate(grid.boxes)
    ]
    maps = output_maps(mode, error_map)
    units = 1 if layout.mode == "rgb" else channels
    metadata = {
        "method": METHOD_NAMES[mode],
        "mode": mode,
        "napari_vaeedof_version": __version__,
        "n_planes": int(z),
        "group_size": GROUP,
        "unet_calls_per_unit": unet_calls(int(z)),
        "colour_mode": layout.mode,
        "tile_size": tile_size,
        "overlap": overlap,
        "n_tiles": len(grid),
        "device": str(models.device),
        "precision": str(models.dtype).removeprefix("torch."),
        "normalization": {"lo": norm.lo.tolist(), "hi": norm.hi.tolist()},
        "weights_sha256": {k: v for k, v in models.hashes.items()
                           if mode == "pixel" or k != "selection_net"},  # the files used
    }
    return _Plan(layout, grid, tiles, channels + units * len(maps), norm.lo, norm.scale, maps,
                 positions, metadata)


def _finish(plan: _Plan, fused: np.ndarray) -> FusionResult:
    layout = plan.layout
    n_img = len(plan.lo)
    image = fused[..., :n_img] * plan.scale + plan.lo
    image = to_output_layout(to_dtype(image, layout.dtype), layout)
    units = 1 if layout.mode == "rgb" else n_img
    maps = {}
    for k, name in enumerate(plan.maps):
        m = fused[..., n_img + k * units : n_img + (k + 1) * units]
        if name == "error":
            m = m * (plan.scale[:1] if layout.mode == "rgb" else plan.scale)
        elif name == "depth":
            z = len(plan.z_positions)
            m = np.interp(m, np.arange(z), plan.z_positions)
        m = m.astype(np.float32)
        maps[name] = m[..., 0] if layout.mode == "rgb" else to_output_layout(m, layout)
    return FusionResult(image, maps.get("error"), plan.metadata, depth=maps.get("depth"),
                        confidence=maps.get("confidence"), fill=maps.get("fill"))


METHOD_NAMES = {
    "pixel": "VAEEDOF pixel-faithful fusion (input pixels where in focus, TAEF2 + Fusion U-Net "
             "fill elsewhere)",
    "latent": "VAEEDOF latent fusion (TAEF2 + Fusion U-Net)",
}

_DOC_PARAMS = """
    Parameters
    ----------
    stack : (Z, Y, X), (Z, Y, X, 3|4) or 4-D multichannel ndarray or dask array, or a list of
        equally shaped 2-D (or RGB) planes. uint8, uint16, other integers or float.
    axis : the focus (plane) axis.
    channel_axis : the channel axis of a 4-D stack; RGB with channels last is found by itself.
    rgb : force (True) or refuse (False) treating 3-4 channels as one colour image.
    tile_size, overlap : tiles in pixels (multiple of 32) and their overlap (default a quarter).
    device : 'auto' (cuda > mps > cpu), or a torch device string.
    precision : 'auto' (float16 on GPU; bfloat16 on CPUs with native bf16, else float32),
        'float32', 'float16' or 'bfloat16'.
    error_map : also compute the reconstruction-error map (costs one decode per plane).
    batch_size : planes per encode/decode batch (default 32 on GPU, 8 on CPU).
    unet_path : a Fusion U-Net safetensors file instead of the packaged weights.
    mode : 'pixel' (default): the planes' own pixels where a plane holds the content, the
        decoded latent fusion only where none does, plus depth, confidence and fill maps;
        'latent': the paper's pure latent fusion (every pixel decoded).
    z_positions : focus position of each plane (e.g. microns), for the depth map; default the
        plane index. Depth between planes is interpolated linearly.
"""


def iter_fuse_stack(stack, *, axis: int = 0, channel_axis: int | None = None,
                    rgb: bool | None = None, tile_size: int = DEFAULT_TILE,
                    overlap: int | None = None, device: str = "auto", precision: str = "auto",
                    error_map: bool = True, batch_size: int | None = None,
                    unet_path: str | os.PathLike | None = None, mode: str = DEFAULT_MODE,
                    z_positions=None) -> Generator[tuple[int, int], None, FusionResult]:
    """Like `fuse_stack`, one tile at a time: yields (tiles done, tiles total), returns the result.

    Closing the generator between tiles stops the work; nothing partial is returned.
    """
    plan = _plan(stack, axis=axis, channel_axis=channel_axis, rgb=rgb, tile_size=tile_size,
                 overlap=overlap, device=device, precision=precision, error_map=error_map,
                 batch_size=batch_size, unet_path=unet_path, mode=mode,
                 z_positions=z_positions)
    done = []
    yield 0, len(plan.tiles)
    for tile in plan.tiles:
        done.append(tile.compute(scheduler="sync"))
        yield len(done), len(plan.tiles)
    fused = assemble(done, plan.grid, plan.n_out).compute(scheduler="sync")
    return _finish(plan, fused)


def fuse_stack(stack, *, axis: int = 0, channel_axis: int | None = None,
               rgb: bool | None = None, tile_size: int = DEFAULT_TILE,
               overlap: int | None = None, device: str = "auto", precision: str = "auto",
               error_map: bool = True, batch_size: int | None = None,
               unet_path: str | os.PathLike | None = None, mode: str = DEFAULT_MODE,
               z_positions=None, scheduler: str | None = "sync",
               progress: Callable[[int, int], None] | None = None) -> FusionResult:
    """Fuse a focus stack into one all-in-focus image.

    Returns a `FusionResult` whose image has the input's dtype, intensity range and axis order
    without the focus axis; ``scheduler`` is any dask scheduler (with ``progress`` the tiles run
    one by one in this thread and ``progress(done, total)`` is called after each).

    >>> from napari_vaeedof.data.synth import make_stack
    >>> result = fuse_stack(make_stack(0, size=128, n_planes=3).planes)
    >>> result.image.shape
    (128, 128, 3)
    """
    kwargs = dict(axis=axis, channel_axis=channel_axis, rgb=rgb, tile_size=tile_size,
                  overlap=overlap, device=device, precision=precision, error_map=error_map,
                  batch_size=batch_size, unet_path=unet_path, mode=mode,
                  z_positions=z_positions)
    if progress is not None:
        gen = iter_fuse_stack(stack, **kwargs)
        try:
            while True:
                progress(*next(gen))
        except StopIteration as stop:
            return stop.value
    plan = _plan(stack, **kwargs)
    fused = assemble(plan.tiles, plan.grid, plan.n_out).compute(scheduler=scheduler)
    return _finish(plan, fused)


fuse_stack.__doc__ += _DOC_PARAMS
iter_fuse_stack.__doc__ += _DOC_PARAMS

__all__ = ["FusionResult", "StackError", "fuse_stack", "iter_fuse_stack"]
