"""Seam measures: tiled versus untiled output of the same stack."""

from __future__ import annotations

import numpy as np

from ..engine.tiling import TileGrid


def border_lines(spans: tuple[tuple[int, int], ...], size: int) -> list[int]:
    """Pixel positions where a tile starts or stops inside the image (where seams would be)."""
    return sorted({e for span in spans for e in span if 0 < e < size})


def _line_gradients(image: np.ndarray, axis: int) -> np.ndarray:
    """Mean absolute difference between neighbouring lines: entry i is between i-1 and i."""
    d = np.abs(np.diff(image.astype(np.float64), axis=axis))
    other = tuple(a for a in range(image.ndim) if a != axis)
    return np.concatenate([[np.nan], d.mean(axis=other)])


def border_gradient_ratio(image: np.ndarray, grid: TileGrid, period: int = 32) -> float:
    """Gradient across tile borders over that across other lines of the same phase.

    Only lines at multiples of ``period`` are compared: tile starts are aligned to 32 px (the
    VAE's 8 px times the U-Net's 4x), and the models leave a faint grid of that period in any
    output, tiled or not. Compare the tiled output's ratio with the untiled one's.
    """
    ratios_num, ratios_den = [], []
    for axis, spans, size in ((0, grid.ys, grid.height), (1, grid.xs, grid.width)):
        g = _line_gradients(image, axis)
        lines = border_lines(spans, size)
        if not lines:
            continue
        mask = np.zeros(size, bool)
        mask[lines] = True
        reference = np.zeros(size, bool)
        reference[period::period] = True
        reference &= ~mask
        if not reference.any():  # too small for a line of the same phase: use all other lines
            reference = ~mask
            reference[0] = False
        ratios_num.append(g[mask].mean())
        ratios_den.append(g[reference].mean())
    return float(np.mean(ratios_num) / np.mean(ratios_den)) if ratios_num else float("nan")


def seam_report(tiled: np.ndarray, untiled: np.ndarray, grid: TileGrid) -> dict[str, float]:
    """Mean and max |tiled - untiled| (in the images' units) and border-gradient ratios;
    ``border_excess`` > 1 is extra gradient across tile borders that tiling added (a seam)."""
    diff = np.abs(tiled.astype(np.float64) - untiled.astype(np.float64))
    return {
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
        "p99_abs_diff": float(np.percentile(diff, 99)),
        "border_ratio_tiled": (tiled_ratio := border_gradient_ratio(tiled, grid)),
        "border_ratio_untiled": (untiled_ratio := border_gradient_ratio(untiled, grid)),
        "border_excess": tiled_ratio / untiled_ratio,
    }
