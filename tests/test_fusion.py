import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_vaeedof.engine.fusion import (
    FILL_BLOCK,
    FILL_CONTEXT,
    TileChannels,
    fill_windows,
    fuse_latents,
    fuse_planes,
    group_levels,
    pad_group,
    unet_calls,
)
from napari_vaeedof.engine.runtime import load_models


@pytest.fixture(scope="module")
def models(random_unet, random_selection):
    return load_models("cpu", "float32", random_unet, random_selection)


def test_short_group_is_padded_by_repeating_its_planes():
    assert pad_group([3, 4, 5]) == [3, 4, 5, 3, 4, 5, 3]
    assert pad_group(list(range(7))) == list(range(7))


@pytest.mark.parametrize(("n", "calls"), [(2, 1), (7, 1), (8, 2), (14, 3), (15, 3), (50, 9)])
def test_grouping_gives_the_expected_number_of_fusions(n, calls):
    assert unet_calls(n) == calls
    first = group_levels(n)[0]
    assert [i for g in first for i in g] == list(range(n))  # contiguous, in order, each once
    assert all(len(g) <= 7 for level in group_levels(n) for g in level)


@pytest.mark.parametrize("n", [15, 50])
def test_deep_stacks_fuse_hierarchically_with_that_many_unet_calls(models, n):
    seen = []
    hook = models.unet.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        fused, calls = fuse_latents(torch.randn(n, 32, 8, 8), models.unet)
    finally:
        hook.remove()
    assert fused.shape == (32, 8, 8)
    assert calls == sum(seen) == unet_calls(n)
    assert len(seen) == len(group_levels(n))  # one batched call per level


def test_seven_planes_are_one_unet_call_on_their_concatenation(models):
    latents = torch.randn(7, 32, 8, 8)
    fused, calls = fuse_latents(latents, models.unet)
    assert calls == 1
    torch.testing.assert_close(fused, models.unet(latents.flatten(0, 1)[None])[0])


def test_error_map_is_high_where_the_vae_cannot_reproduce_the_plane(models):
    from scipy import ndimage
    from skimage import data

    stars = data.hubble_deep_field()[:128, :128].astype(np.float32) / 255
    plane = stars.copy()
    plane[:, :64] = ndimage.gaussian_filter(stars, (4, 4, 0))[:, :64]  # smooth left half
    planes = torch.from_numpy(np.stack([plane, plane])).permute(0, 3, 1, 2)
    error = fuse_planes(planes, models, mode="latent")["error"]
    assert error.shape == (128, 128)
    # sparse point sources are what TAEF2 loses most (models/README: SSIM 0.77 on this image);
    # measured: 0.020 on the sharp half, 0.0044 on the smooth half
    assert error[:, 72:120].mean() > 3 * error[:, 8:56].mean()


@pytest.mark.parametrize("mode", ["pixel", "latent"])
def test_odd_plane_sizes_are_padded_and_cropped(models, mode):
    planes = torch.rand(3, 3, 50, 77)
    out = fuse_planes(planes, models, mode=mode)
    maps = {"error", "depth", "confidence", "fill"} if mode == "pixel" else {"error"}
    assert set(out) == {"image"} | maps
    assert out["image"].shape == (3, 50, 77)
    assert all(out[k].shape == (50, 77) for k in maps)
    assert 0 <= out["image"].min() and out["image"].max() <= 1


def test_pixel_mode_where_fill_is_zero_stays_within_the_planes_values(models):
    planes = torch.rand(3, 3, 64, 64)
    out = fuse_planes(planes, models, mode="pixel", error_map=False)
    free = out["fill"] == 0
    assert free.any()
    img = out["image"][:, free]
    assert torch.all(img >= planes.amin(0)[:, free]) and torch.all(img <= planes.amax(0)[:, free])


def test_pixel_mode_depth_is_the_expected_plane_index(models):
    out = fuse_planes(torch.rand(4, 3, 32, 32), models, mode="pixel", error_map=False)
    assert out["depth"].min() >= 0 and out["depth"].max() <= 3
    assert out["confidence"].min() >= 0 and out["confidence"].max() <= 1


def test_fill_windows_hold_every_filled_pixel_with_its_context():
    fill = torch.zeros(512, 512)
    assert fill_windows(fill) == []
    fill[200:210, 300:305] = 0.5
    fill[20, 20] = 1.0
    windows = fill_windows(fill)
    assert len(windows) == 2
    covered = torch.zeros_like(fill, dtype=torch.bool)
    for rows, cols in windows:
        assert all(s.start % FILL_BLOCK == 0 and s.stop % FILL_BLOCK == 0 for s in (rows, cols))
        covered[rows, cols] = True
    ys, xs = torch.nonzero(fill > 0, as_tuple=True)
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):  # the pixel and its context
        assert covered[max(y - FILL_CONTEXT, 0) : y + FILL_CONTEXT + 1,
                       max(x - FILL_CONTEXT, 0) : x + FILL_CONTEXT + 1].all()
    assert covered.float().mean() < 0.4  # windows, not the tile
    fill[::64, ::64] = 1.0  # fill everywhere: the whole tile once
    assert fill_windows(fill) == [(slice(0, 512), slice(0, 512))]


