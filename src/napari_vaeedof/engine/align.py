"""Registration of a focus stack's planes: drift and focus breathing removed before fusion.

Transforms are estimated between neighbouring planes (they differ least in focus) with OpenCV's
ECC (`cv2.findTransformECC`) on a Gaussian pyramid, coarse to fine, and composed to a reference
plane (the middle one by default). ECC runs on each plane's luma, smoothed by its Gaussian
prefilter (its correlation is blind to brightness and contrast, and a defocus blur moves no
edge), leaving out saturated and featureless areas (found on the gradient magnitude). On
synthetic stacks with blur differing between planes, ECC on gradient-magnitude or band-passed
(difference of Gaussians) images recovered the transforms 2-4 times less precisely than on the
luma, so the luma it is. A pair that does not converge, shares too little detail, or gives an
implausible transform (`MAX_SCALE_CHANGE`, `MAX_ROTATION`, `MAX_SHIFT`) is taken as aligned
(identity), with a warning naming the two planes.

A transform is a (3, 3) float64 matrix ``T`` from a plane's pixel coordinates ``(x, y, 1)``
(x the column, y the row, pixel centres at integers) to the reference plane's: `warp_planes`
resamples each plane on the reference grid (bicubic, `cv2.warpAffine`). Shapes never change:
where a warped plane no longer covers the reference frame, its pixels are taken from the nearest
plane (in focus order) that covers them; the reference covers the whole frame.

numpy and OpenCV only (OpenCV imported on first use); arrays in, arrays out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .options import ALIGNMENTS
from .stack import luma, to_dtype

MODELS = ALIGNMENTS[1:]  # the motion models ("none" is no registration)
#: A neighbour pair's scale (each singular value of its linear part) must be within 1 +- this.
MAX_SCALE_CHANGE = 0.1
#: ... its rotation within +- this many degrees ...
MAX_ROTATION = 5.0
#: ... the plane centre's shift within this fraction of the plane's width (x) and height (y) ...
MAX_SHIFT = 0.1
#: ... and the pair's final ECC correlation at least this (neighbouring planes of our synthetic
#: stacks: 0.8 to 0.98).
MIN_CORRELATION = 0.2
#: Per-plane gains (`match_gains`) outside [1 / this, this] are refused (gain 1, a warning).
MAX_GAIN = 2.0
#: ECC runs on a pyramid whose coarsest level has at least this many px on its shorter side,
#: and whose finest level is the plane, or half of it until the longer side is at most
#: `_FINEST` px (finer levels cost time and move the estimate by hundredths of a pixel).
_COARSEST = 48
_FINEST = 2048
_SIGMA = 1.0  # Gaussian prefilter (px, at each level) of the luma before its gradient (masks)
_ECC_FILTER = 5  # findTransformECC's own Gaussian prefilter (kernel size)
#: ECC stops at each level after this many iterations or a correlation gain below _ECC_EPS:
#: on 384 px stacks 100 / 1e-6 took 3x as long for the same transforms (within 0.003 px).
_ECC_ITERATIONS = 30
_ECC_EPS = 1e-5
_FEATURE_RADIUS = 8  # px at each level: the window of the local gradient level
_FEATURE_FLOOR = 0.05  # featureless: local gradient below this fraction of its 99th percentile
_MIN_MASKED = 0.02  # fraction of pixels a mask must keep; with fewer no featureless mask is used
#: Saturated: luma within this fraction of the plane's range of its maximum, where at least
#: `_SATURATED_AREA` of the plane is (a clipped highlight, not one bright pixel).
_SATURATED = 1e-3
_SATURATED_AREA = 1e-3


def check_model(model: str, allowed: tuple[str, ...] = MODELS, *, what: str = "model") -> str:
    """``model`` if it is one of ``allowed``, else a one-line ValueError naming them."""
    if not isinstance(model, str) or model not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {model!r}")
    return model


def _cv2():
    import cv2

    return cv2


def _as_planes(planes) -> np.ndarray:
    """(Z, Y, X) or (Z, Y, X, C) array-like -> the same as a numpy array (no copy if possible)."""
    a = np.asarray(planes)
    if a.ndim not in (3, 4) or a.shape[0] < 1 or min(a.shape[1:3]) < 1:
        raise ValueError(f"planes must be (Z, Y, X) or (Z, Y, X, C), got shape {a.shape}")
    return a


def _reference(z: int, reference: int | None) -> int:
    """The reference plane's index: ``reference``, checked, or the middle plane ``z // 2``."""
    ref = z // 2 if reference is None else int(reference)
    if not 0 <= ref < z:
        raise ValueError(f"reference must be a plane index from 0 to {z - 1}, got {reference}")
    return ref


