"""Widefield fluorescence: emitters at many depths, every plane the sum of all of them defocused.

Puncta, filaments (3-D curves whose depth drifts along them), membranes (cell outlines) and
nuclei are deposited into a stack of thin depth slices (`bins`, a few per plane step). Each
plane is the sum over slices of the slice convolved with the widefield defocus PSF of that
slice's distance to the plane (`synth.psf_kernel(..., "widefield")`: a sharp core plus a wide
halo that takes more of the flux as the defocus grows), computed in Fourier space (one forward
FFT per slice, one inverse FFT per plane). Nothing occludes anything: out-of-focus light adds up
as glow. Blurring conserves flux (symmetric borders), so every plane holds the same total
intensity as the ground truth, the sum of all emitters with no blur.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from . import mattes
from . import textures as tex
from .synth import (
    _MIN_BLUR,
    Scene,
    Shape,
    ellipses,
    fft_geometry,
    padded_spectrum,
    psf_spectrum,
    quantize_radii,
)

STRUCTURES = ("puncta", "filaments", "membranes", "nuclei")


def render_widefield(
    density: np.ndarray, bin_depths: np.ndarray, focus: np.ndarray, aperture: float
) -> np.ndarray:
    """Widefield planes of emitters sliced by depth.

    Parameters
    ----------
    density : (B, H, W) float array
        In-focus emitter intensity of each depth slice.
    bin_depths : (B,) array
        Depth of each slice.
    focus : (Z,) array
        Focus depth of each plane.
    aperture : float
        Halo radius (px) per unit of depth difference.

    Returns
    -------
    (Z, H, W) float32: plane k = sum_b density[b] * PSF(aperture * |bin_depths[b] - focus[k]|).
    Flux is conserved while the largest radius stays under the frame size.
    """
    density = np.asarray(density, np.float32)
    radii = quantize_radii(aperture * np.abs(np.subtract.outer(bin_depths, focus)))  # (B, Z)
    shape = density.shape[1:]
    pad, fft_shape = fft_geometry(shape, "widefield", float(radii.max(initial=0.0)))
    acc = np.zeros((len(focus), fft_shape[0], fft_shape[1] // 2 + 1), np.complex64)
    for b in np.flatnonzero(density.reshape(len(density), -1).any(axis=1)):
        spec = padded_spectrum(density[b], pad, fft_shape, mode="symmetric")
        for k, r in enumerate(radii[b]):
            acc[k] += spec if r < _MIN_BLUR else spec * psf_spectrum("widefield", r, fft_shape)
    planes = sfft.irfft2(acc, s=fft_shape)[:, pad : pad + shape[0], pad : pad + shape[1]]
    return np.ascontiguousarray(planes, dtype=np.float32)


def _deposit(cube: np.ndarray, u: float, image: np.ndarray) -> None:
    """Add `image` at fractional slice coordinate `u`, split linearly between two slices."""
    b = int(np.clip(np.floor(u), 0, len(cube) - 1))
    f = float(np.clip(u - b, 0, 1)) if b + 1 < len(cube) else 0.0
    cube[b] += np.float32(1 - f) * image
    if f > 0:
        cube[b + 1] += np.float32(f) * image


def _splat3d(
    cube: np.ndarray, points: np.ndarray, u: np.ndarray, weights: np.ndarray, sigma: float
) -> None:
    """Add points (N, 2) at slice coordinates u (N,) as Gaussian spots of width `sigma` px,
    each of total intensity `weights` (N,), splitting each between its two nearest slices."""
    b0 = np.clip(np.floor(u).astype(int), 0, len(cube) - 1)
    f = np.clip(u - b0, 0, 1)
    f[b0 == len(cube) - 1] = 0.0
    for b in np.unique(np.concatenate([b0, b0[f > 0] + 1])):
        lo, hi = b0 == b, (b0 + 1 == b) & (f > 0)
        pts = np.concatenate([points[lo], points[hi]])
        wts = np.concatenate([weights[lo] * (1 - f[lo]), weights[hi] * f[hi]])
        cube[b] += ndi.gaussian_filter(mattes.splat(cube.shape[1:], pts, wts), sigma)


def _puncta(rng, cube, scale, brightness):
    shape = cube.shape[1:]
    n = max(int(rng.integers(30, 600) * shape[0] * shape[1] / 256**2), 3)
    sigma = rng.uniform(0.5, 1.4) * max(scale, 0.5)
    weights = brightness * rng.lognormal(0, 0.5, n) * 2 * np.pi * sigma**2  # peak ~ brightness
    _splat3d(cube, rng.uniform(0, 1, (n, 2)) * shape, rng.uniform(0, len(cube) - 1, n),
             weights, sigma)  # fmt: skip


def _filaments(rng, cube, scale, brightness):
    shape = cube.shape[1:]
    pts, us, wts = [], [], []
    step = 0.5
    sigma = rng.uniform(0.5, 1.1) * max(scale, 0.5)
    for _ in range(int(rng.integers(4, 40))):
        c = mattes.curve(rng, rng.uniform(0, 1, 2) * shape, rng.uniform(0, 2 * np.pi),
                         rng.uniform(0.2, 1.2) * max(shape), rng.uniform(0.003, 0.03), step)
        t = np.linspace(0, 1, len(c))
        u0, slope = rng.uniform(0, len(cube) - 1), rng.normal(0, 0.4) * len(cube)
        pts.append(c)
        us.append(np.clip(u0 + slope * (t - 0.5), 0, len(cube) - 1))
        wts.append(np.full(len(c), brightness * rng.uniform(0.5, 1.0) * step))
    # a unit line density blurred by sigma peaks at 1 / (sqrt(2 pi) sigma)
    gain = np.sqrt(2 * np.pi) * sigma
    _splat3d(cube, np.concatenate(pts), np.concatenate(us), np.concatenate(wts) * gain, sigma)


def _membranes(rng, cube, scale, brightness):
    shape = cube.shape[1:]
    for _ in range(max(int(rng.integers(2, 12) * shape[0] * shape[1] / 256**2), 1)):
        centre = rng.uniform(0, 1, 2) * np.array(shape)
        cell = mattes.radial_blob(rng, shape, centre, rng.uniform(12, 40) * scale,
                                  roughness=rng.uniform(0.2, 0.8),
                                  softness=rng.uniform(1.5, 3.0) * max(scale, 0.5))
        outline = 4 * cell * (1 - cell) + np.float32(rng.uniform(0, 0.15)) * cell
        _deposit(cube, rng.uniform(0, len(cube) - 1),
                 outline * np.float32(brightness * rng.uniform(0.5, 1.0)))


def _nuclei(rng, cube, scale, brightness):
    shape = cube.shape[1:]
    grain = 0.5 + 0.5 * tex.fractal_noise(rng, shape, 1.3)
    for _ in range(max(int(rng.integers(3, 25) * shape[0] * shape[1] / 256**2), 1)):
        nucleus = ellipses(rng, shape, 1, (6 * scale, 16 * scale))
        _deposit(cube, rng.uniform(0, len(cube) - 1),
                 nucleus * grain * np.float32(brightness * rng.uniform(0.4, 1.0)))


_MAKERS = {"puncta": _puncta, "filaments": _filaments, "membranes": _membranes,
           "nuclei": _nuclei}  # fmt: skip


def dominant_depth(cube: np.ndarray, bin_depths: np.ndarray, share: float = 0.7) -> np.ndarray:
    """Depth (H, W) of the emitter that gives a pixel at least `share` of its in-focus intensity.

    An emitter is one slice or two adjacent ones (an emitter between slices is split between
    them); its depth is their intensity-weighted mean. NaN where no emitter dominates or where
    the pixel is darker than 5 % of the 99.9th percentile of the in-focus image.
    """
    total = cube.sum(axis=0)
    nxt = np.concatenate([cube[1:], np.zeros_like(cube[:1])])
    pair = cube + nxt
    b = np.argmax(pair, axis=0)
    top = np.take_along_axis(pair, b[None], 0)[0]
    upper = np.take_along_axis(nxt, b[None], 0)[0]
    d_next = np.append(bin_depths[1:], bin_depths[-1])
    depth = bin_depths[b] + (d_next[b] - bin_depths[b]) * upper / np.maximum(top, 1e-12)
    ok = (top >= share * total) & (total > 0.05 * float(np.percentile(total, 99.9)))
    return np.where(ok, depth, np.nan).astype(np.float32)


def fluorescence_scene(
    rng: np.random.Generator,
    shape: Shape,
    n_planes: int,
    *,
    structures: tuple[str, ...] | None = None,
    step_blur: float | None = None,
) -> Scene:
    """A random widefield fluorescence scene rendered at `n_planes` uniform z-steps.

    Parameters
    ----------
    rng : numpy Generator
        The scene's random stream.
    shape : (H, W)
        Plane size in px.
    n_planes : int
        Number of focus planes (>= 2), at focus depths linspace(0, 1, n_planes).
    structures : tuple of str or None
        Subset of `STRUCTURES`; None draws 1-4 of them.
    step_blur : float or None
        Halo radius (px) per plane step; None draws 0.8-10 px (log-uniform, at 256 px).

    Returns
    -------
    Scene
        Planes (Z, H, W, 1), ground truth (H, W, 1) = every emitter in focus plus the constant
        background, depth (H, W) of the dominant emitter (NaN where none dominates), focus (Z,).
    """
    scale = min(shape) / 256
    focus = np.linspace(0, 1, n_planes)
    dz = 1 / (n_planes - 1)
    per_step = int(np.clip(48 // (n_planes + 1), 1, 4))  # depth slices per plane step
    bin_depths = np.arange(-(per_step // 2), (n_planes - 1) * per_step + per_step // 2 + 1)
    bin_depths = bin_depths * (dz / per_step)
    step = np.exp(rng.uniform(np.log(0.8), np.log(10))) * scale
    step = step if step_blur is None else float(step_blur)
    aperture = max(min(step * (n_planes - 1), 0.4 * min(shape)), 1e-3)

    pick = rng.random(len(STRUCTURES)) < 0.5
    pick[rng.integers(len(STRUCTURES))] = True
    chosen = structures if structures is not None else tuple(np.array(STRUCTURES)[pick])
    cube = np.zeros((len(bin_depths), *shape), np.float32)
    for name in STRUCTURES:
        brightness = rng.uniform(0.2, 1.0)
        if name in chosen:
            _MAKERS[name](rng, cube, scale, brightness)
    background = np.float32(rng.uniform(0.0, 0.04))  # autofluorescence and camera offset
    # The brightest in-focus pixel at 30-90 % of full scale: nothing clips, flux is conserved.
    peak = float(cube.sum(axis=0).max())
    cube *= np.float32(rng.uniform(0.3, 0.9) / max(peak, 1e-6))
    planes = render_widefield(cube, bin_depths, focus, aperture) + background
    truth = cube.sum(axis=0) + background
    return Scene(
        np.clip(planes, 0, 1)[..., None],
        np.clip(truth, 0, 1)[..., None].astype(np.float32),
        dominant_depth(cube, bin_depths),
        focus.astype(np.float32),
        "widefield",
    )
