"""Anti-aliased alpha mattes (H, W) float32 in [0, 1] for the synthetic layered scenes.

Shapes are drawn from approximate signed distances, so edges are about one pixel wide at any
size; thin structures (hair, filaments, puncta) are splatted along curves and Gaussian-smoothed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

Shape = tuple[int, int]


def _coords(shape: Shape, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (dy, dx) from `centre`, float32."""
    yy = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(centre[0])
    xx = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(centre[1])
    return np.broadcast_arrays(yy, xx)


def sdf_alpha(signed_distance: np.ndarray, softness: float = 1.0) -> np.ndarray:
    """Coverage from a signed distance (positive inside); `softness` is the edge width in px."""
    return np.clip(0.5 + signed_distance / np.float32(softness), 0.0, 1.0).astype(np.float32)


def radial_blob(
    rng: np.random.Generator,
    shape: Shape,
    centre: np.ndarray,
    radius: float,
    *,
    roughness: float = 0.25,
    softness: float = 1.0,
) -> np.ndarray:
    """Star-shaped blob whose radius is a random low-order Fourier series of the angle."""
    dy, dx = _coords(shape, centre)
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    k = np.arange(2, 7)
    amp = rng.uniform(0, roughness, k.size) / k
    phase = rng.uniform(0, 2 * np.pi, k.size)
    # Tabulate the radius over angle once; interpolating is cheaper than cosines per pixel.
    grid = np.linspace(-np.pi, np.pi, 2049)
    table = radius * (1 + (amp * np.cos(k * grid[:, None] + phase)).sum(axis=1))
    boundary = np.interp(theta, grid, table).astype(np.float32)
    return sdf_alpha(boundary - rho, softness)


