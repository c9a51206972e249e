"""The public entry point: fuse a focus stack into one all-in-focus image."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from . import __version__
from .cluster import check_scheduler, connect
from .engine.align import align_planes
from .engine.fusion import (
    GROUP,
    Models,
    TileChannels,
    check_mode,
    output_maps,
    unet_calls,
)
from .engine.options import DEFAULT_MODE, MULTIPLE, FusionOptions
from .engine.runtime import (
    ModelSpec,
    available_devices,
    cpu_has_bf16,
    cpu_has_fp16,
    fuse_tile_task,
    load_models,
    require_selection,
    resolve_device,
    resolve_dtype,
)
from .engine.stack import (
    Normalization,
    StackError,
    StackLayout,
    available_memory,
    canonical,
    check_integer,
    fit_normalization,
    format_bytes,
    resolve_layout,
    stack_planes,
    to_dtype,
    to_output_layout,
)
from .engine.tiling import MAX_AUTO_TILE, TileGrid, assemble, auto_tile_size
from .models.weights import WeightsError

#: Pixels per encoder/decoder batch when batch_size is not given: 1 MPx on the CPU (4 planes of
#: 512 px, one 768 px plane; 2-4 s a batch on 2 cores, so a progress report and a chance to
#: cancel every few seconds, no slower per plane than 8 planes a batch), 8 MPx on a GPU.
BATCH_PIXELS = {"cpu": 1 << 20, "gpu": 1 << 23}


def default_batch(tile_pixels: int, device_type: str) -> int:
    """Planes per encoder/decoder batch for tiles of ``tile_pixels``: `BATCH_PIXELS` worth."""
    budget = BATCH_PIXELS["cpu" if device_type == "cpu" else "gpu"]
    return max(1, round(budget / max(tile_pixels, 1)))


class FusionCancelled(Exception):
    """Raise it from a ``progress`` callback to stop a fusion: it goes through `fuse_stack` and
    `iter_fuse_stack` and nothing is returned."""


#: Relative cost of each step of a tile (per plane, per group of 7, per composed image), from
#: one 10-plane 768 px tile on 2 CPU cores (bfloat16): encode 2.6 s a plane, decode for the
#: error map 2.7 s a plane, a U-Net group 1.3 s, the pixel-faithful composition 24 s (0.9
#: encodes a plane, plus the fused latent's decode). They only weigh the progress fraction.
_STEP_COST = {"encode": 1.0, "fuse": 0.5, "decode": 1.0}
_COMPOSE_COST = {"pixel": (0.9, 1.0), "latent": (0.0, 1.0)}  # (per plane, fixed)
_REST_COST = 0.5  # after the last report of a tile (maps to numpy), per fusion unit


@dataclass(frozen=True)
class FusionProgress:
    """Where a running fusion stands; what a ``progress`` callback receives.

    ``event`` is what just happened: "start" (models loaded, work begins), "encode" (an encoder
    batch), "fuse" (a U-Net call), "compose" (the fused image of one unit is made), "decode" (an
    error-map decoder batch) or "tile" (a tile finished, ``tiles_done`` went up).
    ``activity`` says what the fusion is doing now, e.g. "encoding planes (4 of 10 done)".
    ``fraction`` is of the whole fusion; ``remaining`` estimates the seconds left from the work
    so far (None before any).
    """

    event: str
    tiles_done: int
    n_tiles: int
    fraction: float
    activity: str = ""
    elapsed: float = 0.0
    remaining: float | None = None

    def __str__(self) -> str:
        tile = min(self.tiles_done + 1, self.n_tiles)
        where = self.activity if self.event == "tile" else \
            f"tile {tile}/{self.n_tiles}: {self.activity}"
        left = "" if self.remaining is None else f", about {format_seconds(self.remaining)} left"
        return f"{where} ({format_seconds(self.elapsed)} elapsed{left})"


def format_seconds(seconds: float) -> str:
    """'0:07', '12:30', '1:02:03'."""
    s = round(max(seconds, 0.0))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Tracker:
    """Turns the engine's step callbacks into `FusionProgress` reports for one fusion."""

    def __init__(self, callback: Callable[[FusionProgress], None]):
        self.callback = callback
        self.t0 = time.perf_counter()
        self.t_work = 0.0
        self.tiles_done = 0
        self.counts: dict[str, int] = {}

    def begin(self, plan: _Plan) -> None:
        """The plan is made (models loaded): set the per-unit totals and report "start"."""
        mode = plan.metadata["mode"]
        self.z = plan.metadata["n_planes"]
        # Every plane is encoded and fused unless a head of kind "bands" runs the VAE only on
        # the fill's windows (engine/fusion.py); after the first tile the counts seen are used.
        self.fill_only = plan.metadata.get("selection_inputs", "latents") != "latents"
        self.encodes = 0 if self.fill_only else self.z
        self.groups = 0 if self.fill_only else unet_calls(self.z)
        self.units = plan.channels.units
        self.n_tiles = len(plan.tiles)
        per_plane, fixed = _COMPOSE_COST[mode]
        self.cost = {**_STEP_COST, "compose": per_plane * self.z + fixed}
        # The latent mode's error map decodes every plane; the pixel mode's is computed from the
        # composed image (engine/fusion.py). After the first tile the counts seen are used.
        self.decodes = self.z if "error" in plan.maps and mode == "latent" else 0
        self._set_tile_cost()
        self.t_work = time.perf_counter()
        self._report("start")

    def _set_tile_cost(self) -> None:
        per_unit = {"encode": self.encodes, "fuse": self.groups, "compose": 1,
                    "decode": self.decodes}
        self.tile_cost = self.units * (sum(self.cost[k] * n for k, n in per_unit.items()) +
                                       _REST_COST)

    def step(self, event: str, n: int) -> None:
        """The engine's callback: n planes (groups, images) done in this tile."""
        self.counts[event] = self.counts.get(event, 0) + n
        self._report(event)

    def tile_done(self) -> None:
        if self.tiles_done == 0:  # what a tile really takes, for the estimates of the others
            self.encodes, self.groups, self.decodes = (
                self.counts.get(k, 0) // self.units for k in ("encode", "fuse", "decode"))
            self._set_tile_cost()
        self.tiles_done += 1
        self.counts = {}
        self._report("tile")

    def _activity(self, event: str) -> str:
        """What the engine does after ``event``, with the count of the step under way."""
        if event == "tile":
            return f"tiles {self.tiles_done}/{self.n_tiles} done"
        c = self.counts.get
        unit = c("compose", 0) - (event in ("compose", "decode"))  # the unit (channel) at work
        encoded = c("encode", 0) - unit * self.encodes
        fused = c("fuse", 0) - unit * self.groups
        decoded = c("decode", 0) - unit * self.z
        if event in ("encode", "fuse") and self.fill_only:
            what = "filling where no plane holds the content"
        elif event in ("start", "encode") and encoded < self.encodes:
            what = f"encoding planes ({encoded} of {self.encodes} done)"
        elif event in ("start", "encode", "fuse") and fused < self.groups:
            what = f"fusing groups of planes ({fused} of {self.groups} done)"
        elif event in ("start", "encode", "fuse"):
            what = "composing the fused image"
        elif decoded < self.decodes:
            what = f"decoding planes for the error map ({decoded} of {self.decodes} done)"
        elif unit + 1 < self.units:
            return f"encoding planes (channel {unit + 2} of {self.units})"
        else:
            return "finishing the tile"
        return what if self.units == 1 else f"{what}, channel {unit + 1} of {self.units}"

    def _report(self, event: str) -> None:
        cost = sum(self.cost.get(k, 0) * n for k, n in self.counts.items())
        fraction = (self.tiles_done + min(cost / self.tile_cost, 1.0)) / self.n_tiles
        now = time.perf_counter()
        remaining = (now - self.t_work) * (1 - fraction) / fraction if fraction > 0 else None
        self.callback(FusionProgress(event, self.tiles_done, self.n_tiles, fraction,
                                     self._activity(event), now - self.t0, remaining))


@dataclass
class FusionResult:
    """Fused image in the input's dtype and range (focus axis removed), the error map in the
    input's intensity units (None if not asked for), and what produced them. The error map is,
    in pixel mode, the output's departure from the planes (`engine.compose.departure`: 0 where
    the output is some plane's own pixels, high where it matches none: fill, fog, ghosts); in
    latent mode, the VAE reconstruction error of the planes, weighted by their sharpness.

    In pixel mode also: ``depth``, the expected focus position of each pixel (in ``z_positions``
    units, plane indices by default), ``confidence`` in [0, 1] (1: one plane holds the pixel) and
    ``fill`` in [0, 1] (where the content was synthesised from the latent fusion instead of taken
    from the planes); None in latent mode. Maps are float32 with the image's spatial shape (and
    its channel axis for multichannel input, each channel being fused on its own); the error map
    of a float64 stack is float64, as its intensities may not fit float32.
    """

    image: np.ndarray
    error: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    depth: np.ndarray | None = None
    confidence: np.ndarray | None = None
    fill: np.ndarray | None = None


@dataclass
class _Plan:
    grid: TileGrid
    tiles: list  # dask Delayed, one per tile
    outputs: _Outputs  # turns the blended tiles into the image and maps
    metadata: dict

    @property
    def channels(self) -> TileChannels:
        return self.outputs.channels

    @property
    def maps(self) -> tuple[str, ...]:
        return self.outputs.channels.maps


class FusionError(ValueError):
    """The fusion gave values that cannot be right (NaN or infinite); nothing is returned."""


def _check_device(device) -> None:
    """A one-line ValueError for a device torch does not know or this machine does not have."""
    if str(device) == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch: "Expected one of cpu, cuda, ... device type"
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {device!r}; use 'auto' or one of "
                         f"{', '.join(available_devices())}.")
    if dev.type == "cuda" and dev.index is not None and torch.cuda.is_available() \
            and dev.index >= torch.cuda.device_count():
        raise ValueError(f"There is no device {device!r}; this machine has "
                         f"{', '.join(available_devices())}.")


