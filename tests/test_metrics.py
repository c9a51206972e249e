import numpy as np
import pytest
from skimage import data, filters
from skimage.metrics import structural_similarity

from napari_vaeedof.evaluation import metrics as m

SIMILARITIES = ["ssim", "ms_ssim", "iw_ssim", "haarpsi"]  # higher is better, 1 at identity
DEVIATIONS = ["mdsi", "ms_gmsd"]  # lower is better, 0 at identity
ALL = ["psnr", *SIMILARITIES, *DEVIATIONS]


def _image(kind: str) -> np.ndarray:
    # 192 px: large enough for all 5 MS-SSIM / IW-SSIM scales (>= 161 px)
    if kind == "gray":
        return data.camera()[160:352, 160:352] / 255.0
    return data.astronaut()[20:212, 150:342] / 255.0


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return filters.gaussian(img, sigma=sigma, channel_axis=-1 if img.ndim == 3 else None)


def _noise(img: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(img + sigma * rng.standard_normal(img.shape), 0.0, 1.0)


def _strictly_worse(values: list[float], name: str) -> bool:
    diffs = np.diff(values)
    return bool(np.all(diffs > 0) if m.METRIC_DIRECTIONS[name] == "lower" else np.all(diffs < 0))


@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_identical_images_give_perfect_value(kind):
    img = _image(kind)
    assert m.psnr(img, img) == np.inf
    for name in SIMILARITIES:
        assert getattr(m, name)(img, img.copy()) == pytest.approx(1.0, abs=1e-6), name
    for name in DEVIATIONS:
        assert getattr(m, name)(img, img.copy()) == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("name", ALL)
def test_more_blur_is_worse(name, kind):
    img = _image(kind)
    values = [getattr(m, name)(_blur(img, s), img) for s in (0.5, 1.0, 2.0, 4.0)]
    assert _strictly_worse(values, name), values


@pytest.mark.parametrize("kind", ["gray", "rgb"])
@pytest.mark.parametrize("name", ALL)
def test_more_noise_is_worse(name, kind):
    img = _image(kind)
    values = [getattr(m, name)(_noise(img, s), img) for s in (0.01, 0.03, 0.1)]
    assert _strictly_worse(values, name), values


def test_every_metric_has_a_direction():
    assert set(m.METRIC_DIRECTIONS) == set(ALL)


def test_ssim_matches_scikit_image_gaussian_ssim():
    img = _image("gray")
    blurred = _blur(img, 1.5)
    ref = structural_similarity(
        blurred, img, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert m.ssim(blurred, img) == pytest.approx(ref, abs=1e-10)


def test_ssim_of_rgb_is_ssim_of_luma():
    img = _image("rgb")
    noisy = _noise(img, 0.05)
    luma = np.array([0.299, 0.587, 0.114])
    assert m.ssim(noisy, img) == pytest.approx(m.ssim(noisy @ luma, img @ luma), abs=1e-12)


def test_small_images_use_fewer_scales():
    img = _image("gray")[:64, :48]
    noisy = _noise(img, 0.05)
    assert m.ms_ssim(img, img) == pytest.approx(1.0)
    assert 0.0 < m.ms_ssim(noisy, img) < 1.0
    assert 0.0 < m.iw_ssim(noisy, img) < 1.0
    assert m.ms_ssim(noisy[:15, :15], img[:15, :15]) == pytest.approx(
        m.ssim(noisy[:15, :15], img[:15, :15])
    )
    with pytest.raises(ValueError):
        m.iw_ssim(noisy[:16, :16], img[:16, :16])


@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_psnr_with_mask_is_psnr_of_masked_pixels(kind):
    img = _image(kind)
    noisy = _noise(img, 0.05)
    mask = np.random.default_rng(1).random(img.shape[:2]) < 0.3
    mse = np.mean((noisy[mask] - img[mask]) ** 2)
    assert m.psnr(noisy, img, mask) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-12)
    assert m.psnr(noisy, img, np.ones(img.shape[:2], bool)) == pytest.approx(m.psnr(noisy, img))
    assert np.isnan(m.psnr(noisy, img, np.zeros(img.shape[:2], bool)))


def test_hard_pixel_mask_gray_hand_built():
    tol = 2 / 255
    gt = np.full((2, 3), 0.5)
    planes = np.stack([gt.copy(), gt.copy()])
    planes[0, 0, 0], planes[1, 0, 0] = 0.6, 0.4  # both planes far: hard
    planes[0, 0, 1], planes[1, 0, 1] = 0.6, 0.5 + tol / 2  # plane 1 within tol: easy
    planes[0, 1, 2], planes[1, 1, 2] = 0.5 - 2 * tol, 0.5 + 2 * tol  # both just outside: hard
    expected = np.array([[True, False, False], [False, False, True]])
    np.testing.assert_array_equal(m.hard_pixel_mask(planes, gt, tol), expected)


def test_hard_pixel_mask_uses_worst_colour_channel():
    gt = np.full((1, 2, 3), 0.5)
    planes = np.stack([gt.copy()])
    planes[0, 0, 1, 2] = 0.9  # one channel off at pixel (0, 1)
    np.testing.assert_array_equal(m.hard_pixel_mask(planes, gt), [[False, True]])


def test_evaluate_returns_all_keys():
    img = _image("rgb")
    blurred = _blur(img, 2.0)
    planes = np.stack([blurred, _noise(img, 0.2)])
    keys = {*ALL, "psnr_hard", "hard_fraction"}
    out = m.evaluate(blurred, img, planes)
    assert set(out) == keys
    assert all(isinstance(v, float) and np.isfinite(v) for v in out.values())
    assert 0.0 < out["hard_fraction"] < 1.0
    assert out["psnr"] == pytest.approx(m.psnr(blurred, img))

    no_planes = m.evaluate(blurred, img)
    assert set(no_planes) == keys
    assert np.isnan(no_planes["psnr_hard"]) and np.isnan(no_planes["hard_fraction"])

    easy = m.evaluate(blurred, img, np.stack([img]))  # a plane equals the GT: no hard pixels
    assert easy["hard_fraction"] == 0.0 and np.isnan(easy["psnr_hard"])


def test_difficulty_bins_group_tiles_by_hard_fraction():
    img = _image("gray")[:128, :128]
    planes = np.stack([img.copy(), img.copy()])
    planes[:, :, 64:] = np.clip(img[:, 64:] + 0.2, 0, 1) + 0.05  # right half: no good plane
    pred = img.copy()
    pred[:, 64:] = _noise(img, 0.05)[:, 64:]  # and the fusion is worse there
    bins = m.difficulty_bins(pred, img, planes, patch=32, bins=(0.0, 0.5, 1.0))
    assert [b["count"] for b in bins] == [8, 8]
    assert bins[0]["difficulty"] == 0.0 and bins[1]["difficulty"] == 1.0
    assert bins[0]["psnr"] == pytest.approx(100.0)  # identical tiles: capped PSNR
    assert bins[1]["psnr"] < 40.0
    empty = m.difficulty_bins(pred, img, planes, patch=32, bins=(0.0, 0.2, 0.5, 1.0))
    assert empty[1]["count"] == 0 and np.isnan(empty[1]["psnr"])


def test_no_reference_measures():
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 256, (3, 40, 50, 3)).astype(np.uint8)
    assert m.consistency(planes[1].astype(np.float32), planes) == 0
    flat = np.full((40, 50), 7.0)
    assert m.gradient_energy(flat) == 0
    ramp = np.tile(np.arange(50.0), (40, 1))
    assert m.gradient_energy(ramp) == pytest.approx(1.0)