def _channel_weights(planes: np.ndarray) -> np.ndarray | None:
    """Per-channel scale that puts every channel of a multichannel (not RGB) stack on a common
    footing before their mean is taken (1 / each channel's standard deviation)."""
    if planes.ndim == 3 or planes.shape[-1] in (1, 3):
        return None
    step = max(1, int(math.sqrt(planes[0, ..., 0].size / 250_000)))
    sample = np.asarray(planes[:, ::step, ::step], np.float64)
    std = sample.reshape(-1, planes.shape[-1]).std(0)
    return np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)


def _plane_luma(plane: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """One plane (Y, X[, C]) -> (Y, X) float32 luma (the channel itself when there is one)."""
    if plane.ndim == 3 and plane.shape[-1] == 1:
        plane = plane[..., 0]
    if weights is not None:
        plane = np.asarray(plane, np.float64) * weights
    return luma(plane).astype(np.float32)


def _saturated(lum: np.ndarray) -> np.ndarray:
    """(Y, X) bool: the plane's clipped highlights (none when its maximum is a few pixels)."""
    top, bottom = float(lum.max()), float(lum.min())
    hot = lum >= top - _SATURATED * (top - bottom)
    return hot if top > bottom and hot.mean() >= _SATURATED_AREA else np.zeros(lum.shape, bool)


def _levels(height: int, width: int) -> tuple[int, int]:
    """(halvings before the finest ECC level, further levels below it)."""
    skip = 0
    while max(height, width) >> skip > _FINEST:
        skip += 1
    levels = 0
    while min(height, width) >> (skip + levels + 1) >= _COARSEST:
        levels += 1
    return skip, levels


class _Prepared:
    """One plane's pyramid for ECC, finest level first: the luma (``images``), and the mask of
    the pixels to use (``masks``, None for all) from its gradient magnitude."""

    def __init__(self, lum: np.ndarray, skip: int, levels: int):
        cv2 = _cv2()
        saturated = _saturated(lum)
        img = lum
        for _ in range(skip):
            img = cv2.pyrDown(img)
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        for level in range(levels + 1):
            if level:
                img = cv2.pyrDown(img)
            if level or skip:
                saturated = cv2.resize(saturated.astype(np.uint8), img.shape[::-1],
                                       interpolation=cv2.INTER_NEAREST).astype(bool)
            smooth = cv2.GaussianBlur(img, (0, 0), _SIGMA)
            grad = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3),
                                 cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3))
            self.images.append(img)
            self.masks.append(self._mask(grad, saturated))
            if not level:
                usable = grad if self.masks[0] is None else grad[self.masks[0] > 0]
                self.detail = float(np.percentile(usable, 99)) if usable.size else 0.0

    @staticmethod
    def _mask(grad: np.ndarray, saturated: np.ndarray) -> np.ndarray | None:
        """uint8 mask (1 = use) without saturated (dilated) and featureless pixels; None: all."""
        cv2 = _cv2()
        size = 2 * _FEATURE_RADIUS + 1
        local = cv2.blur(grad, (size, size))
        top = float(np.percentile(local, 99))
        keep = local > _FEATURE_FLOOR * top if top > 0 else np.zeros(grad.shape, bool)
        if keep.mean() < _MIN_MASKED and top > 0:
            keep = np.ones(grad.shape, bool)
        if saturated.any():
            near = cv2.dilate(saturated.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            keep &= ~near
        if keep.all():
            return None
        return keep.astype(np.uint8)


def _motion(model: str) -> int:
    cv2 = _cv2()
    return cv2.MOTION_TRANSLATION if model == "translation" else cv2.MOTION_AFFINE


def _to_similarity(w: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The similarity (scale, rotation, shift) nearest a 2x3 affine ``w``, keeping where it puts
    ``centre`` (x, y)."""
    a = w[:, :2]
    c, s = (a[0, 0] + a[1, 1]) / 2, (a[1, 0] - a[0, 1]) / 2
    sim = np.array([[c, -s], [s, c]])
    moved = a @ centre + w[:, 2]
    return np.column_stack([sim, moved - sim @ centre])


def _ecc_pair(template: _Prepared, moving: _Prepared, model: str) -> tuple[np.ndarray, float]:
    """ECC, coarse to fine: the 3x3 warp from ``template``'s finest-level pixel coordinates to
    ``moving``'s, and the final correlation. Raises cv2.error when ECC does not converge."""
    cv2 = _cv2()
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _ECC_ITERATIONS, _ECC_EPS)
    w = np.eye(2, 3, dtype=np.float64)
    cc = 0.0
    for level in range(len(template.images) - 1, -1, -1):
        if level < len(template.images) - 1:
            w[:, 2] *= 2.0  # x_fine = 2 x_coarse (cv2.pyrDown)
        tmpl, mov = template.images[level], moving.images[level]
        cc, found = cv2.findTransformECC(tmpl, mov, w.astype(np.float32), _motion(model),
                                         criteria, moving.masks[level], _ECC_FILTER)
        w = np.asarray(found, np.float64)
    if model == "similarity":
        h, wd = template.images[0].shape
        w = _to_similarity(w, np.array([(wd - 1) / 2, (h - 1) / 2]))
    return np.vstack([w, [0.0, 0.0, 1.0]]), float(cc)


def _implausible(t: np.ndarray, height: int, width: int) -> str | None:
    """Why a pair's 3x3 transform cannot be drift or breathing, or None."""
    a = t[:2, :2]
    sv = np.linalg.svd(a, compute_uv=False)
    if sv.min() < 1 - MAX_SCALE_CHANGE or sv.max() > 1 + MAX_SCALE_CHANGE:
        return (f"scale {sv.max() if sv.max() > 1 + MAX_SCALE_CHANGE else sv.min():.3f} is "
                f"outside {1 - MAX_SCALE_CHANGE:.2g}-{1 + MAX_SCALE_CHANGE:.2g}")
    angle = math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    if abs(angle) > MAX_ROTATION:
        return f"rotation {angle:.1f} degrees is more than {MAX_ROTATION:g}"
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    dx, dy = np.abs(a @ centre + t[:2, 2] - centre)
    if dx > MAX_SHIFT * width or dy > MAX_SHIFT * height:
        return (f"shift ({dx:.0f}, {dy:.0f}) px is more than {MAX_SHIFT:.0%} of the plane "
                f"({width}x{height} px)")
    return None


def estimate_transforms(planes, *, model: str = "similarity", reference: int | None = None
                        ) -> np.ndarray:
    """Transforms that register every plane to the reference plane.

    Each neighbouring pair is registered with ECC (coarse to fine, on the luma, saturated and
    featureless areas left out); the pair transforms are composed
    outward from the reference. A pair that fails (no convergence, too little shared detail,
    an implausible transform) is taken as aligned (identity) and a UserWarning names it.

    Parameters
    ----------
    planes : (Z, Y, X) or (Z, Y, X, C) array
        Any real dtype. RGB (C = 3) is registered on its BT.601 luma, one channel on itself,
        other channel counts on the mean of the channels scaled to equal spread.
    model : {"translation", "similarity", "affine"}
        Shift only; scale, rotation and shift (focus breathing and drift; ECC estimates an affine
        map, reduced to the nearest similarity); or a full affine map.
    reference : int, optional
        The plane the others are registered to; default the middle one, ``Z // 2``.

    Returns
    -------
    (Z, 3, 3) float64 ndarray
        ``T[z]`` maps plane z's pixel coordinates (x, y, 1) to the reference's; ``T[reference]``
        is the identity.

    Examples
    --------
    >>> image = np.random.default_rng(0).random((96, 96))
    >>> planes = np.stack([np.roll(image, k, axis=1) for k in range(3)])  # drift: 1 px a plane
    >>> t = estimate_transforms(planes, model="translation")
    >>> np.round(t[:, 0, 2], 1)  # x shift of each plane onto plane 1
    array([ 1.,  0., -1.])
    """
    check_model(model)
    a = _as_planes(planes)
    z, height, width = a.shape[:3]
    ref = _reference(z, reference)
    transforms = np.repeat(np.eye(3)[None], z, axis=0)
    if z < 2:
        return transforms
    skip, levels = _levels(height, width)
    if min(height, width) >> skip < 8:
        warnings.warn(f"Planes of {width}x{height} px are too small to register; they are "
                      f"taken as aligned.", UserWarning, stacklevel=2)
        return transforms
    weights = _channel_weights(a)
    to_full = np.diag([2.0**skip, 2.0**skip, 1.0])
    pair = np.repeat(np.eye(3)[None], z - 1, axis=0)  # pair[k]: plane k+1 coords -> plane k's
    prev = _Prepared(_plane_luma(a[0], weights), skip, levels)
    for k in range(z - 1):
        nxt = _Prepared(_plane_luma(a[k + 1], weights), skip, levels)
        reason = None
        if min(prev.detail, nxt.detail) <= 0:
            reason = "a plane has no detail to register on"
        else:
            try:
                w, cc = _ecc_pair(nxt, prev, model)
            except _cv2().error:
                reason = "ECC did not converge"
            else:
                w = to_full @ w @ np.linalg.inv(to_full)
                if cc < MIN_CORRELATION:
                    reason = (f"correlation {cc:.2f} is below {MIN_CORRELATION}: too little "
                              f"shared detail")
                else:
                    reason = _implausible(w, height, width)
        if reason is None:
            pair[k] = w
        else:
            warnings.warn(f"Planes {k} and {k + 1} could not be registered ({reason}); they "
                          f"are taken as aligned (identity transform).", UserWarning,
                          stacklevel=2)
        prev = nxt
    for k in range(ref - 1, -1, -1):  # plane k -> plane k+1 is the inverse of pair[k]
        transforms[k] = transforms[k + 1] @ np.linalg.inv(pair[k])
    for k in range(ref + 1, z):  # plane k -> plane k-1 is pair[k-1]
        transforms[k] = transforms[k - 1] @ pair[k - 1]
    return transforms


#: OpenCV's interpolation for `warp_planes` (a name of cv2's INTER_* flags). Bicubic: on
#: synthetic stacks with a lens blur of 0.5 px, fusing bilinearly resampled planes scored 0.9-3.2
#: dB below fusing the planes as taken, bicubic 0-0.8 dB (scripts/measure_align.py).
_INTERPOLATION = "INTER_CUBIC"
#: dtypes OpenCV warps as they are; others go through float64 (float16 through float32).
_CV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def _warp_one(plane: np.ndarray, t: np.ndarray, border: int, value: float = 0.0) -> np.ndarray:
    """(Y, X[, C]) plane resampled on the reference grid: out(p) = plane(T^-1 p), bicubic."""
    cv2 = _cv2()
    h, w = plane.shape[:2]
    flags = getattr(cv2, _INTERPOLATION)
    work = plane if plane.dtype in _CV_DTYPES else \
        plane.astype(np.float32 if plane.dtype == np.float16 else np.float64)
    affine = np.allclose(t[2], [0.0, 0.0, 1.0])

    def warp(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        if affine:
            return cv2.warpAffine(x, t[:2], (w, h), flags=flags, borderMode=border,
                                  borderValue=value)
        return cv2.warpPerspective(x, t, (w, h), flags=flags, borderMode=border,
                                   borderValue=value)

    if work.ndim == 2:
        out = warp(work)
    else:  # OpenCV warps up to 4 channels at once
        out = np.concatenate([warp(work[..., c: c + 4]).reshape(h, w, -1)
                              for c in range(0, work.shape[-1], 4)], axis=-1)
    return out if out.dtype == plane.dtype else to_dtype(out, plane.dtype)


def warp_planes(planes, transforms, *, reference: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Resample every plane on the reference plane's pixel grid.

    Bicubic (`cv2.warpAffine`, `cv2.warpPerspective` for a projective matrix). Where a warped
    plane does not cover the reference frame, its pixels are those of the nearest plane in focus
    order that covers them (of two at the same distance, the one nearer the reference), or, if
    none does, its own edge pixels repeated; the input is not modified.

    Parameters
    ----------
    planes : (Z, Y, X) or (Z, Y, X, C) array
        Any real dtype; integers are rounded and clipped to their range after interpolation
        (bicubic interpolation can overshoot a little at edges).
    transforms : (Z, 3, 3) array
        Plane z's pixel coordinates (x, y, 1) -> the reference's, as `estimate_transforms`
        returns them.
    reference : int, optional
        The reference plane, which breaks ties between covering planes; default ``Z // 2``.

    Returns
    -------
    warped : ndarray, the shape and dtype of ``planes``
    coverage : (Z, Y, X) bool ndarray
        True where plane z's own (interpolated) pixels are, False where they were filled.
    """
    cv2 = _cv2()
    a = _as_planes(planes)
    t = np.asarray(transforms, np.float64)
    z, h, w = a.shape[:3]
    if t.shape != (z, 3, 3) or not np.all(np.isfinite(t)):
        raise ValueError(f"transforms must be {z} finite 3x3 matrices, got shape {t.shape}")
    ref = _reference(z, reference)
    warped = np.empty(a.shape, a.dtype)
    coverage = np.ones((z, h, w), bool)
    ones = np.ones((h, w), np.float32)
    for k in range(z):
        if np.allclose(t[k], np.eye(3), rtol=0, atol=1e-9):
            warped[k] = a[k]
            continue
        warped[k] = _warp_one(a[k], t[k], cv2.BORDER_REPLICATE)
        coverage[k] = _warp_one(ones, t[k], cv2.BORDER_CONSTANT) > 1 - 1e-4
    for k in range(z):
        missing = ~coverage[k]
        for d in range(1, z):
            if not missing.any():
                break
            for j in sorted((k - d, k + d), key=lambda j: abs(j - ref)):
                if 0 <= j < z:
                    take = missing & coverage[j]
                    warped[k][take] = warped[j][take]
                    missing &= ~take
    return warped, coverage


def match_gains(planes, *, reference: int | None = None, coverage=None, black=0.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Scale each plane so its mean brightness matches the reference's (exposure flicker).

    The gain of plane z is the ratio of the reference's mean luma above ``black`` to plane z's,
    over the pixels both cover; defocus blur keeps the mean, so it does not move the gain. A
    gain beyond 1/`MAX_GAIN` to `MAX_GAIN` is refused (1, with a warning naming the plane).

    Parameters
    ----------
    planes : (Z, Y, X) or (Z, Y, X, C) array
    reference : int, optional
        The plane whose brightness the others take; default ``Z // 2``.
    coverage : (Z, Y, X) bool array, optional
        Where each plane holds its own pixels (`warp_planes`); default everywhere.
    black : float or (C,) array
        The black level (the value of no light), kept in place by the gain.

    Returns
    -------
    matched : ndarray, the shape and dtype of ``planes`` (integers rounded and clipped)
    gains : (Z,) float64 ndarray
    """
    a = _as_planes(planes)
    z = a.shape[0]
    ref = _reference(z, reference)
    black = np.asarray(black, np.float64)
    weights = _channel_weights(a)
    ref_lum = _plane_luma(np.asarray(a[ref], np.float64) - black, weights)
    gains = np.ones(z)
    out = np.empty(a.shape, a.dtype)
    for k in range(z):
        common = None if coverage is None else np.asarray(coverage[k], bool)
        lum = _plane_luma(np.asarray(a[k], np.float64) - black, weights)
        num = float(ref_lum[common].mean() if common is not None else ref_lum.mean())
        den = float(lum[common].mean() if common is not None else lum.mean())
        gain = num / den if den > 0 and num > 0 else math.inf
        if not 1 / MAX_GAIN <= gain <= MAX_GAIN:
            warnings.warn(f"Plane {k}'s brightness cannot be matched to plane {ref}'s (gain "
                          f"{gain:.3g} is outside {1 / MAX_GAIN:g}-{MAX_GAIN:g}); it is left "
                          f"as it is.", UserWarning, stacklevel=2)
            gain = 1.0
        gains[k] = gain
        out[k] = a[k] if gain == 1.0 else \
            to_dtype((np.asarray(a[k], np.float64) - black) * gain + black, a.dtype)
    return out, gains


@dataclass(frozen=True)
class Registration:
    """What `align_planes` returns: the planes on the reference grid and how they got there."""

    planes: np.ndarray  # (Z, Y, X[, C]), the input's shape and dtype
    transforms: np.ndarray  # (Z, 3, 3) float64, plane -> reference pixel coordinates
    coverage: np.ndarray  # (Z, Y, X) bool, where each plane's own pixels are
    gains: np.ndarray | None  # (Z,) float64 when brightness was matched
    reference: int

    def summary(self, model: str) -> dict:
        """JSON-ready record for a result's metadata."""
        out = {
            "model": model,
            "reference_plane": self.reference,
            "transforms": np.round(self.transforms, 9).tolist(),
            "transform_convention": "3x3, plane -> reference pixel coordinates (x = column, "
                                    "y = row, 1)",
            "border_filled": np.round(1 - self.coverage.mean(axis=(1, 2)), 6).tolist(),
        }
        if self.gains is not None:
            out["gains"] = np.round(self.gains, 6).tolist()
        return out


def align_planes(planes, *, model: str = "similarity", reference: int | None = None,
                 match_gain: bool = False, black=0.0) -> Registration:
    """Register the planes (`estimate_transforms`, `warp_planes`) and optionally match their
    brightness (`match_gains`), in that order.

    Parameters
    ----------
    planes : (Z, Y, X) or (Z, Y, X, C) array
        Not modified.
    model : {"none", "translation", "similarity", "affine"}
        "none" leaves the geometry alone (brightness only, with ``match_gain``).
    reference : int, optional
        Default the middle plane, ``Z // 2``.
    match_gain : bool
        Also scale each plane's brightness to the reference's, about ``black``.
    black : float or (C,) array
        The black level for ``match_gain``.

    Returns
    -------
    Registration
        ``planes`` in the input's shape and dtype, and the transforms, coverage and gains.
    """
    check_model(model, ALIGNMENTS)
    a = _as_planes(planes)
    z = a.shape[0]
    ref = _reference(z, reference)
    if model == "none":
        transforms = np.repeat(np.eye(3)[None], z, axis=0)
        aligned, coverage = a, np.ones(a.shape[:3], bool)
    else:
        transforms = estimate_transforms(a, model=model, reference=ref)
        aligned, coverage = warp_planes(a, transforms, reference=ref)
    gains = None
    if match_gain:
        aligned, gains = match_gains(aligned, reference=ref, coverage=coverage, black=black)
    return Registration(aligned, transforms, coverage, gains, ref)