def polygon(
    rng: np.random.Generator, shape: Shape, centre: np.ndarray, radius: float, n_vertices: int
) -> np.ndarray:
    """Random star-shaped polygon (convex when the radii are similar) with exact edge distances."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    # Keep vertices apart so the polygon is not degenerate.
    angles = np.sort((angles + np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)) / 2)
    radii = radius * rng.uniform(0.45, 1.0, n_vertices)
    verts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    dy, dx = _coords(shape, centre)
    theta = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    seg = (np.searchsorted(angles, theta) - 1) % n_vertices
    a = verts[seg]
    b = verts[(seg + 1) % n_vertices]
    e = b - a
    ux, uy = np.cos(theta), np.sin(theta)
    # Ray from the centre along theta meets edge a->b at distance cross(a, b) / cross(u, e).
    cross_ue = ux * e[..., 1] - uy * e[..., 0]
    cross_ab = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    r_edge = cross_ab / np.where(np.abs(cross_ue) < 1e-9, 1e-9, cross_ue)
    normal_scale = np.abs(cross_ue) / np.maximum(np.hypot(e[..., 0], e[..., 1]), 1e-9)
    return sdf_alpha(((r_edge - np.hypot(dy, dx)) * normal_scale).astype(np.float32))


def ellipse(
    shape: Shape,
    centre: np.ndarray,
    axes: tuple[float, float],
    angle: float,
    softness: float = 1.0,
) -> np.ndarray:
    """Filled ellipse with semi-axes `axes` (px) rotated by `angle` (rad)."""
    dy, dx = _coords(shape, centre)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (c * dx + s * dy) / np.float32(axes[0])
    v = (-s * dx + c * dy) / np.float32(axes[1])
    return sdf_alpha((1 - np.sqrt(u * u + v * v)) * np.float32(min(axes)), softness)


def union(*alphas: np.ndarray) -> np.ndarray:
    """Union of mattes (probabilistic OR, keeps soft edges)."""
    out = np.zeros_like(alphas[0])
    for a in alphas:
        out = out + a - out * a
    return out


def with_holes(
    rng: np.random.Generator, alpha: np.ndarray, centre: np.ndarray, radius: float
) -> np.ndarray:
    """Punch 1-4 blob-shaped holes (or one central hole making a ring) into a matte."""
    shape = alpha.shape
    if rng.random() < 0.4:
        hole = radial_blob(rng, shape, centre, radius * rng.uniform(0.3, 0.6), roughness=0.15)
        return alpha * (1 - hole)
    holes = [
        radial_blob(
            rng,
            shape,
            centre + rng.uniform(-0.6, 0.6, 2) * radius,
            radius * rng.uniform(0.1, 0.3),
            roughness=0.3,
        )
        for _ in range(rng.integers(1, 5))
    ]
    return alpha * (1 - union(*holes))


def curve(
    rng: np.random.Generator,
    start: np.ndarray,
    heading: float,
    length: float,
    wiggle: float,
    step: float = 0.5,
) -> np.ndarray:
    """Points (N, 2) along a smooth random curve; `wiggle` is the curvature noise in rad/px."""
    n = max(int(length / step), 2)
    # Integrated (smooth) curvature noise gives hair/filament-like bends, not a jagged walk.
    curvature = np.cumsum(rng.normal(0, wiggle * step, n)) * 0.05 + rng.normal(0, 0.3 * wiggle)
    head = heading + np.cumsum(curvature * step)
    steps = step * np.stack([np.sin(head), np.cos(head)], axis=1)
    return start + np.cumsum(steps, axis=0)


def splat(shape: Shape, points: np.ndarray, weights: np.ndarray | float = 1.0) -> np.ndarray:
    """Bilinear splat of weighted points (N, 2) into an (H, W) density; outside points dropped."""
    h, w = shape
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), points.shape[:1])
    y0 = np.floor(points[:, 0]).astype(np.int64)
    x0 = np.floor(points[:, 1]).astype(np.int64)
    fy = points[:, 0] - y0
    fx = points[:, 1] - x0
    out = np.zeros(h * w, dtype=np.float64)
    for oy, ox, wt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + oy, x0 + ox
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(wt * weights)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)


def strokes(
    shape: Shape, curves: list[np.ndarray], sigma: float, opacity: float, step: float = 0.5
) -> np.ndarray:
    """Matte of thin strokes along `curves`: line profile Gaussian(sigma), peak about `opacity`."""
    if not curves:
        return np.zeros(shape, np.float32)
    density = ndi.gaussian_filter(splat(shape, np.concatenate(curves), step), sigma)
    # Unit line density blurred by sigma peaks at 1/(sqrt(2 pi) sigma); map that to `opacity`.
    gain = -np.log1p(-min(opacity, 0.999)) * np.sqrt(2 * np.pi) * sigma
    return (1 - np.exp(-gain * density)).astype(np.float32)


def spots(
    shape: Shape, centres: np.ndarray, sigma: float, opacity: np.ndarray | float
) -> np.ndarray:
    """Gaussian spots (puncta) of width `sigma` px and peak coverage about `opacity`."""
    density = ndi.gaussian_filter(splat(shape, centres, opacity), sigma) * (2 * np.pi * sigma**2)
    return np.clip(density, 0.0, 1.0).astype(np.float32)


def hairy(
    rng: np.random.Generator, body: np.ndarray, centre: np.ndarray, radius: float, scale: float
) -> np.ndarray:
    """Add outward hair strands rooted near the edge of a roughly round `body` matte."""
    n = int(rng.integers(40, 250))
    ang = rng.uniform(0, 2 * np.pi, n)
    roots = centre + (radius * rng.uniform(0.7, 1.0, n))[:, None] * np.stack(
        [np.sin(ang), np.cos(ang)], axis=1
    )
    spread = rng.uniform(0.1, 0.6)
    hairs = [
        curve(rng, roots[i], ang[i] + rng.normal(0, spread), rng.uniform(5, 45) * scale, 0.04)
        for i in range(n)
    ]
    return union(body, strokes(body.shape, hairs, rng.uniform(0.45, 0.8), rng.uniform(0.5, 0.95)))
