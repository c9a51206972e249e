import os
import stat
import sys

import numpy as np
import pytest
import tifffile

from napari_vaeedof.engine.stack import StackError
from napari_vaeedof.io import read_stack, write_tiff


def test_imagej_stack_keeps_pixel_size_unit_and_z_spacing(tmp_path):
    z = np.random.default_rng(0).integers(0, 60000, (4, 32, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", z, imagej=True, resolution=(4, 2),
                     metadata={"unit": "um", "spacing": 2.5, "axes": "ZYX"})
    f = read_stack(tmp_path / "z.tif")
    assert f.axes == "ZYX" and f.axis == 0 and f.channel_axis is None
    assert f.pixel_size == (0.5, 0.25) and f.unit == "µm" and f.z_spacing == 2.5
    np.testing.assert_array_equal(f.data, z)


def test_ome_tiff_channel_and_focus_axes(tmp_path):
    data = np.zeros((2, 5, 32, 40), np.uint16)
    tifffile.imwrite(tmp_path / "s.ome.tif", data, metadata={
        "axes": "CZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5})
    f = read_stack(tmp_path / "s.ome.tif")
    assert (f.axis, f.channel_axis) == (1, 0)
    assert f.pixel_size == (0.3, 0.3) and f.z_spacing == 1.5


def test_folder_of_planes_in_natural_order(tmp_path):
    import imageio.v3 as iio

    for i in (10, 2, 1):
        iio.imwrite(tmp_path / f"p{i}.png", np.full((16, 24, 3), i, np.uint8))
    f = read_stack(tmp_path)
    assert f.data.shape == (3, 16, 24, 3) and f.channel_axis == 3
    assert [int(p[0, 0, 0]) for p in f.data] == [1, 2, 10]


@pytest.mark.parametrize("what", ["missing", "empty folder", "single png", "not an image"])
def test_unreadable_inputs_get_a_message(tmp_path, what):
    if what == "missing":
        target = tmp_path / "nope.tif"
    elif what == "empty folder":
        target = tmp_path
    elif what == "single png":
        import imageio.v3 as iio

        target = tmp_path / "one.png"
        iio.imwrite(target, np.zeros((8, 8), np.uint8))
    else:
        target = tmp_path / "bad.tif"
        target.write_bytes(b"this is not a tiff")
    with pytest.raises(StackError) as err:
        read_stack(target)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("shape", [(32, 40), (32, 40, 3)])
def test_written_tiff_keeps_pixel_size(tmp_path, shape):
    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    path = write_tiff(tmp_path / "out.tif", image, pixel_size=(0.5, 0.25), unit="µm", info="x")
    np.testing.assert_array_equal(tifffile.imread(path), image)
    with tifffile.TiffFile(path) as tif:
        from napari_vaeedof.io import _tiff_resolution

        assert _tiff_resolution(tif)[:2] == ((0.5, 0.25), "µm")
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]  # no temporary left behind


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_written_tiff_mode_follows_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path):
    image = np.zeros((8, 8), np.uint8)
    before = os.umask(0o022)
    try:
        a = write_tiff(tmp_path / "a.tif", image)
        os.umask(0o002)
        b = write_tiff(tmp_path / "b.tif", image)
        os.chmod(a, 0o640)
        write_tiff(a, image + 1)  # replaced: keeps the mode it had
    finally:
        os.umask(before)
    assert stat.S_IMODE(b.stat().st_mode) == 0o664
    assert stat.S_IMODE(a.stat().st_mode) == 0o640 and tifffile.imread(a).max() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]  # no temp files


def test_uncompressed_tiff_is_read_lazily_and_read_only(tmp_path):
    """An uncompressed stack is memory-mapped (tiles read only their pixels) and cannot be
    written through; a compressed one is read whole; both give the same pixels."""
    planes = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    tifffile.imwrite(tmp_path / "raw.tif", planes, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "zip.tif", planes, metadata={"axes": "ZYX"}, compression="zlib")
    raw, packed = read_stack(tmp_path / "raw.tif"), read_stack(tmp_path / "zip.tif")
    assert isinstance(raw.data, np.memmap) and not raw.data.flags.writeable
    assert not isinstance(packed.data, np.memmap)
    np.testing.assert_array_equal(raw.data, planes)
    np.testing.assert_array_equal(packed.data, planes)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_lazy_tiff_is_dask_read_by_chunk_and_pickles_as_its_path(tmp_path, compression):
    import pickle

    import dask.array as da
    from dask.base import tokenize

    planes = (np.arange(3 * 70 * 90 * 3) % 251).astype(np.uint8).reshape(3, 70, 90, 3)
    path = tmp_path / "s.tif"
    tiles = {"tile": (32, 32)} if compression else {}
    tifffile.imwrite(path, planes, photometric="rgb", compression=compression, **tiles)
    lazy = read_stack(path, lazy=True)
    assert isinstance(lazy.data, da.Array) and (lazy.axis, lazy.channel_axis) == (0, 3)
    np.testing.assert_array_equal(lazy.data[1, 10:50, 20:80].compute(), planes[1, 10:50, 20:80])
    np.testing.assert_array_equal(lazy.data.compute(), read_stack(path).data)
    blob = pickle.dumps(lazy.data)
    assert len(blob) < 20_000  # the path and the graph, not 57 kB of pixels
    before = tokenize(lazy.data)
    tifffile.imwrite(path, planes[::-1], photometric="rgb", compression=compression, **tiles)
    os.utime(path, ns=(1, 1))  # another modification time, as a rewrite would give
    assert tokenize(read_stack(path, lazy=True).data) != before  # never the old file's keys


def test_ome_zarr_outputs_are_written_all_or_nothing(tmp_path):
    import dask.array as da
    import zarr

    from napari_vaeedof.io import write_ome_zarrs

    image = np.arange(2 * 40 * 50, dtype=np.uint16).reshape(2, 40, 50)
    depth = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50)
    a, b = tmp_path / "a.ome.zarr", tmp_path / "b.ome.zarr"
    write_ome_zarrs([(a, image, {"pixel_size": (0.5, 0.25), "unit": "µm", "info": '{"k": 1}'}),
                     (b, da.from_array(depth, chunks=16), {})], chunk=16)
    group = zarr.open_group(a, mode="r")
    np.testing.assert_array_equal(group["0"][:], image)
    ms = group.attrs["ome"]["multiscales"][0]
    assert [x["name"] for x in ms["axes"]] == ["c", "y", "x"]
    assert ms["axes"][1]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.25]
    assert group.attrs["napari_vaeedof"] == {"k": 1}
    np.testing.assert_array_equal(zarr.open_group(b, mode="r")["0"][:], depth)

    def fail(block):
        raise OSError("disk full")

    broken = da.from_array(depth, chunks=16).map_blocks(fail, dtype=np.float32)
    with pytest.raises(OSError, match="disk full"):
        write_ome_zarrs([(a, image[:, ::-1], {}), (b, broken, {})], chunk=16)
    np.testing.assert_array_equal(zarr.open_group(a, mode="r")["0"][:], image)  # unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.zarr", "b.ome.zarr"]
