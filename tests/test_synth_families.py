"""Physics families of synthetic focus stacks: determinism, noise-free truth, and the physics."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vaeedof.data.absorption import render_absorbers
from napari_vaeedof.data.families import (
    FAMILIES,
    draw_acquisition,
    make_family_stack,
    poisson_gaussian,
)
from napari_vaeedof.data.synth import make_stack, psf_kernel
from napari_vaeedof.data.widefield import render_widefield

FIELDS = ("planes", "ground_truth", "depth", "focus")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_deterministic_per_seed(family):
    a = make_family_stack(family, 3, size=48, n_planes=4)
    b = make_family_stack(family, 3, size=48, n_planes=4)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.kind, a.gray, a.info) == (b.kind, b.gray, b.info)
    c = make_family_stack(family, 4, size=48, n_planes=4)
    assert np.abs(a.ground_truth - c.ground_truth).mean() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_ranges_bit_depth_and_order(family):
    for seed in range(3):
        st = make_family_stack(family, seed, size=(40, 56), n_planes=5, order="descending")
        assert st.planes.shape == (5, 40, 56, 3) and st.ground_truth.shape == (40, 56, 3)
        assert st.depth.shape == (40, 56) and st.focus.shape == (5,)
        for arr in (st.planes, st.ground_truth, st.depth, st.focus):
            assert arr.dtype == np.float32
        assert 0 <= st.planes.min() and st.planes.max() <= 1
        assert 0 <= st.ground_truth.min() and st.ground_truth.max() <= 1
        assert np.all(np.diff(st.focus) < 0)
        assert st.kind.startswith(family + ":") and st.info["family"] == family
        levels = st.planes * (2 ** st.info["bits"] - 1)
        np.testing.assert_allclose(levels, np.round(levels), atol=2e-3)
        if st.gray:
            assert np.array_equal(st.planes[..., 0], st.planes[..., 2])
            assert np.array_equal(st.ground_truth[..., 0], st.ground_truth[..., 1])


def test_acquisition_draws_planes_orders_and_bits_like_real_stacks():
    acqs = [draw_acquisition(f, s, gray=True) for f in FAMILIES for s in range(100)]
    planes = np.array([a.n_planes for a in acqs])
    assert planes.min() == 2 and planes.max() == 30
    orders = [a.order for a in acqs]
    assert 0.6 < orders.count("ascending") / len(acqs) < 0.8
    assert orders.count("shuffled") > 0 and orders.count("descending") > 0
    assert {a.bits for a in acqs} == {8, 12, 16}
    assert {draw_acquisition("fluorescence", s, gray=True).bits for s in range(50)} == {12, 16}


@pytest.mark.parametrize("family", FAMILIES)
def test_ground_truth_is_noise_free_and_noise_is_poisson_gaussian(family):
    noisy = make_family_stack(family, 5, size=64, n_planes=4, bits=16, photons=400.0)
    clean = make_family_stack(family, 5, size=64, n_planes=4, bits=16, noise=False)
    np.testing.assert_array_equal(noisy.ground_truth, clean.ground_truth)
    np.testing.assert_array_equal(noisy.focus, clean.focus)
    # noise variance = signal / photons + (read / photons)^2, away from the clipped ends
    c, n = clean.planes[..., 0], noisy.planes[..., 0]
    ok = (c > 0.05) & (c < 0.9)
    expected = c[ok] / 400.0 + (noisy.info["read_noise"] / 400.0) ** 2
    ratio = np.mean((n - c)[ok] ** 2) / np.mean(expected)
    assert 0.85 < ratio < 1.15


def test_widefield_psf_has_a_core_and_a_halo_that_grows_with_defocus():
    shares = []
    for radius in (2.0, 6.0, 12.0):
        k = np.fft.fftshift(psf_kernel("widefield", radius, (64, 64)))
        yy, xx = np.indices(k.shape) - 32
        r = np.hypot(yy, xx)
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        halo = k[(r > radius / 2) & (r < radius + 1)]
        assert k[32, 32] > 2 * halo.mean()  # a sharp core above the halo
        shares.append(k[r > radius / 2].sum())  # the halo's flux
    assert shares[0] < shares[1] < shares[2] and shares[2] > 0.5


def test_widefield_emitter_is_sharp_in_its_plane_and_keeps_its_flux_in_every_plane():
    density = np.zeros((3, 64, 64), np.float32)
    density[1, 30, 33] = 1.0  # one emitter at depth 0.5
    density[0, 10:14, 10:20] = 0.2  # a dim patch at depth 0
    planes = render_widefield(density, np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]), 20)
    truth = density.sum(axis=0)
    np.testing.assert_allclose(planes.sum(axis=(1, 2)), truth.sum(), rtol=1e-4)
    # in focus: the emitter is the truth there, plus the patch's glow from 10 px of defocus
    assert planes[1, 30, 33] == pytest.approx(1.0, abs=0.02)
    assert planes[0, 30, 33] < 0.5 and planes[2, 30, 33] < 0.5  # defocused: spread out
    np.testing.assert_allclose(planes[0, 10:14, 10:20], 0.2, atol=0.03)


def test_fluorescence_planes_hold_the_truths_total_intensity():
    for seed in range(3):
        st = make_family_stack("fluorescence", seed, size=96, n_planes=6, noise=False, bits=16)
        totals = st.planes[..., 0].sum(axis=(1, 2))
        np.testing.assert_allclose(totals, st.ground_truth[..., 0].sum(), rtol=2e-3)
        # no occlusion: every plane is at least the constant background, nowhere darker
        assert st.planes.min() >= st.ground_truth.min() - 2e-3


def test_fluorescence_truth_is_reached_where_an_emitter_dominates_in_its_plane():
    st = make_family_stack("fluorescence", 1, size=128, n_planes=6, noise=False, bits=16,
                           order="ascending", structures=("nuclei", "membranes"), step_blur=1.0)
    truth = st.ground_truth[..., 0]
    ok = np.isfinite(st.depth)
    k = np.argmin(np.abs(st.depth[None] - st.focus[:, None, None]), axis=0)
    err = np.abs(np.take_along_axis(st.planes[..., 0], k[None], 0)[0] - truth)
    far = np.abs(st.planes[..., 0] - truth).max(axis=0)
    assert ok.sum() > 100
    assert np.median(err[ok]) < 0.2 * np.median(far[ok])


def test_heightfield_plane_focused_at_a_pixels_depth_equals_the_truth_there():
    for seed in range(3):
        st = make_family_stack("heightfield", seed, size=96, n_planes=5, noise=False, bits=16,
                               order="ascending", ledges=0)
        gap = np.abs(st.depth[None] - st.focus[:, None, None])  # (Z, H, W)
        err = np.abs(st.planes - st.ground_truth).max(axis=-1)
        sharp = gap < 5e-4  # under 0.02 px of blur
        assert sharp.sum() > 20
        assert err[sharp].max() < 2 / 255
        # the blur varies per pixel: pixels far from a plane's focus are the blurred ones
        assert err[gap > 0.3].mean() > 4 * err[gap < 0.05].mean()


def test_heightfield_ledge_spreads_a_defocused_near_terrace():
    st = make_family_stack("heightfield", 2, size=96, n_planes=3, noise=False, bits=16,
                           order="ascending", ledges=2, step_blur=6.0)
    assert np.isfinite(st.depth).all()
    assert np.ptp(st.depth) > 0.5  # the surface spans most of the focus range
    gy, gx = np.gradient(st.depth)
    assert np.hypot(gy, gx).max() > 0.05  # a step (ledge), not only smooth relief


def test_brightfield_transmissions_multiply_and_blur_keeps_the_absorbed_light():
    illum = np.full((1, 64, 64), 0.9, np.float32)
    a = np.zeros((1, 64, 64), np.float32)
    b = np.zeros((1, 64, 64), np.float32)
    a[0, 20:40, 20:40] = 0.5
    b[0, 30:34, 10:54] = 0.4
    planes, truth = render_absorbers(illum, [a, b], np.array([0.0, 0.0]), np.array([0.0, 1.0]),
                                     aperture=6.0)
    np.testing.assert_allclose(truth[0, 31, 25], 0.9 * 0.5 * 0.6, rtol=1e-6)  # both absorb
    np.testing.assert_allclose(planes[0], truth, atol=1e-6)  # both in focus in plane 0
    assert planes.max() <= 0.9 + 1e-6  # absorbers only darken
    single, _ = render_absorbers(illum, [a], np.array([0.0]), np.array([0.0, 1.0]), 6.0)
    absorbed = (1 - single / 0.9).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(absorbed, a.sum(), rtol=1e-4)
    assert single[1, 0, 30, 30] > single[0, 0, 30, 30]  # defocused: paler in the middle


def test_layered_family_step_blur_widens_the_defocus():
    for seed in (7, 8, 9):
        err = []
        for step in (0.0, 1.0, 4.0, 16.0):
            st = make_family_stack("layered", seed, size=96, n_planes=4, noise=False, bits=16,
                                   step_blur=step)
            err.append(np.abs(st.planes - st.ground_truth).mean())
        assert np.all(np.diff(err) > 0)
    # the default layered generator is untouched by the option
    a, b = make_stack(7, size=48), make_stack(7, size=48, step_blur=None)
    np.testing.assert_array_equal(a.planes, b.planes)


def test_poisson_gaussian_noise_is_clipped_to_the_unit_range():
    rng = np.random.default_rng(0)
    out = poisson_gaussian(rng, np.full((2, 8, 8, 1), 0.999, np.float32), 20.0, 5.0)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_unknown_family_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="family"):
        make_family_stack("confocal", 0, size=32)
    with pytest.raises(ValueError, match="bits"):
        make_family_stack("brightfield", 0, size=32, bits=10)
    with pytest.raises(ValueError, match="order"):
        make_family_stack("brightfield", 0, size=32, order="random")
    with pytest.raises(ValueError, match="n_planes"):
        make_family_stack("brightfield", 0, size=32, n_planes=1)
