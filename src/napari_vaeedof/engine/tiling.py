"""Overlapping tiles, separable linear alpha ramps, and their assembly as a dask array.

Tiles are computed as dask tasks; the output is chunked on the segments between tile edges,
and each chunk blends the tiles that cover it with weights that sum to one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

#: Tile starts are aligned to this many pixels (the VAE's 8x times the U-Net's 4x), so tiled and
#: untiled runs see the same pixel grid.
ALIGN = 32


#: Largest tile side `auto_tile_size` picks, and the most planes x pixels of one tile it allows:
#: memory grows with both (on the CPU a 10-plane 768 px RGB tile peaked at 2.3-2.6 GB resident,
#: four 512 px tiles of the same stack at 1.3 GB), so deeper stacks get a smaller largest tile,
#: never below 512 px (the earlier fixed default). Encoder and decoder batches are sized by
#: pixels (api.BATCH_PIXELS), so they do not grow with the tile.
MAX_AUTO_TILE = 768
MIN_AUTO_CAP = 512
TILE_PLANE_BUDGET = 10 * 768 * 768
#: Smallest tile side the models accept.
MIN_TILE = 64


def auto_tile_size(height: int, width: int, planes: int = 1, max_tile: int | None = None) -> int:
    """The tile side for ``planes`` planes of (height, width): the least work over all tiles.

    Work is the pixels of all tiles summed (overlaps count twice), with the default overlap of
    a quarter tile; candidates are multiples of 32 from 64 to ``max_tile``, by default 768 px
    for up to 10 planes, less for more (planes x tile pixels at most `TILE_PLANE_BUDGET`) but
    not below 512; ties go to fewer, then smaller tiles. A plane that fits is one tile: a
    768 px plane is one 768 px tile (0.59 MPx of work), not four 512 px tiles (1.05 MPx).

    >>> auto_tile_size(768, 768), auto_tile_size(1024, 1024), auto_tile_size(100, 300)
    (768, 608, 320)
    >>> auto_tile_size(768, 768, planes=30)  # 2 x 2 tiles of 448 px: 0.80 MPx
    448
    """
    if max_tile is None:
        fit = int((TILE_PLANE_BUDGET / max(planes, 1)) ** 0.5) // ALIGN * ALIGN
        max_tile = max(MIN_AUTO_CAP, min(MAX_AUTO_TILE, fit))
    top = max(MIN_TILE, min(max_tile, -(-max(height, width) // ALIGN) * ALIGN))
    best = None
    for tile in range(MIN_TILE, top + 1, ALIGN):
        grid = TileGrid.build(height, width, tile, tile // 4)
        work = sum(b - a for a, b in grid.ys) * sum(b - a for a, b in grid.xs)
        key = (work, len(grid), tile)
        best = key if best is None or key < best else best
    return best[2]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of 1-D tiles of length ``tile`` covering ``size`` with at least ``overlap`` shared."""
    if size <= tile:
        return [0]
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be 0 to half the tile ({tile // 2}), got {overlap}")
    n = int(np.ceil((size - tile) / (tile - overlap))) + 1
    while True:  # evenly spread, so no tile overlaps its neighbour much more than asked
        starts = [int(s) // ALIGN * ALIGN for s in np.linspace(0, size - tile, n)[:-1]]
        starts.append(size - tile)
        if all(b - a <= tile - overlap for a, b in itertools.pairwise(starts)):
            return starts
        n += 1


@dataclass(frozen=True)
class TileGrid:
    """Tiles of a (height, width) plane as (y0, y1, x0, x1) boxes, row-major."""

    height: int
    width: int
    ys: tuple[tuple[int, int], ...]
    xs: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        ys = tuple((s, min(s + tile, height)) for s in tile_starts(height, tile, overlap))
        xs = tuple((s, min(s + tile, width)) for s in tile_starts(width, tile, overlap))
        return cls(height, width, ys, xs)

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        return [(y0, y1, x0, x1) for y0, y1 in self.ys for x0, x1 in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def ramp_1d(spans: Sequence[tuple[int, int]], index: int) -> np.ndarray:
    """Weight of tile ``index`` along one axis: linear ramps over the overlaps with neighbours."""
    start, stop = spans[index]
    w = np.ones(stop - start, np.float64)
    if index > 0:
        overlap_end = spans[index - 1][1]
        n = overlap_end - start
        if n > 0:
            w[:n] = np.minimum(w[:n], (np.arange(n) + 0.5) / n)
    if index < len(spans) - 1:
        overlap_start = spans[index + 1][0]
        n = stop - overlap_start
        if n > 0:
            w[-n:] = np.minimum(w[-n:], 1 - (np.arange(n) + 0.5) / n)
    return w


def segments(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pieces between all tile edges along one axis: the output's chunks."""
    edges = sorted({e for span in spans for e in span})
    return list(itertools.pairwise(edges))


def _blend(tiles: list[np.ndarray], ramps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    # The 2-D weights are built here from their 1-D ramps: the graph stays O(H + W), not O(H W).
    weights = [np.outer(ry, rx) for ry, rx in ramps]
    acc = sum(t * w[..., None] for t, w in zip(tiles, weights, strict=True))
    total = sum(weights)
    return (acc / total[..., None]).astype(np.float32)


def assemble(tiles: Sequence, grid: TileGrid, channels: int) -> da.Array:
    """Blend per-tile results (dask Delayed or arrays, each (h, w, channels)) into (H, W, C)."""
    from dask.delayed import Delayed, delayed

    tiles = [t if isinstance(t, Delayed) else delayed(t, traverse=False) for t in tiles]
    name = "vaeedof-blend-" + tokenize([t.key for t in tiles], grid, channels)
    ramps_y = [ramp_1d(grid.ys, i) for i in range(len(grid.ys))]
    ramps_x = [ramp_1d(grid.xs, j) for j in range(len(grid.xs))]
    seg_y, seg_x = segments(grid.ys), segments(grid.xs)
    dsk = {}
    for a, (sy0, sy1) in enumerate(seg_y):
        for b, (sx0, sx1) in enumerate(seg_x):
            keys, weights = [], []
            for i, (y0, y1) in enumerate(grid.ys):
                if not (y0 <= sy0 and sy1 <= y1):
                    continue
                for j, (x0, x1) in enumerate(grid.xs):
                    if not (x0 <= sx0 and sx1 <= x1):
                        continue
                    region = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
                    keys.append((_crop, tiles[i * len(grid.xs) + j].key, region))
                    weights.append((ramps_y[i][region[0]], ramps_x[j][region[1]]))
            dsk[(name, a, b, 0)] = (_blend, keys, weights)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=tiles)
    chunks = (
        tuple(e - s for s, e in seg_y),
        tuple(e - s for s, e in seg_x),
        (channels,),
    )
    return da.Array(graph, name, chunks, dtype=np.float32)


def _crop(tile: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    return tile[region]
