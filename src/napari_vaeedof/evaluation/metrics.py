"""Image quality measures for all-in-focus fusion results: full-reference metrics against a
ground truth, and no-reference measures for real stacks (which have none).

Full-reference metrics: images are float arrays in [0, 1] of shape (H, W) or (H, W, 3)
(RGB); ``pred`` is the fused result, ``target`` the all-in-focus ground truth. Colour
convention, the same in every metric: PSNR uses all channels; SSIM, MS-SSIM, IW-SSIM and
MS-GMSD use BT.601 luma (0.299 R + 0.587 G + 0.114 B); HaarPSI (YIQ) and MDSI (LHM) use colour
as their authors define it. Constants follow the reference implementations (piq / the
authors' MATLAB code).

Direction: higher is better for PSNR, SSIM, MS-SSIM, IW-SSIM, HaarPSI (all 1 or inf at
identity); lower is better for MDSI and MS-GMSD (0 at identity).

No-reference measures, for real stacks (images in any intensity units, (H, W) or (H, W, C)):
`gradient_energy` (mean squared luma gradient: higher is sharper, but noise and invented detail
raise it too), `gradient_energy_map` (the same per pixel), `consistency` (mean over pixels of
the smallest |fused - plane| over the planes: lower means fewer values that no input holds; 0
for any per-pixel plane selection) and `sharpest_plane`.
"""

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..engine.stack import LUMA_WEIGHTS, luma

