import numpy as np
import pytest
from skimage import data, filters

from napari_vaeedof.evaluation import baselines as b
from napari_vaeedof.evaluation.metrics import psnr

METHODS = {
    "laplacian": b.laplacian_pyramid_fusion,
    "variance": b.variance_argmax_fusion,
}
# Measured on these 128 px crops with blur sigma 2: the best plane reaches 27.7-29.4 dB (half of
# each plane is blurred), the fusions 39.4-45.0 dB (margins 11.7-15.6 dB); 8 dB leaves slack.
MARGIN_DB = 8.0


def _sharp(kind: str) -> np.ndarray:
    if kind == "gray":
        return data.camera()[200:328, 200:328] / 255.0
    return data.astronaut()[30:158, 180:308] / 255.0


def _two_plane_stack(sharp: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Plane 0 sharp on the left half, plane 1 sharp on the right half, blurred elsewhere."""
    blurred = filters.gaussian(sharp, sigma=sigma, channel_axis=-1 if sharp.ndim == 3 else None)
    left = np.zeros(sharp.shape[:2], bool)
    left[:, : sharp.shape[1] // 2] = True
    if sharp.ndim == 3:
        left = left[..., None]
    return np.stack([np.where(left, sharp, blurred), np.where(left, blurred, sharp)])


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("method", METHODS)
def test_fusion_recovers_the_sharp_halves(method, kind):
    sharp = _sharp(kind)
    stack = _two_plane_stack(sharp)
    best_plane = max(psnr(p, sharp) for p in stack)
    fused = METHODS[method](stack)
    assert psnr(fused, sharp) > best_plane + MARGIN_DB


def test_variance_index_map_picks_the_sharp_plane():
    stack = _two_plane_stack(_sharp("gray"))
    _, index = b.variance_argmax_fusion(stack, return_index=True)
    # window radius 10 + gaussian sigma 5 reach ~25 px: check 24+ px away from the seam at 64
    assert np.all(index[:, :40] == 0)
    assert np.all(index[:, 88:] == 1)


@pytest.mark.parametrize(
    "shape", [(3, 37, 50), (3, 37, 50, 3), (1, 64, 64), (5, 129, 67, 3), (2, 8, 9)]
)
@pytest.mark.parametrize("method", METHODS)
def test_output_shape_dtype_and_range(method, shape):
    stack = np.random.default_rng(0).random(shape)
    fused = METHODS[method](stack)
    assert fused.shape == shape[1:]
    assert fused.dtype == np.float32
    assert fused.min() >= 0.0 and fused.max() <= 1.0


def test_variance_index_map_shape_and_values():
    stack = np.random.default_rng(0).random((4, 33, 45, 3))
    fused, index = b.variance_argmax_fusion(stack, radius=2, sigma=0, return_index=True)
    assert index.shape == (33, 45) and np.issubdtype(index.dtype, np.integer)
    assert index.min() >= 0 and index.max() <= 3
    picked = np.take_along_axis(stack, index[None, ..., None], axis=0)[0]
    np.testing.assert_allclose(fused, picked, atol=1e-6)


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("method", METHODS)
def test_identical_planes_return_that_plane(method, kind):
    plane = _sharp(kind)[:101, :77]
    fused = METHODS[method](np.stack([plane] * 3))
    np.testing.assert_allclose(fused, plane, atol=1e-5)


def test_laplacian_levels_zero_is_the_plane_mean():
    stack = np.random.default_rng(0).random((3, 20, 30))
    np.testing.assert_allclose(
        b.laplacian_pyramid_fusion(stack, levels=0), stack.mean(0), atol=1e-6
    )
