"""Colour textures (H, W, 3) float32 in [0, 1]: bundled scikit-image photos and procedural patterns.

Only images shipped inside the scikit-image wheel are used, so nothing is ever downloaded.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from ..engine.stack import LUMA_WEIGHTS

Shape = tuple[int, int]

# Sample images bundled in the scikit-image wheel (no network needed; checked with 0.22-0.26).
PHOTO_IMAGES = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel",
    "retina", "text", "moon", "page", "coins", "colorwheel",
)  # fmt: skip
BRIGHTFIELD_IMAGES = ("cell", "immunohistochemistry")
FLUORESCENCE_IMAGES = ("hubble_deep_field", "microaneurysms", "cell")
LUMA = LUMA_WEIGHTS.astype(np.float32)


@cache
def bundled_image(name: str) -> np.ndarray:
    """A scikit-image sample image as read-only float32 (3, h, w) in [0, 1]."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3].astype(np.float32) / np.float32(255 if img.dtype == np.uint8 else 1)
    while max(img.shape[:2]) > 800:  # retina is 1411 px: halve once, it is all smooth
        h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
        img = img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    out = np.ascontiguousarray(np.moveaxis(img, -1, 0))
    out.setflags(write=False)
    return out


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma of an (..., 3) image, keeping a trailing channel axis of 1."""
    return (rgb @ LUMA)[..., None]


def image_texture(rng: np.random.Generator, shape: Shape, names: tuple[str, ...]) -> np.ndarray:
    """Random crop of a bundled image, rescaled, rotated, maybe mirrored, colour-jittered."""
    img = bundled_image(names[rng.integers(len(names))])
    zoom = rng.uniform(0.5, 1.6)  # output px per source px
    theta = rng.uniform(0, 2 * np.pi) if rng.random() < 0.5 else rng.normal(0, 0.15)
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    centre = rng.uniform(0.3, 0.7, 2) * np.array(img.shape[1:])
    yy = np.arange(shape[0], dtype=np.float32)[:, None] - shape[0] / 2
    xx = (np.arange(shape[1], dtype=np.float32)[None, :] - shape[1] / 2) * np.float32(mirror)
    c, s = np.float32(np.cos(theta) / zoom), np.float32(np.sin(theta) / zoom)
    coords = np.stack(np.broadcast_arrays(centre[0] + c * yy - s * xx, centre[1] + s * yy + c * xx))
    out = np.stack([ndi.map_coordinates(ch, coords, order=1, mode="mirror") for ch in img], axis=-1)
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(out * gain, 0, 1) ** np.float32(rng.uniform(0.8, 1.25))


def fractal_noise(
    rng: np.random.Generator, shape: Shape, beta: float, cutoff: float = 0.0
) -> np.ndarray:
    """(H, W) noise with power spectrum 1/f**beta (all octaves at once), scaled to [0, 1].

    `cutoff` (cycles/px) suppresses structure coarser than 1/cutoff px.
    """
    spec = sfft.rfft2(rng.standard_normal(shape, dtype=np.float32))
    f = np.hypot(sfft.fftfreq(shape[0])[:, None], sfft.rfftfreq(shape[1])[None, :])
    f = np.maximum(f, 1.0 / max(shape))
    amp = f ** (-beta / 2)
    if cutoff > 0:
        amp *= 1 - np.exp(-((f / cutoff) ** 2))
    amp[0, 0] = 0
    field = sfft.irfft2(spec * amp.astype(np.float32), s=shape)
    lo, hi = np.percentile(field, [1, 99])
    return np.clip((field - lo) / max(hi - lo, 1e-12), 0, 1).astype(np.float32)


def random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random colours (n, 3) with varied hue, saturation and value."""
    h = rng.uniform(0, 1, n)
    s = rng.uniform(0.1, 1.0, n)
    v = rng.uniform(0.15, 1.0, n)
    k = np.mod(np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6, 6)
    rgb = v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return rgb.astype(np.float32)


def apply_palette(t: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map a scalar field t in [0, 1] (H, W) through a piecewise-linear palette (n, 3)."""
    xs = np.linspace(0, 1, len(colours))
    return np.stack([np.interp(t, xs, colours[:, c]) for c in range(3)], -1).astype(np.float32)


def _rotated_coords(rng: np.random.Generator, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    theta = rng.uniform(0, np.pi)
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    return c * xx + s * yy, -s * xx + c * yy


def stripes(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Soft or hard stripes at a random angle and period, sometimes wavy."""
    u, _ = _rotated_coords(rng, shape)
    period = rng.uniform(3, 30) * scale
    if rng.random() < 0.4:
        u = u + fractal_noise(rng, shape, 3.5) * np.float32(rng.uniform(2, 4) * period)
    hard = rng.uniform(0.5, 8)
    t = np.tanh(hard * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))) / np.tanh(hard)
    return apply_palette(0.5 + 0.5 * t, random_colours(rng, 2))


def checker(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Rotated checkerboard with random cell size and edge hardness."""
    u, v = _rotated_coords(rng, shape)
    period = rng.uniform(4, 40) * scale
    hard = rng.uniform(1, 10)
    t = np.tanh(hard * np.sin(np.pi * u / period) * np.sin(np.pi * v / period)) / np.tanh(hard)
    return apply_palette(0.5 + 0.5 * t, random_colours(rng, 2))


def gradient(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Linear or radial colour gradient with a little fine grain."""
    if rng.random() < 0.5:
        u, _ = _rotated_coords(rng, shape)
        t = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
    else:
        centre = rng.uniform(0, 1, 2) * np.array(shape)
        yy = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(centre[0])
        xx = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(centre[1])
        t = np.minimum(np.hypot(yy, xx) / np.float32(max(shape)), 1)
    grain = (fractal_noise(rng, shape, 1.0) - 0.5) * np.float32(rng.uniform(0, 0.15))
    return apply_palette(np.clip(t + grain, 0, 1), random_colours(rng, int(rng.integers(2, 4))))


def noise_texture(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Multi-octave fractal noise through a random 2-4 colour palette."""
    t = fractal_noise(rng, shape, rng.uniform(1.2, 3.2))
    return apply_palette(t, random_colours(rng, int(rng.integers(2, 5))))


def procedural_texture(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """One of noise, stripes, checker, gradient (noise most often)."""
    pick = rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])
    if pick == 0:
        return noise_texture(rng, shape)
    if pick == 1:
        return stripes(rng, shape, scale)
    if pick == 2:
        return checker(rng, shape, scale)
    return gradient(rng, shape)


def photo_texture(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """A bundled photo (55 %) or a procedural pattern (45 %)."""
    if rng.random() < 0.55:
        return image_texture(rng, shape, PHOTO_IMAGES)
    return procedural_texture(rng, shape, scale)
