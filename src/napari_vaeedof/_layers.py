"""napari layers <-> arrays for the fusion: what goes into the engine and what comes back out.

Shared by the dock widget and by `fuse_layer` (console use) so both build the same output
layers. This module imports napari only inside the functions that need it, so
``import napari_vaeedof`` stays free of napari and Qt.

Flow: `fusion_input` (main thread) takes a snapshot of the input layer(s): the data as-is
(numpy or dask, never copied or modified) plus everything the output layers inherit; the
engine runs on ``snapshot.stack`` with ``snapshot.engine_kwargs``; `output_layer_data` (any
thread, no napari objects) turns the `FusionResult` into layer-data tuples; `add_output_layers`
(main thread) adds them to a viewer, replacing earlier outputs of the same name.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine.stack import StackError

LayerDataTuple = tuple  # (data, kwargs, "image")

#: Robust percentiles of the error map shown as its contrast range.
ERROR_PERCENTILES = (1.0, 99.5)
ERROR_COLORMAP = "inferno"
DEPTH_COLORMAP = "turbo"
FILL_COLORMAP = "magenta"
FUSED_SUFFIX = " fused"
#: The error map is named after what it measures in each mode (engine/fusion.py): in latent
#: mode the VAE's reconstruction error of the planes, in pixel-faithful mode how far the output
#: departs from every plane.
ERROR_SUFFIX = {"latent": " VAE reconstruction error", "pixel": " departure from the planes"}
DEPTH_SUFFIX = " depth map"
CONFIDENCE_SUFFIX = " depth confidence"
FILL_SUFFIX = " synthesised fill"


@dataclass
class FusionInput:
    """A snapshot of the input layer(s): engine arguments plus what the outputs inherit."""

    stack: Any  # one array (numpy or dask) or a list of 2-D arrays: the layers' data as-is
    engine_kwargs: dict  # axis, channel_axis, rgb for `iter_fuse_stack`
    name: str  # outputs are "<name> fused", "<name> depth map", ...
    rgb: bool
    inputs: tuple = ()  # the input layers (kept only to never replace one of them)
    geometry: dict = field(default_factory=dict)  # scale, translate, units, axis_labels
    display: dict = field(default_factory=dict)  # colormap, contrast_limits, gamma
    provenance: dict = field(default_factory=dict)  # goes into the outputs' metadata
    depth_unit: str | None = None  # unit of the focus axis (depth map values), if known


def _unwrap(obj):
    """napari hands plugin widgets proxies of the viewer and its layers; use the real objects."""
    return getattr(obj, "__wrapped__", obj)


def is_image_layer(layer) -> bool:
    from napari.layers import Image

    return isinstance(_unwrap(layer), Image)


def layer_array(layer):
    """The layer's data without touching it: level 0 of a multiscale layer, else the data."""
    return layer.data[0] if layer.multiscale else layer.data


def focus_axis_choices(layer) -> list[tuple[str, int]]:
    """(label, axis) for each axis that can hold the focus planes: all but Y, X (and RGB colour)."""
    if layer is None:
        return []
    shape = layer_array(layer).shape
    labels = tuple(getattr(layer, "axis_labels", ()) or ())
    out = []
    for i in range(layer.ndim - 2):
        label = labels[i] if i < len(labels) else ""
        named = label and not label.lstrip("-").isdigit()  # napari's defaults are '-3', '-2', ...
        text = f"{i}: {label}" if named else f"axis {i}"
        out.append((f"{text} ({shape[i]} planes)", i))
    return out


def default_focus_axis(layer) -> int:
    """The first axis, unless the layer's metadata (our reader, our sample) names the focus axis."""
    hint = (getattr(layer, "metadata", None) or {}).get("focus_axis")
    if isinstance(hint, int) and 0 <= hint < layer.ndim - 2:
        return hint
    return 0


def fusion_input(layers, axis: int | None = None) -> FusionInput:
    """Snapshot one image layer with a focus axis, or several 2-D image layers (in this order).

    Raises StackError with a message for the user when the layers cannot be a focus stack.
    """
    if not isinstance(layers, Sequence) or isinstance(layers, str):
        layers = [layers]
    layers = [_unwrap(layer) for layer in layers]
    if not layers:
        raise StackError("Choose an image layer with several planes, or several 2-D layers.")
    for layer in layers:
        if not is_image_layer(layer):
            raise StackError(f"Layer {layer.name!r} is not an image layer.")
    if len(layers) == 1:
        return _single_input(layers[0], axis)
    return _planes_input(layers)


