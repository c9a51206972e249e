"""Device and precision choice (engine/runtime.py)."""

import pytest
import torch

from napari_vaeedof.engine import runtime
from napari_vaeedof.engine.runtime import resolve_device


def test_auto_precision_is_half_on_gpu_and_native_bf16_or_float32_on_cpu():
    assert runtime.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    expected = torch.bfloat16 if runtime.cpu_has_bf16() else torch.float32
    assert runtime.resolve_dtype("auto", torch.device("cpu")) == expected
    assert runtime.resolve_dtype("float32", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve_dtype("float8", torch.device("cpu"))


def test_device_auto_selection_and_refusal():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
