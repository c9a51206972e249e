import itertools

import numpy as np
import pytest

from napari_vaeedof.engine.tiling import (
    ALIGN,
    MAX_AUTO_TILE,
    TILE_PLANE_BUDGET,
    TileGrid,
    assemble,
    auto_tile_size,
    ramp_1d,
    tile_starts,
)


@pytest.mark.parametrize("size", [100, 256, 257, 700, 1000, 4096, 5440])
def test_tiles_cover_the_plane_with_the_asked_overlap(size):
    tile, overlap = 256, 64
    starts = tile_starts(size, tile, overlap)
    spans = [(s, min(s + tile, size)) for s in starts]
    assert spans[0][0] == 0 and spans[-1][1] == size
    for (a0, a1), (b0, _b1) in itertools.pairwise(spans):
        assert a1 - b0 >= overlap  # at least the asked overlap between neighbours
        assert b0 > a0
    assert all(s % ALIGN == 0 for s in starts[:-1])


def test_ramps_form_a_partition_of_unity():
    grid = TileGrid.build(1000, 700, 256, 64)
    total = np.zeros(1000)
    for i, (y0, y1) in enumerate(grid.ys):
        total[y0:y1] += ramp_1d(grid.ys, i)
    assert np.all(total > 0)
    weights = np.zeros(1000)
    for i, (y0, y1) in enumerate(grid.ys):
        weights[y0:y1] += ramp_1d(grid.ys, i) / total[y0:y1]
    np.testing.assert_allclose(weights, 1)


def test_assembly_of_tiles_of_one_image_gives_the_image_back():
    rng = np.random.default_rng(0)
    image = rng.random((1000, 700, 2)).astype(np.float32)
    grid = TileGrid.build(1000, 700, 256, 64)
    tiles = [image[y0:y1, x0:x1] for y0, y1, x0, x1 in grid.boxes]
    out = assemble(tiles, grid, 2)
    assert out.shape == image.shape and out.numblocks[2] == 1
    np.testing.assert_allclose(out.compute(), image, atol=1e-6)


def test_blend_is_a_smooth_ramp_between_disagreeing_tiles():
    """Tiles that disagree by a constant meet with a linear ramp, not a step (no seam)."""
    grid = TileGrid.build(64, 512, 256, 128)
    tiles = [np.full((y1 - y0, x1 - x0, 1), float(k), np.float32)
             for k, (y0, y1, x0, x1) in enumerate(grid.boxes)]
    row = assemble(tiles, grid, 1).compute()[32, :, 0]
    steps = np.abs(np.diff(row))
    assert steps.max() <= 1.5 / 128  # one tile's value reaches the other over the overlap
    assert row[0] == 0 and row[-1] == len(grid.xs) - 1


@pytest.mark.parametrize("size", [(64, 64), (100, 300), (512, 700), (768, 768)])
def test_a_plane_up_to_the_largest_auto_tile_is_one_tile(size):
    tile = auto_tile_size(*size)
    assert tile % ALIGN == 0 and tile <= MAX_AUTO_TILE
    assert len(TileGrid.build(*size, tile, tile // 4)) == 1
    assert tile - ALIGN < max(size)  # the smallest such tile


@pytest.mark.parametrize("size", [(769, 769), (1024, 1024), (2000, 1500), (5000, 5000)])
def test_auto_tiles_do_no_more_work_than_512_px_tiles(size):
    def work(tile):
        grid = TileGrid.build(*size, tile, tile // 4)
        return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in grid.boxes)

    tile = auto_tile_size(*size)
    assert 64 <= tile <= MAX_AUTO_TILE and tile % ALIGN == 0
    assert work(tile) <= work(512)
    assert work(tile) == min(work(t) for t in range(64, MAX_AUTO_TILE + 1, ALIGN))


@pytest.mark.parametrize("planes", [11, 30, 100])
def test_deep_stacks_get_smaller_auto_tiles_but_not_below_512(planes):
    assert auto_tile_size(768, 768, planes=10) == 768
    small = auto_tile_size(768, 768, planes=planes)
    assert small < 768 and len(TileGrid.build(768, 768, small, small // 4)) == 4
    tile = auto_tile_size(4000, 4000, planes=planes)
    assert tile <= max(512, (TILE_PLANE_BUDGET / planes) ** 0.5)


def test_the_blend_graph_grows_with_the_edges_not_the_area():
    """What travels to dask workers: 1-D ramps per piece, not 2-D weights (which were 8 bytes
    per output pixel, 200 MB of graph for a 4096 px plane)."""
    import pickle

    import dask

    grid = TileGrid.build(4096, 4096, 512, 128)
    tiles = [dask.delayed(np.zeros)((y1 - y0, x1 - x0, 4), np.float32)
             for y0, y1, x0, x1 in grid.boxes]
    fused = assemble(tiles, grid, 4)
    assert fused.shape == (4096, 4096, 4)
    assert len(pickle.dumps(dict(fused.dask))) < 4_000_000
