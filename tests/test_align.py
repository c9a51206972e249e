import warnings

import cv2
import numpy as np
import pytest
from scipy import ndimage

from napari_vaeedof import fuse_stack
from napari_vaeedof.cli import build_parser, main
from napari_vaeedof.engine.align import (
    align_planes,
    estimate_transforms,
    match_gains,
    warp_planes,
)

SIZE = 192


def similarity(scale: float, degrees: float, shift, centre) -> np.ndarray:
    """3x3 scale + rotation about ``centre``, then ``shift`` (x, y)."""
    a = np.deg2rad(degrees)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.vstack([np.column_stack([lin, np.asarray(shift) + centre - lin @ centre]),
                      [0, 0, 1]])


def textured_scene(seed: int, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: smoothed noise at four scales."""
    rng = np.random.default_rng(seed)
    scene = sum(ndimage.gaussian_filter(rng.random((size, size)), s) * s for s in (1, 2, 4, 8))
    return ((scene - scene.min()) / np.ptp(scene)).astype(np.float32)


def drifting_stack(seed: int, n: int = 5, size: int = SIZE, margin: int = 32,
                   breathing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A focus stack as a handheld camera takes it: one textured scene, blurred progressively
    away from a focus position (0.8 px of Gaussian sigma a plane), each plane then seen through
    a known transform (focus breathing 0.99-1.01 a plane, drift up to 15 px, rotation up to 0.5
    degrees) -> (planes (n, size, size) float32, transforms plane -> middle plane)."""
    rng = np.random.default_rng(seed)
    scene = textured_scene(seed, size + 2 * margin)
    ref, centre = n // 2, np.full(2, (size - 1) / 2)
    scale = rng.uniform(0.99, 1.01) if breathing else 1.0
    shifts = np.clip(np.cumsum(rng.uniform(-5, 5, (n, 2)), 0), -15, 15)
    shifts -= shifts[ref]
    truth = np.stack([similarity(scale ** (k - ref),
                                 rng.uniform(-0.5, 0.5) if breathing and k != ref else 0.0,
                                 shifts[k], centre) for k in range(n)])
    focus = rng.uniform(0, n - 1)
    planes = []
    for k in range(n):
        blurred = cv2.GaussianBlur(scene, (0, 0), 0.5 + 0.8 * abs(k - focus))
        m = truth[k][:2].copy()
        m[:, 2] += margin  # plane k at p shows the scene at T_k p (+ margin)
        planes.append(cv2.warpAffine(blurred, m, (size, size),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return np.stack(planes), truth


def corner_error(estimated: np.ndarray, truth: np.ndarray, size: int = SIZE) -> float:
    """Largest distance (px, per axis) between where the two sets of transforms put the
    planes' corners."""
    c = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]],
                 float).T
    return float(np.abs(np.einsum("zij,jk->zik", estimated - truth, c)[:, :2]).max())


@pytest.mark.parametrize("model", ["similarity", "affine"])
def test_breathing_and_drift_are_recovered_within_a_third_of_a_pixel(model):
    for seed in (0, 1, 2):
        planes, truth = drifting_stack(seed)
        estimated = estimate_transforms(planes, model=model)
        assert estimated.shape == (5, 3, 3) and estimated.dtype == np.float64
        np.testing.assert_array_equal(estimated[2], np.eye(3))  # the middle plane
        assert corner_error(estimated, truth) < 0.3, seed


def test_translation_model_recovers_drift_and_stays_a_translation():
    planes, truth = drifting_stack(3, breathing=False)
    estimated = estimate_transforms(planes, model="translation")
    np.testing.assert_array_equal(estimated[:, :2, :2], np.broadcast_to(np.eye(2), (5, 2, 2)))
    assert corner_error(estimated, truth) < 0.3


def test_any_reference_plane_gets_the_identity():
    planes, truth = drifting_stack(4)
    estimated = estimate_transforms(planes, reference=0)
    np.testing.assert_array_equal(estimated[0], np.eye(3))
    to_first = np.linalg.inv(truth[0]) @ truth  # plane -> plane 0
    assert corner_error(estimated, to_first) < 0.3


@pytest.mark.parametrize("odd_plane", ["noise", "flat"])
def test_a_pair_without_shared_detail_is_taken_as_aligned_with_a_warning(odd_plane):
    planes, truth = drifting_stack(5, n=3)
    rng = np.random.default_rng(0)
    planes[2] = rng.random((SIZE, SIZE)) if odd_plane == "noise" else 0.5
    with pytest.warns(UserWarning, match=r"Planes 1 and 2 could not be registered .*identity"):
        estimated = estimate_transforms(planes)
    np.testing.assert_array_equal(estimated[2], np.eye(3))  # plane 1 is the reference
    assert corner_error(estimated[:2], truth[:2]) < 0.3  # the good pair is kept


