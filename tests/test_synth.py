"""Properties of the layered depth-of-field synthetic focus stacks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_vaeedof.data.synth import (
    Layer,
    SynthStack,
    make_stack,
    psf_kernel,
    quantize,
    render,
)

TOL_8BIT = 2 / 255


def gradient_energy(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared gradient magnitude of the channel mean, optionally within a mask."""
    gy, gx = np.gradient(image.mean(axis=-1))
    energy = gy**2 + gx**2
    return float(energy.mean() if mask is None else energy[mask].mean())


def depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels where the visible surface changes depth (either side of the step)."""
    edge = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        step = np.diff(depth, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= step
        edge[tuple(hi)] |= step
    return edge


def hard_pixels(stack: SynthStack) -> np.ndarray:
    """Pixels where no plane is within 2/255 of the ground truth in every channel."""
    err = np.abs(stack.planes - stack.ground_truth).max(axis=-1).min(axis=0)
    return err > TOL_8BIT


def test_same_seed_gives_identical_stack():
    a = make_stack(11, size=64)
    b = make_stack(11, size=64)
    for name in ("planes", "ground_truth", "depth", "focus"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.gray, a.kind) == (b.gray, b.kind)


def test_different_seeds_give_different_scenes():
    gts = [make_stack(seed, size=64, kind="photo", gray=False).ground_truth for seed in range(4)]
    for i in range(len(gts)):
        for j in range(i + 1, len(gts)):
            assert np.abs(gts[i] - gts[j]).mean() > 0.01


@pytest.mark.parametrize("kind", ["photo", "microscopy"])
@pytest.mark.parametrize("gray", [False, True])
def test_shapes_dtypes_and_ranges(kind, gray):
    st = make_stack(5, size=(48, 80), n_planes=4, kind=kind, gray=gray)
    assert st.planes.shape == (4, 48, 80, 3)
    assert st.ground_truth.shape == (48, 80, 3)
    assert st.depth.shape == (48, 80)
    assert st.focus.shape == (4,)
    for arr in (st.planes, st.ground_truth, st.depth, st.focus):
        assert arr.dtype == np.float32
        assert np.isfinite(arr).all()
    for arr in (st.planes, st.ground_truth):
        assert arr.min() >= 0.0 and arr.max() <= 1.0
    assert np.all(np.diff(st.focus) > 0), "planes come in increasing focus depth"
    assert (st.kind, st.gray) == (kind, gray)
    # Depth is in focus units: the visible surfaces lie around the focus range.
    assert st.depth.min() > st.focus.min() - 0.2 and st.depth.max() < st.focus.max() + 0.6


@pytest.mark.parametrize("n_planes", [1, 2, 3, 4, 5, 6, 7, 15])
def test_n_planes_honoured(n_planes):
    st = make_stack(n_planes, size=48, n_planes=n_planes)
    assert st.planes.shape[0] == st.focus.shape[0] == n_planes


def test_random_n_planes_in_2_to_7():
    counts = {make_stack(seed, size=32).planes.shape[0] for seed in range(40)}
    assert counts <= set(range(2, 8)) and len(counts) >= 4


def test_gray_scenes_have_equal_channels_and_colour_scenes_do_not():
    for kind in ("photo", "microscopy"):
        st = make_stack(3, size=64, kind=kind, gray=True)
        assert st.gray
        np.testing.assert_array_equal(st.planes[..., 0], st.planes[..., 1])
        np.testing.assert_array_equal(st.planes[..., 0], st.planes[..., 2])
        np.testing.assert_array_equal(st.ground_truth[..., 0], st.ground_truth[..., 2])
    colourful = [make_stack(s, size=64, gray=False).ground_truth for s in range(4)]
    assert any(np.abs(gt[..., 0] - gt[..., 1]).max() > 0.1 for gt in colourful)


def test_random_kind_and_gray_mix():
    stacks = [make_stack(seed, size=16, n_planes=2, noise=False) for seed in range(90)]
    micro = np.mean([st.kind == "microscopy" for st in stacks])
    gray = np.mean([st.gray for st in stacks])
    assert 0.3 < micro < 0.7
    assert 0.15 < gray < 0.5


def test_noise_is_small_and_leaves_the_scene_unchanged():
    clean = make_stack(8, size=64, noise=False)
    noisy = make_stack(8, size=64, noise=True)
    np.testing.assert_array_equal(clean.ground_truth, noisy.ground_truth)
    np.testing.assert_array_equal(clean.focus, noisy.focus)
    diff = noisy.planes - clean.planes
    assert 0 < np.abs(diff).mean() < 0.03


def test_shuffle_permutes_planes_with_their_focus():
    ordered = make_stack(9, size=48, n_planes=7, noise=False)
    shuffled = make_stack(9, size=48, n_planes=7, noise=False, shuffle=True)
    assert not np.array_equal(shuffled.focus, ordered.focus)
    order = np.argsort(shuffled.focus)
    np.testing.assert_array_equal(shuffled.focus[order], ordered.focus)
    np.testing.assert_array_equal(shuffled.planes[order], ordered.planes)
    np.testing.assert_array_equal(shuffled.ground_truth, ordered.ground_truth)


def test_ground_truth_is_sharper_than_every_plane():
    for seed in range(6):
        st = make_stack(seed, size=96, kind="photo", noise=False)
        gt = gradient_energy(st.ground_truth)
        assert all(gt > gradient_energy(p) for p in st.planes), seed
    for seed in range(6):  # smooth dark microscopy grounds can make a plane nearly the truth
        st = make_stack(seed, size=96, kind="microscopy", noise=False)
        gt = gradient_energy(st.ground_truth)
        assert all(gt >= 0.999 * gradient_energy(p) for p in st.planes), seed


def test_plane_focused_at_a_layer_is_sharpest_inside_it():
    checked = 0
    for seed in range(8):
        st = make_stack(seed, size=160, kind="photo", noise=False)
        # Farther than any blur can reach (radius <= 12 px/unit depth at 256 px) from an edge.
        reach = int(np.ceil(12 * 160 / 256 * (st.depth.max() - st.focus.min()))) + 2
        for d in np.unique(st.depth):
            inner = ndi.distance_transform_edt(np.pad(st.depth == d, 1))[1:-1, 1:-1] > reach
            if inner.sum() < 100:
                continue
            energy = np.array([gradient_energy(p, inner) for p in st.planes])
            closest = np.argmin(np.abs(st.focus - d))
            # Planes within half a pixel of blur render identically, so allow exact ties.
            assert energy[closest] >= energy.max() * (1 - 1e-6), (seed, d)
            checked += 1
    assert checked >= 8


def test_defocus_spread_hides_background_near_foreground_edges():
    near_rates, far_rates = [], []
    for seed in range(8):
        st = make_stack(seed, size=128, n_planes=5, n_layers=4, kind="photo", noise=False)
        hard = hard_pixels(st)
        assert hard.any(), seed
        near = ndi.binary_dilation(depth_edges(st.depth), iterations=6)
        near_rates.append(hard[near].mean())
        far_rates.append(hard[~near].mean())
    # Unrecoverable pixels cluster at occlusion edges, where blurred foregrounds spill over.
    assert np.mean(near_rates) > 0.1
    assert np.mean(near_rates) > 2 * np.mean(far_rates)


def test_most_of_the_truth_is_visible_in_some_plane():
    fractions = [
        1 - hard_pixels(make_stack(seed, size=96, noise=False)).mean() for seed in range(12)
    ]
    assert np.median(fractions) > 0.7


def _square_scene(colour_fg: float, colour_bg: float) -> list[Layer]:
    alpha = np.zeros((64, 64), np.float32)
    alpha[20:44, 20:44] = 1
    return [
        Layer(np.full((64, 64, 1), colour_bg, np.float32), np.ones((64, 64), np.float32), 1.0),
        Layer(np.full((64, 64, 1), colour_fg, np.float32), alpha, 0.0),
    ]


@pytest.mark.parametrize("psf", ["disk", "gauss"])
def test_compositing_uses_blurred_alpha(psf):
    # A scene of one colour stays that colour at any defocus only if the foreground's blurred
    # alpha (not its sharp one) decides how much of the background shows through.
    planes, gt, _ = render(_square_scene(0.4, 0.4), np.array([0.0, 0.5, 1.0]), 10.0, psf)
    np.testing.assert_allclose(planes, 0.4, atol=1e-5)
    np.testing.assert_allclose(gt, 0.4, atol=1e-6)


def test_defocused_foreground_spreads_over_background():
    focus = np.array([0.0, 1.0])
    planes, gt, depth = render(_square_scene(1.0, 0.0), focus, 8.0, "disk")
    outside = (slice(20, 44), slice(45, 48))  # 1-4 px right of the square's edge
    np.testing.assert_array_equal(gt[outside], 0.0)
    assert np.all(planes[0][outside] < 1e-5), "in-focus foreground does not spread"
    assert np.all(planes[1][outside] > 0.05), "defocused foreground covers the background"
    inside = (slice(20, 44), slice(40, 44))
    assert np.all(planes[1][inside] < 0.99), "and lets the background bleed into its edge"
    assert np.all(depth[22:42, 22:42] == 0.0) and depth[0, 0] == 1.0


@pytest.mark.parametrize("psf", ["disk", "gauss"])
@pytest.mark.parametrize("radius", [0.0, 0.5, 3.0, 10.0])
def test_psf_is_normalised_and_sized_by_radius(psf, radius):
    k = psf_kernel(psf, radius, (64, 64))
    assert k.min() >= 0 and abs(k.sum() - 1) < 1e-5
    dist = np.hypot(*np.meshgrid(np.fft.fftfreq(64) * 64, np.fft.fftfreq(64) * 64))
    rms = np.sqrt((k * dist**2).sum())
    assert 0.5 * radius - 0.5 <= rms <= max(radius, 0.5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_quantize_round_trip_and_range(dtype):
    top = np.iinfo(dtype).max
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (32, 32, 3)).astype(np.float32)
    q = quantize(x, dtype)
    assert q.dtype == dtype
    assert q.min() == 0 and q.max() == top
    back = q.astype(np.float64) / top
    assert np.abs(back - np.clip(x, 0, 1)).max() <= 0.5 / top + 1e-6
    exact = np.arange(top + 1 if dtype == np.uint8 else 1000, dtype=np.float64) / top
    np.testing.assert_array_equal(quantize(exact, dtype), np.arange(exact.size))


def test_quantize_rejects_other_dtypes():
    with pytest.raises(ValueError):
        quantize(np.zeros(3), np.int32)
