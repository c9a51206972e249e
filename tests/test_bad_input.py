"""Every mistake a user can make gets a one-line answer, and nothing is lost (issue 16).

Each case runs the real thing (CLI `main`, `fuse_stack`, the napari reader, the file writer) on
real files; a CLI error is one line on stderr, a non-zero exit and no traceback, and the input
file and an existing output are untouched (byte for byte), with no temporary files left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_vaeedof import FusionError, StackError, fuse_stack
from napari_vaeedof._reader import get_reader
from napari_vaeedof.cli import main
from napari_vaeedof.engine.runtime import cpu_has_bf16, cpu_has_fp16
from napari_vaeedof.engine.stack import to_dtype
from napari_vaeedof.io import read_stack, write_tiffs
from napari_vaeedof.models.weights import WeightsError

OLD = b"previous good result"


def _planes(n=3, size=64, dtype=np.uint16, seed=0) -> np.ndarray:
    from napari_vaeedof.data.synth import make_stack, quantize

    planes = make_stack(seed, size=size, n_planes=n, gray=True).planes[..., 0]
    return quantize(planes, dtype) if np.issubdtype(dtype, np.integer) else planes.astype(dtype)


def _tiff_stack(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"}, **kwargs)
    return path


@pytest.fixture(scope="session")
def flipped_unet(random_unet, tmp_path_factory) -> Path:
    """The random U-Net with every byte after the header inverted: a valid header, NaN or
    nonsense weights (what a damaged download or disk gives). One file for all tests: the
    models are cached by path."""
    raw = bytearray(random_unet.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start:] = bytes(b ^ 0xFF for b in raw[start:])
    dest = tmp_path_factory.mktemp("flipped") / "flipped.safetensors"
    dest.write_bytes(bytes(raw))
    return dest


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-vaeedof fuse: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# CLI: (case id, argv builder, exit code, words of the message). The builder gets tmp_path, the
# input stack file, an existing output ("old.tif") and a damaged U-Net file, and returns argv.

def _syx(tmp):
    """3 planes stored as one image of 3 samples (axes SYX), as tifffile (2026) still writes a
    (3, Y, X) array by default."""
    path = tmp / "syx.tif"
    tifffile.imwrite(path, _planes(), photometric="minisblack", planarconfig="separate")
    return path


def _corrupt_png_folder(tmp):
    import imageio.v3 as iio

    folder = tmp / "pngs"
    folder.mkdir()
    iio.imwrite(folder / "p1.png", _planes(1, dtype=np.uint8)[0])
    (folder / "p2.png").write_bytes(b"\x89PNG not really")
    return folder


def _mismatched_folder(tmp):
    folder = tmp / "mismatch"
    folder.mkdir()
    tifffile.imwrite(folder / "p1.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(folder / "p2.tif", np.zeros((32, 40), np.uint8))
    return folder


def _wide(planes: np.ndarray) -> np.ndarray:
    """Half the pixels near -1.7e308, half near +1.7e308: hi - lo overflows float64."""
    sign = np.where(np.indices(planes.shape).sum(0) % 2 == 0, 1.0, -1.0)
    return sign * 1.7e308 * (1 - 0.01 * planes)


def _huge_range(tmp):
    data = _wide(_planes(dtype=np.float64))
    return _tiff_stack(tmp / "huge_range.tif", data)


def _huge_tiff(tmp):
    """A 3 x 200000 x 200000 uint16 stack (240 GB) by its header; the file itself is tiny."""
    path = _tiff_stack(tmp / "huge.tif", np.zeros((3, 16, 16), np.uint16))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            page.tags["ImageWidth"].overwrite(200_000)
            page.tags["ImageLength"].overwrite(200_000)
    return path


def _not_safetensors(tmp):
    path = tmp / "unet.safetensors"
    path.write_text("this is not a safetensors file")
    return path


CLI_ERRORS = [
    ("output is the input", lambda t, i, o, u: [i, "-o", i], 2, "also an input"),
    ("error map is the input", lambda t, i, o, u: [i, "-o", t / "f.tif", "--error-map", i], 2,
     "also an input"),
    ("two outputs one file", lambda t, i, o, u: [i, "-o", o, "--error-map", o], 2,
     "names the same file"),
    ("output is a folder", lambda t, i, o, u: [i, "-o", t], 2, "is a folder"),
    ("output parent is a file", lambda t, i, o, u: [i, "-o", o / "sub" / "f.tif"], 2,
     "is a file, not a folder"),
    ("output folder not writable", lambda t, i, o, u: [i, "-o", "/proc/vaeedof-test.tif"], 2,
     "cannot write in /proc"),
    ("output /dev/null", lambda t, i, o, u: [i, "-o", "/dev/null"], 2, "not a regular file"),
    ("input /dev/null", lambda t, i, o, u: ["/dev/null", "-o", o], 2,
     "not a regular file or a folder"),
    ("input missing", lambda t, i, o, u: [t / "missing.tif", "-o", o], 2, "does not exist"),
    ("axis out of range", lambda t, i, o, u: [i, "-o", o, "--axis", "5"], 2, "out of range"),
    ("unknown device", lambda t, i, o, u: [i, "-o", o, "--device", "gpu"], 2, "Unknown device"),
    ("cuda without a GPU", lambda t, i, o, u: [i, "-o", o, "--device", "cuda:7"], 2, "cuda"),
    ("unet not safetensors", lambda t, i, o, u: [i, "-o", o, "--unet", _not_safetensors(t)], 2,
     "not a Fusion U-Net safetensors file"),
    ("unet missing", lambda t, i, o, u: [i, "-o", o, "--unet", t / "nope.safetensors"], 2,
     "does not exist"),
    # latent mode: pixel mode runs the U-Net only for a fill (the check catches it there too)
    ("unet bytes flipped", lambda t, i, o, u: [i, "-o", o, "--error-map", t / "e.tif", "--unet",
                                               u, "--mode", "latent"], 2,
     "NaN or infinite"),
    ("range wider than float64", lambda t, i, o, u: [_huge_range(t), "-o", o], 2,
     "wider than float64"),
    ("stack larger than memory", lambda t, i, o, u: [_huge_tiff(t), "-o", o], 2,
     "of memory free"),
    ("3 planes stored as samples", lambda t, i, o, u: [_syx(t), "-o", o], 2,
     "--samples-as-planes"),
    ("samples-as-planes on a z-stack", lambda t, i, o, u: [i, "-o", o, "--samples-as-planes"], 2,
     "already has a focus axis"),
    ("corrupt png", lambda t, i, o, u: [_corrupt_png_folder(t), "-o", o], 2, "Cannot read"),
    ("planes of different shapes", lambda t, i, o, u: [_mismatched_folder(t), "-o", o], 2,
     "Plane 1 has shape"),
    ("tile size not a multiple of 32", lambda t, i, o, u: [i, "-o", o, "--tile-size", "50"], 2,
     "multiple of 32"),
    ("overlap too large for one tile", lambda t, i, o, u: [i, "-o", o, "--tile-size", "64",
                                                           "--overlap", "40"], 2, "overlap"),
    ("latent mode with a fill map", lambda t, i, o, u: [i, "-o", o, "--mode", "latent",
                                                        "--fill-map", t / "fill.tif"], 2,
     "need --mode pixel"),
]


@pytest.mark.parametrize(("build", "code", "words"), [c[1:] for c in CLI_ERRORS],
                         ids=[c[0] for c in CLI_ERRORS])
def test_cli_mistake_gets_one_line_and_changes_nothing(tmp_path, capsys, random_unet, build,
                                                       code, words, flipped_unet):
    stack = _tiff_stack(tmp_path / "stack.tif", _planes())
    old = tmp_path / "old.tif"
    old.write_bytes(OLD)
    argv = ["fuse", *map(str, build(tmp_path, stack, old, flipped_unet))]
    if "--unet" not in argv:
        argv += ["--unet", str(random_unet)]
    before = _snapshot(tmp_path)
    t0 = time.perf_counter()
    assert main([*argv, "-q"]) == code
    line = _one_error_line(capsys.readouterr().err)
    assert words in line, line
    assert "pip install" not in line
    assert _snapshot(tmp_path) == before  # input, old output, nothing new, no temporaries
    assert not Path("/proc/vaeedof-test.tif").exists()
    assert time.perf_counter() - t0 < 30


def test_output_checks_come_before_any_work(tmp_path, capsys):
    """A stack too large for memory and an output in a folder that cannot be written: the
    output is refused first, without reading the stack."""
    stack = _tiff_stack(tmp_path / "stack.tif", _planes())
    t0 = time.perf_counter()
    assert main(["fuse", str(stack), "-o", str(tmp_path), "-q"]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)
    assert time.perf_counter() - t0 < 1.0  # no models loaded, no fusion


# ---------------------------------------------------------------------------------------------
# CLI: inputs that must work.

def _single_plane_tiffs(tmp: Path, planes: np.ndarray) -> list[Path]:
    folder = tmp / "planes"
    folder.mkdir()
    paths = []
    for i, plane in enumerate(planes):
        path = folder / f"plane_{i + 1}.tif"
        tifffile.imwrite(path, plane, imagej=True, resolution=(4, 4), metadata={"unit": "um"})
        paths.append(path)
    return paths


@pytest.mark.parametrize("how", ["folder", "list"])
def test_single_plane_tiffs_fuse(tmp_path, random_unet, how):
    planes = _planes()
    paths = _single_plane_tiffs(tmp_path, planes)
    inputs = [paths[0].parent] if how == "folder" else paths
    out = tmp_path / "fused.tif"
    assert main(["fuse", *map(str, inputs), "-o", str(out), "--unet", str(random_unet),
                 "-q"]) == 0
    fused = tifffile.imread(out)
    assert fused.shape == (64, 64) and fused.dtype == np.uint16
    assert planes.min() <= fused.min() and fused.max() <= planes.max()
    stack = read_stack(inputs[0] if how == "folder" else inputs)
    assert stack.data.shape == (3, 64, 64) and stack.pixel_size == (0.25, 0.25)
    layers = get_reader(str(inputs[0]) if how == "folder" else list(map(str, inputs)))()
    np.testing.assert_array_equal(layers[0][0], planes)


def test_samples_as_planes_fuses_a_syx_tiff(tmp_path, random_unet):
    out = tmp_path / "fused.tif"
    assert main(["fuse", str(_syx(tmp_path)), "-o", str(out), "--samples-as-planes",
                 "--unet", str(random_unet), "-q"]) == 0
    assert tifffile.imread(out).shape == (64, 64)
    assert get_reader(str(tmp_path / "syx.tif")) is None  # one image: napari's own reader


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_float64_far_from_float32_range_fuses_in_float64(tmp_path, random_unet, scale):
    """Values around 1e300 overflow float32, around 1e-300 underflow it: both came back as
    all-NaN images with exit 0 (issue 16)."""
    planes = _planes(dtype=np.float64) * scale + 2 * scale
    stack = _tiff_stack(tmp_path / "stack.tif", planes)
    out, err = tmp_path / "fused.tif", tmp_path / "error.tif"
    assert main(["fuse", str(stack), "-o", str(out), "--error-map", str(err), "--unet",
                 str(random_unet), "-q"]) == 0
    fused, error = tifffile.imread(out), tifffile.imread(err)
    assert fused.dtype == error.dtype == np.float64
    assert np.isfinite(fused).all() and np.isfinite(error).all()
    assert planes.min() * (1 - 1e-6) <= fused.min() and fused.max() <= planes.max() * (1 + 1e-6)
    assert np.ptp(fused) > 0.3 * np.ptp(planes)  # not squashed to one value
    assert 0 <= error.min() and 0 < error.max() < np.ptp(planes)


def test_rgba_says_its_alpha_is_dropped(tmp_path, capsys, random_unet):
    import imageio.v3 as iio

    folder = tmp_path / "rgba"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        iio.imwrite(folder / f"p{i}.png", rng.integers(0, 255, (64, 64, 4), dtype=np.uint8))
    out = tmp_path / "fused.tif"
    assert main(["fuse", str(folder), "-o", str(out), "--unet", str(random_unet), "-q"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-vaeedof fuse: warning: ")
    assert "alpha" in lines[0]
    assert tifffile.imread(out).shape == (64, 64, 3)


def test_ctrl_c_is_one_line_exit_130_and_writes_nothing(tmp_path):
    """A real SIGINT to a real CLI process while it fuses tiles."""
    stack = _tiff_stack(tmp_path / "stack.tif", _planes(n=3, size=256))
    out = tmp_path / "fused.tif"
    out.write_bytes(OLD)
    before = _snapshot(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from napari_vaeedof.cli import main; "
         "sys.exit(main())", "fuse", str(stack), "-o", str(out), "--error-map",
         str(tmp_path / "error.tif"), "--tile-size", "64", "--overlap", "16"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stderr.readline()  # one line per finished tile when piped
        assert "tiles 1/" in first, first
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == "napari-vaeedof fuse: interrupted"
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# The writer: all or nothing, and the umask's file mode.

def test_output_set_is_all_or_nothing(tmp_path):
    """The second output cannot be moved into place (a folder of that name appears after the
    checks): the first, already written, is put back as it was; no temporaries are left."""
    first, blocked = tmp_path / "error.tif", tmp_path / "fused.tif"
    first.write_bytes(OLD)
    blocked.mkdir()
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(OSError):
        write_tiffs([(first, image, {}), (blocked, image, {})])
    assert first.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error.tif", "fused.tif"]
    # and when it can: both replaced
    blocked.rmdir()
    write_tiffs([(first, image, {}), (blocked, image + 1, {})])
    assert tifffile.imread(first).max() == 0 and tifffile.imread(blocked).min() == 1


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_new_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_tiffs([(tmp_path / "a.tif", np.zeros((8, 8), np.uint8), {})])
    finally:
        os.umask(old)
    assert (tmp_path / "a.tif").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------
# API: (case id, stack, kwargs, error type, words of the message).

def _stack(dtype=np.uint16, n=3, size=64):
    return _planes(n, size, dtype)


API_ERRORS = [
    ("axis not an integer", _stack(), {"axis": 1.5}, StackError, "axis must be an integer"),
    ("channel_axis a string", np.zeros((2, 3, 32, 32), np.uint8), {"channel_axis": "1"},
     StackError, "channel_axis must be an integer"),
    ("tile_size a float", _stack(), {"tile_size": 64.0}, StackError,
     "tile_size must be an integer"),
    ("tile_size a string", _stack(), {"tile_size": "64"}, StackError,
     "tile_size must be an integer"),
    ("overlap a float", _stack(), {"tile_size": 64, "overlap": 8.5}, StackError,
     "overlap must be an integer"),
    ("batch_size 0", _stack(), {"batch_size": 0}, StackError, "batch_size must be at least 1"),
    ("batch_size -1", _stack(), {"batch_size": -1}, StackError, "batch_size must be at least 1"),
    ("batch_size a float", _stack(), {"batch_size": 2.5}, StackError, "must be an integer"),
    ("overlap over half a tile, one tile", _stack(), {"tile_size": 64, "overlap": 40},
     ValueError, "overlap must be 0 to half the tile"),
    ("negative overlap, one tile", _stack(), {"tile_size": 128, "overlap": -1}, ValueError,
     "overlap must be 0 to half the tile"),
    ("unknown device", _stack(), {"device": "gpu"}, ValueError, "Unknown device"),
    ("meta device", _stack(), {"device": "meta"}, ValueError, "Unknown device"),
    ("unknown precision", _stack(), {"precision": "float64"}, ValueError, "precision"),
    ("unknown mode", _stack(), {"mode": "best"}, ValueError, "mode"),
    ("a file name instead of pixels", "stack.tif", {}, StackError, "read_stack"),
    ("range wider than float64", _wide(_stack(np.float64)), {}, StackError,
     "wider than float64"),
    ("NaN", np.full((2, 32, 32), np.nan), {}, StackError, "NaN"),
    ("huge lazy stack", da.zeros((7, 100_000, 100_000), np.uint16, chunks=(1, 4096, 4096)), {},
     StackError, "of memory"),
]


@pytest.mark.parametrize(("stack", "kwargs", "error", "words"), [c[1:] for c in API_ERRORS],
                         ids=[c[0] for c in API_ERRORS])
def test_api_mistake_gets_one_line(random_unet, stack, kwargs, error, words):
    before = stack.copy() if isinstance(stack, np.ndarray) else None
    t0 = time.perf_counter()
    with pytest.raises(error) as exc:
        fuse_stack(stack, unet_path=random_unet, **kwargs)
    assert time.perf_counter() - t0 < 10  # refused up front, not after minutes of work
    message = str(exc.value)
    assert words in message and "\n" not in message, message
    if before is not None:
        np.testing.assert_array_equal(stack, before)


def test_huge_request_gives_the_numbers():
    stack = da.zeros((7, 100_000, 100_000), np.uint16, chunks=(1, 4096, 4096))
    with pytest.raises(StackError, match=r"needs about [\d.]+ TB of memory .* [\d.]+ [GMT]B is "
                                         r"free") as exc:
        fuse_stack(stack)
    assert "blended output 200.0 GB" in str(exc.value)  # 1e10 px x 5 float32 channels


def test_api_unet_that_is_not_safetensors(tmp_path):
    with pytest.raises(WeightsError, match="not a Fusion U-Net safetensors file"):
        fuse_stack(_stack(), unet_path=_not_safetensors(tmp_path))


def test_api_flipped_unet_is_an_error_not_a_black_image(flipped_unet):
    with pytest.raises(FusionError, match="NaN or infinite"):
        fuse_stack(_stack(np.uint8), unet_path=flipped_unet, tile_size=64, mode="latent")


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("where", ["max", "min"])
def test_64_bit_integers_at_their_limits_do_not_wrap(random_unet, dtype, where):
    """Clipping happened in float64, where int64's max rounds up to 2**63, then the cast
    wrapped: a constant int64-max stack came back as int64 min (issue 16)."""
    value = getattr(np.iinfo(dtype), where)
    steps = np.arange(3 * 32 * 32, dtype=dtype).reshape(3, 32, 32) * dtype(1000)
    near = np.full((3, 32, 32), value, dtype) + (-steps if where == "max" else steps)
    image = fuse_stack(near, unet_path=random_unet).image
    assert image.dtype == dtype
    spacing = abs(np.spacing(float(value)))  # computed in float64: that close, no closer
    assert float(near.min()) - spacing <= float(image.min())
    assert float(image.max()) <= float(near.max()) + spacing
    if where == "max" and dtype == np.int64:
        constant = fuse_stack(np.full((3, 32, 32), value, dtype), unet_path=random_unet).image
        assert np.all(constant == value)


def test_safe_cast_clips_within_the_target_range():
    big = np.array([2.0**63, 2.0**63 + 4096, 1e30, -1e30, -(2.0**63), 3.6, np.inf])
    np.testing.assert_array_equal(
        to_dtype(big, np.int64),
        [np.iinfo(np.int64).max] * 3 + [np.iinfo(np.int64).min] * 2 + [4, np.iinfo(np.int64).max])
    np.testing.assert_array_equal(to_dtype(np.array([2.0**64, -1.0]), np.uint64),
                                  [np.iinfo(np.uint64).max, 0])
    assert to_dtype(np.array([1e6]), np.float16)[0] == np.finfo(np.float16).max


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_input_comes_back_in_its_dtype(random_unet, dtype):
    result = fuse_stack(_stack(dtype), unet_path=random_unet)
    assert result.image.dtype == dtype
    assert result.error.dtype == (np.float64 if dtype == np.float64 else np.float32)


def test_rgba_warns_and_can_keep_alpha(random_unet):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (2, 64, 64, 4), dtype=np.uint8)
    with pytest.warns(UserWarning, match="alpha channel is not fused"):
        result = fuse_stack(rgba, unet_path=random_unet)
    assert result.image.shape == (64, 64, 3) and "alpha" in result.metadata
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = fuse_stack(rgba, unet_path=random_unet, rgb=False, channel_axis=-1).image
    assert kept.shape == (64, 64, 4)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_slow_cpu_precision_warns(random_unet, precision):
    native = cpu_has_fp16() if precision == "float16" else cpu_has_bf16()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fuse_stack(_stack(size=32, n=2), unet_path=random_unet, device="cpu",
                   precision=precision, error_map=False, mode="latent")
    slow = [w for w in seen if "no native" in str(w.message)]
    assert len(slow) == (0 if native else 1), [str(w.message) for w in seen]


# ---------------------------------------------------------------------------------------------
# The napari reader: a path it claims but cannot read gets None, and nothing is written.

def _list_with_corrupt(tmp):
    folder = _corrupt_png_folder(tmp)
    return [str(p) for p in sorted(folder.iterdir())]


def _list_with_missing(tmp):
    good = tmp / "a.tif"
    tifffile.imwrite(good, np.zeros((16, 16), np.uint8))
    return [str(good), str(tmp / "missing.tif")]


def _list_with_a_stack(tmp):  # several files, one of them a whole stack
    a = _tiff_stack(tmp / "a.tif", _planes())
    tifffile.imwrite(tmp / "b.tif", _planes()[0])
    return [str(a), str(tmp / "b.tif")]


READER_CASES = [
    ("folder, planes of different shapes", lambda t: str(_mismatched_folder(t))),
    ("folder with a corrupt png", lambda t: str(_corrupt_png_folder(t))),
    ("files, one corrupt", _list_with_corrupt),
    ("files, one missing", _list_with_missing),
    ("files, one a whole stack", _list_with_a_stack),
    ("tiff, samples not planes", lambda t: str(_syx(t))),
    ("one png", lambda t: str(_corrupt_png_folder(t) / "p1.png")),
]


@pytest.mark.parametrize("build", [c[1] for c in READER_CASES], ids=[c[0] for c in READER_CASES])
def test_reader_returns_none_and_touches_nothing(tmp_path, build):
    path = build(tmp_path)
    before = _snapshot(tmp_path)
    assert get_reader(path) is None
    assert _snapshot(tmp_path) == before


def test_zarr_output_of_a_failed_fusion_leaves_the_old_store(tmp_path, flipped_unet,
                                                            random_unet):
    import zarr

    from napari_vaeedof import fuse_to_zarr

    path = tmp_path / "fused.ome.zarr"
    fuse_to_zarr(_stack(np.uint8), path, unet_path=random_unet, tile_size=64)
    before = zarr.open_group(path, mode="r")["0"][:]
    with pytest.raises(FusionError, match="NaN or infinite"):
        fuse_to_zarr(_stack(np.uint8), path, unet_path=flipped_unet, tile_size=64,
                     mode="latent")
    np.testing.assert_array_equal(zarr.open_group(path, mode="r")["0"][:], before)
    assert [p.name for p in tmp_path.iterdir()] == ["fused.ome.zarr"]  # no temporary stores
