"""Layered depth-of-field focus stacks with exact all-in-focus ground truth (MattingMFIF-style).

A scene is 2-7 layers (a background plus alpha-matted subjects) at depths of about -0.05..1.5
(focus planes span 0..1). Each focus plane f_k blurs layer l with a PSF of radius
r = aperture * |d_l - f_k| (disk for "photo", Gaussian core with an Airy-like ring for
"microscopy") and composites back to front in premultiplied form,
out = blur(alpha * colour) + (1 - blur(alpha)) * out, so a defocused foreground spreads over
(hides) what is behind it. The ground truth is the same composite with no blur. Every layer
normally lies within 0.5 px of blur of some plane; sometimes the background is tilted or lies
beyond the last plane, so it is only partly in focus anywhere.

Speed: a 256x256 RGB stack of 7 planes takes ~0.17 s (median; slowest seed 0.22 s) with
7 layers and ~0.13 s with a random 2-7 layers, photo and microscopy alike. Measured with
make_stack(seed, size=256, n_planes=7, n_layers=7 or None, kind=..., gray=False), noise on,
40 seeds after one warm-up call, time.perf_counter, pinned to one core
(taskset -c 0, OMP/MKL/OPENBLAS_NUM_THREADS=1) on the dev container's AMD EPYC. FFT blur per
layer with cached PSF spectra; time grows ~ with pixels x planes x layers (1024 px: ~7 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from . import mattes
from . import textures as tex

Shape = tuple[int, int]
KINDS = ("photo", "microscopy")
PSF_FOR_KIND = {"photo": "disk", "microscopy": "gauss"}
PSFS = ("disk", "gauss", "widefield")
MAX_LAYERS = 7
_RADIUS_STEP = 0.125  # PSF radii are quantised to this (px) so spectra can be cached
_MIN_BLUR = 0.25  # radii below this render sharp (a disk of radius < 0.5 px is a delta anyway)


@dataclass(frozen=True, eq=False)
class SynthStack:
    """A rendered focus stack and its ground truth."""

    planes: np.ndarray  # (Z, H, W, 3) float32 in [0, 1]; for gray scenes the 3 channels are equal
    ground_truth: np.ndarray  # (H, W, 3) float32 in [0, 1], the all-in-focus composite
    depth: np.ndarray  # (H, W) float32, depth of the front-most alpha > 0.5 surface
    focus: np.ndarray  # (Z,) float32, focus depth of each plane
    gray: bool  # True when the scene is grayscale
    kind: str  # "photo" or "microscopy"; "family:look" from families.make_family_stack
    info: dict = field(default_factory=dict)  # acquisition settings (families: bits, order, ...)


@dataclass(frozen=True, eq=False)
class Scene:
    """A family's noise-free rendering before acquisition (noise, bit depth, plane order).

    planes (Z, H, W, C) and ground_truth (H, W, C) are float32 in [0, 1] with C = 1 for gray
    scenes and 3 for colour; planes come in increasing focus depth; depth (H, W) float32 is the
    true depth of the visible content in focus units (NaN where it has none); focus (Z,).
    """

    planes: np.ndarray
    ground_truth: np.ndarray
    depth: np.ndarray
    focus: np.ndarray
    look: str


@dataclass(frozen=True, eq=False)
class Layer:
    """One scene layer: colour (H, W, C) and alpha (H, W) in [0, 1] at a scalar depth."""

    colour: np.ndarray
    alpha: np.ndarray
    depth: float


# --------------------------------------------------------------------------------------------
# Rendering


def psf_kernel(psf: str, radius: float, shape: Shape) -> np.ndarray:
    """Normalised PSF of blur radius `radius` px on an (h, w) grid centred at [0, 0] (wrapped).

    `psf` is one of `PSFS`: "disk" (a photographic lens), "gauss" (a Gaussian of sigma
    radius / 2 with an Airy-like ring, brightfield microscopy) or "widefield" (fluorescence: a
    core of sigma radius / 4 and a disk halo of `radius`, the halo's share radius / (radius + 3)).
    """
    dy = (sfft.fftfreq(shape[0]) * shape[0])[:, None]
    dx = (sfft.fftfreq(shape[1]) * shape[1])[None, :]
    dist = np.hypot(dy, dx)
    if psf == "disk":
        k = np.clip(radius + 0.5 - dist, 0, 1)  # area-coverage anti-aliased disk
    elif psf == "gauss":
        sigma = max(radius / 2, 0.3)
        k = np.exp(-(dist**2) / (2 * sigma**2))
        k /= k.sum()
        if radius >= 1.5:  # widefield defocus shows a bright outer ring
            ring = np.exp(-((dist - radius) ** 2) / (2 * 0.6**2))
            k = 0.75 * k + 0.25 * ring / ring.sum()
    elif psf == "widefield":
        # Fluorescence widefield defocus: a sharp core (sigma radius / 4) plus a wide halo (a
        # disk of `radius` with a bright rim) whose share of the flux grows with the defocus.
        core = np.exp(-(dist**2) / (2 * max(radius / 4, 0.3) ** 2))
        disk = np.clip(radius + 0.5 - dist, 0, 1)
        rim = np.exp(-((dist - radius) ** 2) / (2 * 0.8**2))
        halo = 0.7 * disk / disk.sum() + 0.3 * rim / rim.sum()
        share = radius / (radius + 3.0)
        k = (1 - share) * core / core.sum() + share * halo
    else:
        raise ValueError(f"unknown psf {psf!r}; expected one of {PSFS}")
    return (k / k.sum()).astype(np.float32)


@lru_cache(maxsize=256)
def psf_spectrum(psf: str, radius: float, fft_shape: Shape) -> np.ndarray:
    """Real rfft2 spectrum (read-only, cached) of `psf_kernel` on an `fft_shape` grid."""
    # The kernel is point-symmetric, so its spectrum is real: store half the numbers.
    spec = sfft.rfft2(psf_kernel(psf, radius, fft_shape)).real.astype(np.float32)
    spec.setflags(write=False)
    return spec


def _psf_extent(psf: str, radius: float) -> int:
    margin = 4 if psf == "widefield" else 2  # the widefield rim reaches past the radius
    return int(np.ceil((1.6 if psf == "gauss" else 1.0) * radius)) + margin


def quantize_radii(radii: np.ndarray) -> np.ndarray:
    """Blur radii rounded to the 1/8 px grid on which PSF spectra are cached."""
    return np.round(np.asarray(radii, np.float64) / _RADIUS_STEP) * _RADIUS_STEP


def fft_geometry(shape: Shape, psf: str, max_radius: float) -> tuple[int, Shape]:
    """Reflection pad (px) and FFT shape for blurring an (H, W) image by up to `max_radius`."""
    pad = _psf_extent(psf, max_radius)
    return pad, (
        sfft.next_fast_len(shape[0] + 2 * pad, True),
        sfft.next_fast_len(shape[1] + 2 * pad, True),
    )


def padded_spectrum(
    image: np.ndarray, pad: int, fft_shape: Shape, mode: str = "reflect"
) -> np.ndarray:
    """rfft2 of a (..., H, W) image padded by `pad` px (`mode` as np.pad) to `fft_shape`."""
    h, w = image.shape[-2:]
    widths = [(0, 0)] * (image.ndim - 2) + [
        (pad, fft_shape[0] - h - pad),
        (pad, fft_shape[1] - w - pad),
    ]
    return sfft.rfft2(np.pad(image, widths, mode=mode))


def defocus_blur(
    image: np.ndarray,
    radii: np.ndarray,
    psf: str,
    geometry: tuple[int, Shape] | None = None,
    mode: str = "reflect",
) -> np.ndarray:
    """Blur a (C, H, W) image by each PSF radius in `radii` (K,) px -> (K, C, H, W) float32.

    Radii are rounded to the 1/8 px cache grid; those under a quarter pixel leave the image
    sharp. `geometry` is (pad, fft_shape) from `fft_geometry` (default: fitted to the largest
    radius); `mode` is np.pad's border rule ("symmetric" conserves the total flux exactly).
    """
    radii = quantize_radii(np.atleast_1d(radii))
    c, h, w = image.shape
    pad, fft_shape = geometry or fft_geometry((h, w), psf, float(radii.max(initial=0.0)))
    out = np.broadcast_to(image.astype(np.float32), (len(radii), c, h, w)).copy()
    todo = np.flatnonzero(radii >= _MIN_BLUR)
    if todo.size:
        spec = padded_spectrum(image, pad, fft_shape, mode)
        kern = np.stack([psf_spectrum(psf, float(radii[k]), fft_shape) for k in todo])
        full = sfft.irfft2(spec[None] * kern[:, None], s=fft_shape)
        out[todo] = full[..., pad : pad + h, pad : pad + w]
    return out


def render(
    layers: list[Layer], focus: np.ndarray, aperture: float, psf: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Defocus-composite `layers` at each focus depth.

    Returns planes (Z, H, W, C), the unblurred composite (H, W, C) and the depth (H, W) of the
    front-most surface with alpha > 0.5 (the farthest layer's depth where there is none).
    Layers may come in any order; they are composited from the largest depth to the smallest.
    """
    focus = np.asarray(focus, dtype=np.float64)
    order = sorted(range(len(layers)), key=lambda i: -layers[i].depth)
    h, w, c = layers[0].colour.shape
    depths = np.array([layer.depth for layer in layers])
    radii = quantize_radii(aperture * np.abs(depths[:, None] - focus[None, :]))
    geometry = fft_geometry((h, w), psf, float(radii.max(initial=0.0)))
    planes = np.zeros((len(focus), c, h, w), np.float32)
    sharp = np.zeros((c, h, w), np.float32)
    depth_map = np.full((h, w), depths[order[0]], np.float32)
    for i in order:
        layer = layers[i]
        alpha = layer.alpha.astype(np.float32)
        pm = np.concatenate([np.moveaxis(layer.colour, -1, 0) * alpha, alpha[None]])
        sharp = pm[:c] + (1 - pm[c]) * sharp
        depth_map[alpha > 0.5] = layer.depth
        blurred = defocus_blur(pm, radii[i], psf, geometry)
        planes = blurred[:, :c] + (1 - blurred[:, c:]) * planes
    planes = np.clip(np.moveaxis(planes, 1, -1), 0, 1)
    return planes, np.clip(np.moveaxis(sharp, 0, -1), 0, 1), depth_map


def add_sensor_noise(rng: np.random.Generator, planes: np.ndarray) -> np.ndarray:
    """Gaussian read noise plus signal-dependent (Poisson-like) shot noise, random small level."""
    read = rng.uniform(0.001, 0.01)
    shot = rng.uniform(0.0, 0.02)  # noise std at full scale
    std = np.sqrt(np.float32(read**2) + np.float32(shot**2) * planes)
    noisy = planes + std * rng.standard_normal(planes.shape, dtype=np.float32)
    return np.clip(noisy, 0, 1)


def quantize(image: np.ndarray, dtype: np.dtype | type | str) -> np.ndarray:
    """float [0,1] -> uint8 / uint16 full range (round, clip)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"quantize supports uint8 and uint16, not {dtype}")
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0, 1) * np.float32(top)).astype(dtype)


# --------------------------------------------------------------------------------------------
# Scene geometry: focus depths and layer depths


def focus_depths(rng: np.random.Generator, n_planes: int, kind: str) -> np.ndarray:
    """Ascending focus depths spanning [0, 1]: a uniform z-step (microscopy) or jittered."""
    if n_planes == 1:
        return np.array([rng.uniform(0, 1)])
    grid = np.linspace(0, 1, n_planes)
    if kind == "photo":
        step = 1 / (n_planes - 1)
        grid[1:-1] += rng.uniform(-0.3, 0.3, n_planes - 2) * step
    return np.sort(grid)


def layer_depths(
    rng: np.random.Generator, focus: np.ndarray, aperture: float, scale: float, n_fg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Background band depths (far to near) and foreground depths for a stack.

    Most layers sit within 0.5 px of blur of a focus plane; the background is sometimes tilted
    (2-3 bands over several planes) or beyond the last plane (only ever partly in focus).
    """
    z = len(focus)
    tol = min(0.5 / aperture, 0.05)  # at most half a pixel of blur in the nearest plane
    beyond = rng.uniform(1.5, 4) * scale / aperture
    mode = rng.choice(3, p=[0.6, 0.2, 0.2])  # flat, tilted, beyond the last plane
    if mode == 1 and z >= 2:
        j = z - 1 - int(rng.integers(1, min(3, z - 1) + 1))
        far = focus[-1] + (beyond if rng.random() < 0.3 else 0.0)
        bg = np.linspace(far, focus[j], int(rng.integers(2, 4)))
        allowed = np.arange(j)
    elif mode == 2:
        bg = np.array([focus[-1] + beyond])
        allowed = np.arange(z)
    else:
        bg = np.array([focus[-1] + rng.uniform(-tol, tol)])
        allowed = np.arange(z - 1)
    if allowed.size == 0:
        allowed = np.array([0])
    if n_fg <= allowed.size:
        idx = rng.choice(allowed, n_fg, replace=False)
    else:
        idx = np.concatenate([allowed, rng.choice(allowed, n_fg - allowed.size)])
    fg = focus[idx] + rng.uniform(-tol, tol, n_fg)
    between = rng.random(n_fg) < 0.1
    fg[between] = rng.uniform(focus[0], bg.min(), between.sum())
    return bg, np.minimum(fg, bg.min() - 1e-3)


def tilt_bands(rng: np.random.Generator, shape: Shape, n_bands: int, scale: float) -> list:
    """Nested mattes (far to near) splitting the frame along a random direction (tilted plane)."""
    theta = rng.uniform(0, 2 * np.pi)
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    u = np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy
    u = (u - u.min()) / max(float(np.ptp(u)), 1.0) * max(shape)  # px along the tilt
    soft = rng.uniform(2, 8) * scale
    bands = [np.ones(shape, np.float32)]
    for i in range(1, n_bands):
        bands.append(mattes.sdf_alpha(u - np.float32(i / n_bands * max(shape)), soft))
    return bands


# --------------------------------------------------------------------------------------------
# Photo content


def photo_matte(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Matte of a subject: blobs, soft blobs, polygons, hairy blob, shape with holes, strands."""
    pick = rng.choice(6, p=[0.2, 0.12, 0.2, 0.16, 0.16, 0.16])
    if pick == 5:  # wires / grass blades: thin strands only
        curves = [
            mattes.curve(
                rng,
                rng.uniform(0, 1, 2) * shape,
                rng.uniform(0, 2 * np.pi),
                rng.uniform(0.3, 1.0) * max(shape),
                rng.uniform(0.002, 0.03),
            )
            for _ in range(rng.integers(2, 25))
        ]
        return mattes.strokes(
            shape, curves, rng.uniform(0.5, 1.5) * max(scale, 0.5), rng.uniform(0.7, 1.0)
        )
    n_obj = 1 if pick in (3, 4) else int(rng.integers(1, 4))
    parts = []
    for _ in range(n_obj):
        centre = rng.uniform(0.15, 0.85, 2) * np.array(shape)
        radius = rng.uniform(0.1, 0.35) * min(shape) / np.sqrt(n_obj)
        if pick == 2:
            a = mattes.polygon(rng, shape, centre, radius, int(rng.integers(3, 12)))
        else:
            soft = rng.uniform(2, 6) * scale if pick == 1 else 1.0
            a = mattes.radial_blob(
                rng,
                shape,
                centre,
                radius,
                roughness=rng.uniform(0.05, 0.6),
                softness=max(soft, 1.0),
            )
        if pick == 3:
            a = mattes.hairy(rng, a, centre, radius, scale)
        elif pick == 4:
            a = mattes.with_holes(rng, a, centre, radius)
        parts.append(a)
    return mattes.union(*parts)


def photo_content(
    rng: np.random.Generator, shape: Shape, scale: float, n_fg: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Background colour (H, W, 3) and n_fg (colour, alpha) subjects for a photo scene."""
    background = tex.photo_texture(rng, shape, scale)
    subjects = [
        (tex.photo_texture(rng, shape, scale), photo_matte(rng, shape, scale)) for _ in range(n_fg)
    ]
    return background, subjects


# --------------------------------------------------------------------------------------------
# Microscopy content

_FLUOR = np.array(
    [[0.25, 0.45, 1.0], [0.2, 1.0, 0.3], [1.0, 0.25, 0.2], [1.0, 0.3, 1.0], [0.2, 1.0, 1.0],
     [1.0, 0.9, 0.2], [1.0, 1.0, 1.0]], dtype=np.float32,
)  # fmt: skip
_STAINS = np.array(
    [[0.35, 0.2, 0.55], [0.85, 0.4, 0.6], [0.5, 0.3, 0.15], [0.2, 0.25, 0.6], [0.3, 0.3, 0.3]],
    dtype=np.float32,
)  # hematoxylin, eosin, DAB, methylene blue, unstained


def _dye(rng: np.random.Generator, table: np.ndarray, gray: bool) -> np.ndarray:
    if gray:
        return np.full(
            3, rng.uniform(0.5, 1.0) if table is _FLUOR else rng.uniform(0.2, 0.6), np.float32
        )
    return table[rng.integers(len(table))] * np.float32(rng.uniform(0.7, 1.0))


def _stamp(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """canvas = union(canvas, patch) over the patch's window, clipped to the canvas."""
    h, w = canvas.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], h), min(left + patch.shape[1], w)
    if y1 > y0 and x1 > x0:
        sub = patch[y0 - top : y1 - top, x0 - left : x1 - left]
        win = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = win + sub - win * sub


def ellipses(
    rng: np.random.Generator, shape: Shape, n: int, r_range: tuple[float, float]
) -> np.ndarray:
    """Union of n random soft ellipses with semi-axes in `r_range` px (nuclei)."""
    canvas = np.zeros(shape, np.float32)
    for _ in range(n):
        a = rng.uniform(*r_range)
        axes = (a, a * rng.uniform(0.55, 1.0))
        half = int(np.ceil(a)) + 2
        frac = rng.uniform(0, 1, 2)
        top = int(rng.integers(-half, shape[0]))
        left = int(rng.integers(-half, shape[1]))
        patch = mattes.ellipse(
            (2 * half + 1, 2 * half + 1), np.array([half, half]) + frac, axes, rng.uniform(0, np.pi)
        )
        _stamp(canvas, patch, top, left)
    return canvas


def _grain(rng: np.random.Generator, shape: Shape, lo: float) -> np.ndarray:
    """Fine multiplicative texture in [lo, 1] (chromatin, granules)."""
    return np.float32(lo) + np.float32(1 - lo) * tex.fractal_noise(rng, shape, 1.3)[..., None]


def microscopy_object(
    rng: np.random.Generator, shape: Shape, scale: float, fluorescent: bool, gray: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(colour, alpha) of nuclei, cells, filaments or puncta: emitters on dark or absorbers."""
    dye = _dye(rng, _FLUOR if fluorescent else _STAINS, gray)
    area = shape[0] * shape[1] / 256**2
    pick = rng.choice(5, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    if pick == 0:  # nuclei
        alpha = ellipses(
            rng, shape, max(int(rng.integers(3, 30) * area), 1), (6 * scale, 16 * scale)
        )
        colour = dye * _grain(rng, shape, 0.5)
    elif pick == 1:  # cells: dim cytoplasm blob with a brighter/denser nucleus
        n = max(int(rng.integers(2, 10) * area), 1)
        cells, nuclei = [], []
        for _ in range(n):
            centre = rng.uniform(0, 1, 2) * np.array(shape)
            radius = rng.uniform(12, 32) * scale
            cells.append(mattes.radial_blob(rng, shape, centre, radius, roughness=0.8))
            nuclei.append(
                mattes.ellipse(
                    shape,
                    centre + rng.normal(0, 0.15 * radius, 2),
                    (0.4 * radius, 0.3 * radius),
                    rng.uniform(0, np.pi),
                )
            )
        cyto, nuc = mattes.union(*cells), mattes.union(*nuclei)
        dye2 = _dye(rng, _FLUOR if fluorescent else _STAINS, gray)
        dim = np.float32(rng.uniform(0.3, 0.6))
        mix = nuc[..., None]
        colour = (dim * dye * (1 - mix) + dye2 * mix) * _grain(rng, shape, 0.6)
        alpha = np.maximum(cyto * np.float32(rng.uniform(0.6, 0.9)), nuc)
    elif pick == 2:  # filaments (actin, microtubules, fibres)
        curves = [
            mattes.curve(
                rng,
                rng.uniform(0, 1, 2) * shape,
                rng.uniform(0, 2 * np.pi),
                rng.uniform(0.2, 1.2) * max(shape),
                rng.uniform(0.003, 0.03),
            )
            for _ in range(int(rng.integers(5, 40)))
        ]
        alpha = mattes.strokes(
            shape, curves, rng.uniform(0.5, 1.2) * max(scale, 0.5), rng.uniform(0.5, 1.0)
        )
        colour = dye * _grain(rng, shape, 0.7)
    elif pick == 3:  # sparse puncta (vesicles, spots)
        n = max(int(rng.integers(20, 400) * area), 3)
        alpha = mattes.spots(
            shape,
            rng.uniform(0, 1, (n, 2)) * shape,
            rng.uniform(0.6, 1.8) * max(scale, 0.5),
            rng.uniform(0.4, 1.0, n),
        )
        colour = np.broadcast_to(dye, (*shape, 3)).copy()
    else:  # tissue fragment textured with a bundled microscopy image
        centre = rng.uniform(0.2, 0.8, 2) * np.array(shape)
        alpha = mattes.radial_blob(
            rng, shape, centre, rng.uniform(0.15, 0.4) * min(shape), roughness=0.7
        )
        if fluorescent:
            img = tex.to_gray(tex.image_texture(rng, shape, tex.FLUORESCENCE_IMAGES))
            lo, hi = np.percentile(img, [1, 99.5])
            colour = np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1) * dye
        else:
            colour = tex.image_texture(rng, shape, tex.BRIGHTFIELD_IMAGES)
        alpha = alpha * np.float32(rng.uniform(0.5, 0.95))
    return colour.astype(np.float32), alpha.astype(np.float32)


def microscopy_content(
    rng: np.random.Generator, shape: Shape, scale: float, n_fg: int, gray: bool
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Background and subjects for a fluorescence (dark ground) or brightfield scene."""
    fluorescent = rng.random() < 0.6
    haze = tex.fractal_noise(rng, shape, 3.0)[..., None]
    if fluorescent:
        base = _dye(rng, _FLUOR, gray) * np.float32(rng.uniform(0.0, 0.05))
        background = base + haze * _dye(rng, _FLUOR, gray) * np.float32(rng.uniform(0, 0.1))
        if rng.random() < 0.3:  # faint dark-field texture (the deep field looks like puncta)
            img = tex.image_texture(rng, shape, ("hubble_deep_field",))
            background = background + img * np.float32(rng.uniform(0.2, 0.6))
    else:
        tint = np.float32(1) - rng.uniform(0.0, 0.12, 3).astype(np.float32)
        background = tint * (np.float32(1) - haze * np.float32(rng.uniform(0, 0.1)))
        if rng.random() < 0.3:
            img = tex.image_texture(rng, shape, tex.BRIGHTFIELD_IMAGES)
            mix = np.float32(rng.uniform(0.2, 0.6))
            background = (1 - mix) * background + mix * img
    subjects = [microscopy_object(rng, shape, scale, fluorescent, gray) for _ in range(n_fg)]
    return np.clip(background, 0, 1).astype(np.float32), subjects


# --------------------------------------------------------------------------------------------
# Public entry point


def _as_shape(size: int | tuple[int, int]) -> Shape:
    shape = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(shape) < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    return shape


def make_stack(
    seed: int,
    *,
    size: int | tuple[int, int] = 256,
    n_planes: int | None = None,
    n_layers: int | None = None,
    kind: str | None = None,
    gray: bool | None = None,
    noise: bool = True,
    shuffle: bool = False,
    step_blur: float | None = None,
) -> SynthStack:
    """One random layered scene rendered at n_planes focus depths (random 2-7 when None).

    n_layers counts the background (one layer even when tilted) and the subjects (random 2-7).
    step_blur (px) sets the blur radius per plane step (the aperture becomes
    step_blur * (n_planes - 1) px per unit depth); None keeps the default 8-12 px per unit depth
    at 256 px, about 1.7 px per step for 7 planes. It does not change the random draws.

    Returns planes (Z, H, W, 3) in increasing focus depth (random order with shuffle=True,
    focus permuted alike), ground_truth (H, W, 3), depth (H, W) and focus (Z,), all float32.
    The scene depends only on seed, size, n_planes, kind and gray; noise and shuffle use
    separate streams, so noise=False gives the same scene without noise.
    """
    shape = _as_shape(size)
    rng = np.random.default_rng([seed, 0])
    draw_kind, draw_gray, draw_z = rng.random(), rng.random(), int(rng.integers(2, 8))
    kind = kind if kind is not None else KINDS[int(draw_kind < 0.5)]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    gray = bool(draw_gray < 1 / 3) if gray is None else bool(gray)
    z = draw_z if n_planes is None else int(n_planes)
    if z < 1:
        raise ValueError(f"n_planes must be >= 1, got {n_planes}")

    scale = min(shape) / 256
    aperture = rng.uniform(8, 12) * scale  # blur radius (px) per unit depth difference
    if step_blur is not None:
        if not step_blur >= 0:
            raise ValueError(f"step_blur must be >= 0 px, got {step_blur}")
        aperture = max(float(step_blur) * max(z - 1, 1), 1e-3)
    focus = focus_depths(rng, z, kind)
    n_fg = int(rng.integers(1, MAX_LAYERS))
    if n_layers is not None:
        if not 2 <= n_layers <= MAX_LAYERS:
            raise ValueError(f"n_layers must be in 2..{MAX_LAYERS}, got {n_layers}")
        n_fg = int(n_layers) - 1
    bg_depths, fg_depths = layer_depths(rng, focus, aperture, scale, n_fg)
    if kind == "photo":
        background, subjects = photo_content(rng, shape, scale, n_fg)
    else:
        background, subjects = microscopy_content(rng, shape, scale, n_fg, gray)

    convert = tex.to_gray if gray else (lambda im: im)
    bg_colour = convert(background)
    bands = tilt_bands(rng, shape, len(bg_depths), scale)
    layers = [Layer(bg_colour, a, float(d)) for a, d in zip(bands, bg_depths, strict=True)]
    layers += [
        Layer(convert(colour), alpha, float(d))
        for (colour, alpha), d in zip(subjects, fg_depths, strict=True)
    ]
    planes, gt, depth = render(layers, focus, aperture, PSF_FOR_KIND[kind])

    if noise:
        planes = add_sensor_noise(np.random.default_rng([seed, 1]), planes)
    focus = focus.astype(np.float32)
    if shuffle:
        perm = np.random.default_rng([seed, 2]).permutation(z)
        planes, focus = planes[perm], focus[perm]
    if gray:
        planes = np.repeat(planes, 3, axis=-1)
        gt = np.repeat(gt, 3, axis=-1)
    return SynthStack(
        planes=np.ascontiguousarray(planes, dtype=np.float32),
        ground_truth=np.ascontiguousarray(gt, dtype=np.float32),
        depth=depth.astype(np.float32),
        focus=focus,
        gray=gray,
        kind=kind,
    )
