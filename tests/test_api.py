import dask.array as da
import numpy as np
import pytest
import torch

from napari_vaeedof import FusionCancelled, StackError, fuse_stack, iter_fuse_stack
from napari_vaeedof.data.synth import make_stack, quantize
from napari_vaeedof.engine.tiling import TileGrid
from napari_vaeedof.evaluation.seams import seam_report


@pytest.fixture(scope="module")
def rgb_stack() -> np.ndarray:
    return make_stack(3, size=96, n_planes=3, kind="photo", gray=False).planes


def _inputs(planes: np.ndarray):
    """Every supported input kind built from one float RGB stack: (name, stack, kwargs, out)."""
    gray = planes.mean(-1)
    u16 = (gray * 30000 + 1000).astype(np.uint16)
    rgb8 = quantize(planes, np.uint8)
    rgba = np.concatenate([rgb8, np.full((*rgb8.shape[:-1], 1), 255, np.uint8)], -1)
    two_channel = np.stack([u16, (u16 // 2).astype(np.uint16)])  # (C, Z, Y, X)
    _z, y, x = gray.shape
    return [
        ("gray uint8", quantize(gray, np.uint8), {}, (y, x)),
        ("gray uint16", u16, {}, (y, x)),
        ("gray float32", gray.astype(np.float32) * 7 - 2, {}, (y, x)),
        ("gray float64 focus last", np.moveaxis(gray, 0, -1), {"axis": -1}, (y, x)),
        ("rgb uint8", rgb8, {}, (y, x, 3)),
        ("rgba uint8", rgba, {}, (y, x, 3)),
        ("czyx uint16", two_channel, {"axis": 1, "channel_axis": 0}, (2, y, x)),
        ("zcyx uint16", np.moveaxis(two_channel, 0, 1), {"channel_axis": 1}, (2, y, x)),
        ("dask uint16", da.from_array(u16, chunks=(1, 48, 48)), {}, (y, x)),
        ("list of planes", list(u16), {}, (y, x)),
    ]


@pytest.mark.parametrize("index", range(10))
def test_every_input_kind_round_trips_shape_dtype_and_range(rgb_stack, random_unet, index):
    name, stack, kwargs, out_shape = _inputs(rgb_stack)[index]
    result = fuse_stack(stack, unet_path=random_unet, tile_size=64, **kwargs)
    arr = np.asarray(np.stack(stack) if isinstance(stack, list) else stack)
    assert result.image.shape == out_shape, name
    assert result.image.dtype == arr.dtype, name  # float16 and float64 too
    lo, hi = float(np.min(arr)), float(np.max(arr))
    assert lo - 1e-3 <= result.image.min() and result.image.max() <= hi + 1e-3, name
    assert np.ptp(result.image.astype(np.float64)) > 0.3 * (hi - lo), name  # not squashed
    map_shape = out_shape if "yx uint16" in name else out_shape[:2]
    for m in (result.error, result.depth, result.confidence, result.fill):
        assert m.shape == map_shape and m.dtype == np.float32, name
    n_planes = arr.shape[kwargs.get("axis", 0)]
    assert 0 <= result.depth.min() and result.depth.max() <= n_planes - 1, name
    assert 0 <= result.fill.min() and result.fill.max() <= 1, name


def test_pixel_mode_keeps_the_planes_own_values_where_nothing_is_filled():
    """Shipped weights, several tiles, float input outside [0, 1] (clipped for the models):
    where the fill map is 0 every output value lies between the planes' values at that pixel
    (input values, not their clipped copies)."""
    planes = make_stack(12, size=128, n_planes=2, kind="photo", gray=False).planes
    stack = planes.astype(np.float64) * 7 - 2
    stack[:, :8, :8] = 9.0  # far above the normalisation's percentile: clipped for the models
    result = fuse_stack(stack, tile_size=64, precision="float32", error_map=False)
    free = result.fill == 0
    assert free.mean() > 0.5  # most of a two-plane photo stack is in focus in some plane
    img = result.image.astype(np.float64)
    assert np.all(img[free] >= stack.min(0)[free] - 1e-4)
    assert np.all(img[free] <= stack.max(0)[free] + 1e-4)


def test_pixel_mode_tiles_leave_no_seam():
    """Band composition in tiles (192 px, overlap 48) against one 384 px tile: the pyramid's
    support (about 30 px at 3 levels) lies within the overlap, so no extra gradient along the
    tile borders (bound as in test_tiling_leaves_no_seam)."""
    stack = quantize(make_stack(5, size=384, n_planes=3, kind="photo").planes, np.uint8)
    kw = dict(precision="float32", error_map=False, mode="pixel")
    untiled = fuse_stack(stack, tile_size=384, **kw).image
    tiled = fuse_stack(stack, tile_size=192, overlap=48, **kw).image
    report = seam_report(tiled, untiled, TileGrid.build(384, 384, 192, 48))
    print(report)
    assert report["border_excess"] < 1.05


def test_depth_is_in_the_given_z_units_and_latent_mode_has_none(random_unet):
    planes = make_stack(2, size=64, n_planes=3, gray=True).planes[..., 0]
    result = fuse_stack(planes, unet_path=random_unet, z_positions=[10.0, 12.5, 15.0])
    assert 10 <= result.depth.min() and result.depth.max() <= 15
    assert result.metadata["mode"] == "pixel"
    latent = fuse_stack(planes, unet_path=random_unet, mode="latent")
    assert latent.depth is latent.fill is latent.confidence is None
    assert latent.metadata["mode"] == "latent"
    with pytest.raises(StackError, match="z_positions"):
        fuse_stack(planes, unet_path=random_unet, z_positions=[0, 1])
    with pytest.raises(ValueError, match="mode"):
        fuse_stack(planes, unet_path=random_unet, mode="best")


def test_16_bit_in_gives_16_bit_range_out(random_unet):
    planes = make_stack(1, size=64, n_planes=2, gray=True).planes[..., 0]
    stack = (planes * 20000 + 40000).astype(np.uint16)
    result = fuse_stack(stack, unet_path=random_unet)
    assert result.image.dtype == np.uint16
    assert result.image.min() >= 39000 and result.image.max() > 50000


def test_error_map_is_in_the_input_intensity_units(random_unet):
    planes = make_stack(2, size=64, n_planes=2, gray=True).planes[..., 0]
    small = fuse_stack((planes * 100).astype(np.float32), unet_path=random_unet).error
    large = fuse_stack((planes * 10000).astype(np.float32), unet_path=random_unet).error
    np.testing.assert_allclose(large, small * 100, rtol=1e-3, atol=1e-3)


def test_progress_is_reported_within_tiles_and_metadata_says_what_ran(random_unet,
                                                                      random_selection):
    stack = make_stack(4, size=160, n_planes=2).planes
    seen = []
    # a head of kind "latents": every plane is encoded, then fused (its fill fires here)
    result = fuse_stack(stack, unet_path=random_unet, selection_path=random_selection,
                        tile_size=64, overlap=16, progress=seen.append)
    n = result.metadata["n_tiles"]
    assert n == len(TileGrid.build(160, 160, 64, 16)) > 1
    ends = [(p.tiles_done, p.n_tiles) for p in seen if p.event in ("start", "tile")]
    assert ends == [(i, n) for i in range(n + 1)]
    # within each tile: the encoder batch, the U-Net call (only in a tile with fill), the
    # composed image
    tiles = [t.split() for t in " ".join(p.event for p in seen[1:]).split("tile") if t.strip()]
    assert all(t in (["encode", "fuse", "compose"], ["encode", "compose"]) for t in tiles)
    assert ["encode", "fuse", "compose"] in tiles
    assert [p.activity for p in seen[:2]] == [
        "encoding planes (0 of 2 done)", "fusing groups of planes (0 of 1 done)"]
    fused = next(i for i, p in enumerate(seen) if p.event == "fuse")
    assert seen[fused].activity == "composing the fused image"
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    assert 0 < seen[1].fraction < 1 / n and seen[-1].remaining == 0
    meta = result.metadata
    assert meta["n_planes"] == 2 and meta["unet_calls_per_unit"] == 1
    assert set(meta["weights_sha256"]) == {"taef2_encoder", "taef2_decoder", "fusion_unet",
                                           "selection_net"}  # pixel mode: all four files


def test_progress_with_a_bands_head_reports_the_fill_and_stays_monotonic(
        random_unet, random_bands_selection):
    seen = []
    result = fuse_stack(make_stack(4, size=160, n_planes=3).planes, unet_path=random_unet,
                        selection_path=random_bands_selection, tile_size=64, overlap=16,
                        progress=seen.append)
    assert result.metadata["selection_inputs"] == "bands"
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    # no planes are encoded up front: the VAE runs (if at all) for the fill, then the compose
    tiles = " ".join(p.event for p in seen).split("tile")
    for events in tiles[:-1]:
        names = events.replace("start", "").split()
        assert names[-1] == "compose" and set(names[:-1]) <= {"encode", "fuse"}
    assert {p.activity for p in seen if p.event in ("encode", "fuse")} <= {
        "filling where no plane holds the content"}
    assert seen[0].activity == "composing the fused image"


def test_progress_reports_the_latent_error_maps_decoder_batches(random_unet):
    seen = []
    fuse_stack(make_stack(4, size=64, n_planes=3).planes, unet_path=random_unet, mode="latent",
               batch_size=2, progress=seen.append)
    assert [p.event for p in seen] == ["start", "encode", "encode", "fuse", "compose", "decode",
                                       "decode", "tile"]
    assert seen[4].activity == "decoding planes for the error map (0 of 3 done)"
    assert seen[6].activity == "finishing the tile" and seen[6].fraction < seen[7].fraction == 1


def test_fusion_cancelled_raised_by_progress_stops_within_a_tile(random_unet):
    stack = make_stack(4, size=64, n_planes=10).planes  # one tile, five encoder batches of 2
    seen = []

    def progress(p):
        seen.append(p.event)
        if p.event == "encode":
            raise FusionCancelled

    with pytest.raises(FusionCancelled):
        fuse_stack(stack, unet_path=random_unet, batch_size=2, mode="latent",
                   progress=progress)
    assert seen == ["start", "encode"]


def test_default_tile_size_comes_from_the_plane_size(random_unet):
    result = fuse_stack(make_stack(4, size=(96, 200), n_planes=2).planes, unet_path=random_unet,
                        error_map=False)
    assert result.metadata["tile_size"] == 224 and result.metadata["n_tiles"] == 1


def test_closing_the_iterator_stops_between_tiles(random_unet):
    gen = iter_fuse_stack(make_stack(4, size=160, n_planes=2).planes, unet_path=random_unet,
                          tile_size=64, overlap=16)
    n = len(TileGrid.build(160, 160, 64, 16))
    assert next(gen) == (0, n)
    assert next(gen) == (1, n)
    gen.close()  # what the plugin's Cancel does
    with pytest.raises(StopIteration):
        next(gen)


def test_input_is_not_modified(random_unet):
    stack = quantize(make_stack(5, size=64, n_planes=3).planes, np.uint8)
    before = stack.copy()
    fuse_stack(stack, unet_path=random_unet)
    np.testing.assert_array_equal(stack, before)


@pytest.mark.parametrize(
    ("stack", "kwargs", "message"),
    [
        (np.zeros((1, 32, 32), np.uint8), {}, "at least two planes"),
        (np.zeros((2, 0, 32), np.uint8), {}, "empty"),
        (np.full((2, 32, 32), np.nan, np.float32), {}, "NaN"),
        (np.zeros((2, 3, 32, 32), np.uint8), {}, "channel_axis"),
        ([np.zeros((32, 32)), np.zeros((32, 33))], {}, "Plane 1 has shape"),
        (np.zeros((2, 32, 32), bool), {}, "Unsupported dtype"),
    ],
)
def test_bad_input_gets_a_one_line_message(stack, kwargs, message, random_unet):
    with pytest.raises(StackError, match=message) as err:
        fuse_stack(stack, unet_path=random_unet, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_tiling_leaves_no_seam():
    """1024 px, untiled versus 256 px tiles (quarter overlap), shipped weights, latent mode
    (every pixel decoded: where tiling could show most).

    Tiles see less context than the whole plane (GroupNorm statistics in the VAE and U-Net,
    attention), so outputs differ a little everywhere: measured mean |diff| 3.4 and p99 16 (of
    255). A seam would show as extra gradient across tile borders: measured border_excess
    1.004; a step of 0.5 grey levels along the borders already gives 1.05
    (tests/test_seams.py), the bound.
    """
    stack = quantize(make_stack(11, size=1024, n_planes=3, kind="photo").planes, np.uint8)
    untiled = fuse_stack(stack, tile_size=1024, precision="float32", error_map=False,
                         mode="latent").image
    tiled = fuse_stack(stack, tile_size=256, overlap=64, precision="float32",
                       error_map=False, mode="latent").image
    report = seam_report(tiled, untiled, TileGrid.build(1024, 1024, 256, 64))
    print(report)
    assert report["mean_abs_diff"] < 5
    assert report["p99_abs_diff"] < 24
    assert report["border_excess"] < 1.05


def test_another_selection_head_is_used_and_recorded(tmp_path):
    """selection_path replaces the packaged head: its sha256 is in the metadata and the output
    follows it (an untrained head chooses differently)."""
    from napari_vaeedof.models.selection_net import SelectionNet, save_selection
    from napari_vaeedof.models.weights import sha256_of

    head = tmp_path / "head.safetensors"
    torch.manual_seed(0)
    save_selection(SelectionNet(), head)
    planes = make_stack(3, size=64, n_planes=3).planes
    other = fuse_stack(planes, selection_path=head, precision="float32", error_map=False)
    shipped = fuse_stack(planes, precision="float32", error_map=False)
    assert other.metadata["weights_sha256"]["selection_net"] == sha256_of(head)
    assert shipped.metadata["weights_sha256"]["selection_net"] != sha256_of(head)
    assert not np.allclose(other.depth, shipped.depth)


def _tile_keys(stack, **options) -> set[str]:
    from napari_vaeedof import api
    from napari_vaeedof.engine.options import FusionOptions

    opts = FusionOptions(**{**dict(tile_size=64, overlap=16, device="cpu",
                                   precision="float32"), **options})
    plan = api._plan(stack, opts, axis=0, channel_axis=None, rgb=None, z_positions=None)
    return {t.key for t in plan.tiles}


def test_tile_keys_come_from_the_data_and_the_options():
    """Dask keys name what decides a tile: two stacks never share one (a shared scheduler or
    distributed client would otherwise hand one stack's tiles to the other), the same stack
    and options always give the same keys."""
    rng = np.random.default_rng(0)
    stack = rng.random((3, 96, 96)).astype(np.float32)
    other = stack.copy()
    other[1, 50, 50] += 0.25
    keys = _tile_keys(stack)
    assert len(keys) == 4
    assert _tile_keys(stack.copy()) == keys
    assert not keys & _tile_keys(other)
    assert not keys & _tile_keys(stack, error_map=False)
    assert not keys & _tile_keys(stack, mode="latent")


@pytest.mark.parametrize("gray", [False, True])
def test_fuse_to_zarr_equals_fuse_stack_chunk_by_chunk(tmp_path, random_unet, gray):
    import zarr

    from napari_vaeedof import fuse_to_zarr

    planes = quantize(make_stack(5, size=(150, 200), n_planes=3, gray=gray).planes, np.uint16)
    planes = planes[..., 0] if gray else planes
    opts = dict(unet_path=random_unet, tile_size=64)  # 5 x 5 tiles, 48 px Zarr chunks
    ref = fuse_stack(planes, **opts)
    lazy = da.from_array(planes, chunks=(1, 64, 64, *planes.shape[3:]))
    paths = {m: tmp_path / f"{m}.ome.zarr" for m in ("error", "depth", "fill")}
    meta = fuse_to_zarr(lazy, tmp_path / "fused.ome.zarr", maps=paths, chunk=48,
                        info={"inputs": ["x"]}, **opts)
    assert meta["n_tiles"] == len(TileGrid.build(150, 200, 64, 16)) == 25
    group = zarr.open_group(tmp_path / "fused.ome.zarr", mode="r")
    image = group["0"][:]
    want = ref.image if gray else np.moveaxis(ref.image, -1, 0)  # OME order: c, y, x
    assert image.dtype == np.uint16 and image.shape == want.shape
    assert np.abs(image.astype(int) - want.astype(int)).max() <= 1
    assert group.attrs["napari_vaeedof"]["inputs"] == ["x"]
    for name, path in paths.items():
        got = zarr.open_group(path, mode="r")["0"][:]
        np.testing.assert_allclose(got, getattr(ref, name), atol=1e-4)


def test_fuse_to_zarr_refuses_maps_the_mode_has_not(tmp_path, random_unet):
    from napari_vaeedof import fuse_to_zarr

    planes = np.zeros((2, 64, 64), np.uint8)
    with pytest.raises(ValueError, match="gives no depth map"):
        fuse_to_zarr(planes, tmp_path / "f.ome.zarr", maps={"depth": tmp_path / "d.ome.zarr"},
                     mode="latent", unet_path=random_unet)
    with pytest.raises(TypeError, match=r"unexpected keyword argument .tile."):
        fuse_to_zarr(planes, tmp_path / "f.ome.zarr", tile=64)
    assert list(tmp_path.iterdir()) == []


def test_the_image_is_converted_back_in_row_blocks_with_the_same_result(monkeypatch,
                                                                        random_unet):
    """The fused image goes back to the input's range and dtype a block of rows at a time
    (bounded float64 temporaries on big planes): tiny blocks give the same image."""
    import napari_vaeedof.api as api

    rgb = (make_stack(3, size=96, n_planes=3).planes * 255).astype(np.uint8)
    gray = (make_stack(4, size=64, n_planes=2, gray=True).planes[..., 0] * 4000 + 100
            ).astype(np.uint16)
    whole = [fuse_stack(s, unet_path=random_unet).image for s in (rgb, gray)]
    monkeypatch.setattr(api, "OUTPUT_BLOCK_VALUES", 7)  # one or two rows per block
    blocks = [fuse_stack(s, unet_path=random_unet).image for s in (rgb, gray)]
    for a, b in zip(whole, blocks, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
