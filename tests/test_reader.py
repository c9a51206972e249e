"""The npe2 reader: z-stack TIFFs, OME-TIFFs and folders of planes -> layers with scale/units."""

from __future__ import annotations

import npe2
import numpy as np
import pytest
import tifffile

from napari_vaeedof._reader import get_reader


def _read(path):
    """Through npe2, as napari does, restricted to this plugin."""
    npe2.PluginManager.instance().discover(include_npe1=False)  # as napari does at startup
    return npe2.read([str(path)], stack=False, plugin_name="napari-vaeedof")


@pytest.fixture
def imagej_stack(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (4, 40, 48), dtype=np.uint16)
    path = tmp_path / "zstack.tif"
    # pixel size y = 0.5 um, x = 0.25 um, z spacing 2 um
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
    )
    return path, data


@pytest.fixture
def ome_stack(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (2, 3, 32, 36), dtype=np.uint8)  # C, Z, Y, X
    path = tmp_path / "channels.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 1.5,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "µm",
        },
    )
    return path, data


def test_imagej_zstack_scale_units_labels(imagej_stack):
    path, data = imagej_stack
    assert get_reader(str(path)) is not None
    [(out, kwargs, kind)] = _read(path)
    assert kind == "image"
    np.testing.assert_array_equal(out, data)
    assert out.dtype == np.uint16
    np.testing.assert_allclose(kwargs["scale"], (2.0, 0.5, 0.25))
    assert kwargs["units"] == ("µm", "µm", "µm")
    assert kwargs["axis_labels"] == ("z", "y", "x")
    assert kwargs["rgb"] is False and "channel_axis" not in kwargs
    assert kwargs["name"] == "zstack"
    assert kwargs["metadata"]["source"] == [str(path)]
    assert kwargs["metadata"]["axes"] == "ZYX"
    assert kwargs["metadata"]["focus_axis"] == 0


def test_ome_czyx_splits_channels(ome_stack):
    path, data = ome_stack
    [(out, kwargs, _)] = _read(path)
    np.testing.assert_array_equal(out, data)
    assert kwargs["channel_axis"] == 0
    assert kwargs["name"] == ["channels ch0", "channels ch1"]
    for scale in kwargs["scale"]:  # one entry per channel, each for (z, y, x)
        np.testing.assert_allclose(scale, (1.5, 0.3, 0.2))
    assert kwargs["units"] == [("µm", "µm", "µm")] * 2
    assert kwargs["axis_labels"] == [("z", "y", "x")] * 2
    assert [m["channel"] for m in kwargs["metadata"]] == [0, 1]
    assert kwargs["metadata"][0]["axes"] == "CZYX"


@pytest.mark.viewer
def test_ome_channels_become_grayscale_stack_layers(make_napari_viewer, ome_stack):
    path, data = ome_stack
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-vaeedof")
    assert [layer.name for layer in layers] == ["channels ch0", "channels ch1"]
    for c, layer in enumerate(layers):
        assert layer.data.shape == (3, 32, 36) and not layer.rgb
        np.testing.assert_array_equal(layer.data, data[c])
        np.testing.assert_allclose(layer.scale, (1.5, 0.3, 0.2))
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
        assert tuple(layer.axis_labels) == ("z", "y", "x")


def test_folder_of_png_planes_is_an_rgb_stack(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(2)
    planes = rng.integers(0, 255, (3, 24, 30, 3), dtype=np.uint8)
    folder = tmp_path / "planes"
    folder.mkdir()
    for i, plane in enumerate(planes):  # natural order: 2 before 10
        iio.imwrite(folder / f"plane_{[2, 10, 11][i]}.png", plane)
    assert get_reader(str(folder)) is not None
    [(out, kwargs, _)] = _read(folder)
    np.testing.assert_array_equal(out, planes)
    assert kwargs["rgb"] is True
    assert kwargs["name"] == "planes"
    assert kwargs["axis_labels"] == ("z", "y", "x")
    np.testing.assert_allclose(kwargs["scale"], (1, 1, 1))
    assert "units" not in kwargs  # PNGs carry no pixel size


def test_not_a_stack_returns_none(tmp_path):
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, np.zeros((16, 16), np.uint16))
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    other = tmp_path / "plane.png"
    other.write_bytes(b"")
    for path in (single, rgb, garbage, empty, other, tmp_path / "missing.tif"):
        assert get_reader(str(path)) is None, path


@pytest.mark.viewer
@pytest.mark.parametrize("filename", ["pcb board.tiff", "PCB.v2.OME.TIF"])
def test_a_single_tiff_opens_as_one_layer_named_after_the_file(make_napari_viewer, tmp_path,
                                                               filename):
    path = tmp_path / filename
    data = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    if "OME" in filename:
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX"})
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-vaeedof")
    assert layer.name == filename.rsplit(".OME", 1)[0].removesuffix(".tiff")
    np.testing.assert_array_equal(layer.data, data)
