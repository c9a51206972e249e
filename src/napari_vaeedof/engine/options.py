"""The fusion's options in one record: allowed values, defaults and their checks.

`FusionOptions` is what the API (`fuse_stack`, `fuse_to_zarr`), the CLI, the widget and the
benchmarks pass around; it checks its values when made, so a bad value is refused before any
work, with the same one-line message everywhere. Imports no torch (the CLI and the widget build
their choices from these constants without loading the networks).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .stack import check_integer

#: "pixel": the planes' own pixels where a plane holds the content, the decoded latent fusion
#: only where none does (the default: it wins the held-out evaluation, docs/model-card.md);
#: "latent": the paper's pure latent fusion, every pixel decoded from the fused latent.
MODES = ("pixel", "latent")
DEFAULT_MODE = "pixel"
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
#: Plane registration before fusion (engine/align.py): none, or the motion model.
ALIGNMENTS = ("none", "translation", "similarity", "affine")
#: Spatial multiple the models need: TAEF2's 1/8 latents times the Fusion U-Net's two 2x
#: downsamplings (checked against the loaded networks in tests/test_fusion.py).
MULTIPLE = 32
#: Smallest tile side in px.
MIN_TILE = 64


def check_choice(value, allowed: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``allowed``, else a one-line ValueError naming them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class FusionOptions:
    """How a stack is fused (not which stack: its axes and z positions go with the data).

    Parameters
    ----------
    mode : {'pixel', 'latent'}
        'pixel' (default): the planes' own pixels where a plane holds the content, the decoded
        latent fusion only where none does, plus depth, confidence and fill maps; 'latent': the
        paper's pure latent fusion (every pixel decoded).
    tile_size : int or None
        Tile side in px, a multiple of `MULTIPLE` and at least `MIN_TILE`; None: chosen from
        the plane size (`engine.tiling.auto_tile_size`).
    overlap : int or None
        Tile overlap in px, 0 to half the tile; None: a quarter of the tile.
    device : str
        'auto' (cuda > mps > cpu) or a torch device string.
    precision : {'auto', 'float32', 'float16', 'bfloat16'}
        'auto': float16 on a GPU; on the CPU bfloat16 where it is native, else float32.
    error_map : bool
        Also compute the error map.
    fill : bool
        Pixel mode: synthesise content (the decoded latent fusion) where the selection head
        finds that no plane holds it (default). False: never; every output value is then a
        blend of the planes' own values, and TAEF2 and the U-Net do not run at all. Latent
        mode decodes every pixel and takes only True.
    batch_size : int or None
        Planes per encode/decode batch (at least 1); None: from the tile size and device.
    align : {'none', 'translation', 'similarity', 'affine'}
        Register the planes to the middle one before fusion.
    match_gain : bool
        Also match each plane's brightness to the middle plane's.
    unet_path, selection_path : path or None
        Network weights instead of the packaged ones.
    """

    mode: str = DEFAULT_MODE
    tile_size: int | None = None
    overlap: int | None = None
    device: str = "auto"
    precision: str = "auto"
    error_map: bool = True
    fill: bool = True
    batch_size: int | None = None
    align: str = "none"
    match_gain: bool = False
    unet_path: str | os.PathLike | None = None
    selection_path: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if self.tile_size is not None:
            tile = check_integer(self.tile_size, "tile_size")
            if tile < MIN_TILE or tile % MULTIPLE:
                raise ValueError(f"tile_size must be a multiple of {MULTIPLE} and at least "
                                 f"{MIN_TILE}, got {tile}")
            object.__setattr__(self, "tile_size", tile)
        if self.overlap is not None:
            object.__setattr__(self, "overlap", check_integer(self.overlap, "overlap"))
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size",
                               check_integer(self.batch_size, "batch_size", minimum=1))
        check_choice(self.mode, MODES, "mode")
        check_choice(self.align, ALIGNMENTS, "align")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'auto' or one of {sorted(PRECISIONS[1:])}, "
                             f"got {self.precision!r}")
        for name in ("match_gain", "error_map", "fill"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.fill and self.mode != "pixel":
            raise ValueError("fill=False needs mode='pixel' (latent mode decodes every pixel).")

    def kwargs(self) -> dict:
        """The options as keyword arguments of `fuse_stack`."""
        return asdict(self)
