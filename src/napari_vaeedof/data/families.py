"""Physics families of synthetic focus stacks, one entry point: `make_family_stack`.

Families (`FAMILIES`), each with its own random streams, so seed k of one family has nothing to
do with seed k of another:

- "layered": `synth.make_stack`'s occlusion scenes (photo / microscopy layers composited with
  defocus spread at their edges), blur per plane step 0.5-40 px (at 256 px; the largest blur is
  kept within about 0.4 of the frame).
- "heightfield": a textured surface whose depth varies smoothly, with ledges; the blur varies
  per pixel (`heightfield`); reflected-light and brightfield looks.
- "fluorescence": widefield emitters (puncta, filaments, membranes, nuclei) at many depths,
  every plane the sum of all of them under a core-plus-halo defocus PSF, no occlusion
  (`widefield`); gray; ground truth every emitter in focus.
- "brightfield": dark, partly transparent absorbers at several depths on a bright ground;
  transmissions multiply (`absorption`).

Acquisition, common to all: 2-30 planes (log-uniform), focus order ascending (70 %),
descending (20 %) or shuffled (10 %); Poisson-Gaussian sensor noise from a family's range of
photo-electrons at full scale (read noise 1-5 e-); quantisation to 8, 12 or 16 bits (planes
stay float32 in [0, 1], on the 2**bits - 1 grid). The ground truth is never noisy nor quantised.
The scene depends on (family, seed, size, n_planes and the family's options) only: noise=False
renders the same scene with the same bit depth and plane order and no noise.

Speed: a 256 px stack of 7 planes with noise takes a median 0.2-0.6 s (slowest of 8 seeds
0.4-1.2 s; layered is the slowest, its wide blurs need wide FFT pads), measured with
make_family_stack(family, seed, size=256, n_planes=7), seeds 1-8 after one warm-up call,
OMP_NUM_THREADS=1, under `nice` on the shared 2-core dev container (load average about 2).
Time grows with pixels x planes (x layers or depth slices): 21-25 planes took 0.8-3.4 s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .absorption import brightfield_scene
from .heightfield import heightfield_scene
from .synth import Scene, SynthStack, _as_shape, make_stack
from .widefield import fluorescence_scene

FAMILIES = ("layered", "heightfield", "fluorescence", "brightfield")
ORDERS = ("ascending", "descending", "shuffled")
MAX_PLANES = 30
_CODE = {name: i + 1 for i, name in enumerate(FAMILIES)}  # random-stream key of each family
# Photo-electrons at full scale (value 1.0) when noisy, log-uniform: low light at the low end.
# Fluorescence peaks sit at 30-90 % of full scale: about 25 (dim live-cell) to 7000 photons.
_PHOTONS = {"layered": (60, 8000), "heightfield": (60, 8000), "fluorescence": (80, 8000),
            "brightfield": (150, 15000)}  # fmt: skip


@dataclass(frozen=True)
class Acquisition:
    """How a stack is recorded: planes, their order, bit depth and sensor noise level."""

    n_planes: int
    order: str  # one of ORDERS
    bits: int  # 8, 12 or 16
    photons: float  # photo-electrons at full scale (value 1.0)
    read_noise: float  # read noise, electrons (std)


def draw_acquisition(
    family: str,
    seed: int,
    gray: bool,
    *,
    n_planes: int | None = None,
    order: str | None = None,
    bits: int | None = None,
    photons: float | None = None,
) -> Acquisition:
    """The acquisition settings of stack `seed` of `family` (drawn unless given).

    The draws come from their own stream, so giving one setting leaves the others unchanged.
    Bits: colour 8; gray fluorescence 12 or 16, other gray 8, 12 or 16.
    """
    rng = np.random.default_rng([seed, _CODE[family], 1])
    z = int(np.round(np.exp(rng.uniform(np.log(2), np.log(MAX_PLANES + 0.5)))))
    draw_order = ORDERS[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
    choices = (12, 16) if family == "fluorescence" else (8, 12, 16)
    draw_bits = int(rng.choice(choices)) if gray else 8
    lo, hi = _PHOTONS[family]
    draw_photons = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    read = float(rng.uniform(1, 5))
    z = z if n_planes is None else int(n_planes)
    if not 2 <= z <= 1000:
        raise ValueError(f"n_planes must be at least 2, got {z}")
    order = draw_order if order is None else order
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    bits = draw_bits if bits is None else int(bits)
    if bits not in (8, 12, 16):
        raise ValueError(f"bits must be 8, 12 or 16, got {bits}")
    photons = draw_photons if photons is None else float(photons)
    return Acquisition(z, order, bits, photons, read)


def poisson_gaussian(
    rng: np.random.Generator, planes: np.ndarray, photons: float, read_noise: float
) -> np.ndarray:
    """Shot noise (Poisson, `photons` electrons at value 1) plus Gaussian read noise
    (`read_noise` electrons) on float planes in [0, 1]; same shape, float32, clipped to [0, 1]."""
    electrons = rng.poisson(np.clip(planes, 0, 1).astype(np.float64) * photons)
    electrons = electrons + rng.normal(0.0, read_noise, planes.shape)
    return np.clip(electrons / photons, 0, 1).astype(np.float32)


def requantize(planes: np.ndarray, bits: int) -> np.ndarray:
    """Round float values in [0, 1] to the grid of a `bits`-bit sensor (float32 in [0, 1])."""
    top = np.float32(2**bits - 1)
    return (np.round(np.clip(planes, 0, 1) * top) / top).astype(np.float32)


def _layered_scene(seed: int, shape, n_planes: int, step_blur: float | None) -> tuple:
    rng = np.random.default_rng([seed, _CODE["layered"], 0])
    scale = min(shape) / 256
    step = np.exp(rng.uniform(np.log(0.5), np.log(40))) * scale
    step = step if step_blur is None else float(step_blur)
    step = min(step, 0.4 * min(shape) / max(n_planes - 1, 1))
    st = make_stack(seed, size=shape, n_planes=n_planes, noise=False, step_blur=step)
    c = 1 if st.gray else 3
    scene = Scene(st.planes[..., :c], st.ground_truth[..., :c], st.depth, st.focus, st.kind)
    return scene, st.gray


def make_family_stack(
    family: str,
    seed: int,
    *,
    size: int | tuple[int, int] = 256,
    n_planes: int | None = None,
    noise: bool = True,
    order: str | None = None,
    bits: int | None = None,
    photons: float | None = None,
    **options,
) -> SynthStack:
    """One focus stack of a physics family, deterministic per (family, seed and arguments).

    Parameters
    ----------
    family : str
        One of `FAMILIES`.
    seed : int
        Scene number; held-out evaluation uses seeds from
        `evaluation.heldout.HELDOUT_FIRST_SEED`, training seeds below it.
    size : int or (H, W)
        Plane size in px (>= 8; 256-512 keeps large defocus spread inside the frame).
    n_planes : int or None
        Number of planes; None draws 2-30 (log-uniform).
    noise : bool
        Poisson-Gaussian sensor noise (level drawn unless `photons`); False renders the same
        scene noise-free (still quantised to `bits`).
    order : {"ascending", "descending", "shuffled"} or None
        Plane order by focus depth; None draws (70 / 20 / 10 %).
    bits : {8, 12, 16} or None
        Sensor bit depth; None draws (colour 8 bit).
    photons : float or None
        Photo-electrons at full scale when noisy; None draws from the family's range.
    **options
        Passed to the family's scene function: `step_blur` (px per plane step) for all;
        `look`, `gray`, `ledges` (heightfield); `structures` (fluorescence); `gray`,
        `n_objects` (brightfield).

    Returns
    -------
    SynthStack
        planes (Z, H, W, 3) float32 in [0, 1] in the stack's order; ground_truth (H, W, 3)
        float32, noise-free; depth (H, W) float32 true depth in focus units (NaN where there is
        none); focus (Z,) float32 of each plane; gray (the 3 channels are equal); kind
        "family:look"; info: the acquisition settings and the family.

    Examples
    --------
    >>> st = make_family_stack("fluorescence", 0, size=64, n_planes=5)
    >>> st.planes.shape, st.gray
    ((5, 64, 64, 3), True)
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    shape = _as_shape(size)
    # The plane count must be known before the scene; gray only after it (family draws).
    z = draw_acquisition(family, seed, False, n_planes=n_planes).n_planes
    rng = np.random.default_rng([seed, _CODE[family], 0])
    if family == "layered":
        scene, gray = _layered_scene(seed, shape, z, options.pop("step_blur", None))
        if options:
            raise TypeError(f"unexpected options for layered: {sorted(options)}")
    elif family == "heightfield":
        scene, gray = heightfield_scene(rng, shape, z, **options)
    elif family == "fluorescence":
        scene, gray = fluorescence_scene(rng, shape, z, **options), True
    else:
        scene, gray = brightfield_scene(rng, shape, z, **options)
    acq = draw_acquisition(family, seed, gray, n_planes=z, order=order, bits=bits,
                           photons=photons)  # fmt: skip

    planes = scene.planes
    if noise:
        planes = poisson_gaussian(np.random.default_rng([seed, _CODE[family], 2]), planes,
                                  acq.photons, acq.read_noise)  # fmt: skip
    planes = requantize(planes, acq.bits)
    perm = np.random.default_rng([seed, _CODE[family], 3]).permutation(z)
    if acq.order == "descending":
        perm = np.arange(z)[::-1]
    elif acq.order == "ascending":
        perm = np.arange(z)
    planes, focus = planes[perm], scene.focus[perm]
    truth = scene.ground_truth
    if gray:
        planes, truth = np.repeat(planes[..., :1], 3, -1), np.repeat(truth[..., :1], 3, -1)
    info = {"family": family, **asdict(acq), "noise": bool(noise)}
    return SynthStack(
        planes=np.ascontiguousarray(planes, dtype=np.float32),
        ground_truth=np.ascontiguousarray(truth, dtype=np.float32),
        depth=np.asarray(scene.depth, np.float32),
        focus=np.asarray(focus, np.float32),
        gray=bool(gray),
        kind=f"{family}:{scene.look}",
        info=info,
    )
