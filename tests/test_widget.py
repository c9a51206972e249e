"""The Focus fusion dock widget in a real napari viewer with the real model weights.

The packaged Fusion U-Net may be untrained: these tests check plumbing (layers in, worker,
layers out, errors, cancel), not fusion quality. Images are small and tiles 64 px, so each
run has several tiles and takes a second or two on a CPU.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
import pytest

from napari_vaeedof import fuse_layer
from napari_vaeedof._sample_data import STACK_NAME
from napari_vaeedof._widget import (
    ONE_LAYER,
    PROGRESS_STEPS,
    SEVERAL_LAYERS,
    FusionWidget,
)

pytestmark = pytest.mark.viewer
TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: with other CPU load on a small machine, OpenMP's spinning threads
    can make a run 10-30x slower; tests check plumbing, not speed."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-vaeedof", "Focus fusion")
    assert isinstance(widget, FusionWidget)
    assert widget.auto_tile.value and not widget.tile_size.enabled  # the default: auto
    widget.tile_size.value = 64
    assert not widget.auto_tile.value and widget.tile_size.enabled  # set by hand
    assert widget.overlap.value == 16  # follows the tile size: a quarter
    return viewer, widget


@pytest.fixture
def notifications():
    """Notifications napari dispatches during the test (errors included), as a list."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _gray_stack(n=3, height=96, width=128, dtype=np.uint8, seed=1):
    from napari_vaeedof.data.synth import make_stack, quantize

    planes = make_stack(seed, size=(height, width), n_planes=n, kind="microscopy", gray=True)
    return quantize(planes.planes[..., 0], dtype)


def _run(widget, qtbot, *, click=True):
    """Press Fuse and wait until the worker has finished and the buttons are back."""
    if click:
        widget.fuse_button.native.click()
    else:
        widget.fuse()
    assert widget.running
    assert not widget.fuse_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.fuse_button.enabled and not widget.cancel_button.enabled


def _check_hashes(layer):
    hashes = layer.metadata["weights_sha256"]
    assert set(hashes) >= {"taef2_encoder", "taef2_decoder", "fusion_unet"}
    assert all(len(h) == 64 for h in hashes.values())


