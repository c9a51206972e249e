import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_vaeedof.engine.compose import (
    FILL_DEAD,
    blend_planes,
    box_mean,
    compose,
    depth_and_confidence,
    fill_weight,
    guided_filter,
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
    planes = torch.rand(3, 3, 32, 32)
    logits = torch.full((3, 4, 4), -30.0)
    logits[1] = 30.0
    w = selection_weights(logits, planes)
    torch.testing.assert_close(blend_planes(planes, w), planes[1])


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


def test_detail_moves_undecided_weight_to_the_locally_sharper_plane():
    from conftest import two_focus_stack

    stack, _ = two_focus_stack(96)
    planes = torch.from_numpy(stack).permute(0, 3, 1, 2)
    undecided = torch.zeros(2, 12, 12)
    even = selection_weights(undecided, planes, detail=0.0)
    torch.testing.assert_close(even, torch.full_like(even, 0.5))
    w = selection_weights(undecided, planes, detail=1.0)
    torch.testing.assert_close(w.sum(0), torch.ones(96, 96))
    assert w[0, :, :40].mean() > 0.8 and w[1, :, 56:].mean() > 0.8  # plane 0 sharp on the left
    decided = torch.zeros(2, 12, 12)
    decided[1] = 30.0  # the network is sure: detail does not overrule it
    assert selection_weights(decided, planes, detail=1.0)[1].min() > 0.99