def _single_input(layer, axis: int | None) -> FusionInput:
    ndim = layer.ndim  # for RGB layers this leaves out the colour axis
    if ndim < 3:
        raise StackError(
            f"Layer {layer.name!r} is a single {'RGB ' if layer.rgb else ''}image ({ndim}-D); "
            "choose a layer with a focus axis, or several 2-D layers as planes."
        )
    axis = default_focus_axis(layer) if axis is None else int(axis)
    if not 0 <= axis < ndim - 2:
        raise StackError(
            f"The focus axis must be one of the first {ndim - 2} axes of {layer.name!r} "
            f"(not Y or X), got {axis}."
        )
    data = layer_array(layer)
    if layer.rgb:
        engine = {"axis": axis, "channel_axis": data.ndim - 1, "rgb": True}
    else:
        others = [i for i in range(ndim - 2) if i != axis]
        if len(others) > 1:
            raise StackError(
                f"Layer {layer.name!r} is {ndim}-D; fusion takes planes, Y, X and at most one "
                "more axis (fused index by index). Slice the layer first, e.g. one time point."
            )
        engine = {"axis": axis, "channel_axis": others[0] if others else None, "rgb": False}
    keep = [i for i in range(ndim) if i != axis]
    n = data.shape[axis]
    engine["z_positions"] = float(layer.translate[axis]) + float(layer.scale[axis]) * np.arange(n)
    units = getattr(layer, "units", None)
    return FusionInput(
        stack=data,
        engine_kwargs=engine,
        depth_unit=str(units[axis]) if units is not None else None,
        name=layer.name,
        rgb=bool(layer.rgb),
        inputs=(layer,),
        geometry=_geometry(layer, keep),
        display=_display(layer),
        provenance={"input_layers": [layer.name], "focus_axis": axis},
    )


def _planes_input(layers: list) -> FusionInput:
    for layer in layers:
        if layer.ndim != 2:
            raise StackError(
                f"Layer {layer.name!r} is {layer.ndim}-D; as planes, give 2-D (or 2-D RGB) layers."
            )
    if len({bool(layer.rgb) for layer in layers}) > 1:
        raise StackError("Mix of RGB and grayscale layers; give planes of one kind.")
    first = layers[0]
    return FusionInput(
        stack=[layer_array(layer) for layer in layers],
        engine_kwargs={"axis": 0, "channel_axis": None, "rgb": bool(first.rgb)},
        name=f"{first.name}..{layers[-1].name}",
        rgb=bool(first.rgb),
        inputs=tuple(layers),
        geometry=_geometry(first, [0, 1]),
        display=_display(first),
        provenance={"input_layers": [layer.name for layer in layers], "focus_axis": None},
    )


def _geometry(layer, keep: list[int]) -> dict:
    """Scale, translate, units and axis labels of the kept (non-focus) axes."""
    out = {
        "scale": tuple(float(layer.scale[i]) for i in keep),
        "translate": tuple(float(layer.translate[i]) for i in keep),
    }
    units = getattr(layer, "units", None)
    if units is not None:
        out["units"] = tuple(str(units[i]) for i in keep)
    labels = getattr(layer, "axis_labels", None)
    if labels is not None:
        out["axis_labels"] = tuple(str(labels[i]) for i in keep)
    return out


def _display(layer) -> dict:
    out = {
        "contrast_limits": tuple(float(v) for v in layer.contrast_limits),
        "gamma": float(layer.gamma),
    }
    if not layer.rgb:
        out["colormap"] = layer.colormap
    return out


def error_contrast_limits(error: np.ndarray) -> tuple[float, float]:
    """Robust display range of the error map: its 1st to 99.5th percentile."""
    finite = np.asarray(error, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, ERROR_PERCENTILES))
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return lo, hi


OUTPUTS = ("fused", "error", "depth", "fill")


def output_layer_data(inp: FusionInput, result, outputs=OUTPUTS) -> list[LayerDataTuple]:
    """The asked-for outputs the result holds ("fused", "error", "depth" with its confidence,
    "fill") as layer-data tuples with the input's Y,X geometry.

    The fused image is visible; the maps are hidden overlays the user switches on (when no
    fused image is asked for, the first map is visible). Pure (no napari objects are made), so
    it may run in the worker thread.
    """
    out = []
    base = {**inp.geometry}

    def metadata(kind: str, **extra) -> dict:
        return {**copy.deepcopy(result.metadata), **copy.deepcopy(inp.provenance),
                "output": kind, **extra}

    if "fused" in outputs:
        kwargs = {**base, **inp.display, "name": inp.name + FUSED_SUFFIX, "rgb": inp.rgb,
                  "metadata": metadata("fused image")}
        out.append((result.image, kwargs, "image"))
    if "error" in outputs and result.error is not None:
        limits = error_contrast_limits(result.error)
        suffix = ERROR_SUFFIX.get(result.metadata.get("mode"), " error map")
        kwargs = {**base, "name": inp.name + suffix, "rgb": False,
                  "colormap": ERROR_COLORMAP, "contrast_limits": limits,
                  "blending": "additive", "opacity": 0.7, "visible": False,
                  "metadata": metadata("error map")}
        out.append((result.error, kwargs, "image"))
    if "depth" in outputs and result.depth is not None:
        z = np.asarray(inp.engine_kwargs.get("z_positions", np.arange(len(inp.stack))),
                       np.float64)
        lo, hi = float(z.min()), float(z.max())
        unit = inp.depth_unit or "plane index"
        kwargs = {**base, "name": inp.name + DEPTH_SUFFIX, "rgb": False,
                  "colormap": DEPTH_COLORMAP, "contrast_limits": (lo, hi if hi > lo else lo + 1),
                  "opacity": 0.7, "visible": False,
                  "metadata": metadata("depth map", depth_unit=unit)}
        out.append((result.depth, kwargs, "image"))
        kwargs = {**base, "name": inp.name + CONFIDENCE_SUFFIX, "rgb": False,
                  "colormap": "gray", "contrast_limits": (0.0, 1.0), "visible": False,
                  "metadata": metadata("depth confidence")}
        out.append((result.confidence, kwargs, "image"))
    if "fill" in outputs and result.fill is not None:
        kwargs = {**base, "name": inp.name + FILL_SUFFIX, "rgb": False,
                  "colormap": FILL_COLORMAP, "contrast_limits": (0.0, 1.0),
                  "blending": "additive", "opacity": 0.6, "visible": False,
                  "metadata": metadata("fill map")}
        out.append((result.fill, kwargs, "image"))
    if "fused" not in outputs and out:
        out[0][1]["visible"] = True
    return out