_YIQ = np.array([LUMA_WEIGHTS, [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
_LHM = np.array([[0.2989, 0.587, 0.114], [0.3, 0.04, -0.35], [0.34, -0.6, 0.17]])
_MS_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
_MS_GMSD_WEIGHTS = np.array([0.096, 0.596, 0.289, 0.019])
_WIN, _SIGMA = 11, 1.5
_EPS32 = float(np.finfo(np.float32).eps)

METRIC_DIRECTIONS = {
    "psnr": "higher",
    "ssim": "higher",
    "ms_ssim": "higher",
    "iw_ssim": "higher",
    "haarpsi": "higher",
    "mdsi": "lower",
    "ms_gmsd": "lower",
}


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs target {t.shape}")
    if p.ndim == 3 and p.shape[-1] == 1:
        p, t = p[..., 0], t[..., 0]
    if not (p.ndim == 2 or (p.ndim == 3 and p.shape[-1] == 3)):
        raise ValueError(f"expected (H, W) or (H, W, 3) images, got {p.shape}")
    return p, t


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ LUMA_WEIGHTS if img.ndim == 3 else img


def _gauss_window() -> np.ndarray:
    k = np.arange(_WIN) - (_WIN - 1) / 2
    w = np.exp(-(k**2) / (2 * _SIGMA**2))
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only positions where the window fits (MATLAB 'valid')."""
    r = (len(w) - 1) // 2
    out = ndimage.correlate1d(img, w, axis=0, mode="nearest")
    out = ndimage.correlate1d(out, w, axis=1, mode="nearest")
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def _ssim_maps(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and contrast-structure maps (valid region) of two 2-D images."""
    if min(x.shape) < _WIN:
        raise ValueError(f"images must be at least {_WIN}x{_WIN}, got {x.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    w = _gauss_window()
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    sxx = np.maximum(_filter_valid(x * x, w) - mu_x**2, 0.0)
    syy = np.maximum(_filter_valid(y * y, w) - mu_y**2, 0.0)
    sxy = _filter_valid(x * y, w) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ss = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ss, cs


def _pool2(img: np.ndarray, pad: str) -> np.ndarray:
    """2x2 mean pooling of axes 0, 1. pad='edge': odd sizes replicate the last row/column
    (MATLAB msssim); pad='zero': piq's zero padding by max(H % 2, W % 2) then floor."""
    h, w = img.shape[:2]
    if pad == "edge":
        widths = [(0, h % 2), (0, w % 2)]
    else:
        p = max(h % 2, w % 2)
        widths = [(0, p), (0, p)]
    img = np.pad(
        img, widths + [(0, 0)] * (img.ndim - 2), mode="edge" if pad == "edge" else "constant"
    )
    h2, w2 = img.shape[0] // 2, img.shape[1] // 2
    img = img[: 2 * h2, : 2 * w2]
    return img.reshape(h2, 2, w2, 2, *img.shape[2:]).mean(axis=(1, 3))


def _corr_zero(img: np.ndarray, w: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """1-D correlation along `axis` with explicit zero padding (handles even kernels)."""
    pad = [(0, 0)] * img.ndim
    pad[axis] = (before, after)
    p = np.pad(img, pad)
    n = img.shape[axis]
    out = np.zeros_like(img)
    for k, wk in enumerate(w):
        if wk != 0:
            out += wk * np.take(p, np.arange(k, k + n), axis=axis)
    return out


def _prewitt_magnitude(img: np.ndarray) -> np.ndarray:
    box, diff = np.ones(3) / 3, np.array([-1.0, 0.0, 1.0])
    gx = _corr_zero(_corr_zero(img, box, 0, 1, 1), diff, 1, 1, 1)
    gy = _corr_zero(_corr_zero(img, diff, 0, 1, 1), box, 1, 1, 1)
    return np.sqrt(gx**2 + gy**2)


def _similarity(a: np.ndarray, b: np.ndarray, c: float, alpha: float = 0.0) -> np.ndarray:
    return (2 * a * b - alpha * a * b + c) / (a**2 + b**2 - alpha * a * b + c)


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (data range 1) over all pixels and channels, or over the (H, W) bool ``mask``.

    Higher is better; inf for identical inputs, NaN for an empty mask.
    """
    p, t = _pair(pred, target)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape[:2]:
            raise ValueError(f"mask shape {m.shape} does not match image {p.shape[:2]}")
        p, t = p[m], t[m]
        if p.size == 0:
            return float("nan")
    mse = float(np.mean((p - t) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) on luma, gaussian window 11 / sigma 1.5, valid region mean.

    Higher is better, 1 for identical inputs. Needs H, W >= 11.
    """
    p, t = _pair(pred, target)
    ss, _ = _ssim_maps(_luma(p), _luma(t), 1.0)
    return float(ss.mean())


def _min_size(scales: int) -> int:
    """Smallest side for which every one of `scales` dyadic scales fits an 11-px window."""
    return (_WIN - 1) * 2 ** (scales - 1) + 1


def _n_scales(size: int, max_scales: int, min_size: Callable[[int], int]) -> int:
    n = max_scales
    while n > 1 and size < min_size(n):
        n -= 1
    return n


def ms_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003) on luma with the standard 5 scale weights.

    Higher is better, 1 for identical inputs. Each scale needs >= 11 px, so 5 scales need
    H, W >= 161; smaller images use as many scales as fit (weights renormalised), down to
    plain SSIM at 11..20 px. Odd sizes are 2x2-pooled as in Wang's MATLAB msssim.m (edge
    replicated at the bottom/right), which differs from piq by up to ~1e-3 there.
    """
    x, y = (_luma(a) for a in _pair(pred, target))
    n = _n_scales(min(x.shape), 5, _min_size)
    # the published weights sum to 1.0001 and are used as is; truncated sets are renormalised
    weights = _MS_SSIM_WEIGHTS if n == 5 else _MS_SSIM_WEIGHTS[:n] / _MS_SSIM_WEIGHTS[:n].sum()
    values = []
    for s in range(n):
        if s:
            x, y = _pool2(x, "edge"), _pool2(y, "edge")
        ss, cs = _ssim_maps(x, y, 1.0)
        values.append((ss if s == n - 1 else cs).mean())
    return float(np.prod(np.maximum(values, 0.0) ** weights))


# --- IW-SSIM (Wang & Li 2011), following the authors' MATLAB code / piq ---------------------

_BINOM5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16 * np.sqrt(2)  # matlabPyrTools 'binom5'


def _pyr_step(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Laplacian pyramid step (reflect-101 borders): returns (lowpass, bandpass)."""
    lo = x
    for ax in (1, 0):
        lo = ndimage.correlate1d(lo, _BINOM5, axis=ax, mode="mirror")
        lo = lo[:, ::2] if ax == 1 else lo[::2]
    up = lo
    for ax, n in ((1, x.shape[1]), (0, x.shape[0])):
        shape = list(up.shape)
        shape[ax] *= 2
        z = np.zeros(shape)
        idx = [slice(None)] * 2
        idx[ax] = slice(0, None, 2)
        z[tuple(idx)] = up
        up = np.take(ndimage.correlate1d(z, _BINOM5, axis=ax, mode="mirror"), np.arange(n), axis=ax)
    return lo, x - up


def _bilinear(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (MATLAB imresize / torch align_corners=False)."""
    for ax, m in enumerate(shape):
        n = x.shape[ax]
        src = np.maximum((np.arange(m) + 0.5) * n / m - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        lam = src - i0
        lam = lam[:, None] if ax == 0 else lam[None, :]
        x = np.take(x, i0, axis=ax) * (1 - lam) + np.take(x, i1, axis=ax) * lam
    return x


def _enlarge2(x: np.ndarray) -> np.ndarray:
    """Upscale a parent band by 2 as in the IW-SSIM MATLAB code (imenlarge2)."""
    m, n = x.shape
    t = np.zeros((4 * m - 1, 4 * n - 1))
    t[1:-1, 1:-1] = _bilinear(x, (4 * m - 3, 4 * n - 3))
    t[0, :] = 2 * t[1, :] - t[2, :]
    t[-1, :] = 2 * t[-2, :] - t[-3, :]
    t[:, 0] = 2 * t[:, 1] - t[:, 2]
    t[:, -1] = 2 * t[:, -2] - t[:, -3]
    return t[::2, ::2]


def _info_content(x: np.ndarray, y: np.ndarray, y_parent: np.ndarray | None) -> np.ndarray:
    """Information content weight map of reference band y (interior, shape (H-2, W-2))."""
    sigma_nsq, blk = 0.4, 3

    def mean(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, blk, mode="constant")[1:-1, 1:-1]

    mu_x, mu_y = mean(x), mean(y)
    sxx = np.maximum(mean(x * x) - mu_x**2, 0.0)
    syy = np.maximum(mean(y * y) - mu_y**2, 0.0)
    sxy = mean(x * y) - mu_x * mu_y
    g = sxy / (syy + _EPS32)
    vv = sxx - g * sxy
    flat_y = syy < _EPS32
    g[flat_y], vv[flat_y] = 0.0, sxx[flat_y]
    flat_x = sxx < _EPS32
    g[flat_x], vv[flat_x] = 0.0, 0.0

    h, w = y.shape
    nv, nh = h - blk + 1, w - blk + 1
    cols = [y[1 - dy : 1 - dy + nv, 1 - dx : 1 - dx + nh] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    if y_parent is not None:
        cols.append(_enlarge2(y_parent)[:h, :w][1 : 1 + nv, 1 : 1 + nh])
    big_y = np.stack([c.ravel() for c in cols], axis=1)
    n = big_y.shape[1]
    cov = big_y.T @ big_y / big_y.shape[0]
    eig, vec = np.linalg.eigh(cov)
    pos = np.where(eig > 0, eig, 0.0)
    lam = pos * eig.sum() / (pos.sum() if pos.sum() != 0 else 1.0)
    # pinv instead of inv: a flat reference band gives a singular covariance
    cov_inv = np.linalg.pinv((vec * lam) @ vec.T)
    ss = (np.sum((big_y @ cov_inv) * big_y, axis=1) / n).reshape(nv, nh)
    a = (vv + (1 + g * g) * sigma_nsq)[..., None] * ss[..., None] * lam + sigma_nsq * vv[..., None]
    iw = np.log2(1 + a / sigma_nsq**2).sum(axis=-1)
    iw[iw < _EPS32] = 0.0
    return iw


def iw_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Information-content-weighted SSIM (Wang & Li 2011) on luma, 5-scale Laplacian pyramid.

    Higher is better, 1 for identical inputs. 5 scales need H, W >= 161; smaller images use
    fewer scales (weights renormalised), minimum 2 scales (H, W >= 21).
    """
    x, y = (_luma(a) * 255 for a in _pair(pred, target))
    levels = _n_scales(min(x.shape), 5, _min_size)
    if levels < 2:
        raise ValueError(f"iw_ssim needs images of at least {_min_size(2)} px, got {x.shape}")
    weights = _MS_SSIM_WEIGHTS[:levels] / _MS_SSIM_WEIGHTS[:levels].sum()
    crop = (_WIN - 1) // 2 - 1  # iw maps are (H-2, W-2); ssim maps are (H-10, W-10)

    x, x_band = _pyr_step(x)
    y, y_band = _pyr_step(y)
    wmcs = []
    for i in range(levels):
        if i < levels - 2:
            x, x_next = _pyr_step(x)
            y, y_next = _pyr_step(y)
        else:
            x_next, y_next = x, y
        ss, cs = _ssim_maps(x_band, y_band, 255.0)
        if i == levels - 1:
            wmcs.append(ss.mean())
        else:
            parent = y_next if i < levels - 2 else None
            iw = _info_content(x_band, y_band, parent)[crop:-crop, crop:-crop]
            total = iw.sum()
            wmcs.append((cs * iw).sum() / total if total > 0 else cs.mean())
        x_band, y_band = x_next, y_next
    return float(np.prod(np.abs(wmcs) ** weights))


def haarpsi(pred: np.ndarray, target: np.ndarray) -> float:
    """HaarPSI (Reisenhofer et al. 2018): Haar wavelet perceptual similarity, YIQ for colour.

    Higher is better, 1 for identical inputs (range [0, 1]). Constants C=30, alpha=4.2,
    3 scales, 2x subsampling as in the reference code.
    """
    c, alpha, scales = 30.0, 4.2, 3
    p, t = _pair(pred, target)
    colour = p.ndim == 3
    x = (p @ _YIQ.T if colour else p[..., None]) * 255
    y = (t @ _YIQ.T if colour else t[..., None]) * 255
    x, y = _pool2(x, "zero"), _pool2(y, "zero")

    def haar(img: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        step = np.r_[np.ones(k // 2), -np.ones(k // 2)] / k
        box = np.ones(k)
        pad = (k // 2 - 1, k // 2)
        horiz = _corr_zero(_corr_zero(img, step, 0, *pad), box, 1, *pad)
        vert = _corr_zero(_corr_zero(img, box, 0, *pad), step, 1, *pad)
        return np.abs(horiz), np.abs(vert)

    cx = [haar(x[..., 0], 2 ** (s + 1)) for s in range(scales)]
    cy = [haar(y[..., 0], 2 ** (s + 1)) for s in range(scales)]
    weights, sims = [], []
    for o in range(2):
        weights.append(np.maximum(cx[2][o], cy[2][o]))
        sims.append((_similarity(cx[0][o], cy[0][o], c) + _similarity(cx[1][o], cy[1][o], c)) / 2)
    if colour:

        def iq(img: np.ndarray) -> np.ndarray:
            pad = np.pad(img[..., 1:], ((0, 1), (0, 1), (0, 0)))
            return np.abs((pad[:-1, :-1] + pad[1:, :-1] + pad[:-1, 1:] + pad[1:, 1:]) / 4)

        ix, iy = iq(x), iq(y)
        weights.append((weights[0] + weights[1]) / 2)
        sims.append(
            (_similarity(ix[..., 0], iy[..., 0], c) + _similarity(ix[..., 1], iy[..., 1], c)) / 2
        )
    w, s = np.stack(weights), np.stack(sims)
    eps = _EPS32
    score = (np.sum(w / (1 + np.exp(-alpha * s))) + eps) / (np.sum(w) + eps)
    return float((np.log(score / (1 - score)) / alpha) ** 2)


def mdsi(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean Deviation Similarity Index (Nafchi et al. 2016), 'sum' combination, LHM colour.

    Lower is better, 0 for identical inputs. Gray inputs are replicated to RGB (as piq does).
    """
    c1, c2, c3, alpha, q, o = 140.0, 55.0, 550.0, 0.6, 0.25, 0.25
    p, t = _pair(pred, target)
    if p.ndim == 2:
        p, t = np.repeat(p[..., None], 3, -1), np.repeat(t[..., None], 3, -1)
    x, y = p * 255, t * 255
    k = max(1, round(min(x.shape[:2]) / 256))
    if k > 1:  # average-pool large images by ~min(H, W)/256 as in the reference code
        pad = ((k - 1) // 2, k // 2)

        def pool(a: np.ndarray) -> np.ndarray:
            a = np.pad(a, (pad, pad, (0, 0)))
            h, w = a.shape[0] // k, a.shape[1] // k
            return a[: h * k, : w * k].reshape(h, k, w, k, 3).mean(axis=(1, 3))

        x, y = pool(x), pool(y)
    x, y = x @ _LHM.T, y @ _LHM.T
    gx, gy = _prewitt_magnitude(x[..., 0]), _prewitt_magnitude(y[..., 0])
    g_avg = _prewitt_magnitude((x[..., 0] + y[..., 0]) / 2)
    gs = _similarity(gx, gy, c1) + _similarity(gx, g_avg, c2) - _similarity(gy, g_avg, c2)
    cs = (2 * (x[..., 1] * y[..., 1] + x[..., 2] * y[..., 2]) + c3) / (
        x[..., 1] ** 2 + y[..., 1] ** 2 + x[..., 2] ** 2 + y[..., 2] ** 2 + c3
    )
    gcs = (alpha * gs + (1 - alpha) * cs).astype(complex) ** q  # gs may be < 0: complex root
    return float(np.mean(np.abs(gcs - gcs.mean())) ** o)


def ms_gmsd(pred: np.ndarray, target: np.ndarray) -> float:
    """Multi-scale gradient magnitude similarity deviation (Zhang et al. 2017) on luma.

    Lower is better, 0 for identical inputs. 4 scales (weights 0.096, 0.596, 0.289, 0.019),
    masking alpha 0.5, T=170 on the 0..255 scale; images under 17 px use fewer scales.
    """
    t_const, alpha = 170.0, 0.5
    x, y = (_luma(a) * 255 for a in _pair(pred, target))
    n = _n_scales(min(x.shape), 4, lambda s: 2**s + 1)
    weights = _MS_GMSD_WEIGHTS[:n] / _MS_GMSD_WEIGHTS[:n].sum()
    dev = []
    for s in range(n):
        if s:
            x, y = _pool2(x, "zero"), _pool2(y, "zero")
        gms = _similarity(_prewitt_magnitude(x), _prewitt_magnitude(y), t_const, alpha)
        dev.append(gms.std())
    return float(np.sqrt(np.sum(weights * np.square(dev))))


def hard_pixel_mask(
    planes: np.ndarray, ground_truth: np.ndarray, tol: float = 2 / 255
) -> np.ndarray:
    """(H, W) bool: True where no plane of ``planes`` (Z, H, W[, C]) is within ``tol`` of the
    ground truth (H, W[, C]), using the max abs difference over colour channels."""
    pl = np.asarray(planes, dtype=np.float64)
    gt = np.asarray(ground_truth, dtype=np.float64)
    if pl.shape[1:] != gt.shape:
        raise ValueError(f"planes {pl.shape} do not match ground truth {gt.shape}")
    err = np.abs(pl - gt[None])
    if err.ndim == 4:
        err = err.max(axis=-1)
    return err.min(axis=0) > tol


def evaluate(
    pred: np.ndarray, target: np.ndarray, planes: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics as a dict; with ``planes`` (Z, H, W[, C]) also ``psnr_hard`` (PSNR on the
    hard-pixel mask, NaN if empty) and ``hard_fraction``; both NaN without planes."""
    out = {
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "ms_ssim": ms_ssim(pred, target),
        "iw_ssim": iw_ssim(pred, target),
        "haarpsi": haarpsi(pred, target),
        "mdsi": mdsi(pred, target),
        "ms_gmsd": ms_gmsd(pred, target),
    }
    if planes is None:
        out["psnr_hard"] = out["hard_fraction"] = float("nan")
    else:
        mask = hard_pixel_mask(planes, target)
        out["psnr_hard"] = psnr(pred, target, mask)
        out["hard_fraction"] = float(mask.mean())
    return out


def difficulty_bins(
    pred: np.ndarray,
    target: np.ndarray,
    planes: np.ndarray,
    patch: int = 32,
    bins: Sequence[float] = (0.0, 0.01, 0.1, 0.3, 1.0),
    tol: float = 2 / 255,
) -> list[dict[str, float]]:
    """PSNR of non-overlapping ``patch`` x ``patch`` tiles grouped by difficulty.

    Difficulty of a tile = fraction of its hard pixels (see ``hard_pixel_mask``); tiles are
    binned into [bins[i], bins[i+1]) (last bin closed); partial tiles at the right/bottom edge
    are dropped. Per bin: lo, hi, count, mean difficulty and mean tile PSNR (NaN if empty);
    tile PSNR is capped at 100 dB (MSE floor 1e-10) so identical tiles do not give inf.
    """
    p, t = _pair(pred, target)
    hard = hard_pixel_mask(planes, target, tol)
    nh, nw = p.shape[0] // patch, p.shape[1] // patch

    def tiles(a: np.ndarray) -> np.ndarray:
        a = a[: nh * patch, : nw * patch]
        a = a.reshape(nh, patch, nw, patch, -1)
        return a.transpose(0, 2, 1, 3, 4).reshape(nh * nw, -1)

    mse = np.mean((tiles(p) - tiles(t)) ** 2, axis=1)
    tile_psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-10))
    difficulty = tiles(hard.astype(np.float64)).mean(axis=1)
    edges = np.asarray(bins, dtype=np.float64)
    out = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        sel = (difficulty >= lo) & ((difficulty <= hi) if last else (difficulty < hi))
        n = int(sel.sum())
        out.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": n,
                "difficulty": float(difficulty[sel].mean()) if n else float("nan"),
                "psnr": float(tile_psnr[sel].mean()) if n else float("nan"),
            }
        )
    return out


# ----------------------------------------------------------------------------- no reference


def gradient_energy(image: np.ndarray) -> float:
    """Mean squared forward-difference gradient of the luma, in the image's units squared."""
    y = luma(image)
    return float((np.diff(y, axis=0) ** 2).mean() + (np.diff(y, axis=1) ** 2).mean())


def gradient_energy_map(image: np.ndarray) -> np.ndarray:
    """Per-pixel squared gradient magnitude of the luma (edge-replicated forward differences)."""
    y = luma(image)
    gy = np.diff(y, axis=0, append=y[-1:])
    gx = np.diff(y, axis=1, append=y[:, -1:])
    return gy * gy + gx * gx


def consistency(fused: np.ndarray, planes: np.ndarray) -> float:
    """Mean over pixels of min over planes of |fused - plane| (mean over channels), same units."""
    f = np.asarray(fused, np.float32)
    best = None
    for plane in planes:
        d = np.abs(f - np.asarray(plane, np.float32))
        if d.ndim == 3:
            d = d.mean(-1)
        best = d if best is None else np.minimum(best, d)
    return float(best.mean())


def sharpest_plane(planes: np.ndarray) -> tuple[int, list[float]]:
    """Index of the plane with the highest mean gradient energy, and every plane's energy."""
    energies = [gradient_energy(p) for p in planes]
    return int(np.argmax(energies)), energies