def test_sample_rgb_stack_fused(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-vaeedof", "focus_stack")
    layer = viewer.layers[STACK_NAME]
    before, data = layer.data.copy(), layer.data
    widget.tile_size.value = 128  # 256 px sample: 3 x 3 tiles
    assert widget.layer.value is layer
    assert widget.focus_axis.choices == (0,)  # the colour axis is not offered
    assert widget.focus_axis.value == 0
    _run(widget, qtbot)

    fused = viewer.layers[f"{STACK_NAME} fused"]
    error = viewer.layers[f"{STACK_NAME} departure from the planes"]
    assert fused.rgb and fused.data.shape == (256, 256, 3) and fused.data.dtype == np.uint8
    assert error.data.shape == (256, 256) and error.data.dtype == np.float32
    assert error.colormap.name == "inferno" and error.blending == "additive"
    lo, hi = error.contrast_limits
    assert 0 <= lo < hi <= float(error.data.max())
    assert widget.progress.value == PROGRESS_STEPS and fused.metadata["n_tiles"] == 9
    for out in (fused, error):
        _check_hashes(out)
        assert out.metadata["n_planes"] == 5 and out.metadata["tile_size"] == 128
        assert out.metadata["input_layers"] == [STACK_NAME]
    # the input is untouched: same object, same values
    assert layer.data is data
    np.testing.assert_array_equal(layer.data, before)
    depth = viewer.layers[f"{STACK_NAME} depth map"]
    confidence = viewer.layers[f"{STACK_NAME} depth confidence"]
    fill = viewer.layers[f"{STACK_NAME} synthesised fill"]
    assert widget.outputs == [fused, error, depth, confidence, fill]
    assert depth.data.shape == fill.data.shape == confidence.data.shape == (256, 256)
    assert 0 <= depth.data.min() and depth.data.max() <= 4  # 5 planes, no z scale: plane index
    assert tuple(depth.contrast_limits) == (0, 4) and depth.metadata["output"] == "depth map"
    assert 0 <= fill.data.min() and fill.data.max() <= 1 and fill.colormap.name == "magenta"
    assert 0 <= confidence.data.min() and confidence.data.max() <= 1


def test_uint16_grayscale_keeps_range_geometry_and_display(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack = (_gray_stack(dtype=np.uint16) // 16 + 1000).astype(np.uint16)
    before = stack.copy()
    layer = viewer.add_image(
        stack,
        name="cells",
        scale=(2, 0.5, 0.25),
        translate=(7, 10, -4),
        units="µm",
        colormap="green",
        contrast_limits=(900, 4000),
    )
    _run(widget, qtbot)

    fused, error = viewer.layers["cells fused"], viewer.layers["cells departure from the planes"]
    assert fused.data.shape == (96, 128) and fused.data.dtype == np.uint16
    span = int(stack.max()) - int(stack.min())
    assert (
        stack.min() - 0.05 * span
        <= fused.data.min()
        <= fused.data.max()
        <= (stack.max() + 0.05 * span)
    )
    assert not fused.rgb and fused.colormap.name == "green"
    assert tuple(fused.contrast_limits) == (900, 4000)
    for out in (fused, error):
        np.testing.assert_allclose(out.scale, (0.5, 0.25))
        np.testing.assert_allclose(out.translate, (10, -4))
        assert [str(u) for u in out.units] == ["micrometer", "micrometer"]
        _check_hashes(out)
    assert error.data.shape == (96, 128)
    depth = viewer.layers["cells depth map"]  # in the focus axis' units: z = 7 + 2 * plane
    n = stack.shape[0]
    assert 7 <= depth.data.min() and depth.data.max() <= 7 + 2 * (n - 1)
    assert tuple(depth.contrast_limits) == (7, 7 + 2 * (n - 1))
    assert depth.metadata["depth_unit"] == "micrometer"
    np.testing.assert_allclose(depth.scale, (0.5, 0.25))
    assert layer.data is stack
    np.testing.assert_array_equal(layer.data, before)
    np.testing.assert_allclose(layer.scale, (2, 0.5, 0.25))  # input properties unchanged
    assert layer.colormap.name == "green"


def test_dask_input_and_focus_axis_choice(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    # a (A, Z, Y, X) layer: focus planes on axis 1, axis 0 fused index by index (like channels)
    stack = np.stack([_gray_stack(n=2, height=64, width=96, seed=s) for s in (3, 4)])
    lazy = da.from_array(stack, chunks=(1, 1, 64, 96))
    layer = viewer.add_image(lazy, name="lazy")
    assert widget.focus_axis.choices == (0, 1)
    assert widget.focus_axis.value == 0  # the default: the first axis
    widget.focus_axis.value = 1
    _run(widget, qtbot)
    fused = viewer.layers["lazy fused"]
    assert fused.data.shape == (2, 64, 96) and fused.data.dtype == np.uint8
    assert viewer.layers["lazy departure from the planes"].data.shape == (2, 64, 96)
    assert fused.metadata["focus_axis"] == 1
    assert layer.data is lazy  # still the same dask array


def test_several_2d_layers_in_layer_list_order(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    planes = _gray_stack(n=3, height=64, width=96).astype(np.float32) / 255
    layers = [viewer.add_image(p, name=f"p{i}", scale=(0.5, 0.5)) for i, p in enumerate(planes)]
    viewer.add_image(np.zeros((64, 64), np.float32), name="unrelated")
    widget.input_mode.value = SEVERAL_LAYERS
    assert not widget.planes.native.isHidden() and widget.layer.native.isHidden()
    widget.planes.value = [layers[2], layers[0], layers[1]]  # selection order does not matter
    _run(widget, qtbot)
    fused = viewer.layers["p0..p2 fused"]
    assert fused.data.shape == (64, 96) and fused.data.dtype == np.float32
    assert fused.metadata["input_layers"] == ["p0", "p1", "p2"]
    np.testing.assert_allclose(fused.scale, (0.5, 0.5))
    assert "p0..p2 departure from the planes" in viewer.layers
    for layer, plane in zip(layers, planes, strict=True):
        np.testing.assert_array_equal(layer.data, plane)


def test_rgb_2d_layers_and_rerun_replaces(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    from napari_vaeedof._sample_data import sample_stack

    stack = sample_stack()[:2, :64, :96]
    for i, plane in enumerate(stack):
        viewer.add_image(plane, name=f"rgb{i}", rgb=True)
    widget.input_mode.value = SEVERAL_LAYERS
    widget.planes.value = [viewer.layers["rgb0"], viewer.layers["rgb1"]]
    _run(widget, qtbot)
    fused = viewer.layers["rgb0..rgb1 fused"]
    error = viewer.layers["rgb0..rgb1 departure from the planes"]
    assert fused.rgb and fused.data.shape == (64, 96, 3) and fused.data.dtype == np.uint8
    n_layers = len(viewer.layers)

    widget.tile_size.value = 96  # a different setting, visible in the metadata
    _run(widget, qtbot)
    assert len(viewer.layers) == n_layers  # replaced, not added
    assert viewer.layers["rgb0..rgb1 fused"] is fused  # the same layer, updated
    assert viewer.layers["rgb0..rgb1 departure from the planes"] is error
    assert fused.metadata["tile_size"] == 96 and error.metadata["tile_size"] == 96


def test_after_fuse_the_fused_image_is_on_top_and_visible_and_the_maps_hidden(
        viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_gray_stack(n=3, height=64, width=64), name="cells", opacity=0.8)
    _run(widget, qtbot)
    names = [layer.name for layer in viewer.layers]
    maps = ["cells departure from the planes", "cells depth map", "cells depth confidence",
            "cells synthesised fill"]
    assert names == ["cells", *maps, "cells fused"]  # the fused image on top
    assert viewer.layers["cells fused"].visible
    assert not any(viewer.layers[name].visible for name in maps)
    assert layer.visible and layer.opacity == 0.8  # the input as it was
    assert "4 map(s) hidden" in widget.status.value


def test_progress_advances_within_each_tile(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=10, height=96, width=128), name="deep")  # 2 x 3 tiles
    widget.mode.value = "latent"  # every plane encoded (pixel mode encodes only for the fill)
    values, statuses = [], []
    widget.progress.changed.connect(values.append)
    widget.progress.changed.connect(lambda _: statuses.append(widget.status.value))
    _run(widget, qtbot)
    n = viewer.layers["deep fused"].metadata["n_tiles"]
    assert n == 6
    # per tile: encoder batch, two U-Net calls (10 planes: 7 + 3, then 2), the composed image,
    # the end of the tile
    assert len(set(values)) > 3 * n
    assert values == sorted(values) and values[-1] == PROGRESS_STEPS
    assert any("Tile 1 of 6: fusing groups of planes (2 of 3 done)" in s for s in statuses)
    assert any("Tile 6 of 6: composing the fused image" in s for s in statuses)
    assert any("elapsed, about" in s and "left" in s for s in statuses)


def test_cancel_stops_within_seconds_in_a_ten_plane_tile(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=10, height=384, width=384), name="deep")
    widget.auto_tile.value = True  # one 384 px tile, encoded in batches of 7 planes
    widget.mode.value = "latent"  # (pixel mode encodes only for the fill: one short step)
    names = [layer.name for layer in viewer.layers]
    widget.fuse_button.native.click()
    qtbot.waitUntil(lambda: getattr(widget.last_progress, "event", None) == "encode",
                    timeout=TIMEOUT_MS)
    assert widget.last_progress.tiles_done == 0 and widget.last_progress.n_tiles == 1
    pressed = time.perf_counter()
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert time.perf_counter() - pressed < 5
    assert [layer.name for layer in viewer.layers] == names
    assert widget.status.value.startswith("Cancelled") and widget.progress.value == 0
    assert widget.fuse_button.enabled and not widget.cancel_button.enabled


def test_bad_input_shows_error_and_adds_nothing(viewer_widget, qtbot, notifications):
    from napari.utils.notifications import NotificationSeverity

    viewer, widget = viewer_widget
    a = viewer.add_image(np.zeros((64, 64), np.uint8), name="a")
    b = viewer.add_image(np.zeros((64, 80), np.uint8), name="b")
    widget.input_mode.value = SEVERAL_LAYERS

    widget.planes.value = [a]  # one plane: refused before anything starts
    widget.fuse_button.native.click()
    assert not widget.running
    assert notifications[-1].severity == NotificationSeverity.ERROR
    assert "at least two" in notifications[-1].message

    widget.planes.value = [a, b]  # different shapes: refused by the engine, in the worker
    _run(widget, qtbot)
    errors = [n for n in notifications if n.severity == NotificationSeverity.ERROR]
    assert "shape" in errors[-1].message and "(64, 80)" in errors[-1].message
    assert [layer.name for layer in viewer.layers] == ["a", "b"]
    assert widget.status.value == "Failed"

    widget.input_mode.value = ONE_LAYER  # no stack layer at all
    widget.fuse_button.native.click()
    assert not widget.running and "open a stack" in notifications[-1].message


def test_fuse_layer_console_matches_widget(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(_gray_stack(n=2, height=64, width=64), name="stack", scale=(3, 2, 2))
    _run(widget, qtbot, click=False)
    from_widget = viewer.layers["stack fused"].data.copy()
    n_layers = len(viewer.layers)

    layers = fuse_layer(viewer.layers["stack"], viewer=viewer, tile_size=64)
    assert len(viewer.layers) == n_layers  # replaced the widget's outputs
    assert layers == [viewer.layers[f"stack{suffix}"] for suffix in
                      (" fused", " departure from the planes", " depth map", " depth confidence",
                       " synthesised fill")]
    fused = layers[0]
    np.testing.assert_array_equal(fused.data, from_widget)
    np.testing.assert_allclose(fused.scale, (2, 2))

    tuples = fuse_layer(layer, tile_size=64, outputs=["fused"])  # no viewer: layer-data tuples
    [(data, kwargs, kind)] = tuples
    assert kind == "image" and kwargs["name"] == "stack fused" and data.shape == (64, 64)
    assert len(viewer.layers) == n_layers


def test_choices_follow_the_layer_list(viewer_widget):
    viewer, widget = viewer_widget
    gray3d = viewer.add_image(np.zeros((3, 32, 32), np.uint8), name="gray3d")
    rgb3d = viewer.add_image(np.zeros((2, 32, 32, 3), np.uint8), name="rgb3d", rgb=True)
    gray4d = viewer.add_image(
        np.zeros((2, 3, 32, 32), np.uint8), name="gray4d", metadata={"focus_axis": 1}
    )
    plane = viewer.add_image(np.zeros((32, 32), np.uint8), name="plane")
    rgb2d = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb2d", rgb=True)
    viewer.add_points(np.zeros((1, 2)), name="points")
    assert widget.layer.choices == (gray3d, rgb3d, gray4d)
    assert widget.planes.choices == (plane, rgb2d)

    widget.layer.value = rgb3d
    assert widget.focus_axis.choices == (0,)
    widget.layer.value = gray4d
    assert widget.focus_axis.choices == (0, 1)
    assert widget.focus_axis.value == 1  # the focus axis recorded in the layer's metadata
    assert "planes" in widget.focus_axis.native.itemText(1)

    gray3d.name = "renamed"
    texts = [widget.layer.native.itemText(i) for i in range(widget.layer.native.count())]
    assert "renamed" in texts and "gray3d" not in texts
    viewer.layers.remove(rgb3d)
    assert set(widget.layer.choices) == {gray3d, gray4d}


def test_latent_mode_gives_no_depth_or_fill(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=3, height=64, width=64), name="z")
    widget.mode.value = "latent"
    assert not widget.out_depth.enabled and not widget.out_fill.enabled
    assert widget.chosen_outputs() == ("fused", "error")
    _run(widget, qtbot)
    assert [layer.name for layer in viewer.layers] == ["z", "z VAE reconstruction error",
                                                       "z fused"]
    assert viewer.layers["z fused"].metadata["mode"] == "latent"


def test_unticking_fill_gives_the_planes_values_only(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=3, height=64, width=64), name="z")
    assert widget.fill.value and widget.fill.enabled
    widget.fill.value = False
    _run(widget, qtbot)
    assert viewer.layers["z fused"].metadata["fill"] is False
    assert viewer.layers["z synthesised fill"].data.max() == 0
    widget.mode.value = "latent"  # latent mode decodes every pixel: the choice does not apply
    assert not widget.fill.enabled and widget.fusion_options().fill


def test_align_choice_reaches_the_fusion(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=3, height=64, width=64), name="z")
    assert widget.align.value == "none"
    assert tuple(widget.align.choices) == ("none", "translation", "similarity", "affine")
    widget.align.value = "similarity"
    widget.mode.value = "latent"
    _run(widget, qtbot)
    meta = viewer.layers["z fused"].metadata
    assert meta["align"] == "similarity" and len(meta["alignment"]["transforms"]) == 3


def test_user_errors_are_messages_and_other_runtime_errors_keep_their_traceback(
        viewer_widget, qtbot, notifications, monkeypatch):
    """A WeightsError (a RuntimeError meant for the user) becomes a notification; any other
    RuntimeError from the engine is a bug (in torch or here) and reaches napari with its
    traceback instead of being shown as a message."""
    from napari.utils.notifications import NotificationSeverity

    from napari_vaeedof import _widget
    from napari_vaeedof.models.weights import WeightsError

    viewer, widget = viewer_widget
    viewer.add_image(_gray_stack(n=2, height=64, width=64), name="z")

    def raising(exc):
        def fuse_stack(*_args, **_kwargs):
            raise exc
        return fuse_stack

    monkeypatch.setattr(_widget, "fuse_stack", raising(WeightsError("fetch the weights")))
    _run(widget, qtbot)
    assert widget.status.value == "Failed"
    errors = [n for n in notifications if n.severity == NotificationSeverity.ERROR]
    assert errors[-1].message == "fetch the weights"

    monkeypatch.setattr(_widget, "fuse_stack", raising(RuntimeError("a bug in the engine")))
    with qtbot.capture_exceptions() as raised:
        _run(widget, qtbot)
    assert widget.status.value == "Failed (see the error notification)"
    assert [str(exc) for _, exc, _ in raised] == ["a bug in the engine"]
    assert [layer.name for layer in viewer.layers] == ["z"]
