"""Our networks as safetensors files: weights plus their config and provenance in the header."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def save_module(model: nn.Module, config: dict, path: str | Path,
                metadata: dict[str, str] | None = None,
                dtype: torch.dtype = torch.float16) -> None:
    """Write ``model``'s weights (as ``dtype``) with ``config`` and ``metadata`` in the header."""
    from safetensors.torch import save_file

    meta = {"config": json.dumps(config), **(metadata or {})}
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header's metadata (``config`` as a JSON string, provenance)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_module(model: nn.Module, path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load the file's weights into ``model`` strictly; frozen, eval mode, on ``device``."""
    from safetensors.torch import load_file

    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    model.requires_grad_(False)
    return model.eval().to(device=device, dtype=dtype)
