"""Held-out evaluation by physics family: the method table, depth error, tables, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vaeedof.api import fuse_stack
from napari_vaeedof.cli import main
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.evaluation.baselines import max_projection
from napari_vaeedof.evaluation.heldout import (
    METHODS,
    REFERENCES,
    depth_error,
    evaluate_families,
    families_markdown,
    method_table,
    planes_ceiling,
    pooled_psnr,
)


def test_max_projection_is_the_plain_max_for_one_channel_and_keeps_colours_whole():
    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 1, (4, 16, 16)).astype(np.float32)
    fused, index = max_projection(gray, return_index=True)
    np.testing.assert_array_equal(fused, gray.max(axis=0))
    np.testing.assert_array_equal(index, gray.argmax(axis=0))
    rgb = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    fused, index = max_projection(rgb, return_index=True)
    np.testing.assert_array_equal(fused, np.take_along_axis(rgb, index[None, ..., None], 0)[0])


def test_depth_error_is_zero_for_the_true_plane_and_counts_plane_steps():
    st = make_family_stack("heightfield", 1, size=64, n_planes=5, noise=False, order="descending")
    order = np.argsort(st.focus)
    true_index = np.interp(st.depth, st.focus[order], order.astype(float))
    assert depth_error(true_index, st, st.ground_truth) == pytest.approx(0, abs=1e-6)
    index = np.zeros(st.depth.shape)  # every pixel from the first plane given (the farthest)
    expected = np.abs(st.focus[0] - np.clip(st.depth, 0, 1)).mean() / 0.25
    assert depth_error(index, st, st.ground_truth) == pytest.approx(expected, rel=0.2)
    assert np.isnan(depth_error(None, st, st.ground_truth))


def test_evaluation_runs_on_one_tiny_stack_per_family_with_a_pluggable_method_table():
    methods = {**method_table(), "truth": lambda p, t: t}
    result = evaluate_families(methods, FAMILIES, n=1, size=48, noise="none", n_planes=3)
    assert len(result["rows"]) == len(FAMILIES) * len(methods)
    summary = result["summary"]
    for family in FAMILIES:
        scores = summary[family]["none"]
        assert set(scores) == {*METHODS, "truth"}
        assert scores["truth"]["psnr"] == np.inf
        for name in METHODS:
            assert 0 < scores[name]["ssim"] <= 1
            if name not in REFERENCES:
                assert 15 < scores[name]["psnr"] < 80
        # only the methods that say where a pixel came from get a depth error
        assert np.isnan(scores["laplacian_pyramid"]["depth_mae"])
        if family != "fluorescence":
            assert np.isfinite(scores["variance_argmax"]["depth_mae"])
    text = families_markdown(result)
    assert all(f"## {family}" in text for family in FAMILIES)
    assert "| truth | **inf** | **inf** |" in text  # mean and pooled PSNR
    # pixel mode is never above the truth, on none of the one stack of each family
    truth_rows = [line for line in text.splitlines() if line.startswith("| truth |")]
    assert len(truth_rows) == len(FAMILIES) and all("| 0/1 |" in r for r in truth_rows)


def test_pooled_psnr_weighs_stacks_by_their_error_not_their_decibels():
    assert pooled_psnr([20.0, 40.0]) == pytest.approx(10 * np.log10(1 / 0.00505))
    # a perfect stack halves the mean squared error, it does not make the row perfect
    assert pooled_psnr([np.inf, 30.0]) == pytest.approx(30 + 10 * np.log10(2))
    assert pooled_psnr([np.inf, np.inf]) == np.inf
    # the mean of PSNRs can rank two methods the other way round
    a, b = [25.0, 77.0], [25.5, 70.0]
    assert np.mean(a) > np.mean(b) and pooled_psnr(a) < pooled_psnr(b)


def test_evaluate_command_writes_family_tables(tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--family", "brightfield", "--noise", "noisy", "--n", "1", "--size", "40",
            "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "families.json").read_text())
    assert result["families"] == ["brightfield"] and result["noise"] == "noisy"
    assert {r["split"] for r in result["rows"]} == {"noisy"}
    assert {r["method"] for r in result["rows"]} == set(METHODS)
    assert "## brightfield" in (out / "families.md").read_text()
    assert "PSNR noisy" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["layered", "heightfield"])
def test_planes_ceiling_bounds_pixel_mode_without_fill_at_every_pixel(family):
    st = make_family_stack(family, 3, size=64, n_planes=4, noise=True)
    ceiling = planes_ceiling(st.planes, st.ground_truth)
    lo, hi = st.planes.min(0), st.planes.max(0)
    assert np.all(ceiling >= lo) and np.all(ceiling <= hi)
    image = fuse_stack(st.planes, fill=False, error_map=False, device="cpu",
                       precision="float32").image
    # the projection of the truth onto the planes' range is no farther from it than any
    # output within that range, as pixel mode's is without fill
    err_ceiling = np.abs(ceiling - st.ground_truth)
    err_pixel = np.abs(image - st.ground_truth)
    assert np.all(err_ceiling <= err_pixel + 1e-5)
    assert err_ceiling.mean() < err_pixel.mean()
