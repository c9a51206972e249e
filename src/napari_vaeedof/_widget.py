"""The "Focus fusion" dock widget: choose layers, run the fusion in a worker thread, add layers.

Thin by design: the layers <-> arrays work is in `_layers`, the fusion in `api.iter_fuse_stack`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
    Select,
    SpinBox,
)
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error, show_info

from . import _layers
from .api import DEFAULT_TILE, iter_fuse_stack
from .engine.fusion import DEFAULT_MODE, available_devices
from .models.weights import WeightsError

ONE_LAYER = "One stack layer"
SEVERAL_LAYERS = "Several 2-D layers"
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
#: Errors the engine raises with a message meant for the user (StackError is a ValueError,
#: WeightsError and torch's out-of-memory error are RuntimeErrors).
USER_ERRORS = (ValueError, RuntimeError, MemoryError, WeightsError)

FOCUS_TOOLTIP = (
    "The axis that holds the focus planes. The default is the layer's first axis (where napari "
    "and most files put Z), or the focus axis recorded by this plugin's reader. RGB layers keep "
    "their colour axis out of this list. For a 4-D grayscale layer the axis not chosen here is "
    "fused index by index (like channels)."
)


@dataclass
class Failure:
    """What the worker returns instead of raising for an expected error.

    (superqt's worker must not see these exceptions: it re-raises an Exception that is returned,
    and a RuntimeError raised inside the generator is taken for "worker deleted" and only
    warned about, so an out-of-memory or weights error would vanish without a message.)
    """

    error: BaseException


@thread_worker(start_thread=False)
def _fusion_job(inp: _layers.FusionInput, options: dict, outputs: tuple[str, ...]):
    """Worker body: yields (tiles done, total) per tile; returns layer-data tuples or a Failure."""
    try:
        result = yield from iter_fuse_stack(
            inp.stack, **inp.engine_kwargs, error_map="error" in outputs, **options
        )
        return _layers.output_layer_data(inp, result, outputs)
    except USER_ERRORS as exc:
        return Failure(exc)


def error_message(exc: BaseException) -> str:
    """The engine's message, with a hint for out-of-memory errors."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in low or "OutOfMemory" in repr(exc):
        text += " (out of memory: try a smaller tile size, or the CPU device)"
    return text