@pytest.fixture(scope="module")
def bands_models(random_unet, random_bands_selection):
    return load_models("cpu", "float32", random_unet, random_bands_selection)


def test_without_fill_the_vae_never_runs_and_every_value_is_the_planes(bands_models):
    """fill=False where the head would fill (fill bias 0): the fill map is 0, TAEF2 does not
    run, every output value lies in the range the planes span at that pixel, and the image is
    the one the same head gives where it asks for no fill."""
    encoded = []
    hook = bands_models.ae.encoder.register_forward_hook(lambda m, i, o: encoded.append(1))
    old = bands_models.selection.fill[1].bias.clone()
    planes = torch.rand(3, 3, 256, 256)
    try:
        with torch.no_grad():
            bands_models.selection.fill[1].bias.fill_(0.0)
        filled = fuse_planes(planes, bands_models, mode="pixel", error_map=False)
        assert filled["fill"].any() and encoded
        encoded.clear()
        strict = fuse_planes(planes, bands_models, mode="pixel", error_map=False, fill=False)
        with torch.no_grad():
            bands_models.selection.fill[1].bias.fill_(-20.0)
        unfilled = fuse_planes(planes, bands_models, mode="pixel", error_map=False)
    finally:
        hook.remove()
        with torch.no_grad():
            bands_models.selection.fill[1].bias.copy_(old)
    assert encoded == [] and strict["fill"].max() == 0
    image = strict["image"]
    assert torch.all(image >= planes.amin(0)) and torch.all(image <= planes.amax(0))
    torch.testing.assert_close(image, unfilled["image"])
    torch.testing.assert_close(strict["depth"], filled["depth"])


@pytest.mark.parametrize("bias", [-20.0, 0.0])
def test_bands_head_runs_the_vae_only_on_the_fill_windows(bands_models, bias):
    encoded = []
    hook = bands_models.ae.encoder.register_forward_hook(
        lambda m, i, o: encoded.append(tuple(i[0].shape[-2:])))
    old = bands_models.selection.fill[1].bias.clone()
    try:
        with torch.no_grad():
            bands_models.selection.fill[1].bias.fill_(bias)
        planes = torch.rand(3, 3, 256, 256)
        out = fuse_planes(planes, bands_models, mode="pixel", error_map=False)
    finally:
        hook.remove()
        with torch.no_grad():
            bands_models.selection.fill[1].bias.copy_(old)
    assert bool(out["fill"].any()) == (bias == 0)
    if bias < 0:  # no fill: no VAE at all, and the planes' values only
        assert encoded == []
        assert torch.all(out["image"] >= planes.amin(0)) and torch.all(
            out["image"] <= planes.amax(0))
    else:
        windows = fill_windows(out["fill"])
        assert encoded == [(r.stop - r.start, c.stop - c.start) for r, c in windows]


def test_unknown_mode_is_refused(models):
    with pytest.raises(ValueError, match="mode"):
        fuse_planes(torch.rand(2, 3, 32, 32), models, mode="median")


def test_the_engine_imports_no_weight_registry():
    """The pure engine (what training imports) reads no files: weights, hashes and the model
    cache belong to engine/runtime.py, which the API calls."""
    code = (
        "import sys\n"
        "import napari_vaeedof.engine.fusion, napari_vaeedof.engine.compose\n"
        "import napari_vaeedof.engine.tiling, napari_vaeedof.engine.stack\n"
        "print([m for m in ('napari_vaeedof.models.weights', 'napari_vaeedof.engine.runtime')\n"
        "       if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("channels", "rgb", "mode", "error_map", "size"), [
    (3, True, "pixel", True, 3 + 4), (2, False, "pixel", True, 2 + 2 * 4),
    (1, False, "latent", True, 1 + 1), (4, False, "latent", False, 4)])
def test_tile_channels_pack_and_split_are_inverse(channels, rgb, mode, error_map, size):
    layout = TileChannels.of(channels, rgb, mode, error_map)
    assert layout.size == size
    image = torch.rand(channels, 5, 6)
    maps = {name: torch.rand(layout.units, 5, 6) for name in layout.maps}
    parts = layout.split(layout.pack(image, maps))
    assert set(parts) == {"image", *layout.maps}
    assert torch.equal(parts["image"], image.permute(1, 2, 0))
    for name, m in maps.items():
        assert torch.equal(parts[name], m.permute(1, 2, 0))