#: Attributes of an earlier output layer that a re-run updates (besides data).
_UPDATABLE = (
    "scale",
    "translate",
    "units",
    "axis_labels",
    "colormap",
    "contrast_limits",
    "gamma",
    "blending",
    "opacity",
    "metadata",
)


def add_output_layers(viewer, layer_data: list[LayerDataTuple], inputs: Sequence = ()) -> list:
    """Add the outputs to the viewer; an image layer of the same name (never an input) is
    updated in place instead, so re-running replaces the previous result.

    A new fused image goes on top of the layer list; new maps go just below the fused image
    (hidden, see `output_layer_data`); layers updated in place keep their place and visibility.
    """
    from napari.layers import Image, Layer

    viewer = _unwrap(viewer)
    inputs = [_unwrap(layer) for layer in inputs]
    layers = []
    fused = None
    for data, kwargs, layer_type in layer_data:
        name = kwargs["name"]
        old = viewer.layers[name] if name in viewer.layers else None
        if old is not None and (any(old is i for i in inputs) or not isinstance(old, Image)):
            old = None  # never touch an input or a foreign layer: add alongside (napari renames)
        if (
            old is not None
            and bool(old.rgb) == bool(kwargs.get("rgb"))
            and old.data.ndim == np.ndim(data)
            and not old.multiscale
        ):
            old.data = data
            for key in _UPDATABLE:
                if key in kwargs:
                    setattr(old, key, kwargs[key])
            layers.append(old)
        else:
            layers.append(_insert(viewer, Layer.create(data, kwargs, layer_type), old, fused))
        if kwargs.get("metadata", {}).get("output") == "fused image":
            fused = layers[-1]
    return layers


def _insert(viewer, new, old, fused):
    """Add a new output layer: in place of an incompatible old one of the same name, else
    just below this run's fused image, else on top."""
    if old is not None:
        index = viewer.layers.index(old)
        viewer.layers.remove(old)
        viewer.layers.insert(index, new)
    elif fused is not None and fused in viewer.layers:
        viewer.layers.insert(viewer.layers.index(fused), new)
    else:
        viewer.add_layer(new)
    return new


def fuse_layer(layer, viewer=None, *, axis: int | None = None, outputs=OUTPUTS, **options):
    """Fuse an image layer (or a list of 2-D layers taken as planes), blocking.

    With ``viewer``, adds the outputs ("<name> fused", "<name> departure from the planes" (pixel
    mode) or "<name> VAE reconstruction error" (latent mode), "<name> depth map", "<name> depth
    confidence", "<name> synthesised fill") or replaces earlier ones, exactly as the Focus
    fusion widget does, and returns the layers; without it returns napari layer-data tuples.
    ``axis`` is the focus axis (default: the first axis, or the one the reader recorded);
    ``outputs`` any of "fused", "error", "depth", "fill" (depth and fill exist in pixel mode);
    ``options`` go to `napari_vaeedof.fuse_stack` (mode, tile_size, overlap, device, ...).

    >>> from napari_vaeedof import fuse_layer
    >>> layers = fuse_layer(viewer.layers["stack"], viewer=viewer)  # doctest: +SKIP
    """
    from .api import fuse_stack

    outputs = check_outputs(outputs)
    inp = fusion_input(layer, axis)
    result = fuse_stack(inp.stack, **inp.engine_kwargs, error_map="error" in outputs, **options)
    data = output_layer_data(inp, result, outputs)
    if viewer is None:
        return data
    return add_output_layers(viewer, data, inp.inputs)


def check_outputs(outputs) -> tuple[str, ...]:
    """The asked-for outputs, checked (a clear ValueError for none or an unknown name)."""
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"Unknown output(s) {unknown}; choose from {OUTPUTS}.")
    if not outputs:
        raise ValueError(f"Ask for at least one output of {OUTPUTS}.")
    return outputs