class FusionWidget(Container):
    """Fuse a focus stack (one layer with a focus axis, or several 2-D layers) into one image.

    Outputs are "<input> fused", "<input> error map", and in pixel-faithful mode "<input> depth",
    "<input> depth confidence" and "<input> fill map"; running again on the same input
    replaces them. The fusion runs in a worker thread, one tile at a time (Cancel stops it
    between tiles and adds nothing).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.worker: GeneratorWorker | None = None
        self.outputs: list = []  # the layers the last run added or replaced
        self._started = 0.0

        self.input_mode = RadioButtons(
            choices=[ONE_LAYER, SEVERAL_LAYERS],
            value=ONE_LAYER,
            label="Input",
            orientation="horizontal",
            tooltip="One layer whose planes lie along an axis, or several 2-D layers as planes.",
        )
        self.layer = ComboBox(
            choices=self._stack_choices,
            label="Stack layer",
            tooltip="An image layer with a focus axis (3-D, or 3-D RGB).",
        )
        self.focus_axis = ComboBox(
            choices=self._axis_choices, label="Focus axis", tooltip=FOCUS_TOOLTIP
        )
        self.planes = Select(
            choices=self._plane_choices,
            label="Planes",
            visible=False,
            tooltip="2-D layers taken as planes, in layer-list order "
            "(ctrl/shift-click to select several).",
        )
        self.device = ComboBox(
            choices=["auto", *available_devices()],
            value="auto",
            label="Device",
            tooltip="'auto' picks CUDA, then MPS, then CPU.",
        )
        self.tile_size = SpinBox(
            value=DEFAULT_TILE,
            min=64,
            max=8192,
            step=32,
            label="Tile size (px)",
            tooltip="Planes are fused in overlapping square tiles of this "
            "size (multiple of 32). Smaller tiles need less memory.",
        )
        self.overlap = SpinBox(
            value=DEFAULT_TILE // 4,
            min=0,
            max=DEFAULT_TILE // 2,
            step=8,
            label="Overlap (px)",
            tooltip="Overlap of neighbouring tiles, blended with linear "
            "ramps; default a quarter of the tile, at most half.",
        )
        self.precision = ComboBox(
            choices=list(PRECISIONS),
            value="auto",
            label="Precision",
            tooltip="'auto': float16 on a GPU; on the CPU bfloat16 where it is native, "
            "else float32.",
        )
        self.mode = ComboBox(
            choices=[("pixel-faithful", "pixel"), ("latent (paper)", "latent")],
            value=DEFAULT_MODE,
            label="Mode",
            tooltip="pixel-faithful: the planes' own pixels wherever a plane is in focus, the "
            "learned latent fusion only where none is (fill map). latent: every pixel decoded "
            "from the fused latent, as in the VAEEDOF paper.",
        )
        self.out_fused = CheckBox(value=True, text="fused image")
        self.out_error = CheckBox(
            value=True,
            text="error map",
            tooltip="Reconstruction-error map: where the fused content "
            "is content the VAE cannot reproduce.",
        )
        self.out_depth = CheckBox(
            value=True,
            text="depth",
            tooltip="Depth (height) map: the focus position each pixel came from, in the "
            "focus axis' units, and its confidence (pixel-faithful mode).",
        )
        self.out_fill = CheckBox(
            value=True,
            text="fill map",
            tooltip="Where no plane held the content and it was synthesised by the latent "
            "fusion (1), or taken from the planes' own pixels (0) (pixel-faithful mode).",
        )
        self.fuse_button = PushButton(text="Fuse")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Tiles")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        super().__init__(
            widgets=[
                self.input_mode,
                self.layer,
                self.focus_axis,
                self.planes,
                self.device,
                self.tile_size,
                self.overlap,
                self.precision,
                self.mode,
                Container(
                    widgets=[self.out_fused, self.out_error, self.out_depth, self.out_fill],
                    layout="horizontal",
                    labels=False,
                    label="Outputs",
                ),
                Container(
                    widgets=[self.fuse_button, self.cancel_button],
                    layout="horizontal",
                    labels=False,
                    label="",
                ),
                self.progress,
                self.status,
            ],
            labels=True,
        )
        self.input_mode.changed.connect(self._on_mode)
        self.layer.changed.connect(self._on_layer)
        self.tile_size.changed.connect(self._on_tile)
        self.mode.changed.connect(self._on_fusion_mode)
        self.fuse_button.changed.connect(self.fuse)
        self.cancel_button.changed.connect(self.cancel)

        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self._refresh)
        events.inserted.connect(self._watch_layer)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh)
        self._on_layer()

    # ---- choices ---------------------------------------------------------------------------
    def _images(self) -> list:
        return [layer for layer in self.viewer.layers if _layers.is_image_layer(layer)]

    def _stack_choices(self, _widget=None) -> list[tuple[str, object]]:
        return [(layer.name, layer) for layer in self._images() if layer.ndim >= 3]

    def _plane_choices(self, _widget=None) -> list[tuple[str, object]]:
        return [(layer.name, layer) for layer in self._images() if layer.ndim == 2]

    def _axis_choices(self, _widget=None) -> list[tuple[str, int]]:
        return _layers.focus_axis_choices(self.layer.value)

    def _refresh(self, _event=None) -> None:
        self.reset_choices()

    def _watch_layer(self, event) -> None:
        event.value.events.name.connect(self._refresh)

    def _on_mode(self, _value=None) -> None:
        one = self.input_mode.value == ONE_LAYER
        self.layer.visible = self.focus_axis.visible = one
        self.planes.visible = not one

    def _on_layer(self, _value=None) -> None:
        self.focus_axis.reset_choices()
        if self.layer.value is not None:
            self.focus_axis.value = _layers.default_focus_axis(self.layer.value)

    def _on_fusion_mode(self, value: str) -> None:
        self.out_depth.enabled = self.out_fill.enabled = value == "pixel"

    def chosen_outputs(self) -> tuple[str, ...]:
        """The ticked outputs that the chosen mode produces."""
        boxes = {"fused": self.out_fused, "error": self.out_error}
        if self.mode.value == "pixel":
            boxes |= {"depth": self.out_depth, "fill": self.out_fill}
        return tuple(name for name, box in boxes.items() if box.value)

    def _on_tile(self, value: int) -> None:
        self.overlap.max = value // 2
        self.overlap.value = value // 4

    # ---- running ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def selected_input(self) -> _layers.FusionInput:
        """Snapshot of the chosen input (raises StackError with a message for the user)."""
        if self.input_mode.value == ONE_LAYER:
            if self.layer.value is None:
                raise _layers.StackError("No image layer with a focus axis; open a stack first.")
            return _layers.fusion_input(self.layer.value, self.focus_axis.value)
        chosen = list(self.planes.value or [])
        if len(chosen) < 2:
            raise _layers.StackError("Select at least two 2-D layers as planes.")
        order = {id(layer): i for i, layer in enumerate(self.viewer.layers)}
        chosen.sort(key=lambda layer: order.get(id(_layers._unwrap(layer)), len(order)))
        return _layers.fusion_input(chosen)

    def fuse(self, _value=None) -> GeneratorWorker | None:
        """Start the fusion (what the Fuse button does); returns the started worker."""
        if self.worker is not None:
            return None
        outputs = self.chosen_outputs()
        try:
            if not outputs:
                raise ValueError("Tick at least one output (fused image, error map, depth or "
                                 "fill map).")
            inp = self.selected_input()
        except ValueError as exc:
            show_error(str(exc))
            return None
        options = {
            "tile_size": int(self.tile_size.value),
            "overlap": int(self.overlap.value),
            "device": self.device.value,
            "precision": self.precision.value,
            "mode": self.mode.value,
        }
        worker = _fusion_job(inp, options, outputs)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda value: self._on_returned(inp, value))
        worker.aborted.connect(self._on_aborted)
        worker.errored.connect(self._on_errored)  # a bug: napari shows it with its traceback
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._started = time.perf_counter()
        self.fuse_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.status.value = "Loading models..."
        worker.start()
        return worker

    def cancel(self, _value=None) -> None:
        """Stop the running fusion after the current tile; nothing is added."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling after the current tile..."

    def _on_progress(self, step: tuple[int, int]) -> None:
        done, total = step
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.status.value = f"Tile {done} of {total}"

    def _on_returned(self, inp: _layers.FusionInput, value) -> None:
        if isinstance(value, Failure):
            self.status.value = "Failed"
            show_error(error_message(value.error))
            return
        self.outputs = _layers.add_output_layers(self.viewer, value, inp.inputs)
        seconds = time.perf_counter() - self._started
        self.status.value = f"Done in {seconds:.1f} s: {len(self.outputs)} layer(s)"

    def _on_errored(self, _exc: BaseException) -> None:
        self.status.value = "Failed (see the error notification)"

    def _on_aborted(self) -> None:
        self.progress.value = 0
        self.status.value = "Cancelled"
        show_info("Focus fusion cancelled; nothing was added.")

    def _on_finished(self) -> None:
        self.worker = None
        self.fuse_button.enabled = True
        self.cancel_button.enabled = False
