import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_vaeedof.engine.compose import (
    FILL_DEAD,
    band_features,
    band_weights,
    box_mean,
    collapse,
    compose,
    compose_bands,
    departure,
    depth_and_confidence,
    fill_weight,
    guided_filter,
    laplacian_pyramid,
    noise_floor,
    pixel_blend,
    plane_chunks,
    selection_weights,
    sharpness,
    sharpness_features,
)


@pytest.mark.parametrize("radius", [1, 4, 8])
def test_box_mean_is_the_border_clipped_window_mean(radius):
    x = torch.rand(2, 3, 40, 29, dtype=torch.float64)
    ref = F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    torch.testing.assert_close(box_mean(x, radius), ref)


def test_guided_filter_puts_the_weight_boundary_on_the_guide_edge():
    guide = torch.zeros(1, 1, 64, 64)
    guide[..., 29:] = 1.0  # a sharp vertical edge, off the ramp's centre
    soft = torch.clamp((torch.arange(64.0) - 24) / 16, 0, 1).expand(1, 1, 64, 64)
    row = guided_filter(guide, soft, radius=8, eps=1e-3)[0, 0, 0]
    jumps = row.diff()
    assert int(jumps.argmax()) == 28  # the largest step is at the guide's edge (28 -> 29)
    assert jumps[28] > 0.3 and soft[0, 0, 0].diff().max() < 0.07


def test_guided_filter_with_a_flat_guide_only_smooths():
    src = torch.rand(1, 2, 32, 32, dtype=torch.float64)
    flat = torch.full((1, 1, 32, 32), 0.5, dtype=torch.float64)
    torch.testing.assert_close(guided_filter(flat, src, radius=3),
                               box_mean(box_mean(src, 3), 3))


def test_selection_weights_are_convex_at_full_resolution():
    planes = torch.rand(4, 3, 64, 48)
    w = selection_weights(torch.randn(4, 8, 6) * 3, planes)
    assert w.shape == (4, 64, 48)
    assert w.min() >= 0
    torch.testing.assert_close(w.sum(0), torch.ones(64, 48))


def test_a_confident_logit_selects_that_planes_pixels_exactly():
    """The head is sure of plane 1 and the others hold no competing detail (out of focus):
    the output is plane 1's pixels."""
    planes = torch.rand(3, 3, 32, 32)
    planes[0], planes[2] = planes[0].mean(), planes[2].mean()
    logits = torch.full((3, 4, 4), -30.0)
    logits[1] = 30.0
    no_fill = torch.full((4, 4), -30.0)
    image, _, fill = pixel_blend(logits, no_fill, planes)
    assert fill.max() == 0
    torch.testing.assert_close(image, planes[1])


