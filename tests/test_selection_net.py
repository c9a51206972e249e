import torch

from napari_vaeedof.models.selection_net import (
    SelectionConfig,
    SelectionNet,
    load_selection,
    save_selection,
)


def _net() -> SelectionNet:
    torch.manual_seed(0)
    return SelectionNet(SelectionConfig(width=16, groups=4)).eval()


def test_one_logit_per_plane_and_one_fill_logit_for_any_plane_count():
    net = _net()
    for z in (1, 2, 7, 12):
        logits, fill = net(torch.randn(2, z, 32, 8, 12), torch.randn(2, z, 1, 8, 12))
        assert logits.shape == (2, z, 8, 12) and fill.shape == (2, 8, 12)


def test_reordering_the_planes_reorders_the_logits_and_keeps_the_fill():
    net = _net()
    lat, sharp = torch.randn(1, 5, 32, 8, 8), torch.randn(1, 5, 1, 8, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        logits, fill = net(lat, sharp)
        logits_p, fill_p = net(lat[:, perm], sharp[:, perm])
    torch.testing.assert_close(logits_p, logits[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fill_p, fill, atol=1e-5, rtol=1e-4)


def test_save_load_round_trip_keeps_config_and_weights(tmp_path):
    net = _net()
    path = tmp_path / "sel.safetensors"
    save_selection(net, path, {"status": "test"}, dtype=torch.float32)
    back = load_selection(path)
    assert back.config == net.config and not any(p.requires_grad for p in back.parameters())
    x, s = torch.randn(1, 3, 32, 8, 8), torch.randn(1, 3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(x, s), net(x, s))


def test_shipped_size_fits_in_the_package_budget():
    n = sum(p.numel() for p in SelectionNet().parameters())
    assert n * 2 < 2e6  # float16 safetensors well under 2 MB
