import pytest
import torch

from napari_vaeedof.models.selection_net import (
    SelectionConfig,
    SelectionNet,
    load_selection,
    save_selection,
)


def _net(inputs: str = "latents") -> SelectionNet:
    torch.manual_seed(0)
    return SelectionNet(SelectionConfig(width=16, groups=4, inputs=inputs)).eval()


@pytest.mark.parametrize("inputs", ["latents", "bands"])
def test_one_logit_per_plane_and_one_fill_logit_for_any_plane_count(inputs):
    net = _net(inputs)
    for z in (1, 2, 7, 12):
        logits, fill = net(torch.randn(2, z, net.config.in_channels, 8, 12))
        assert logits.shape == (2, z, 8, 12) and fill.shape == (2, 8, 12)


def test_input_channels_follow_the_kind_and_a_wrong_kind_is_refused():
    assert SelectionConfig().in_channels == 33  # 32 TAEF2 latent channels + sharpness
    assert SelectionConfig(inputs="bands").in_channels == 8
    with pytest.raises(ValueError, match="inputs must be one of"):
        SelectionConfig(inputs="pixels")


def test_reordering_the_planes_reorders_the_logits_and_keeps_the_fill():
    net = _net()
    x = torch.randn(1, 5, 33, 8, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        logits, fill = net(x)
        logits_p, fill_p = net(x[:, perm])
    torch.testing.assert_close(logits_p, logits[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fill_p, fill, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("inputs", ["latents", "bands"])
def test_save_load_round_trip_keeps_config_and_weights(tmp_path, inputs):
    net = _net(inputs)
    path = tmp_path / "sel.safetensors"
    save_selection(net, path, {"status": "test"}, dtype=torch.float32)
    back = load_selection(path)
    assert back.config == net.config and not any(p.requires_grad for p in back.parameters())
    x = torch.randn(1, 3, net.config.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x))


def test_shipped_size_fits_in_the_package_budget():
    n = sum(p.numel() for p in SelectionNet().parameters())
    assert n * 2 < 2e6  # float16 safetensors well under 2 MB
