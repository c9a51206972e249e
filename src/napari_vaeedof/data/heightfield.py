"""Height-field surfaces: a textured surface whose depth varies smoothly, cut by ledges.

The surface depth is smooth fractal relief plus a tilt, cut by 0-3 ledges (steps with a
one-pixel edge along wavy lines or around blobs: mesas and pits). The regions between ledges
(terraces) are layers whose depth varies per pixel. Within a layer the blur radius
r(y, x) = aperture * |z(y, x) - f_k| varies per pixel: the layer is blurred once at each radius of
a ladder (`BLUR_LADDER`) and every plane takes, per pixel, the linear blend of the two rungs
around its radius. Terraces are composited back to front in premultiplied form as in
`synth.render` (a far terrace continues under a near one), so a defocused near terrace spreads
over the far one at a ledge. The ground truth is the same composite with no blur.

Two looks: "reflected" (a colour photo or procedural texture with a little slope shading, a
lens' disk PSF, jittered focus steps) and "brightfield" (a bright, stained, transmitted-light
texture, a microscope's Gaussian PSF, uniform z-steps).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import mattes
from . import textures as tex
from .synth import Scene, Shape, defocus_blur, fft_geometry, focus_depths

LOOKS = ("reflected", "brightfield")
# Blur radii (px) rendered per layer; a pixel's radius blends the two rungs around it. Adjacent
# rungs differ by at most a factor 1.5, so a blend stays close to the PSF of the radius itself.
BLUR_LADDER = np.array(
    [0, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64,
     80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512]
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Surface:
    """One terrace: colour (H, W, C) and coverage alpha (H, W) in [0, 1], depth (H, W)."""

    colour: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def _blend_rungs(levels: np.ndarray, radius: np.ndarray, ladder: np.ndarray) -> np.ndarray:
    """Per pixel, linear blend of the rungs (L, C, H, W) around `radius` (H, W) -> (C, H, W)."""
    j = np.clip(np.searchsorted(ladder, radius, side="right") - 1, 0, len(ladder) - 2)
    lo, hi = ladder[j], ladder[j + 1]
    t = np.clip((radius - lo) / (hi - lo), 0, 1).astype(np.float32)
    a = np.take_along_axis(levels, j[None, None], axis=0)[0]
    b = np.take_along_axis(levels, (j + 1)[None, None], axis=0)[0]
    return a + t * (b - a)


def render_surfaces(
    surfaces: list[Surface], focus: np.ndarray, aperture: float, psf: str
) -> tuple[np.ndarray, np.ndarray]:
    """Spatially varying defocus of terraces, composited back to front.

    Parameters
    ----------
    surfaces : list of Surface
        Colour (H, W, C), alpha (H, W) and per-pixel depth (H, W) of each terrace, in drawing
        order (farthest first; the first one normally has alpha 1 everywhere).
    focus : (Z,) array
        Focus depth of each plane (same units as the depths).
    aperture : float
        Blur radius (px) per unit of depth difference.
    psf : str
        One of `synth.PSFS`.

    Returns
    -------
    planes : (Z, H, W, C) float32 in [0, 1]
    ground_truth : (H, W, C) float32 in [0, 1], the composite with no blur.
    """
    focus = np.asarray(focus, np.float64)
    h, w, c = surfaces[0].colour.shape
    radii = [np.float32(aperture) * np.abs(s.depth[None] - focus[:, None, None].astype(np.float32))
             for s in surfaces]  # fmt: skip
    top = max(float(r.max()) for r in radii)
    n_rungs = min(int(np.searchsorted(BLUR_LADDER, top)) + 1, len(BLUR_LADDER))
    ladder = BLUR_LADDER[: max(n_rungs, 2)]
    geometry = fft_geometry((h, w), psf, float(ladder[-1]))
    planes = np.zeros((len(focus), c, h, w), np.float32)
    sharp = np.zeros((c, h, w), np.float32)
    for surf, r in zip(surfaces, radii, strict=True):
        alpha = surf.alpha.astype(np.float32)
        pm = np.concatenate([np.moveaxis(surf.colour, -1, 0) * alpha, alpha[None]])
        sharp = pm[:c] + (1 - pm[c]) * sharp
        levels = defocus_blur(pm, ladder, psf, geometry)  # (L, C + 1, H, W)
        for k in range(len(focus)):
            blurred = _blend_rungs(levels, r[k], ladder)
            planes[k] = blurred[:c] + (1 - blurred[c:]) * planes[k]
    return (np.clip(np.moveaxis(planes, 1, -1), 0, 1),
            np.clip(np.moveaxis(sharp, 0, -1), 0, 1))  # fmt: skip


def ledge_matte(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """(H, W) matte of the raised (or sunk) side of a ledge: a wavy cut or a blob."""
    if rng.random() < 0.5:
        theta = rng.uniform(0, 2 * np.pi)
        yy = np.arange(shape[0], dtype=np.float32)[:, None]
        xx = np.arange(shape[1], dtype=np.float32)[None, :]
        u = np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy
        wobble = tex.fractal_noise(rng, shape, 3.5) - np.float32(0.5)
        u = u + wobble * np.float32(rng.uniform(0, 0.25) * max(shape))
        cut = np.quantile(u, rng.uniform(0.25, 0.75))
        return mattes.sdf_alpha(u - np.float32(cut))
    centre = rng.uniform(0.2, 0.8, 2) * np.array(shape)
    radius = rng.uniform(0.12, 0.35) * min(shape)
    return mattes.radial_blob(rng, shape, centre, radius, roughness=rng.uniform(0.1, 0.6))


def _shading(rng: np.random.Generator, relief: np.ndarray) -> np.ndarray:
    """Soft directional shading (H, W, 1) in about [0.75, 1.25] from a relief's slope."""
    gy, gx = np.gradient(relief)
    theta = rng.uniform(0, 2 * np.pi)
    slope = np.cos(theta) * gx + np.sin(theta) * gy
    slope = slope / max(float(np.std(slope)), 1e-6)
    return (1 + np.float32(rng.uniform(0.05, 0.25)) * np.tanh(slope))[..., None]