def _check_unet_file(unet_path) -> None:
    """A WeightsError naming the file when ``unet_path`` is not a Fusion U-Net safetensors file."""
    if unet_path is None:
        return
    from safetensors import SafetensorError

    from .models.fusion_unet import UNetConfig
    from .models.serialize import read_metadata

    path = Path(unet_path)
    if not path.is_file():
        raise WeightsError(f"The Fusion U-Net file {path} does not exist.")
    try:
        cfg = json.loads(read_metadata(path)["config"])
        UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    except (SafetensorError, KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path} is not a Fusion U-Net safetensors file "
                           f"({type(exc).__name__}: {exc}).") from exc


def _warn_slow_precision(device, precision: str) -> None:
    import torch

    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    if dev.type != "cpu":
        return
    if (dtype == torch.bfloat16 and not cpu_has_bf16()) or \
            (dtype == torch.float16 and not cpu_has_fp16()):
        name = str(dtype).removeprefix("torch.")
        warnings.warn(f"precision={precision!r}: this CPU has no native {name} arithmetic, so "
                      f"fusion runs many times (about 50x) slower than with float32; use "
                      f"precision='auto' or 'float32'.", UserWarning, stacklevel=4)


def _estimate_memory(shape: tuple[int, int, int, int], layout: StackLayout, n_maps: int,
                     tile_size: int, overlap: int, batch: int, aligned: bool = False,
                     streaming: bool = False) -> dict[str, int]:
    """Bytes the fusion holds at its peak, by part (a rough, slightly generous estimate).
    ``streaming``: the outputs go to disk chunk by chunk (`fuse_to_zarr`), never whole."""
    z, height, width, channels = shape
    units = 1 if layout.mode == "rgb" else channels
    n_out = channels + units * n_maps
    pixels = height * width
    cover = (tile_size / max(tile_size - overlap, 1)) ** 2 if max(height, width) > tile_size \
        else 1.0
    t = min(tile_size, max(height, width)) + 32
    parts = {
        # tile results are kept until blended, then the blended (H, W, n_out) float32
        "tile results": int(pixels * n_out * 4 * cover),
        "blended output": pixels * n_out * 4,
        # _finish: the float64 image, the image in its dtype, the maps
        "fused image and maps": pixels * (channels * (8 + layout.dtype.itemsize) +
                                          units * n_maps * 8),
        # one tile through the models: its planes, and per plane of a batch the VAE's feature
        # maps (measured: 2.0 GB for 7 planes of 512 px, float32, CPU)
        "working set of one tile": z * t * t * channels * 8 + min(batch, z) * 64 * t * t * 16,
        # alignment: the registered copy of the stack, and one plane's pyramids and masks
        "aligned planes": z * pixels * channels * layout.dtype.itemsize + pixels * 24
        if aligned else 0,
    }
    if streaming:  # a few tiles' results and output chunks in flight instead of whole outputs
        del parts["tile results"], parts["blended output"], parts["fused image and maps"]
        parts["tiles and chunks in flight"] = 4 * t * t * n_out * 4 * 3
    return parts


