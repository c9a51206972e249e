"""Pixel-faithful composition: the input planes' own pixels where a plane holds the content,
the decoded latent fusion only where none does, and the depth map that falls out of it.

Selection and fill logits come from the selection head at latent resolution (1/8); they are
upsampled to full resolution edge-aware, with a guided filter whose guide is each plane's own
luminance, so weight boundaries follow the real edges of the planes. All functions work on
torch tensors of one tile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Guided-filter radius (px) and regulariser (intensity^2, intensities in [0, 1]): one latent
#: cell, and edges of contrast above ~0.03 steer the weights.
GUIDE_RADIUS = 8
GUIDE_EPS = 1e-3
#: Fill probabilities below FILL_DEAD are exactly no fill, above 1 - FILL_DEAD exactly full
#: fill, so "no fill" means "only input pixels" and can be tested.
FILL_DEAD = 0.1
_LUMA = (0.299, 0.587, 0.114)


def luma(planes: torch.Tensor) -> torch.Tensor:
    """(Z, 3, H, W) -> (Z, 1, H, W) Rec. 601 luma."""
    w = torch.tensor(_LUMA, dtype=planes.dtype, device=planes.device)
    return (planes * w[:, None, None]).sum(1, keepdim=True)


def _box_sum_1d(x: torch.Tensor, radius: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[dim]
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    cum = torch.cat([zero, x.cumsum(dim)], dim)  # cum[i] = sum of x[:i]
    i = torch.arange(n, device=x.device)
    hi, lo = (i + radius + 1).clamp(max=n), (i - radius).clamp(min=0)
    total = cum.index_select(dim, hi) - cum.index_select(dim, lo)
    return total, (hi - lo).to(x.dtype)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, C, H, W) mean over a (2r+1)^2 window clipped at the border; cumulative sums, so the
    cost does not grow with the radius."""
    rows, n_rows = _box_sum_1d(x, radius, 2)
    both, n_cols = _box_sum_1d(rows, radius, 3)
    return both / (n_rows[:, None] * n_cols[None, :])


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = GUIDE_RADIUS,
                  eps: float = GUIDE_EPS) -> torch.Tensor:
    """He et al.'s guided filter with a gray guide: (N, 1, H, W) guide, (N, K, H, W) src."""
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    cov = box_mean(guide * src, radius) - mean_i * mean_p
    var = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def sharpness(planes: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """(Z, 3, H, W) -> (Z, H, W) local energy of the Laplacian of luminance, box-smoothed."""
    lum = planes.float().mean(1, keepdim=True)
    kernel = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=lum.dtype, device=lum.device)
    lap = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), kernel[None, None])
    return box_mean(lap.square(), radius)[:, 0]


def sharpness_features(planes: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """(Z, 3, H, W) -> (Z, 1, H/cell, W/cell): log sharpness per latent cell, relative to the
    mean over planes (so it depends little on the stack's contrast)."""
    s = F.avg_pool2d(sharpness(planes)[:, None], cell)
    s = torch.log(s + 1e-6)
    return s - s.mean(0, keepdim=True)


def selection_weights(logits: torch.Tensor, planes: torch.Tensor,
                      detail: float | torch.Tensor = 0.0) -> torch.Tensor:
    """(Z, h, w) logits at latent resolution -> (Z, H, W) convex weights at full resolution.

    The softmax over planes is upsampled edge-aware (bilinear, then a guided filter per plane
    guided by that plane's luminance); then each plane's weight is multiplied by its local
    sharpness (3x3 window) to the power ``detail`` and renormalised, so that within what the
    network chose, the pixel-level focus measure settles fine boundaries.
    """
    soft = torch.softmax(logits.float(), 0)[:, None]
    up = F.interpolate(soft, size=planes.shape[-2:], mode="bilinear", align_corners=False)
    refined = guided_filter(luma(planes.float()), up).clamp_min(0)[:, 0]
    total = refined.sum(0, keepdim=True)
    # Where the filter took every plane's weight to zero, keep the plain upsampled weights.
    coarse = torch.where(total > 1e-6, refined / total.clamp_min(1e-6), up[:, 0])
    if planes.shape[0] == 1:
        return coarse
    sharp = torch.log(sharpness(planes, radius=1) + 1e-6)
    d = detail.clamp(min=0) if torch.is_tensor(detail) else max(float(detail), 0.0)
    logw = torch.log(coarse.clamp_min(1e-12)) + d * (sharp - sharp.mean(0, keepdim=True))
    return torch.softmax(logw, 0)


def fill_weight(logit: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """(h, w) fill logit -> (H, W) fill in [0, 1], exactly 0 where the head is confident that a
    plane holds the content; ``guide`` is a (1, H, W) luminance whose edges it follows."""
    p = torch.sigmoid(logit.float())[None, None]
    up = F.interpolate(p, size=guide.shape[-2:], mode="bilinear", align_corners=False)
    up = guided_filter(guide.float()[None], up)[0, 0]
    return ((up - FILL_DEAD) / (1 - 2 * FILL_DEAD)).clamp(0, 1)


def blend_planes(planes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(Z, 3, H, W) planes and (Z, H, W) convex weights -> (3, H, W) their per-pixel blend."""
    return (weights[:, None] * planes.float()).sum(0)


def compose(blend: torch.Tensor, decoded: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """(3, H, W) blend of the planes, (3, H, W) decoded latent fusion, (H, W) fill -> (3, H, W):
    the blend where fill is 0, the decoded fusion where it is 1."""
    return blend + fill[None] * (decoded.float() - blend)


def depth_and_confidence(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z, H, W) convex weights -> expected plane index (H, W) and a confidence in [0, 1]
    (0: all planes weigh the same, 1: one plane takes all the weight)."""
    z = weights.shape[0]
    index = torch.arange(z, dtype=weights.dtype, device=weights.device)
    depth = (weights * index[:, None, None]).sum(0)
    if z == 1:
        return depth, torch.ones_like(depth)
    conf = (weights.amax(0) - 1 / z) / (1 - 1 / z)
    return depth, conf.clamp(0, 1)
