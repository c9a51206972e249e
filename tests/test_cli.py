import json

import numpy as np
import tifffile

from napari_vaeedof.cli import main


def _stack_file(tmp_path):
    from napari_vaeedof.data.synth import make_stack, quantize

    planes = quantize(make_stack(7, size=64, n_planes=3, gray=True).planes[..., 0], np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, planes, imagej=True, resolution=(2, 2),
                     metadata={"unit": "um", "axes": "ZYX", "spacing": 2.5})
    return path, planes


def test_fuse_writes_fused_and_error_map_with_resolution(tmp_path, random_unet):
    path, _planes = _stack_file(tmp_path)
    out, err = tmp_path / "fused.tif", tmp_path / "error.tif"
    args = ["fuse", str(path), "-o", str(out), "--error-map", str(err), "--unet", str(random_unet)]
    assert main([*args, "-q"]) == 0
    fused = tifffile.imread(out)
    assert fused.shape == (64, 64) and fused.dtype == np.uint16
    assert tifffile.imread(err).dtype == np.float32
    with tifffile.TiffFile(out) as tif:
        assert tif.imagej_metadata["unit"] == "micron"
        assert '"n_planes": 3' in tif.imagej_metadata["Info"]
        x = tif.pages[0].tags["XResolution"].value
        assert x[0] / x[1] == 2


def test_fuse_writes_depth_and_fill_maps_in_z_units(tmp_path, random_unet):
    path, _planes = _stack_file(tmp_path)
    out, depth, fill = tmp_path / "fused.tif", tmp_path / "depth.tif", tmp_path / "fill.tif"
    assert main(["fuse", str(path), "-o", str(out), "--depth-map", str(depth), "--fill-map",
                 str(fill), "--unet", str(random_unet), "-q"]) == 0
    d, f = tifffile.imread(depth), tifffile.imread(fill)
    assert d.shape == f.shape == (64, 64) and d.dtype == np.float32
    assert 0 <= d.min() and d.max() <= 5.0  # 3 planes 2.5 um apart
    assert 0 <= f.min() and f.max() <= 1
    with tifffile.TiffFile(depth) as tif:
        info = json.loads(tif.imagej_metadata["Info"])
    assert info["output"] == "depth" and info["depth_unit"] in ("µm", "um", "micron")
    assert main(["fuse", str(path), "-o", str(tmp_path / "b.tif"), "--mode", "latent",
                 "--fill-map", str(tmp_path / "f2.tif")]) == 2
    assert not (tmp_path / "b.tif").exists() and not (tmp_path / "f2.tif").exists()


def test_bad_input_writes_nothing_and_exits_2(tmp_path, capsys):
    out = tmp_path / "fused.tif"
    bad = tmp_path / "flat.tif"
    tifffile.imwrite(bad, np.zeros((1, 32, 32), np.uint8))
    assert main(["fuse", str(bad), "-o", str(out)]) == 2
    message = capsys.readouterr().err
    assert "error:" in message and "single plane" in message
    assert not out.exists()


def test_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "fused.tif"
    out.write_bytes(b"previous good result")
    assert main(["fuse", str(tmp_path / "missing.tif"), "-o", str(out)]) == 2
    assert out.read_bytes() == b"previous good result"
