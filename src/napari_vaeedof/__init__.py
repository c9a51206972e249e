"""All-in-focus fusion of focus stacks in the latent space of a tiny VAE (VAEEDOF).

The public names are loaded on first use (PEP 562), so ``import napari_vaeedof`` and napari's
reader probe stay light: torch is imported only when a fusion is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "FusionCancelled": ".api",
    "FusionError": ".api",
    "FusionProgress": ".api",
    "FusionResult": ".api",
    "fuse_stack": ".api",
    "fuse_to_zarr": ".api",
    "iter_fuse_stack": ".api",
    "StackError": ".engine.stack",
    "fuse_layer": "._layers",
}

__all__ = [
    "FusionCancelled",
    "FusionError",
    "FusionProgress",
    "FusionResult",
    "StackError",
    "__version__",
    "fuse_layer",
    "fuse_stack",
    "fuse_to_zarr",
    "iter_fuse_stack",
]

if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from ._layers import fuse_layer
    from .api import (
        FusionCancelled,
        FusionError,
        FusionProgress,
        FusionResult,
        fuse_stack,
        fuse_to_zarr,
        iter_fuse_stack,
    )
    from .engine.stack import StackError


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
