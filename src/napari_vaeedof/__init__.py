"""All-in-focus fusion of focus stacks in the latent space of a tiny VAE (VAEEDOF)."""

__version__ = "0.1.0"

from ._layers import fuse_layer  # imports napari only when called
from .api import (
    FusionCancelled,
    FusionError,
    FusionProgress,
    FusionResult,
    fuse_stack,
    iter_fuse_stack,
)
from .engine.stack import StackError

__all__ = [
    "FusionCancelled",
    "FusionError",
    "FusionProgress",
    "FusionResult",
    "StackError",
    "__version__",
    "fuse_layer",
    "fuse_stack",
    "iter_fuse_stack",
]
