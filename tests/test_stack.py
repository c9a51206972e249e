import dask.array as da
import numpy as np
import pytest

from napari_vaeedof.engine.stack import (
    StackError,
    canonical,
    fit_normalization,
    resolve_layout,
    stack_planes,
    to_output_layout,
)

KINDS = [
    # shape, dtype, axis, channel_axis, mode, output shape
    ((3, 40, 48), np.uint8, 0, None, "gray", (40, 48)),
    ((40, 3, 48), np.uint16, 1, None, "gray", (40, 48)),
    ((3, 40, 48, 3), np.uint8, 0, None, "rgb", (40, 48, 3)),
    ((3, 40, 48, 4), np.uint8, 0, None, "rgb", (40, 48, 3)),
    ((3, 2, 40, 48), np.uint16, 0, 1, "multichannel", (2, 40, 48)),
    ((2, 3, 40, 48), np.float32, 1, 0, "multichannel", (2, 40, 48)),
]


@pytest.mark.parametrize(("shape", "dtype", "axis", "channel_axis", "mode", "out"), KINDS)
def test_layouts_round_trip_shape_and_dtype(shape, dtype, axis, channel_axis, mode, out):
    rng = np.random.default_rng(0)
    hi = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    stack = (rng.random(shape) * hi).astype(dtype)
    layout = resolve_layout(stack.shape, stack.dtype, axis=axis, channel_axis=channel_axis)
    assert layout.mode == mode
    x = canonical(stack, layout)
    assert x.shape[0] == shape[axis] and x.shape[1:3] == (40, 48)
    norm = fit_normalization(x, stack.dtype, joint=mode == "rgb")
    back = norm.inverse(norm.forward(x[0]))
    result = to_output_layout(back, layout)
    assert result.shape == out and result.dtype == dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_normalization_inverts_exactly_within_the_range(dtype):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        top = 250 if dtype == np.uint8 else 40000
        values = rng.integers(top // 40, top, (4, 32, 32, 1))
    else:
        values = rng.normal(5.0, 2.0, (4, 32, 32, 1))
    stack = values.astype(dtype)
    norm = fit_normalization(stack, stack.dtype)
    y = norm.forward(stack)
    inside = (y >= 0) & (y <= 1)
    assert inside.mean() > 0.998  # robust range: only the extreme 0.1 % may fall outside
    back = norm.inverse(y)
    assert back.dtype == dtype  # float64 too, not float32
    tol = 0 if np.issubdtype(dtype, np.integer) else 1e-4 * np.abs(stack).max()
    assert np.abs(back[inside].astype(np.float64) - stack[inside]).max() <= tol


def test_uint16_range_is_kept_not_stretched_to_8_bit():
    stack = np.linspace(2000, 3000, 2 * 16 * 16).reshape(2, 16, 16, 1).astype(np.uint16)
    norm = fit_normalization(stack, stack.dtype)
    assert 1999 <= norm.lo[0] <= 2010 and 2990 <= norm.hi[0] <= 3001
    out = norm.inverse(np.full((4, 4, 1), 0.5))
    assert out.dtype == np.uint16 and abs(int(out[0, 0, 0]) - 2500) <= 6


def test_rgb_uses_one_range_for_all_channels():
    stack = np.zeros((2, 16, 16, 3), np.uint8)
    stack[..., 0] = 200
    stack[..., 2] = np.arange(16)[None, :, None] * 4
    norm = fit_normalization(stack, stack.dtype, joint=True)
    assert np.all(norm.lo == norm.lo[0]) and np.all(norm.hi == norm.hi[0])


def test_dask_input_stays_lazy_until_needed():
    stack = da.random.random((3, 64, 64), chunks=(1, 32, 32)).astype(np.float32)
    layout = resolve_layout(stack.shape, stack.dtype)
    x = canonical(stack, layout)
    assert isinstance(x, da.Array) and x.shape == (3, 64, 64, 1)
    norm = fit_normalization(x, stack.dtype)
    assert 0 <= norm.lo[0] < 0.01 and 0.99 < norm.hi[0] <= 1


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((1, 32, 32), {}, "at least two planes"),
        ((32, 32), {}, "at least 3 dimensions"),
        ((0, 32, 32), {}, "empty"),
        ((3, 32, 32, 5), {}, "channel_axis"),
        ((3, 4, 32, 32), {}, "channel_axis"),
        ((3, 32, 32), {"axis": 3}, "out of range"),
        ((3, 2, 32, 32), {"axis": 1, "channel_axis": 1}, "different axes"),
        ((2, 3, 4, 32, 32), {}, "not supported"),
        ((3, 4, 32), {}, "too small"),
    ],
)
def test_bad_shapes_get_a_message_that_says_what_to_do(shape, kwargs, message):
    with pytest.raises(StackError, match=message):
        resolve_layout(shape, np.uint8, **kwargs)


def test_nan_and_inf_are_refused():
    stack = np.ones((2, 16, 16, 1), np.float32)
    stack[1, 3, 3] = np.nan
    with pytest.raises(StackError, match="NaN"):
        fit_normalization(stack, stack.dtype)
    stack[1, 3, 3] = np.inf
    with pytest.raises(StackError, match="NaN or infinite"):
        fit_normalization(da.from_array(stack, chunks=8), stack.dtype)


def test_planes_of_different_shapes_are_refused():
    with pytest.raises(StackError, match="Plane 1 has shape"):
        stack_planes([np.zeros((8, 8)), np.zeros((8, 9))])
