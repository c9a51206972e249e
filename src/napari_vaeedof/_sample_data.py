"""npe2 sample data: a deterministic synthetic focus stack and its all-in-focus ground truth."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .data.synth import SynthStack, make_stack, quantize

#: The scene behind both samples (seed, size, planes, kind, colour); fixed so they match.
SAMPLE = {"seed": 0, "size": 256, "n_planes": 5, "kind": "photo", "gray": False}
STACK_NAME = "Synthetic focus stack"
TRUTH_NAME = "Synthetic ground truth"


@lru_cache(maxsize=1)
def _scene() -> SynthStack:
    return make_stack(
        SAMPLE["seed"],
        size=SAMPLE["size"],
        n_planes=SAMPLE["n_planes"],
        kind=SAMPLE["kind"],
        gray=SAMPLE["gray"],
    )


def sample_stack() -> np.ndarray:
    """The synthetic focus stack as uint8 RGB, shape (Z, Y, X, 3) = (5, 256, 256, 3)."""
    return quantize(_scene().planes, np.uint8)


def sample_ground_truth() -> np.ndarray:
    """The stack's exact all-in-focus image as uint8 RGB, shape (256, 256, 3)."""
    return quantize(_scene().ground_truth, np.uint8)


def _metadata() -> dict:
    return {"synthetic": dict(SAMPLE), "focus_depths": _scene().focus.tolist()}


def make_sample_stack() -> list[tuple]:
    """Sample data contribution: the stack as one RGB layer with a labelled focus axis."""
    kwargs = {
        "name": STACK_NAME,
        "rgb": True,
        "axis_labels": ("z", "y", "x"),
        "metadata": {**_metadata(), "focus_axis": 0},
    }
    return [(sample_stack(), kwargs, "image")]


def make_sample_ground_truth() -> list[tuple]:
    """Sample data contribution: the all-in-focus ground truth of the same scene."""
    kwargs = {"name": TRUTH_NAME, "rgb": True, "axis_labels": ("y", "x"), "metadata": _metadata()}
    return [(sample_ground_truth(), kwargs, "image")]
