"""One owner for the fusion's options: defaults, allowed values, checks, the spatial multiple."""

import dataclasses
import inspect
import subprocess
import sys

import pytest
import torch

from napari_vaeedof import fuse_stack
from napari_vaeedof.cli import build_parser
from napari_vaeedof.engine.options import (
    ALIGNMENTS,
    MODES,
    MULTIPLE,
    PRECISIONS,
    FusionOptions,
)
from napari_vaeedof.engine.runtime import load_models
from napari_vaeedof.engine.stack import StackError


def test_fuse_stack_defaults_are_the_options_defaults():
    params = inspect.signature(fuse_stack).parameters
    for field in dataclasses.fields(FusionOptions):
        assert params[field.name].default == field.default, field.name


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"tile_size": 100}, ValueError, f"multiple of {MULTIPLE}"),
    ({"tile_size": 32}, ValueError, "at least 64"),
    ({"tile_size": 64.0}, StackError, "tile_size must be an integer"),
    ({"overlap": "8"}, StackError, "overlap must be an integer"),
    ({"batch_size": 0}, StackError, "batch_size must be at least 1"),
    ({"mode": "fast"}, ValueError, "mode must be one of"),
    ({"align": "rigid"}, ValueError, "align must be one of"),
    ({"precision": "fp16"}, ValueError, "precision must be 'auto' or one of"),
    ({"match_gain": 1}, ValueError, "match_gain must be True or False"),
    ({"error_map": "yes"}, ValueError, "error_map must be True or False"),
    ({"fill": 0}, ValueError, "fill must be True or False"),
    ({"fill": False, "mode": "latent"}, ValueError, "fill=False needs mode='pixel'"),
])
def test_bad_options_are_refused_when_made(kwargs, error, message):
    with pytest.raises(error, match=message):
        FusionOptions(**kwargs)


def test_the_cli_offers_exactly_the_allowed_values():
    fuse = build_parser()._subparsers._group_actions[0].choices["fuse"]
    choices = {a.dest: tuple(a.choices) for a in fuse._actions if a.choices}
    assert choices["mode"] == MODES and choices["precision"] == PRECISIONS
    assert choices["align"] == ALIGNMENTS


def test_multiple_is_what_the_networks_need(random_unet):
    models = load_models("cpu", "float32", random_unet)
    with torch.inference_mode():
        latent = models.ae.encode(torch.zeros(1, 3, 64, 64))
    unet_downsamplings = len(models.unet.config.widths) - 1
    assert MULTIPLE == 64 // latent.shape[-1] * 2**unet_downsamplings


def test_options_import_no_torch():
    code = ("import sys; import napari_vaeedof.engine.options as o; o.FusionOptions(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
