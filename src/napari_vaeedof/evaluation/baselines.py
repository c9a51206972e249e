"""Classical focus-stack fusion baselines run side by side with the model.

Stacks are float arrays in [0, 1] of shape (Z, H, W) or (Z, H, W, C); any H, W.
Outputs are float32 (H, W) or (H, W, C) in [0, 1].
"""

import numpy as np
from scipy import ndimage

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BURT_ADELSON = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # 5-tap binomial generating kernel


def _as_stack(planes: np.ndarray) -> np.ndarray:
    st = np.asarray(planes, dtype=np.float32)
    if st.ndim not in (3, 4) or st.shape[0] < 1:
        raise ValueError(f"expected a (Z, H, W) or (Z, H, W, C) stack, got {st.shape}")
    return st


def _luma(st: np.ndarray) -> np.ndarray:
    """(Z, H, W[, C]) -> (Z, H, W): BT.601 luma for 3 channels, channel mean otherwise."""
    if st.ndim == 3:
        return st
    return st @ _LUMA if st.shape[-1] == 3 else st.mean(axis=-1)


def _blur(a: np.ndarray, axis: int) -> np.ndarray:
    # mode="mirror" is reflect-101 (d c b | a b c d), the usual pyramid border rule
    return ndimage.correlate1d(a, _BURT_ADELSON, axis=axis, mode="mirror")


def _reduce(a: np.ndarray) -> np.ndarray:
    """Blur and halve axes 1, 2 of (Z, H, W[, C]); odd sizes keep the last sample (ceil)."""
    return _blur(_blur(a, 1)[:, ::2], 2)[:, :, ::2]


def _expand(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Upsample axes 1, 2 of (Z, h', w'[, C]) by 2 (zero insertion, blur, gain 4), crop to h, w."""
    for axis, n in ((1, h), (2, w)):
        shape = list(a.shape)
        shape[axis] *= 2
        z = np.zeros(shape, dtype=a.dtype)
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(0, None, 2)
        z[tuple(idx)] = 2 * a
        a = np.take(_blur(z, axis), np.arange(n), axis=axis)
    return a


def _pick(st: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per-pixel selection st[index[y, x], y, x(, :)] -> (H, W[, C])."""
    idx = index[None, ..., None] if st.ndim == 4 else index[None]
    return np.take_along_axis(st, idx, axis=0)[0]


def laplacian_pyramid_fusion(planes: np.ndarray, levels: int | None = None) -> np.ndarray:
    """Laplacian pyramid fusion of (Z, H, W[, C]) -> (H, W[, C]) float32 in [0, 1].

    Detail levels keep, per pixel, the plane with the largest |coefficient| (summed over colour
    channels, all channels from that plane); the base level is the mean of the planes' bases.
    ``levels`` = number of detail levels (default: until the coarsest side is about 8-16 px).
    """
    st = _as_stack(planes)
    h, w = st.shape[1:3]
    max_levels = max(0, int(np.floor(np.log2(min(h, w)))) - 1)
    if levels is None:
        levels = max(1, int(np.floor(np.log2(min(h, w) / 8))))
    levels = int(min(max(levels, 0), max_levels))

    details = []
    gauss = st
    for _ in range(levels):
        low = _reduce(gauss)
        lap = gauss - _expand(low, *gauss.shape[1:3])
        activity = np.abs(lap) if lap.ndim == 3 else np.abs(lap).sum(axis=-1)
        details.append(_pick(lap, np.argmax(activity, axis=0)))
        gauss = low
    out = gauss.mean(axis=0)
    for lap in reversed(details):
        out = _expand(out[None], *lap.shape[:2])[0] + lap
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def variance_argmax_fusion(
    planes: np.ndarray,
    radius: int = 10,
    sigma: float = 5.0,
    return_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Variance-maximum focus projection of (Z, H, W[, C]) -> (H, W[, C]) float32.

    Local luma variance in a (2 radius + 1)^2 box per plane, smoothed by a gaussian of ``sigma``
    (0 disables), argmax over Z, that plane's pixel is taken; as clEsperanto's
    extended_depth_of_focus_variance_projection (same defaults, box instead of disk).
    With ``return_index=True`` also returns the (H, W) int64 plane index map.
    """
    st = _as_stack(planes)
    lum = _luma(st)
    size = (1, 2 * radius + 1, 2 * radius + 1)
    mean = ndimage.uniform_filter(lum, size=size, mode="reflect")
    var = ndimage.uniform_filter(lum * lum, size=size, mode="reflect") - mean * mean
    if sigma > 0:
        var = ndimage.gaussian_filter(var, sigma=(0, sigma, sigma), mode="reflect")
    index = np.argmax(var, axis=0).astype(np.int64)
    fused = np.clip(_pick(st, index), 0.0, 1.0)
    return (fused, index) if return_index else fused