def _texture(rng: np.random.Generator, shape: Shape, scale: float, look: str) -> np.ndarray:
    """(H, W, 3) surface texture for a look."""
    if look == "reflected":
        return tex.photo_texture(rng, shape, scale)
    if rng.random() < 0.5:  # a bundled brightfield image (cells, a stained section), made bright
        img = tex.image_texture(rng, shape, tex.BRIGHTFIELD_IMAGES)
        gain = rng.uniform(0.85, 1.0) / max(float(np.percentile(img, 98)), 0.2)
        return np.clip(img * np.float32(gain), 0, 1)
    stain = tex.random_colours(rng, 1)[0]
    field = tex.fractal_noise(rng, shape, rng.uniform(1.2, 2.6)) ** np.float32(rng.uniform(1, 3))
    absorb = np.float32(rng.uniform(0.3, 0.9)) * field[..., None]
    return (np.float32(rng.uniform(0.85, 1.0)) * (1 - absorb * (1 - stain))).astype(np.float32)


def heightfield_scene(
    rng: np.random.Generator,
    shape: Shape,
    n_planes: int,
    *,
    look: str | None = None,
    gray: bool | None = None,
    ledges: int | None = None,
    step_blur: float | None = None,
) -> tuple[Scene, bool]:
    """A random textured height field rendered at `n_planes` focus depths.

    Parameters
    ----------
    rng : numpy Generator
        The scene's random stream.
    shape : (H, W)
        Plane size in px.
    n_planes : int
        Number of focus planes (>= 2).
    look : {"reflected", "brightfield"} or None
        None draws one (reflected 60 %).
    gray : bool or None
        None draws (reflected 25 % gray, brightfield 60 %).
    ledges : int or None
        Number of ledges (0-3); None draws 0-3.
    step_blur : float or None
        Blur radius (px) per plane step; None draws 0.7-15 px (log-uniform, at 256 px).

    Returns
    -------
    scene : Scene
        Planes (Z, H, W, C), ground truth (H, W, C), true depth (H, W) of the visible surface,
        focus (Z,), look; C = 1 when gray.
    gray : bool
    """
    look_draw, gray_draw = rng.random(), rng.random()
    look = look or LOOKS[int(look_draw >= 0.6)]
    if look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    gray = bool(gray_draw < (0.25 if look == "reflected" else 0.6)) if gray is None else gray
    scale = min(shape) / 256
    focus = focus_depths(rng, n_planes, "photo" if look == "reflected" else "microscopy")
    step = np.exp(rng.uniform(np.log(0.7), np.log(15))) * scale
    step = step if step_blur is None else float(step_blur)
    # Keep the largest blur (surface up to ~0.6 beyond the focus range) within about half a frame.
    aperture = max(min(step * (n_planes - 1), 0.3 * min(shape)), 1e-3)

    relief = tex.fractal_noise(rng, shape, rng.uniform(3.5, 5.0))
    yy = np.linspace(-0.5, 0.5, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[1], dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.8, 0.8, 2).astype(np.float32)
    relief = relief + tilt[0] * yy + tilt[1] * xx
    n_ledges = int(rng.choice(4, p=[0.25, 0.35, 0.25, 0.15]))
    n_ledges = n_ledges if ledges is None else int(ledges)
    cuts = [ledge_matte(rng, shape) for _ in range(n_ledges)]
    steps = rng.uniform(0.15, 0.6, n_ledges) * rng.choice([-1, 1], n_ledges)

    # Terraces: every combination of ledge sides; drawn farthest (largest offset) first.
    combos = sorted(itertools.product((0, 1), repeat=n_ledges),
                    key=lambda s: -float(np.dot(s, steps)))  # fmt: skip
    regions = []
    for side in combos:
        m = np.ones(shape, np.float32)
        for cut, s in zip(cuts, side, strict=True):
            m = m * (cut if s else 1 - cut)
        regions.append(m)
    offsets = [float(np.dot(s, steps)) for s in combos]
    visible = np.argmax(np.stack(regions), axis=0)
    raw_visible = relief + np.asarray(offsets, np.float32)[visible]
    lo, hi = np.percentile(raw_visible, [0.5, 99.5])
    centre, span = rng.uniform(0.35, 0.65), rng.uniform(0.6, 1.15)

    def to_depth(raw: np.ndarray) -> np.ndarray:
        return (centre + span * ((raw - lo) / max(hi - lo, 1e-6) - 0.5)).astype(np.float32)

    shared = _texture(rng, shape, scale, look)
    shade = _shading(rng, relief) if look == "reflected" else np.float32(1)
    own = rng.random(len(combos)) < 0.35  # a terrace of a different material
    surfaces, covered = [], np.zeros(shape, np.float32)
    for i, (m, offset) in enumerate(zip(regions, offsets, strict=True)):
        alpha = np.ones(shape, np.float32) if i == 0 else np.clip(1 - covered, 0, 1)
        covered = covered + m
        if float(m.max()) < 0.02:
            continue  # an empty terrace: the ones beneath already cover its few soft pixels
        colour = _texture(rng, shape, scale, look) if own[i] and i else shared
        colour = np.clip(colour * shade, 0, 1)
        colour = tex.to_gray(colour) if gray else colour
        surfaces.append(Surface(colour.astype(np.float32), alpha, to_depth(relief + offset)))
    psf = "disk" if look == "reflected" else "gauss"
    planes, truth = render_surfaces(surfaces, focus, aperture, psf)
    depth = to_depth(raw_visible)
    return Scene(planes, truth, depth, focus.astype(np.float32), look), gray
