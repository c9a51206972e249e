"""Stack normalisation: any supported input -> canonical (Z, Y, X, C) in [0, 1], and its inverse.

Supported inputs: (Z, Y, X) grayscale, (Z, Y, X, 3|4) RGB(A) with channels last, and
multichannel stacks with an explicit ``channel_axis``; uint8, uint16, other integers or float;
numpy or dask. Each channel is scaled by robust percentiles taken over the whole stack.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Literal

import dask.array as da
import numpy as np

ColourMode = Literal["gray", "rgb", "multichannel"]

#: Percentiles mapped to 0 and 1. Robust to a few hot pixels while keeping almost all the range.
PERCENTILES = (0.05, 99.95)
#: Values used for the percentile estimate; larger stacks are subsampled on a regular grid.
_SAMPLE = 4_000_000
#: BT.601 luma weights of R, G, B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


class StackError(ValueError):
    """The input is not a usable focus stack; the message says what to change."""


@dataclass(frozen=True)
class StackLayout:
    """Where the focus and channel axes were in the input, and how channels are fused."""

    ndim: int
    axis: int
    channel_axis: int | None
    mode: ColourMode
    dtype: np.dtype
    alpha_dropped: bool = False

    def output_axes(self) -> tuple[int, ...]:
        """Positions of (Y, X, C) in the fused output, which drops the focus axis."""
        remaining = [i for i in range(self.ndim) if i != self.axis]
        if self.channel_axis is None:
            return tuple(range(2))
        c = remaining.index(self.channel_axis)
        yx = [i for i in range(len(remaining)) if i != c]
        return (yx[0], yx[1], c)


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map from the input's intensities to [0, 1] and back."""

    lo: np.ndarray  # (C,)
    hi: np.ndarray  # (C,)
    dtype: np.dtype

    @property
    def scale(self) -> np.ndarray:
        return self.hi - self.lo

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(..., C) input values -> float32, 0..1 over the robust range (not clipped).

        Computed in float64, so float64 input near 1e300 or 1e-300 and 64-bit integers near
        their limits neither overflow nor collapse before the result fits float32."""
        return ((np.asarray(x, np.float64) - self.lo) / self.scale).astype(np.float32)

    def unscale(self, y: np.ndarray) -> np.ndarray:
        """(..., C) float in [0, 1] -> the input's intensity range, float64 (not cast: NaN and
        infinities stay visible)."""
        return np.asarray(y, np.float64) * self.scale + self.lo

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """(..., C) float in [0, 1] -> the input's intensity range and dtype."""
        return to_dtype(self.unscale(y), self.dtype)


