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


def test_no_fill_is_recorded_and_refused_in_latent_mode(tmp_path, random_unet, capsys):
    path, _planes = _stack_file(tmp_path)
    out, fill = tmp_path / "fused.tif", tmp_path / "fill.tif"
    assert main(["fuse", str(path), "-o", str(out), "--fill-map", str(fill), "--no-fill",
                 "--unet", str(random_unet), "-q"]) == 0
    assert tifffile.imread(fill).max() == 0
    with tifffile.TiffFile(out) as tif:
        assert json.loads(tif.imagej_metadata["Info"])["fill"] is False
    capsys.readouterr()
    assert main(["fuse", str(path), "-o", str(tmp_path / "b.tif"), "--mode", "latent",
                 "--no-fill"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fill=False needs mode='pixel'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b.tif").exists()


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


def test_piped_progress_is_one_plain_line_per_tile(tmp_path, random_unet, capsys):
    from napari_vaeedof.data.synth import make_stack, quantize

    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, quantize(make_stack(7, size=(64, 128), n_planes=3, gray=True)
                                    .planes[..., 0], np.uint8), imagej=True,
                    metadata={"axes": "ZYX"})
    assert main(["fuse", str(path), "-o", str(tmp_path / "f.tif"), "--unet", str(random_unet),
                 "--tile-size", "64"]) == 0
    err = capsys.readouterr().err  # not a terminal here
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(" done")[0] for line in lines[:-1]] == ["tiles 1/3", "tiles 2/3",
                                                               "tiles 3/3"]
    assert "elapsed" in lines[0] and lines[-1].startswith("fused 3x64x128 uint8")


def test_weights_reports_missing_files_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VAEEDOF_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("VAEEDOF_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "taef2_encoder.pth: MISSING" in out and "taef2_decoder.pth: MISSING" in out
    assert f"looked in {tmp_path / 'cache' / 'weights'}: not there" in out
    assert "napari-vaeedof weights --fetch" in out
    assert "https://github.com/madebyollin/taesd/raw/" in out


def test_weights_found_in_the_weights_dir(weights_dir, capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert f"taef2_encoder.pth: found {weights_dir / 'taef2_encoder.pth'}" in out
    assert "All weights are in place." in out


def test_weights_fetch_that_fails_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VAEEDOF_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("VAEEDOF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAEEDOF_WEIGHTS_URL", "http://127.0.0.1:9/")  # discard port: refused
    assert main(["weights", "--fetch"]) == 2
    assert "Could not download" in capsys.readouterr().err


def test_batch_equals_fuse_skips_on_rerun(tmp_path, batch_inputs, batch_matches_fuse,
                                          random_unet, capsys):
    inputs = batch_inputs
    out = tmp_path / "out" / "new"  # created
    opts = ["--unet", str(random_unet), "--tile-size", "64"]
    assert main(["batch", *map(str, inputs), "--out-dir", str(out), "--error-maps", *opts]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["[1/3] alpha", "[2/3] beta",
                                                          "[3/3] gamma"]
    assert all(" fused in " in line for line in lines[:3])
    assert lines[-1] == "3 stacks: 3 fused, 0 skipped, 0 failed"
    batch_matches_fuse(inputs, out, opts)
    for name in ("alpha", "beta", "gamma"):
        assert tifffile.imread(out / f"{name}_error.tif").dtype == np.float32
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["batch", *map(str, inputs), "--out-dir", str(out), "--error-maps", *opts]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert all("skipped (exists)" in line for line in lines[:3])
    assert lines[-1] == "3 stacks: 0 fused, 3 skipped, 0 failed"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_batch_one_bad_stack_fails_alone_and_exits_2(tmp_path, batch_inputs, random_unet,
                                                     capsys):
    inputs = batch_inputs
    bad = tmp_path / "in" / "flat.tif"
    tifffile.imwrite(bad, np.zeros((1, 64, 64), np.uint8))
    out = tmp_path / "out"
    (out).mkdir()
    (out / "flat.tif").write_bytes(b"previous result")  # not a TIFF: redone, and kept on failure
    args = ["batch", str(inputs[0]), str(bad), str(inputs[2]), "--out-dir", str(out),
            "--unet", str(random_unet), "--tile-size", "64"]
    assert main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("[2/3] flat: failed: ") and "single plane" in lines[1]
    assert lines[-1] == "3 stacks: 2 fused, 0 skipped, 1 failed"
    assert (out / "alpha.tif").is_file() and (out / "gamma.tif").is_file()
    assert (out / "flat.tif").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["alpha.tif", "flat.tif", "gamma.tif"]


def test_batch_refuses_duplicate_names_before_any_work(tmp_path, batch_inputs, capsys):
    inputs = batch_inputs
    other = tmp_path / "other" / "alpha.tif"
    other.parent.mkdir()
    other.write_bytes(inputs[0].read_bytes())
    out = tmp_path / "out"
    assert main(["batch", str(inputs[0]), str(other), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("napari-vaeedof batch: error: ")
    assert "alpha.tif" in err[0] and not out.exists()


def test_fuse_to_ome_zarr_equals_the_tiff(tmp_path, batch_inputs, random_unet, capsys):
    import zarr

    opts = ["--unet", str(random_unet), "--tile-size", "64", "-q"]
    plain = batch_inputs[2]
    assert main(["fuse", str(plain), "-o", str(tmp_path / "f.tif"), *opts]) == 0
    assert main(["fuse", str(plain), "-o", str(tmp_path / "f.ome.zarr"), "--depth-map",
                 str(tmp_path / "d.ome.zarr"), *opts]) == 0
    got = zarr.open_group(tmp_path / "f.ome.zarr", mode="r")["0"][:]
    want = tifffile.imread(tmp_path / "f.tif")
    assert got.dtype == want.dtype and np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert zarr.open_group(tmp_path / "d.ome.zarr", mode="r")["0"].shape == (64, 64)
    assert main(["fuse", str(plain), "-o", str(tmp_path / "g.ome.zarr"), "--depth-map",
                 str(tmp_path / "d.tif"), *opts]) == 2
    assert "in the format of -o" in capsys.readouterr().err
    assert not (tmp_path / "g.ome.zarr").exists()


def test_batch_to_ome_zarr_skips_complete_stores(tmp_path, batch_inputs, random_unet, capsys):
    out = tmp_path / "out"
    args = ["batch", *map(str, batch_inputs), "--out-dir", str(out), "--zarr", "--fill-maps",
            "--unet", str(random_unet), "--tile-size", "64"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "alpha.ome.zarr", "alpha_fill.ome.zarr", "beta.ome.zarr", "beta_fill.ome.zarr",
        "gamma.ome.zarr", "gamma_fill.ome.zarr"]
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().err.splitlines()[-1] == "3 stacks: 0 fused, 3 skipped, 0 failed"