@pytest.mark.parametrize("shape", [(32, 32), (37, 50), (9, 5)])
def test_the_laplacian_pyramid_collapses_to_its_input_exactly(shape):
    x = torch.rand(2, 3, *shape, dtype=torch.float64)
    bands = laplacian_pyramid(x, 3)
    assert len(bands) == 4 and bands[-1].shape[-2:] == tuple((n + 7) // 8 for n in shape)
    torch.testing.assert_close(collapse(bands), x)


def test_band_weights_are_convex_in_every_band():
    planes = torch.rand(4, 3, 64, 48)
    coarse = selection_weights(torch.randn(4, 8, 6) * 3, planes)
    for w in band_weights(coarse, planes):
        assert w.min() >= 0
        torch.testing.assert_close(w.sum(0), torch.ones_like(w[0]))


def test_undecided_head_takes_each_region_from_its_sharp_plane():
    """The head says nothing (equal logits): band energy alone puts the astronaut's detail back,
    on the left from plane 0 and on the right from plane 1, far closer than their average."""
    from conftest import two_focus_stack

    stack, sharp = two_focus_stack(96)
    planes = torch.from_numpy(stack).permute(0, 3, 1, 2)
    coarse = selection_weights(torch.zeros(2, 12, 12), planes)
    out = compose_bands(coarse, planes).permute(1, 2, 0).numpy()
    inner = (slice(8, -8), np.r_[8:40, 56:88])
    err_bands = np.abs(out - sharp)[inner].mean()
    err_mean = np.abs(stack.mean(0) - sharp)[inner].mean()
    assert err_bands < 0.25 * err_mean


def test_noise_floor_follows_the_noise_variance_and_is_zero_without_noise():
    g = torch.Generator().manual_seed(1)
    flat = torch.full((8, 3, 64, 64), 0.5)

    def floor(planes):
        return float(noise_floor(laplacian_pyramid(planes, 1)[0]))

    assert floor(flat) == 0.0
    per_variance = [floor(flat + s * torch.randn(flat.shape, generator=g)) / s**2
                    for s in (0.02, 0.04)]
    assert per_variance[0] > 0
    assert per_variance[1] == pytest.approx(per_variance[0], rel=0.1)


def test_noisy_planes_average_where_no_plane_holds_detail():
    """Eight noisy flat planes and a head sure of plane 0: no plane holds detail above the
    noise, so the detail bands average the planes' noise instead of passing plane 0's."""
    g = torch.Generator().manual_seed(1)
    sigma = 0.03
    planes = 0.5 + sigma * torch.randn(8, 3, 64, 64, generator=g)
    logits = torch.full((8, 8, 8), -10.0)
    logits[0] = 10.0
    out = compose_bands(selection_weights(logits, planes), planes)
    assert float((planes[0] - 0.5).std()) > 0.95 * sigma
    assert float((out - 0.5).std()) < 0.7 * sigma


def test_noisy_planes_still_give_each_region_its_sharp_plane():
    """The two-focus stack with sensor noise (sigma 0.01): the detail still comes from the sharp
    plane of each half, well closer to the truth than the planes' mean."""
    from conftest import two_focus_stack

    stack, sharp = two_focus_stack(96)
    noisy = stack + 0.01 * np.random.default_rng(0).standard_normal(stack.shape)
    planes = torch.from_numpy(np.clip(noisy, 0, 1).astype(np.float32)).permute(0, 3, 1, 2)
    coarse = selection_weights(torch.zeros(2, 12, 12), planes)
    out = compose_bands(coarse, planes).permute(1, 2, 0).numpy()
    inner = (slice(8, -8), np.r_[8:40, 56:88])
    err_bands = np.abs(out - sharp)[inner].mean()
    err_mean = np.abs(planes.permute(0, 2, 3, 1).numpy().mean(0) - sharp)[inner].mean()
    assert err_bands < 0.75 * err_mean


def test_band_blend_stays_within_the_planes_range():
    """A pyramid blend overshoots at edges; the output may not leave what the planes bracket."""
    planes = torch.zeros(2, 3, 32, 32)
    planes[0, :, :, 16:] = 1.0  # a hard edge in plane 0, flat plane 1
    planes[1] = 0.5
    coarse = torch.stack([torch.ones(32, 32), torch.zeros(32, 32)])
    coarse[:, :, 14:18] = 0.5
    out = compose_bands(coarse, planes)
    assert torch.all(out >= planes.amin(0)) and torch.all(out <= planes.amax(0))


def test_plane_chunks_cover_every_plane_once_within_the_budget():
    from napari_vaeedof.engine import compose as module

    for planes, pixels in [(7, 512 * 512), (60, 768 * 768), (1, 4096 * 4096), (5, 10)]:
        chunks = plane_chunks(planes, pixels)
        assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(planes))
        assert all(c.stop - c.start == 1 or (c.stop - c.start) * pixels <= module.CHUNK_PIXELS
                   for c in chunks)


def test_working_on_chunks_of_planes_changes_nothing(monkeypatch):
    """The per-plane work runs a few planes at a time (memory and time per plane independent
    of the stack's depth): one plane per chunk gives what the whole stack at once gives."""
    from napari_vaeedof.engine import compose as module

    g = torch.Generator().manual_seed(3)
    planes = torch.rand(5, 3, 48, 40, generator=g)
    planes[1:3] = 0.5 + 0.02 * torch.randn(2, 3, 48, 40, generator=g)  # noise near the floor
    source = planes * 1.2 - 0.1  # unclipped values, composed but not steering
    logits, fill_logit = torch.randn(5, 6, 5, generator=g) * 3, torch.randn(6, 5, generator=g)

    def run():
        coarse = selection_weights(logits, planes)
        # the definition, whole stack at once: each band blended with its weights, collapsed,
        # clipped to the range the planes span
        weights = band_weights(coarse, planes)
        bands = laplacian_pyramid(source, len(weights) - 1)
        blend = collapse([(w * b).sum(0, keepdim=True)
                          for w, b in zip(weights, bands, strict=True)])
        reference = torch.minimum(torch.maximum(blend[0], source.amin(0)), source.amax(0))
        return [*pixel_blend(logits, fill_logit, planes, source), reference,
                compose_bands(coarse, planes), band_features(planes), departure(reference, source)]

    whole = run()
    monkeypatch.setattr(module, "CHUNK_PIXELS", 48 * 40)
    assert len(plane_chunks(5, 48 * 40)) == 5
    chunked = run()
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole[0], whole[3], atol=1e-5, rtol=1e-5)  # running softmax