def to_dtype(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Finite float values -> ``dtype`` without wrapping: rounded and clipped to an integer
    dtype's range, clipped to a float dtype's finite range.

    The clip happens in float64, where int64/uint64's maximum rounds up to 2**63 / 2**64 (one
    past the type); values at or above that bound become the type's maximum instead of wrapping.
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x, np.float64)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.rint(x)
        top, bottom = x >= float(info.max), x <= float(info.min)
        out = np.where(top | bottom, 0, x).astype(dtype)
        out[top] = info.max
        out[bottom] = info.min
        return out
    info = np.finfo(dtype)
    return np.clip(x, float(info.min), float(info.max)).astype(dtype)


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (H, W) float64: BT.601 luma for 3 channels, the channel mean for
    other counts, the image itself (as float64) when it is 2-D."""
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        return img
    return img @ LUMA_WEIGHTS if img.shape[-1] == 3 else img.mean(-1)


def available_memory() -> int | None:
    """Bytes of memory this process can still use (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """1.2 GB, 340 MB, 5.0 TB: decimal units, as a user reads them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_integer(value, what: str, *, minimum: int | None = None) -> int:
    """``value`` as an int (numpy integers too, not bools or floats), or a StackError."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise StackError(f"{what} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise StackError(f"{what} must be at least {minimum}, got {value}.")
    return value


def _axis(axis: int, ndim: int, what: str) -> int:
    axis = check_integer(axis, what)
    if not -ndim <= axis < ndim:
        raise StackError(f"{what}={axis} is out of range for a {ndim}-D stack.")
    return axis % ndim


def resolve_layout(shape: tuple[int, ...], dtype, *, axis: int = 0,
                   channel_axis: int | None = None, rgb: bool | None = None) -> StackLayout:
    """Decide which axes hold focus and channels, or refuse when that is ambiguous."""
    ndim = len(shape)
    dtype = np.dtype(dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise StackError(f"Unsupported dtype {dtype}; give integer or float pixel values.")
    if ndim < 3:
        raise StackError(
            f"A focus stack needs at least 3 dimensions (planes, Y, X); got shape {shape}."
        )
    if ndim > 4:
        raise StackError(
            f"Stacks of {ndim} dimensions are not supported; pass (Z, Y, X), (Z, Y, X, C) or "
            f"(C, Z, Y, X) with axis and channel_axis, e.g. one time point at a time."
        )
    axis = _axis(axis, ndim, "axis")
    if channel_axis is None and ndim == 4:
        if shape[-1] in (3, 4) and axis != ndim - 1 and rgb is not False:
            channel_axis = ndim - 1
        else:
            raise StackError(
                f"Shape {shape} is 4-D: say which axis holds the channels with channel_axis=..."
            )
    if channel_axis is not None:
        channel_axis = _axis(channel_axis, ndim, "channel_axis")
        if ndim == 3:
            raise StackError(
                f"With channel_axis set, a 3-D shape {shape} leaves no room for planes, Y and X."
            )
        if channel_axis == axis:
            raise StackError("axis (focus) and channel_axis must be different axes.")
    if any(s == 0 for s in shape):
        raise StackError(f"The stack is empty (shape {shape}).")
    if shape[axis] < 2:
        raise StackError(
            f"The focus axis ({axis}) has {shape[axis]} plane; fusion needs at least two planes."
        )
    n_channels = 1 if channel_axis is None else shape[channel_axis]
    if rgb is None:
        rgb = channel_axis == ndim - 1 and n_channels in (3, 4)
    if rgb and n_channels not in (3, 4):
        raise StackError(f"rgb=True needs 3 or 4 channels, got {n_channels}.")
    mode: ColourMode = "rgb" if rgb else ("gray" if n_channels == 1 else "multichannel")
    yx = [s for i, s in enumerate(shape) if i not in (axis, channel_axis)]
    if min(yx) < 8:
        raise StackError(f"Planes of {yx[0]}x{yx[1]} px are too small; at least 8x8 is needed.")
    return StackLayout(ndim, axis, channel_axis, mode, dtype, alpha_dropped=rgb and n_channels == 4)


def canonical(stack, layout: StackLayout):
    """A lazy view of the stack as (Z, Y, X, C) (numpy or dask, no copy of the data)."""
    mod = da if isinstance(stack, da.Array) else np
    x = stack if layout.channel_axis is not None else stack[..., None]
    c = layout.channel_axis if layout.channel_axis is not None else x.ndim - 1
    rest = [i for i in range(x.ndim) if i not in (layout.axis, c)]
    x = mod.transpose(x, (layout.axis, *rest, c))
    return x[..., :3] if layout.alpha_dropped else x


def stack_planes(planes: list) -> np.ndarray | da.Array:
    """Several 2-D (or 2-D + colour) planes of equal shape -> one stack on a new axis 0."""
    if len(planes) < 2:
        raise StackError(f"Got {len(planes)} plane; fusion needs at least two planes.")
    first = planes[0].shape
    for i, p in enumerate(planes):
        if p.shape != first:
            raise StackError(
                f"Plane {i} has shape {p.shape} but plane 0 has {first}; all planes must match."
            )
    if any(isinstance(p, da.Array) for p in planes):
        return da.stack([da.asarray(p) for p in planes])
    return np.stack([np.asarray(p) for p in planes])


def _subsample(x, limit: int = _SAMPLE):
    """A regular-grid subsample of (Z, Y, X, C) with at most about ``limit`` values per channel."""
    z, y, w = x.shape[:3]
    step = max(1, int(np.ceil(np.sqrt(z * y * w / limit))))
    return x[:, ::step, ::step, :]


def fit_normalization(x, dtype, *, joint: bool = False) -> Normalization:
    """Robust per-channel range of a canonical (Z, Y, X, C) stack; refuses NaN and inf.

    ``joint=True`` (RGB) uses one range for all channels so the VAE sees the true colours.
    """
    dtype = np.dtype(dtype)
    sample = _subsample(x)
    if isinstance(sample, da.Array):
        sample = sample.compute()
    sample = np.asarray(sample)
    if np.issubdtype(dtype, np.floating):
        finite = da.isfinite(x).all() if isinstance(x, da.Array) else np.isfinite(x).all()
        if not bool(finite):
            raise StackError("The stack contains NaN or infinite values; replace or mask them.")
    n_channels = sample.shape[-1]
    flat = sample.reshape(-1, 1 if joint else n_channels).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # spans past float64: refused below
        lo, hi = np.percentile(flat, PERCENTILES, axis=0)
    lo, hi = np.broadcast_to(lo, (n_channels,)), np.broadcast_to(hi, (n_channels,))
    with np.errstate(over="ignore", invalid="ignore"):
        span_ok = np.all(np.isfinite(hi - lo))
    if not span_ok:
        raise StackError(f"The values span {float(lo.min()):.3g} to {float(hi.max()):.3g}, a "
                         "range wider than float64 holds; rescale the stack first.")
    flat_channels = hi <= lo
    # A constant channel gets a range of one grey level (integers) or a small fraction of its
    # value (floats), and always more than float64's spacing there: lo + 1 == lo at 1e300.
    spread = 1.0 if np.issubdtype(dtype, np.integer) else \
        np.where(lo != 0, np.abs(lo) * 2.0**-10, 1.0)
    spread = np.maximum(spread, np.spacing(np.abs(lo)) * 2.0**12)
    hi = np.where(flat_channels, lo + spread, hi)
    return Normalization(lo.astype(np.float64), hi.astype(np.float64), dtype)


def to_output_layout(image: np.ndarray, layout: StackLayout) -> np.ndarray:
    """(Y, X, C) fused image -> the input's axis order without the focus axis."""
    if layout.channel_axis is None:
        return image[..., 0]
    return np.moveaxis(image, (0, 1, 2), layout.output_axes())
