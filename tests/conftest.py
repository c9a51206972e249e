"""Shared fixtures: real TAEF2 weights (VAEEDOF_WEIGHTS_DIR), small real stacks, a random U-Net."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("VAEEDOF_WEIGHTS_DIR", str(REPO.parent / "shared" / "models"))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    path = Path(os.environ["VAEEDOF_WEIGHTS_DIR"])
    if not (path / "taef2_encoder.pth").is_file():
        pytest.fail(f"TAEF2 weights not found in VAEEDOF_WEIGHTS_DIR={path}")
    return path


@pytest.fixture(scope="session")
def random_unet(tmp_path_factory) -> Path:
    """A Fusion U-Net with random weights everywhere (heads too): plumbing, not quality."""
    from napari_vaeedof.models.fusion_unet import FusionUNet, UNetConfig, save_unet

    torch.manual_seed(0)
    model = FusionUNet(UNetConfig(widths=(16, 32, 32), heads=2, groups=4))
    for head in (model.select, model.residual):
        torch.nn.init.normal_(head.weight, std=0.02)
    path = tmp_path_factory.mktemp("unet") / "random_unet.safetensors"
    save_unet(model, path, {"status": "random test model"})
    return path


@pytest.fixture(scope="session")
def random_selection(tmp_path_factory) -> Path:
    """A selection head with random weights, its fill bias lowered so that fill is zero in
    some places and not in others: plumbing, not quality."""
    from napari_vaeedof.models.selection_net import SelectionConfig, SelectionNet, save_selection

    torch.manual_seed(1)
    model = SelectionNet(SelectionConfig(width=16, groups=4))
    with torch.no_grad():
        model.fill[1].bias.fill_(-2.3)
    path = tmp_path_factory.mktemp("selection") / "random_selection.safetensors"
    save_selection(model, path, {"status": "random test model"})
    return path


def two_focus_stack(size: int = 128, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A real photo, left half sharp in plane 0, right half sharp in plane 1 -> (stack, sharp)."""
    from scipy import ndimage
    from skimage import data

    sharp = data.astronaut()[:size, 100 : 100 + size].astype(np.float32) / 255
    blurred = ndimage.gaussian_filter(sharp, (3, 3, 0))
    half = size // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:] = blurred[:, half:]
    b[:, :half] = blurred[:, :half]
    stack = np.stack([a, b])
    if not rgb:
        return stack.mean(-1), sharp.mean(-1)
    return stack, sharp
