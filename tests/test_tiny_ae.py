import numpy as np
import pytest
import torch
from skimage import data

from napari_vaeedof.models.tiny_ae import TinyAutoEncoder, load_taef2


@pytest.fixture(scope="module")
def ae(weights_dir):
    return load_taef2(weights_dir / "taef2_encoder.pth", weights_dir / "taef2_decoder.pth")


def test_state_dicts_load_strictly(weights_dir):
    model = TinyAutoEncoder()
    enc = torch.load(weights_dir / "taef2_encoder.pth", weights_only=True)
    dec = torch.load(weights_dir / "taef2_decoder.pth", weights_only=True)
    assert set(model.encoder.state_dict()) == set(enc)
    assert set(model.decoder.state_dict()) == set(dec)


def test_astronaut_reconstruction_psnr_matches_reference(ae):
    image = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        latent = ae.encode(image)
        recon = ae.decode(latent)
    assert latent.shape == (1, 32, 64, 64)
    psnr = 10 * np.log10(1 / torch.mean((recon - image) ** 2).item())
    assert abs(psnr - 31.2) < 0.1


def test_weights_are_frozen(ae):
    assert not any(p.requires_grad for p in ae.parameters())
    assert not ae.training