def _check_memory(shape, layout: StackLayout, n_maps: int, tile_size: int, overlap: int,
                  batch: int, aligned: bool = False, streaming: bool = False) -> None:
    """Refuse, before any work, a fusion that needs more memory than this machine has free."""
    free = available_memory()
    if free is None:
        return
    parts = _estimate_memory(shape, layout, n_maps, tile_size, overlap, batch, aligned,
                             streaming)
    need = sum(parts.values())
    if need <= free:
        return
    z, height, width, channels = shape
    detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
    raise StackError(
        f"Fusing {z} planes of {height}x{width} px x {channels} channel(s) needs about "
        f"{format_bytes(need)} of memory ({detail}) but {format_bytes(free)} is free; fuse a "
        f"crop or fewer channels, or turn maps off (error_map=False, mode='latent').")


def _plan(stack, opts: FusionOptions, *, axis: int, channel_axis: int | None,
          rgb: bool | None, z_positions, step: Callable[[str, int], None] | None = None,
          streaming: bool = False) -> _Plan:
    if isinstance(stack, str | os.PathLike):
        raise StackError(f"fuse_stack takes pixels, not a file name ({stack}); read the file "
                         f"first: napari_vaeedof.io.read_stack(path).data")
    if isinstance(stack, list | tuple):
        stack = stack_planes(list(stack))
        if axis != 0:
            raise StackError("A list of planes is stacked on axis 0; leave axis at 0.")
    if not isinstance(stack, da.Array):
        stack = np.asarray(stack)
    layout = resolve_layout(stack.shape, stack.dtype, axis=axis, channel_axis=channel_axis,
                            rgb=rgb)
    tile_size, overlap, batch_size = opts.tile_size, opts.overlap, opts.batch_size
    device, precision, mode, error_map = opts.device, opts.precision, opts.mode, opts.error_map
    fill = opts.fill
    unet_path, selection_path = opts.unet_path, opts.selection_path
    align, match_gain = opts.align, opts.match_gain
    _check_device(device)
    _check_unet_file(unet_path)
    _warn_slow_precision(device, precision)
    if layout.alpha_dropped:
        warnings.warn("The stack is RGBA: its alpha channel is not fused and the result is RGB "
                      "(to fuse all four channels one by one: rgb=False, channel_axis=-1).",
                      UserWarning, stacklevel=3)
    x = canonical(stack, layout)
    z, height, width, channels = x.shape
    device_type = resolve_device(device).type
    # Before any work (the automatic tile size alone takes seconds on a huge plane); with the
    # largest tile the automatic choice can make.
    guess = tile_size or min(MAX_AUTO_TILE, -(-max(height, width) // MULTIPLE) * MULTIPLE)
    _check_memory(x.shape, layout, len(output_maps(mode, error_map)), guess,
                  guess // 4 if overlap is None else min(overlap, guess // 2),
                  batch_size or default_batch(min(guess, height) * min(guess, width),
                                              device_type), aligned=align != "none" or match_gain,
                  streaming=streaming)
    if tile_size is None:  # the default: from the plane's size, one rule (engine/tiling.py)
        tile_size = auto_tile_size(height, width, planes=z)
    overlap = tile_size // 4 if overlap is None else overlap
    if not 0 <= overlap <= tile_size // 2:
        raise ValueError(f"overlap must be 0 to half the tile ({tile_size // 2}), got {overlap}")
    tile_pixels = min(tile_size, height) * min(tile_size, width)
    batch = batch_size or default_batch(tile_pixels, device_type)
    grid = TileGrid.build(height, width, tile_size, overlap)
    models: Models = load_models(device, precision, unet_path, selection_path)
    require_selection(mode, models)
    check_mode(mode, models)
    positions = np.arange(z, dtype=np.float64) if z_positions is None else \
        np.asarray(z_positions, np.float64)
    if positions.shape != (z,) or not np.all(np.isfinite(positions)):
        raise StackError(f"z_positions needs one finite number per plane ({z}), got "
                         f"{positions.shape[0] if positions.ndim == 1 else positions.shape}.")
    norm = fit_normalization(x, layout.dtype, joint=layout.mode == "rgb")
    registration = None
    if align != "none" or match_gain:  # on whole planes, before tiling (engine/align.py)
        registration = align_planes(np.asarray(x), model=align, match_gain=match_gain,
                                    black=norm.lo)
        x = registration.planes
        if match_gain:  # the gains move the range
            norm = fit_normalization(x, layout.dtype, joint=layout.mode == "rgb")
    task = dask.delayed(fuse_tile_task, pure=True)
    # Tasks carry the spec, not the networks: each process loads them once (engine/runtime.py).
    spec = ModelSpec.of(models, unet_path, selection_path)
    # Keys from what decides a tile's values: the planes (their bytes, or a dask array's
    # graph name), the normalisation, the options and the weights' hashes; two stacks never
    # share a key, the same stack and options always do (dask's cache, a distributed client).
    token = tokenize(x, norm.lo, norm.hi, str(norm.dtype), layout.mode, mode, error_map, fill,
                     batch, spec.hashes, spec.device, spec.precision)
    tiles = [task(x[:, y0:y1, x0:x1, :], norm, layout.mode == "rgb", spec, mode=mode,
                  error_map=error_map, fill=fill, batch=batch, progress=step,
                  dask_key_name=f"vaeedof-tile-{tokenize(token, y0, y1, x0, x1)}")
             for y0, y1, x0, x1 in grid.boxes]
    metadata = {
        "method": METHOD_NAMES[mode],
        "mode": mode,
        "napari_vaeedof_version": __version__,
        "n_planes": int(z),
        "group_size": GROUP,
        "unet_calls_per_unit": unet_calls(int(z)),
        **({"selection_inputs": models.selection.config.inputs, "fill": fill}
           if mode == "pixel" else {}),
        "colour_mode": layout.mode,
        **({"alpha": "dropped: the result is RGB"} if layout.alpha_dropped else {}),
        "tile_size": tile_size,
        "overlap": overlap,
        "n_tiles": len(grid),
        "device": str(models.device),
        "precision": str(models.dtype).removeprefix("torch."),
        "normalization": {"lo": norm.lo.tolist(), "hi": norm.hi.tolist()},
        "align": align,
        **({"alignment": registration.summary(align)} if registration is not None else {}),
        "weights_sha256": {k: v for k, v in models.hashes.items()
                           if mode == "pixel" or k != "selection_net"},  # the files used
    }
    packing = TileChannels.of(channels, layout.mode == "rgb", mode, error_map)
    return _Plan(grid, tiles, _Outputs(layout, packing, norm, positions), metadata)


#: Values per block when the fused image is taken back to the input's range and dtype: the
#: float64 temporaries of a whole 20 MPx RGB frame are 0.5 GB each (several at once, at the
#: end of a fusion: peak RSS 3.95 GiB for 5 planes of 20 MPx before), of a block 32 MB.
OUTPUT_BLOCK_VALUES = 1 << 22


def _bad_values(a: np.ndarray) -> int:
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _check_finite(name: str, a: np.ndarray, norm: Normalization, bad: int | None = None
                  ) -> None:
    """The one finiteness check of every output, before a cast hides NaN (as 0) or inf;
    ``bad``: the count of non-finite values if already known (the image, block by block)."""
    bad = _bad_values(a) if bad is None else bad
    if bad:
        lo, hi = float(np.min(norm.lo)), float(np.max(norm.hi))
        raise FusionError(
            f"The fused {name} has NaN or infinite values at {bad} of {a.size} values: a "
            f"weights file (Fusion U-Net, selection head) may be corrupt, or the input's range "
            f"({lo:.3g} to {hi:.3g}) cannot be computed with.")


@dataclass(frozen=True)
class _Outputs:
    """What turns blended tile results into the image and the maps: small and picklable, so a
    dask task can carry it (the lazy outputs of `fuse_to_zarr`)."""

    layout: StackLayout
    channels: TileChannels
    norm: Normalization
    z_positions: np.ndarray

    def arrays(self, fused: np.ndarray, names: tuple[str, ...] | None = None
               ) -> dict[str, np.ndarray]:
        """(h, w, channels.size) blended float32 -> {"image": (h, w, C) in the input's dtype,
        each map: (h, w, U) float32 (float64 error of a float64 stack)}, only ``names`` (default
        all); finiteness checked."""
        norm = self.norm
        names = ("image", *self.channels.maps) if names is None else names
        parts = self.channels.split(fused)
        out = {}
        if "image" in names:  # in row blocks: bounded float64 temporaries
            scaled = parts["image"]
            image, bad = np.empty(scaled.shape, norm.dtype), 0
            step = max(1, OUTPUT_BLOCK_VALUES // max(1, scaled[:1].size))
            for r in range(0, scaled.shape[0], step):
                block = norm.unscale(scaled[r : r + step])
                bad += _bad_values(block)
                if not bad:  # no cast once a value is NaN or infinite (it would hide it)
                    image[r : r + step] = to_dtype(block, norm.dtype)
            _check_finite("image", scaled, norm, bad)
            out["image"] = image
        for name in self.channels.maps:
            if name not in names:
                continue
            m = parts[name]
            if name == "error":  # in intensity units: one range for RGB, else per channel
                m = m * (norm.scale[:1] if self.layout.mode == "rgb" else norm.scale)
            elif name == "depth":
                m = np.interp(m, np.arange(len(self.z_positions)), self.z_positions)
            m = m.astype(self.dtype(name))
            _check_finite(f"{name} map", m, norm)
            out[name] = m
        return out

    def dtype(self, name: str) -> np.dtype:
        """The dtype of an output: the input's for the image; maps float32, the error map of a
        float64 stack float64 (its intensities may not fit float32)."""
        if name == "image":
            return self.norm.dtype
        wide = self.norm.dtype.kind == "f" and self.norm.dtype.itemsize > 4
        return np.dtype(np.float64 if name == "error" and wide else np.float32)


def _finish(plan: _Plan, fused: np.ndarray) -> FusionResult:
    layout = plan.outputs.layout
    arrays = plan.outputs.arrays(fused)
    maps = {name: arrays[name][..., 0] if layout.mode == "rgb" else
            to_output_layout(arrays[name], layout) for name in plan.maps}
    image = to_output_layout(arrays["image"], layout)
    return FusionResult(image, maps.get("error"), plan.metadata, depth=maps.get("depth"),
                        confidence=maps.get("confidence"), fill=maps.get("fill"))


METHOD_NAMES = {
    "pixel": "VAEEDOF pixel-faithful fusion (input pixels where in focus, TAEF2 + Fusion U-Net "
             "fill elsewhere)",
    "latent": "VAEEDOF latent fusion (TAEF2 + Fusion U-Net)",
}



def _options(arguments: dict) -> FusionOptions:
    """The `FusionOptions` among a call's arguments: `fuse_stack`'s and `iter_fuse_stack`'s
    keywords include its fields, under the same names."""
    return FusionOptions(**{f.name: arguments[f.name] for f in dataclasses.fields(FusionOptions)})


def iter_fuse_stack(stack, *, axis: int = 0, channel_axis: int | None = None,
                    rgb: bool | None = None, tile_size: int | None = None,
                    overlap: int | None = None, device: str = "auto", precision: str = "auto",
                    error_map: bool = True, fill: bool = True, batch_size: int | None = None,
                    unet_path: str | os.PathLike | None = None,
                    selection_path: str | os.PathLike | None = None, mode: str = DEFAULT_MODE,
                    z_positions=None, align: str = "none", match_gain: bool = False,
                    progress: Callable[[FusionProgress], None] | None = None,
                    ) -> Generator[tuple[int, int], None, FusionResult]:
    """Like `fuse_stack`, one tile at a time: yields (tiles done, tiles total), returns the result.

    Closing the generator between tiles stops the work; nothing partial is returned.
    ``progress`` is called as in `fuse_stack`, also within tiles. The parameters, what is
    returned and what is raised are those of `fuse_stack`.
    """
    opts = _options(locals())
    tracker = _Tracker(progress) if progress is not None else None
    plan = _plan(stack, opts, axis=axis, channel_axis=channel_axis, rgb=rgb,
                 z_positions=z_positions, step=tracker.step if tracker else None)
    done = []
    if tracker:
        tracker.begin(plan)
    yield 0, len(plan.tiles)
    for tile in plan.tiles:
        done.append(tile.compute(scheduler="sync"))
        if tracker:
            tracker.tile_done()
        yield len(done), len(plan.tiles)
    fused = assemble(done, plan.grid, plan.channels.size).compute(scheduler="sync")
    return _finish(plan, fused)


def fuse_stack(stack, *, axis: int = 0, channel_axis: int | None = None,
               rgb: bool | None = None, tile_size: int | None = None,
               overlap: int | None = None, device: str = "auto", precision: str = "auto",
               error_map: bool = True, fill: bool = True, batch_size: int | None = None,
               unet_path: str | os.PathLike | None = None,
               selection_path: str | os.PathLike | None = None, mode: str = DEFAULT_MODE,
               z_positions=None, align: str = "none", match_gain: bool = False,
               scheduler: str | None = "sync",
               progress: Callable[[FusionProgress], None] | None = None) -> FusionResult:
    """Fuse a focus stack into one all-in-focus image.

    Returns a `FusionResult` whose image has the input's dtype, intensity range and axis order
    without the focus axis. With ``progress`` the tiles run one by one in this thread and
    ``progress(FusionProgress)`` is called when the work starts, after each encoder batch, U-Net
    call and error-map decoder batch within a tile (every few seconds on a CPU), and after each
    tile; raising `FusionCancelled` in it stops the fusion.

    The options from ``tile_size`` to ``match_gain`` make one `engine.options.FusionOptions`
    record, which owns their allowed values, defaults and checks (the CLI and the widget build
    the same record): a bad value is refused before any work.

    Parameters
    ----------
    stack : (Z, Y, X), (Z, Y, X, 3|4) or 4-D multichannel ndarray or dask array, or a list of
        equally shaped 2-D (or RGB) planes. uint8, uint16, other integers or float; the image
        comes back in the same dtype (float16 and float64 too). RGBA: the alpha channel is
        dropped (with a warning) and the result is RGB; rgb=False, channel_axis=-1 fuses all
        four channels one by one instead.
    axis : the focus (plane) axis.
    channel_axis : the channel axis of a 4-D stack; RGB with channels last is found by itself.
    rgb : force (True) or refuse (False) treating 3-4 channels as one colour image.
    tile_size, overlap : tiles in pixels (multiple of 32) and their overlap (default a quarter).
        Default tile size: the one that fuses the plane with the least work, at most 768 px
        (less for more than 10 planes, not below 512; `engine.tiling.auto_tile_size`): a plane
        up to 768 px is one tile.
    device : 'auto' (cuda > mps > cpu), or a torch device string.
    precision : 'auto' (float16 on GPU; bfloat16 on CPUs with native bf16, else float32),
        'float32', 'float16' or 'bfloat16'.
    error_map : also compute the error map: in pixel mode the output's departure from the
        planes (cheap), in latent mode the VAE reconstruction error (one decode per plane).
    fill : pixel mode: synthesise content (the decoded latent fusion) where no plane holds it
        (default); False: never, every output value is a blend of the planes' own values
        (within the range they span at that pixel), and TAEF2 and the U-Net do not run; faster
        on stacks with much out-of-focus content. Latent mode takes only True.
    batch_size : planes per encode/decode batch, at least 1 (default 1 MPx of tile on the CPU,
        4 planes of 512 px; 8 MPx on a GPU).
    unet_path : a Fusion U-Net safetensors file instead of the packaged weights.
    selection_path : a selection head safetensors file (pixel mode) instead of the packaged one.
    mode : 'pixel' (default): the planes' own pixels where a plane holds the content, the
        decoded latent fusion only where none does, plus depth, confidence and fill maps;
        'latent': the paper's pure latent fusion (every pixel decoded).
    z_positions : focus position of each plane (e.g. microns), for the depth map; default the
        plane index. Depth between planes is interpolated linearly.
    align : 'none' (default: motorised microscope stacks are aligned), 'translation' (drift),
        'similarity' (drift and focus breathing: scale, rotation, shift) or 'affine': register
        every plane to the middle one before fusion (`engine.align`; on the whole planes, so a
        dask stack is computed). Where a registered plane does not cover the frame, the nearest
        plane that does fills in; the shape does not change. A pair of planes that cannot be
        registered is taken as aligned, with a warning naming it. The transforms are in
        ``metadata["alignment"]``.
    match_gain : also scale each plane's brightness to the middle plane's (exposure flicker);
        the gains are in ``metadata["alignment"]``.
    scheduler : where the tiles run: a dask scheduler name ('sync', the default; 'threads',
        'processes'), a ``distributed.Client``, or a scheduler address ('tcp://host:8786', needs
        the ``distributed`` extra; a client is connected for this call). Tasks carry the weight
        files' names and hashes, not the networks: each worker process loads them once (from
        its own installation and VAEEDOF_WEIGHTS_DIR) and refuses weights that differ. Ignored
        with ``progress``.

    Raises
    ------
    StackError (a ValueError) for input that is not a usable stack, or that needs more memory
    than is free (the message gives the numbers); ValueError for bad parameters; WeightsError
    for a missing or unreadable weights file; FusionError (a ValueError) when the result would
    hold NaN or infinite values. float16/bfloat16 precision on a CPU without native support
    warns: it runs many times slower than float32.

    Examples
    --------
    >>> from napari_vaeedof.data.synth import make_stack
    >>> result = fuse_stack(make_stack(0, size=128, n_planes=3).planes)
    >>> result.image.shape
    (128, 128, 3)
    """
    opts = _options(locals())
    where = dict(axis=axis, channel_axis=channel_axis, rgb=rgb, z_positions=z_positions)
    if progress is not None:
        gen = iter_fuse_stack(stack, **where, **opts.kwargs(), progress=progress)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value
    check_scheduler(scheduler)
    plan = _plan(stack, opts, **where)
    with connect(scheduler) as where:
        fused = assemble(plan.tiles, plan.grid, plan.channels.size).compute(scheduler=where)
    return _finish(plan, fused)


def _block_output(block: np.ndarray, outputs: _Outputs, name: str) -> np.ndarray:
    return outputs.arrays(block, (name,))[name]


def fuse_to_zarr(stack, path: str | os.PathLike, *, axis: int = 0,
                 channel_axis: int | None = None, rgb: bool | None = None, z_positions=None,
                 maps: dict[str, str | os.PathLike | None] | None = None,
                 pixel_size: tuple[float, float] | None = None, unit: str | None = None,
                 info: dict | None = None, chunk: int = 1024, scheduler="sync",
                 **options) -> dict:
    """Fuse a focus stack straight into OME-Zarr images on disk, chunk by chunk: the result is
    never held in memory whole, so planes larger than memory fuse (from a lazy stack, e.g.
    ``read_stack(path, lazy=True).data``), on this machine or a dask cluster.

    Parameters
    ----------
    stack : what `fuse_stack` takes; a dask array is read chunk by chunk where the tiles run.
    axis, channel_axis, rgb, z_positions : as in `fuse_stack`.
    path : the fused image's store, a folder named ``*.zarr`` (e.g. ``fused.ome.zarr``):
        OME-Zarr 0.5, one resolution level, axes (c,) y, x, the input's dtype. An existing
        store there is replaced once every output is written.
    maps : {"error" | "depth" | "confidence" | "fill": path or None}: maps to write, each its
        own store (float32); depth, confidence and fill need pixel mode. The error map is
        computed only when asked for here.
    pixel_size, unit : (y, x) pixel size and its unit, kept as the images' scale.
    info : JSON-able facts kept in each store's root attributes under "napari_vaeedof", beside
        the fusion's metadata.
    chunk : Zarr chunk size in px (Y and X).
    scheduler : as in `fuse_stack` ('sync' by default; a ``distributed.Client`` or an
        address: the workers compute and write the chunks, so `path` must be on a file system
        they share).
    **options : the `FusionOptions` (``mode``, ``tile_size``, ``device``, ``align``, ...)
        but ``error_map`` (asked for with `maps`).

    Returns
    -------
    dict
        The fusion's metadata (`FusionResult.metadata`).

    Raises
    ------
    What `fuse_stack` raises; OutputPathError and OSError from writing. On any error nothing
    is left at `path` or the map paths but what was there before.
    """
    from .io import write_ome_zarrs

    if "error_map" in options:
        raise TypeError("fuse_to_zarr takes no error_map; ask for the error map with "
                        "maps={'error': path}.")
    maps = {k: v for k, v in (maps or {}).items() if v is not None}
    unknown = sorted(set(maps) - {"error", "depth", "confidence", "fill"})
    if unknown:
        raise ValueError(f"maps can be error, depth, confidence and fill, not {unknown}")
    chunk = check_integer(chunk, "chunk", minimum=16)
    check_scheduler(scheduler)
    opts = FusionOptions(**options, error_map="error" in maps)
    plan = _plan(stack, opts, axis=axis, channel_axis=channel_axis, rgb=rgb,
                 z_positions=z_positions, streaming=True)
    if set(maps) - set(plan.maps):
        missing = ", ".join(sorted(set(maps) - set(plan.maps)))
        raise ValueError(f"mode={plan.metadata['mode']!r} gives no {missing} map; depth, "
                         f"confidence and fill need mode='pixel'.")
    fused = assemble(plan.tiles, plan.grid, plan.channels.size)
    outputs = plan.outputs
    meta = {**plan.metadata, **(info or {})}
    written = []
    for name, target in [("image", path), *maps.items()]:
        c = plan.channels.channels if name == "image" else plan.channels.units
        a = da.map_blocks(_block_output, fused, outputs, name, dtype=outputs.dtype(name),
                          chunks=(*fused.chunks[:2], (c,)))
        a = a[..., 0] if c == 1 else da.moveaxis(a, -1, 0)
        extra = {"output": "fused" if name == "image" else name}
        written.append((target, a, {"pixel_size": pixel_size, "unit": unit,
                                    "info": json.dumps({**meta, **extra})}))
    with connect(scheduler) as where:
        write_ome_zarrs(written, chunk=chunk, scheduler=where)
    return plan.metadata


__all__ = ["FusionCancelled", "FusionError", "FusionProgress", "FusionResult", "StackError",
           "fuse_stack", "fuse_to_zarr", "iter_fuse_stack"]
