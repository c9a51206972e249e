"""Random shapes, dtypes, channels, axes, value ranges and tile sizes, error maps on (issue 16).

Every example must give a correct result (the input's dtype and shape less the focus axis,
finite, within the input's range; finite maps in their ranges) or a one-line error, and exactly
when the request is invalid; the input array, the input file and an existing output are never
modified. Through `fuse_stack`, and through the CLI on TIFF files where a file can say the
layout (focus axis first). Bounded and derandomised, so CI runs the same examples in seconds;
VAEEDOF_FUZZ_EXAMPLES=500 for a longer hunt.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from napari_vaeedof import fuse_stack
from napari_vaeedof.cli import main
from napari_vaeedof.models.weights import WeightsError

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64,
          np.float16, np.float32, np.float64]
COLOURS = ["gray", "rgb", "rgba", "multichannel"]
KINDS = ["random", "constant", "near max", "near min", "tiny range", "huge", "nan"]
# Valid choices more often than invalid ones, so that most examples fuse.
PLANES = [1, 2, 2, 3, 3, 4]
SIZES = [6, 8, 13, 24, 32, 37, 48, 64, 65, 72]
TILES = [None, None, 64, 96, 128, 100]
OVERLAPS = [None, 0, 16, 40]
OLD = b"an earlier result"


def _values(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Values of ``kind`` for ``dtype``: the corners users hit (limits, flat, tiny, huge)."""
    dtype = np.dtype(dtype)
    u = rng.random(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
        span = min(1000, hi - lo)
        if kind == "constant":
            return np.full(shape, [lo, (lo + hi) // 2, hi][rng.integers(0, 3)], dtype)
        if kind == "near max":
            return rng.integers(hi - span, hi, shape, dtype=dtype, endpoint=True)
        if kind == "near min":
            return rng.integers(lo, lo + span, shape, dtype=dtype, endpoint=True)
        if kind == "tiny range":
            base = lo + (hi - lo) // 3
            return rng.integers(base, base + 3, shape, dtype=dtype, endpoint=True)
        return rng.integers(lo, hi, shape, dtype=dtype, endpoint=True)  # random, huge
    big = float(np.finfo(dtype).max)
    if kind == "constant":
        return np.full(shape, rng.normal(), dtype)
    if kind == "near max":
        return (big * (1 - 0.001 * u)).astype(dtype)
    if kind == "near min":
        return (-big * (1 - 0.001 * u)).astype(dtype)
    if kind == "tiny range":
        tiny = float(np.finfo(dtype).tiny)
        return (tiny * (1 + 100 * u)).astype(dtype)
    if kind == "huge":
        return (big * 0.4 * (2 * u - 1)).astype(dtype)
    if kind == "nan":
        x = u.astype(dtype)
        x.flat[rng.integers(0, x.size)] = np.nan
        return x
    return ((u - 0.3) * 10).astype(dtype)


@st.composite
def requests(draw):
    colour = draw(st.sampled_from(COLOURS))
    dtype = draw(st.sampled_from(DTYPES))
    kinds = KINDS[:-1] + (["nan"] if np.dtype(dtype).kind == "f" and draw(st.booleans()) else [])
    kind = draw(st.sampled_from(kinds))
    z = draw(st.sampled_from(PLANES))
    y, x = draw(st.sampled_from(SIZES)), draw(st.sampled_from(SIZES))
    n_ch = {"gray": 1, "rgb": 3, "rgba": 4, "multichannel": draw(st.integers(2, 3))}[colour]
    spatial = [z, y, x]
    focus = draw(st.integers(0, 2))  # where the focus axis goes among the non-channel axes
    order = [1, 2]
    order.insert(focus, 0)
    shape = [spatial[i] for i in order]
    channel_axis = None
    if colour in ("rgb", "rgba"):
        shape.append(n_ch)  # colour last, found by itself
    elif colour == "multichannel":
        channel_axis = draw(st.integers(0, 3))
        shape.insert(channel_axis, n_ch)
        if channel_axis <= focus:
            focus += 1
    negative = draw(st.booleans())
    tile = draw(st.sampled_from(TILES))
    overlap = None if tile is None else draw(st.sampled_from(OVERLAPS))
    return {
        "colour": colour, "dtype": dtype, "kind": kind, "shape": tuple(shape), "z": z,
        "yx": (y, x), "axis": focus - len(shape) if negative else focus,
        "channel_axis": channel_axis, "tile_size": tile, "overlap": overlap,
        "mode": draw(st.sampled_from(["pixel", "latent"])),
        "via": draw(st.sampled_from(["api", "cli"])), "seed": draw(st.integers(0, 2**16)),
    }


def _invalid(r, cli: bool) -> tuple[str, ...]:
    """Words one of which the error must contain, in the order the checks run; () if valid."""
    if r["z"] < 2:  # a file's singleton axis is dropped: one plane
        return ("single plane",) if cli else ("two planes",)
    if min(r["yx"]) < 8:
        return ("too small",)
    tile, overlap = r["tile_size"], r["overlap"]
    if tile is not None and (tile < 64 or tile % 32):
        return ("tile_size", "tile-size")
    if tile is not None and overlap is not None and overlap > tile // 2:
        return ("overlap",)
    if r["kind"] == "nan":
        return ("NaN",)
    return ()


def _check_result(r, stack: np.ndarray, image: np.ndarray, maps: dict) -> None:
    dtype = np.dtype(r["dtype"])
    out_shape = [n for i, n in enumerate(stack.shape) if i != r["axis"] % stack.ndim]
    if r["colour"] == "rgba":
        out_shape[-1] = 3
    assert image.shape == tuple(out_shape)
    assert image.dtype == dtype
    values = stack[..., :3] if r["colour"] == "rgba" else stack
    lo, hi = float(values.min()), float(values.max())
    out = image.astype(np.float64)
    assert np.isfinite(out).all()
    # Tolerance: rounding to the dtype (float64 for 64-bit integers), a tenth of the range
    # (latent mode decodes every pixel), and a flat stack's range of one normalisation unit.
    span = hi - lo
    if span == 0:
        span = 1.0 if dtype.kind in "iu" or lo == 0 else abs(lo) * 2.0**-10
    grain = 1.0 if dtype.kind in "iu" else 0.0
    top = np.asarray(max(abs(lo), abs(hi)), np.float64 if dtype.kind in "iu" else dtype)
    grain += 4 * abs(float(np.spacing(top)))
    tol = 0.1 * span + grain
    assert lo - tol <= out.min() and out.max() <= hi + tol, (lo, hi, out.min(), out.max())
    z = r["z"]
    for name, m in maps.items():
        if m is None:
            assert r["mode"] == "latent" and name != "error"
            continue
        assert np.isfinite(m).all(), name
        if name == "error":
            assert m.min() >= 0
        elif name == "depth":
            assert -1e-3 <= m.min() and m.max() <= z - 1 + 1e-3
        else:
            assert -1e-3 <= m.min() and m.max() <= 1 + 1e-3, name


def _via_api(r, stack, unet):
    before = stack.copy()
    try:
        result = fuse_stack(stack, axis=r["axis"], channel_axis=r["channel_axis"],
                            tile_size=r["tile_size"], overlap=r["overlap"], mode=r["mode"],
                            error_map=True, unet_path=unet)
    except (ValueError, WeightsError) as exc:  # StackError, FusionError are ValueErrors
        error = str(exc)
        assert error and "\n" not in error
        result = None
    else:
        error = None
    np.testing.assert_array_equal(stack, before)
    if result is not None:
        maps = {"error": result.error, "depth": result.depth,
                "confidence": result.confidence, "fill": result.fill}
        _check_result(r, stack, result.image, maps)
    return error


def _via_cli(r, stack, unet, folder: Path, capsys):
    """Write the stack as a TIFF (focus axis first), fuse it onto existing outputs."""
    stack = np.moveaxis(stack, r["axis"], 0)
    r = {**r, "axis": 0}
    axes = "ZYXS" if stack.ndim == 4 else "ZYX"
    src = folder / "stack.tif"
    tifffile.imwrite(src, stack, photometric="rgb" if stack.ndim == 4 else "minisblack",
                     metadata={"axes": axes})
    out, err = folder / "fused.tif", folder / "error.tif"
    out.write_bytes(OLD)
    err.write_bytes(OLD)
    before = src.read_bytes()
    argv = ["fuse", str(src), "-o", str(out), "--error-map", str(err), "--unet", str(unet),
            "--mode", r["mode"], "-q"]
    for flag in ("tile_size", "overlap"):
        if r[flag] is not None:
            argv += [f"--{flag.replace('_', '-')}", str(r[flag])]
    code = main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert src.read_bytes() == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries
    if code == 0:
        _check_result(r, stack, tifffile.imread(out), {"error": tifffile.imread(err)})
        return None
    assert code == 2, lines
    assert out.read_bytes() == err.read_bytes() == OLD
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    return errors[0]


EXAMPLES = int(os.environ.get("VAEEDOF_FUZZ_EXAMPLES", "40"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(r=requests())
def test_any_request_gives_a_correct_result_or_one_line(r, random_unet, tmp_path_factory,
                                                        capsys):
    rng = np.random.default_rng(r["seed"])
    stack = _values(rng, r["shape"], r["dtype"], r["kind"])
    cli = r["via"] == "cli" and r["colour"] != "multichannel"
    if cli:
        error = _via_cli(r, stack, random_unet, tmp_path_factory.mktemp("fuzz"), capsys)
    else:
        error = _via_api(r, stack, random_unet)
    expected = _invalid(r, cli)
    event(f"{'cli' if cli else 'api'}: {'result' if error is None else 'error'}")
    if not expected:
        assert error is None, (r, error)
    else:
        assert error is not None and any(w in error for w in expected), (r, error)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float16, np.float64])
def test_fuzz_value_generator_covers_the_corners(dtype):
    """The generator itself: each kind gives its dtype and the values it claims."""
    rng = np.random.default_rng(0)
    for kind in KINDS if np.dtype(dtype).kind == "f" else KINDS[:-1]:
        x = _values(rng, (2, 8, 8), dtype, kind)
        assert x.dtype == dtype, kind
        if kind == "nan":
            assert np.isnan(x).sum() == 1
        elif np.dtype(dtype).kind == "f":
            assert np.isfinite(x).all(), kind
    if np.dtype(dtype).kind in "iu":
        assert _values(rng, (4,), dtype, "near max").max() >= np.iinfo(dtype).max - 1000