def test_an_implausible_transform_is_refused():
    """A pair 30 % apart in scale is not focus breathing: identity, and the warning says why."""
    scene = textured_scene(6, SIZE)
    zoomed = cv2.warpAffine(scene, similarity(1.3, 0, (0, 0), np.full(2, (SIZE - 1) / 2))[:2],
                            (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    with pytest.warns(UserWarning, match="Planes 0 and 1 could not be registered"):
        estimated = estimate_transforms(np.stack([scene, zoomed]))
    np.testing.assert_array_equal(estimated, np.broadcast_to(np.eye(3), (2, 3, 3)))


def test_bad_model_is_a_one_line_error_naming_the_choices():
    planes, _ = drifting_stack(0, n=2)
    with pytest.raises(ValueError, match=r"^model must be one of \('translation', "
                                         r"'similarity', 'affine'\), got 'rigid'$"):
        estimate_transforms(planes, model="rigid")
    with pytest.raises(ValueError, match="reference must be a plane index from 0 to 1"):
        estimate_transforms(planes, reference=2)


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.float16])
def test_warping_keeps_shape_and_dtype_and_fills_borders_from_the_nearest_plane(dtype):
    """RGB planes, one shifted 10 px: its uncovered strip holds its neighbour's pixels; the
    input is not modified."""
    scene = textured_scene(7, 96)
    top = 30000 if dtype == np.uint16 else (100 if dtype == np.int8 else 1)
    rgb = (np.stack([scene, scene[::-1], scene.T], -1) * top).astype(dtype)
    planes = np.stack([rgb, rgb, rgb])
    before = planes.copy()
    transforms = np.repeat(np.eye(3)[None], 3, 0)
    transforms[0, 0, 2] = 10.0  # plane 0 moves 10 px right: its left 10 columns are uncovered
    warped, coverage = warp_planes(planes, transforms)
    assert warped.shape == planes.shape and warped.dtype == planes.dtype
    np.testing.assert_array_equal(planes, before)
    assert coverage.shape == (3, 96, 96) and coverage[1:].all()
    assert not coverage[0, :, :10].any() and coverage[0, :, 10:].all()
    np.testing.assert_array_equal(warped[0, :, :10], planes[1, :, :10])  # from plane 1
    np.testing.assert_array_equal(warped[0, :, 10:], planes[0, :, :-10])
    np.testing.assert_array_equal(warped[1:], planes[1:])  # identity: the pixels themselves


def test_gains_undo_exposure_flicker_about_the_black_level():
    scene = textured_scene(8, 64)
    black = 100.0
    gains = np.array([0.8, 1.0, 1.25])
    planes = (black + 3000 * scene[None] * gains[:, None, None]).astype(np.uint16)
    matched, found = match_gains(planes, black=black)
    np.testing.assert_allclose(found, 1 / gains, rtol=2e-3)
    assert matched.dtype == np.uint16
    np.testing.assert_allclose(matched.astype(float), np.broadcast_to(planes[1], planes.shape),
                               atol=1.5)


def test_multichannel_planes_are_registered_on_all_their_channels():
    """Two channels of different range, both moved alike: one transform, applied to both."""
    planes, truth = drifting_stack(9, n=3)
    stack = np.stack([planes * 4000, planes**2 * 50 + 7], -1).astype(np.uint16)
    reg = align_planes(stack, model="similarity")
    assert reg.planes.shape == stack.shape and reg.planes.dtype == np.uint16
    assert corner_error(reg.transforms, truth) < 0.3
    assert reg.reference == 1 and reg.gains is None


def test_fuse_stack_aligns_and_records_the_transforms(random_unet):
    planes, _ = drifting_stack(10, n=3, size=96)
    stack = np.rint(planes * 255).astype(np.uint8)
    before = stack.copy()
    result = fuse_stack(stack, unet_path=random_unet, align="similarity", match_gain=True,
                        tile_size=64)
    assert result.image.shape == (96, 96) and result.image.dtype == np.uint8
    np.testing.assert_array_equal(stack, before)
    meta = result.metadata
    assert meta["align"] == "similarity"
    alignment = meta["alignment"]
    assert alignment["model"] == "similarity" and alignment["reference_plane"] == 1
    transforms = np.array(alignment["transforms"])
    assert transforms.shape == (3, 3, 3)
    np.testing.assert_array_equal(transforms[1], np.eye(3))
    assert len(alignment["gains"]) == 3 and len(alignment["border_filled"]) == 3
    assert fuse_stack(stack, unet_path=random_unet).metadata["align"] == "none"


def test_bad_align_value_is_a_one_line_error_and_changes_nothing(random_unet):
    stack = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"^align must be one of \('none', 'translation', "
                                         r"'similarity', 'affine'\), got 'yes'$"):
        fuse_stack(stack, unet_path=random_unet, align="yes")
    with pytest.raises(ValueError, match="match_gain must be True or False"):
        fuse_stack(stack, unet_path=random_unet, match_gain="yes")
    assert not stack.any()


def test_cli_align_option(tmp_path, random_unet, capsys):
    args = build_parser().parse_args(["fuse", "in.tif", "-o", "out.tif", "--align",
                                      "similarity", "--match-gain"])
    assert args.align == "similarity" and args.match_gain
    assert build_parser().parse_args(["fuse", "in.tif", "-o", "out.tif"]).align == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fuse", "in.tif", "-o", "out.tif", "--align", "yes"])
    assert "invalid choice: 'yes'" in capsys.readouterr().err

    import tifffile

    planes, _ = drifting_stack(11, n=3, size=64, margin=16)
    path, out = tmp_path / "stack.tif", tmp_path / "fused.tif"
    tifffile.imwrite(path, np.rint(planes * 60000).astype(np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good stack: no pair refused
        assert main(["fuse", str(path), "-o", str(out), "--align", "translation",
                     "--unet", str(random_unet), "-q"]) == 0
    assert tifffile.imread(out).shape == (64, 64)
