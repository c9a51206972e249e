"""Brightfield absorption: dark, partly transparent objects at several depths on a bright ground.

Each object (nuclei, cells, filaments, granules or a stained tissue fragment, from
`synth.microscopy_object`) absorbs a fraction a(y, x, c) = alpha * opacity * (1 - stain colour)
of the light; transmissions multiply. A plane focused at f_k sees each object's absorption
blurred by the microscope PSF of radius aperture * |d - f_k|:
plane_k = illumination * prod_objects (1 - blur_k(a)); the ground truth is the same product
with no blur. A defocused object therefore spreads a paler shadow over its surroundings and over
objects at other depths, and where two objects overlap at different depths no plane holds both
sharp.
"""

from __future__ import annotations

import numpy as np

from . import textures as tex
from .synth import Scene, Shape, defocus_blur, fft_geometry, microscopy_object, quantize_radii


def render_absorbers(
    illumination: np.ndarray,
    absorptions: list[np.ndarray],
    depths: np.ndarray,
    focus: np.ndarray,
    aperture: float,
    psf: str = "gauss",
) -> tuple[np.ndarray, np.ndarray]:
    """Transmitted-light planes of absorbing objects at several depths.

    Parameters
    ----------
    illumination : (C, H, W) float array
        The bright field with no specimen.
    absorptions : list of (C, H, W) float arrays in [0, 1]
        Fraction of light each object absorbs.
    depths : (N,) array
        Depth of each object.
    focus : (Z,) array
        Focus depth of each plane.
    aperture : float
        PSF radius (px) per unit of depth difference.
    psf : str
        One of `synth.PSFS`.

    Returns
    -------
    planes : (Z, C, H, W) float32, illumination * prod (1 - blurred absorption)
    ground_truth : (C, H, W) float32, illumination * prod (1 - absorption)
    """
    focus = np.asarray(focus, np.float64)
    radii = quantize_radii(aperture * np.abs(np.subtract.outer(np.asarray(depths), focus)))
    geometry = fft_geometry(illumination.shape[1:], psf, float(radii.max(initial=0.0)))
    transmission = np.ones((len(focus), *illumination.shape), np.float32)
    truth = illumination.astype(np.float32).copy()
    for a, r in zip(absorptions, radii, strict=True):
        transmission *= 1 - np.clip(defocus_blur(a, r, psf, geometry), 0, 1)
        truth *= 1 - a
    return transmission * illumination, truth


def _illumination(rng: np.random.Generator, shape: Shape, gray: bool) -> np.ndarray:
    """(C, H, W) bright field: a level, a slight vignette and (colour) a slight tint."""
    yy = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    centre = rng.uniform(-0.3, 0.3, 2).astype(np.float32)
    r2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    field = np.float32(rng.uniform(0.75, 0.97)) * (1 - np.float32(rng.uniform(0, 0.1)) * r2)
    tint = 1 - rng.uniform(0.0, 0.1, 3).astype(np.float32)
    return field[None] if gray else tint[:, None, None] * field[None]


def brightfield_scene(
    rng: np.random.Generator,
    shape: Shape,
    n_planes: int,
    *,
    gray: bool | None = None,
    n_objects: int | None = None,
    step_blur: float | None = None,
) -> tuple[Scene, bool]:
    """A random brightfield absorption scene rendered at `n_planes` uniform z-steps.

    Parameters
    ----------
    rng : numpy Generator
        The scene's random stream.
    shape : (H, W)
        Plane size in px.
    n_planes : int
        Number of focus planes (>= 2), at focus depths linspace(0, 1, n_planes).
    gray : bool or None
        None draws (40 % gray, else stained colour).
    n_objects : int or None
        Number of objects, each at its own depth; None draws 2-8.
    step_blur : float or None
        PSF radius (px) per plane step; None draws 0.7-15 px (log-uniform, at 256 px).

    Returns
    -------
    scene : Scene
        Planes (Z, H, W, C), ground truth (H, W, C), depth (H, W) of the most absorbing object
        where it absorbs at least 10 % (NaN on the bare ground), focus (Z,); C = 1 when gray.
    gray : bool
    """
    gray_draw = rng.random()
    gray = bool(gray_draw < 0.4) if gray is None else bool(gray)
    scale = min(shape) / 256
    focus = np.linspace(0, 1, n_planes)
    step = np.exp(rng.uniform(np.log(0.7), np.log(15))) * scale
    step = step if step_blur is None else float(step_blur)
    aperture = max(min(step * (n_planes - 1), 0.3 * min(shape)), 1e-3)
    n = int(rng.integers(2, 9)) if n_objects is None else int(n_objects)
    margin = 0.3 / (n_planes - 1)
    depths = rng.uniform(-margin, 1 + margin, n)
    absorptions = []
    for _ in range(n):
        colour, alpha = microscopy_object(rng, shape, scale, False, gray)
        a = (alpha * np.float32(rng.uniform(0.4, 1.0)))[..., None] * (1 - colour)
        a = tex.to_gray(a) if gray else a
        absorptions.append(np.clip(np.moveaxis(a, -1, 0), 0, 1).astype(np.float32))
    illumination = _illumination(rng, shape, gray)
    planes, truth = render_absorbers(illumination, absorptions, depths, focus, aperture)
    strength = np.stack([a.mean(axis=0) for a in absorptions])  # (N, H, W)
    front = np.argmax(strength, axis=0)
    depth = np.where(strength.max(axis=0) >= 0.1, depths[front], np.nan).astype(np.float32)
    return Scene(
        np.clip(np.moveaxis(planes, 1, -1), 0, 1),
        np.clip(np.moveaxis(truth, 0, -1), 0, 1),
        depth,
        focus.astype(np.float32),
        "gray" if gray else "stained",
    ), gray
