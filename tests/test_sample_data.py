"""Sample data: a deterministic synthetic focus stack, its ground truth, npe2 contributions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vaeedof import _sample_data
from napari_vaeedof._sample_data import (
    STACK_NAME,
    TRUTH_NAME,
    make_sample_ground_truth,
    make_sample_stack,
    sample_ground_truth,
    sample_stack,
)


def test_sample_stack_shape_dtype_and_deterministic():
    first = sample_stack()
    assert first.shape == (5, 256, 256, 3)
    assert first.dtype == np.uint8
    assert first.std() > 10  # real content, not a blank stack
    _sample_data._scene.cache_clear()  # render the scene again from scratch
    second = sample_stack()
    np.testing.assert_array_equal(first, second)
    assert first is not second  # callers get their own array
    # the planes differ (different focus), but they show the same scene
    assert not np.array_equal(first[0], first[-1])


def test_ground_truth_matches_the_stack_scene():
    truth = sample_ground_truth()
    assert truth.shape == (256, 256, 3)
    assert truth.dtype == np.uint8
    np.testing.assert_array_equal(truth, sample_ground_truth())
    # every plane is a blurred view of the truth: closer to it than to a shifted copy
    stack = sample_stack().astype(np.float32)
    err = np.abs(stack - truth.astype(np.float32)).mean(axis=(1, 2, 3))
    shifted = np.abs(stack - np.roll(truth, 64, axis=1).astype(np.float32)).mean(axis=(1, 2, 3))
    assert (err < shifted).all()


def test_contributions_are_layer_data():
    [(data, kwargs, kind)] = make_sample_stack()
    assert kind == "image"
    assert kwargs["name"] == STACK_NAME and kwargs["rgb"] is True
    assert data.shape == (5, 256, 256, 3) and data.dtype == np.uint8
    assert kwargs["metadata"]["focus_axis"] == 0
    [(truth, kwargs, kind)] = make_sample_ground_truth()
    assert kwargs["name"] == TRUTH_NAME and kwargs["rgb"] is True
    assert truth.shape == (256, 256, 3)


@pytest.mark.viewer
def test_open_samples_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-vaeedof", "focus_stack")
    viewer.open_sample("napari-vaeedof", "ground_truth")
    stack, truth = viewer.layers[STACK_NAME], viewer.layers[TRUTH_NAME]
    assert stack.rgb and stack.ndim == 3 and stack.data.shape == (5, 256, 256, 3)
    assert tuple(stack.axis_labels) == ("z", "y", "x")
    assert truth.rgb and truth.data.shape == (256, 256, 3)