def test_fill_is_exactly_zero_below_the_dead_zone_and_one_above():
    guide = torch.rand(1, 32, 32)
    low = torch.logit(torch.tensor(FILL_DEAD / 2)).expand(4, 4)
    high = torch.logit(torch.tensor(1 - FILL_DEAD / 2)).expand(4, 4)
    assert fill_weight(low, guide).max() == 0
    assert fill_weight(high, guide).min() == 1


def test_compose_takes_the_blend_without_fill_and_the_decoded_with_full_fill():
    blend, decoded = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    fill = torch.zeros(16, 16)
    fill[:, 8:] = 1
    out = compose(blend, decoded, fill)
    torch.testing.assert_close(out[:, :, :8], blend[:, :, :8])
    torch.testing.assert_close(out[:, :, 8:], decoded[:, :, 8:])


def test_depth_is_the_chosen_plane_and_confidence_its_certainty():
    one_hot = torch.zeros(5, 8, 8)
    one_hot[3] = 1
    depth, conf = depth_and_confidence(one_hot)
    assert torch.all(depth == 3) and torch.all(conf == 1)
    depth, conf = depth_and_confidence(torch.full((5, 8, 8), 0.2))
    torch.testing.assert_close(depth, torch.full((8, 8), 2.0))
    torch.testing.assert_close(conf, torch.zeros(8, 8))


def test_sharpness_is_highest_in_the_sharp_plane():
    from conftest import two_focus_stack

    stack, _ = two_focus_stack(96)
    s = sharpness(torch.from_numpy(stack).permute(0, 3, 1, 2))
    assert s.shape == (2, 96, 96)
    assert (s[0, :, :40] > s[1, :, :40]).float().mean() > 0.9
    assert (s[1, :, 56:] > s[0, :, 56:]).float().mean() > 0.9


def test_sharpness_features_are_per_latent_cell_relative_to_the_other_planes():
    from conftest import two_focus_stack

    stack, _ = two_focus_stack(96)
    planes = torch.from_numpy(stack).permute(0, 3, 1, 2)
    f = sharpness_features(planes)
    assert f.shape == (2, 1, 12, 12)
    torch.testing.assert_close(f.sum(0), torch.zeros(1, 12, 12), atol=1e-4, rtol=0)
    assert np.mean((f[0, 0, :, :4] > f[1, 0, :, :4]).numpy()) > 0.9


def _lettering(size: int = 64) -> torch.Tensor:
    """(3, size, size) white strokes on a dark board, one pixel to three wide."""
    img = torch.full((3, size, size), 0.15)
    for k, x in enumerate(range(6, size - 6, 9)):
        img[:, 8 : size - 8, x : x + 1 + k % 3] = 0.95
    img[:, 30:33, 6 : size - 6] = 0.95
    return img


def test_departure_is_zero_where_the_output_is_a_planes_own_pixels():
    crisp = _lettering()
    planes = torch.stack([crisp, F.avg_pool2d(crisp[None], 5, 1, 2)[0]])
    assert departure(crisp, planes).max() == 0
    assert departure(planes[1], planes).max() == 0


def test_departure_marks_fog_and_ghost_rings_on_lettering():
    """The PCB failure: crisp letters in plane 0, a blurred and shifted (breathing) copy in
    plane 1; an output that blends the two (fog, a doubled edge) matches neither plane."""
    crisp = _lettering()
    ghost = torch.roll(F.avg_pool2d(crisp[None], 5, 1, 2)[0], shifts=3, dims=-1)
    planes = torch.stack([crisp, ghost])
    fog = 0.5 * (crisp + ghost)
    d = departure(fog, planes)
    letters = (crisp[0] > 0.5)
    assert d[letters].mean() > 0.1  # a tenth of the full range on the strokes
    assert d[letters].mean() > 5 * departure(crisp, planes)[letters].mean() + 0.05


def test_no_fill_where_every_plane_shows_the_same_content():
    """A stack whose planes agree (all in focus) keeps its pixels even where the head asks
    for fill: nothing is hidden, so nothing may be synthesised."""
    plane = _lettering()
    planes = torch.stack([plane, plane + 0.5 / 255, plane])
    full_fill = torch.full((8, 8), 30.0)
    _, _, fill = pixel_blend(torch.zeros(3, 8, 8), full_fill, planes)
    assert fill.max() == 0
    different = torch.stack([plane, F.avg_pool2d(plane[None], 5, 1, 2)[0]])
    assert pixel_blend(torch.zeros(2, 8, 8), full_fill, different)[2].max() == 1
