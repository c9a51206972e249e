import torch

from napari_vaeedof.models.fusion_unet import FusionUNet, UNetConfig, load_unet, save_unet


def test_output_is_one_latent_of_the_input_size():
    model = FusionUNet(UNetConfig(widths=(16, 32, 32), heads=2, groups=4))
    out = model(torch.randn(2, 7 * 32, 12, 20))
    assert out.shape == (2, 32, 12, 20)


def test_untrained_network_returns_the_mean_latent():
    model = FusionUNet(UNetConfig(widths=(16, 32, 32), heads=2, groups=4))
    x = torch.randn(1, 7, 32, 8, 8)
    out = model(x.flatten(1, 2))
    torch.testing.assert_close(out, x.mean(1), atol=1e-5, rtol=0)


def test_shipped_size_fits_in_the_package_budget():
    n = sum(p.numel() for p in FusionUNet().parameters())
    assert n * 2 < 30e6  # float16 safetensors under 30 MB


def test_save_load_round_trip_keeps_config_and_weights(tmp_path):
    cfg = UNetConfig(widths=(16, 32, 48), heads=2, groups=4)
    model = FusionUNet(cfg)
    torch.nn.init.normal_(model.residual.weight)
    save_unet(model, tmp_path / "m.safetensors", {"steps": "3"}, dtype=torch.float32)
    loaded = load_unet(tmp_path / "m.safetensors")
    assert loaded.config == cfg
    x = torch.randn(1, 7 * 32, 8, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))
