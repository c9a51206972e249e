"""Classical focus-stack fusion baselines run side by side with the model.

Stacks are float arrays in [0, 1] of shape (Z, H, W) or (Z, H, W, C); any H, W. Methods:
Laplacian pyramid, variance argmax and maximum-intensity projection.
Outputs are float32 (H, W) or (H, W, C) in [0, 1].
"""

import numpy as np
import torch
from scipy import ndimage

from ..engine.compose import collapse, laplacian_pyramid, plane_chunks
from ..engine.stack import LUMA_WEIGHTS

_LUMA = LUMA_WEIGHTS.astype(np.float32)


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

    # The engine's pyramid (Burt-Adelson kernel, reflect-101 borders), one owner of the steps;
    # a chunk of planes at a time (`plane_chunks`), keeping the running max-abs pick, so time
    # and memory per plane do not grow with the stack (ties go to the first plane either way).
    x = torch.from_numpy(st if st.ndim == 4 else st[..., None]).permute(0, 3, 1, 2)
    details, best, base = [None] * levels, [None] * levels, 0.0
    for c in plane_chunks(x.shape[0], h * w):
        bands = laplacian_pyramid(x[c].double(), levels)
        for k, lap in enumerate(bands[:-1]):
            act = lap.abs().sum(1, keepdim=True)  # over colour channels
            top, pick = act.max(0, keepdim=True)
            coef = torch.gather(lap, 0, pick.expand(1, *lap.shape[1:]))
            if details[k] is None:
                details[k], best[k] = coef, top
            else:
                better = top > best[k]
                details[k] = torch.where(better, coef, details[k])
                best[k] = torch.where(better, top, best[k])
        base = base + bands[-1].sum(0, keepdim=True)
    out = collapse([*details, base / x.shape[0]])[0].permute(1, 2, 0).numpy()
    out = out if st.ndim == 4 else out[..., 0]
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


def max_projection(
    planes: np.ndarray, return_index: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Maximum-intensity projection of (Z, H, W[, C]) -> (H, W[, C]) float32 in [0, 1].

    Per pixel, the plane with the largest luma (BT.601 for 3 channels, channel mean otherwise)
    is taken whole, so colours are never mixed; for a single channel this is ``planes.max(0)``,
    what napari users do with fluorescence stacks. With ``return_index=True`` also returns the
    (H, W) int64 plane index map.
    """
    st = _as_stack(planes)
    index = np.argmax(_luma(st), axis=0).astype(np.int64)
    fused = np.clip(_pick(st, index), 0.0, 1.0)
    return (fused, index) if return_index else fused
