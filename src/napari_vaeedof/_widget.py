"""The "Focus fusion" dock widget: choose layers, run the fusion in a worker thread, add layers.

Thin by design: the layers <-> arrays work is in `_layers`, the fusion in `api.fuse_stack`.
"""

from __future__ import annotations

import threading
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
from napari.qt.threading import FunctionWorker, thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal

from . import _layers
from .api import FusionCancelled, FusionProgress, format_seconds, fuse_stack
from .engine.options import ALIGNMENTS, DEFAULT_MODE, PRECISIONS, FusionOptions
from .engine.runtime import available_devices
from .engine.tiling import MAX_AUTO_TILE
from .errors import expected_errors

ONE_LAYER = "One stack layer"
SEVERAL_LAYERS = "Several 2-D layers"
#: What the tile size spin box shows when "auto" is unticked at first.
MANUAL_TILE = 512
#: Resolution of the progress bar (it shows per cent).
PROGRESS_STEPS = 1000

FOCUS_TOOLTIP = (
    "The axis that holds the focus planes. The default is the layer's first axis (where napari "
    "and most files put Z), or the focus axis recorded by this plugin's reader. RGB layers keep "
    "their colour axis out of this list. For a 4-D grayscale layer the axis not chosen here is "
    "fused index by index (like channels)."
)


@dataclass
class Failure:
    """What the worker returns instead of raising for an expected error, so the widget shows
    the engine's message as a plain notification (a raised exception would reach napari's
    error dialog with a traceback, meant for bugs)."""

    error: BaseException


#: What the worker returns when Cancel stopped the fusion.
CANCELLED = "cancelled"


@thread_worker(start_thread=False)
def _fusion_job(inp: _layers.FusionInput, options: FusionOptions, outputs: tuple[str, ...],
                progress):
    """Worker body: the fusion, ``progress`` called at every step (it raises FusionCancelled
    after Cancel); returns layer-data tuples, CANCELLED or a Failure."""
    try:
        result = fuse_stack(inp.stack, **inp.engine_kwargs, progress=progress,
                            **options.kwargs())
        return _layers.output_layer_data(inp, result, outputs)
    except FusionCancelled:
        return CANCELLED
    except expected_errors() as exc:  # the user's or the machine's; other errors are bugs
        return Failure(exc)


class _Relay(QObject):
    """Carries progress reports from the worker thread to the widget (a queued signal)."""

    report = Signal(object)


def error_message(exc: BaseException) -> str:
    """The engine's message, with a hint for out-of-memory errors."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in low or "OutOfMemory" in repr(exc):
        text += " (out of memory: try a smaller tile size, or the CPU device)"
    return text


class FusionWidget(Container):
    """Fuse a focus stack (one layer with a focus axis, or several 2-D layers) into one image.

    Outputs are "<input> fused" (on top, visible), and as hidden overlays the error map
    ("<input> departure from the planes" in pixel-faithful mode, "<input> VAE reconstruction
    error" in latent mode) and, in pixel-faithful mode, "<input> depth map", "<input> depth
    confidence" and "<input> synthesised fill"; running again on the same input replaces them.
    The fusion runs in a worker thread, one tile at a time; the progress bar and the status line
    follow the steps within each tile (planes encoded, groups fused) with the elapsed and the
    estimated remaining time; Cancel stops at the next step (within seconds) and adds nothing.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self._init_state()
        self._build_inputs()
        self._build_options()
        self._build_outputs()
        self._build_run()
        super().__init__(widgets=self._layout(), labels=True)
        self._connect()
        self._on_layer()

    # ---- construction --------------------------------------------------------------------
    def _init_state(self) -> None:
        """The run's state: worker, outputs, progress, cancel, clock."""
        self.worker: FunctionWorker | None = None
        self.outputs: list = []  # the layers the last run added or replaced
        self.last_progress: FusionProgress | None = None
        self._started = 0.0
        self._reported = 0.0  # when last_progress arrived
        self._cancel = threading.Event()
        self._cancel_pressed: float | None = None
        self.cancel_seconds: float | None = None  # Cancel pressed -> worker stopped, last run
        self._relay = _Relay()
        self._relay.report.connect(self._on_progress)
        self._clock = QTimer()  # the elapsed time moves on between reports
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._show_status)


    def _build_inputs(self) -> None:
        """Which layers are fused: one stack layer and its focus axis, or 2-D layers."""
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

    def _build_options(self) -> None:
        """How: device, tiles, precision, mode and alignment."""
        self.device = ComboBox(
            choices=["auto", *available_devices()],
            value="auto",
            label="Device",
            tooltip="'auto' picks CUDA, then MPS, then CPU.",
        )
        self.auto_tile = CheckBox(
            value=True,
            text="auto",
            tooltip=f"Tile size chosen from the plane size: the size with the least work, at "
            f"most {MAX_AUTO_TILE} px (less for more than 10 planes, to bound memory), so a "
            "plane that fits is one tile; overlap a quarter of the tile. Untick (or change "
            "the size) to set them yourself.",
        )
        self.tile_size = SpinBox(
            value=MANUAL_TILE,
            min=64,
            max=8192,
            step=32,
            label="Tile size (px)",
            enabled=False,
            tooltip="Planes are fused in overlapping square tiles of this size (multiple of "
            "32). Smaller tiles need less memory.",
        )
        self.overlap = SpinBox(
            value=MANUAL_TILE // 4,
            min=0,
            max=MANUAL_TILE // 2,
            step=8,
            label="Overlap (px)",
            enabled=False,
            tooltip="Overlap of neighbouring tiles, blended with linear ramps; default a "
            "quarter of the tile, at most half.",
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
        self.fill = CheckBox(
            value=True,
            text="fill where no plane is sharp",
            tooltip="Pixel-faithful mode: where no plane holds the content, use the learned "
            "latent fusion (marked in the fill map). Untick to never synthesise content: "
            "every output value is then a blend of the planes' own values, and the VAE does "
            "not run (faster on stacks with much out-of-focus content).",
        )
        self.align = ComboBox(
            choices=list(ALIGNMENTS),
            value="none",
            label="Align",
            tooltip="Register the planes to the middle one before fusing. none: the planes "
            "are aligned (motorised microscope). translation: drift. similarity: drift and "
            "focus breathing (scale, rotation; handheld or macro stacks). affine: also shear.",
        )

    def _build_outputs(self) -> None:
        """Which layers to add: the fused image and the maps."""
        self.out_fused = CheckBox(value=True, text="fused image")
        self.out_error = CheckBox(
            value=True,
            text="error map",
            tooltip="Error map. Pixel-faithful mode: how far the output departs from what "
            "every plane shows (fill, fog, ghosts). Latent mode: where the VAE cannot "
            "reproduce the planes' content.",
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

    def _build_run(self) -> None:
        """Fuse and Cancel, the progress bar and the status line."""
        self.fuse_button = PushButton(text="Fuse")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS, label="Progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)

    def _layout(self) -> list:
        """The widgets top to bottom, related ones side by side."""
        return [
            self.input_mode,
            self.layer,
            self.focus_axis,
            self.planes,
            self.device,
            Container(
                widgets=[self.auto_tile, self.tile_size],
                layout="horizontal",
                labels=False,
                label="Tile size (px)",
            ),
            self.overlap,
            self.precision,
            self.mode,
            self.fill,
            self.align,
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
        ]

    def _connect(self) -> None:
        """Widget changes and the viewer's layer list drive the choices."""
        self.input_mode.changed.connect(self._on_mode)
        self.layer.changed.connect(self._on_layer)
        self.tile_size.changed.connect(self._on_tile)
        self.auto_tile.changed.connect(self._on_auto_tile)
        self.mode.changed.connect(self._on_fusion_mode)
        self.fuse_button.changed.connect(self.fuse)
        self.cancel_button.changed.connect(self.cancel)

        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self._refresh)
        events.inserted.connect(self._watch_layer)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh)

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
        self.out_depth.enabled = self.out_fill.enabled = self.fill.enabled = value == "pixel"

    def chosen_outputs(self) -> tuple[str, ...]:
        """The ticked outputs that the chosen mode produces."""
        boxes = {"fused": self.out_fused, "error": self.out_error}
        if self.mode.value == "pixel":
            boxes |= {"depth": self.out_depth, "fill": self.out_fill}
        return tuple(name for name, box in boxes.items() if box.value)

    def _on_tile(self, value: int) -> None:
        self.overlap.max = value // 2
        self.overlap.value = value // 4
        self.auto_tile.value = False  # a size set by hand is used

    def _on_auto_tile(self, auto: bool) -> None:
        self.tile_size.enabled = self.overlap.enabled = not auto

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

    def fusion_options(self, *, error_map: bool = True) -> FusionOptions:
        """The `FusionOptions` the widget's controls say (checked)."""
        auto = self.auto_tile.value
        return FusionOptions(tile_size=None if auto else int(self.tile_size.value),
                             overlap=None if auto else int(self.overlap.value),
                             device=self.device.value, precision=self.precision.value,
                             mode=self.mode.value, align=self.align.value, error_map=error_map,
                             fill=bool(self.fill.value) or self.mode.value != "pixel")

    def fuse(self, _value=None) -> FunctionWorker | None:
        """Start the fusion (what the Fuse button does); returns the started worker."""
        if self.worker is not None:
            return None
        outputs = self.chosen_outputs()
        try:
            if not outputs:
                raise ValueError("Tick at least one output (fused image, error map, depth or "
                                 "fill map).")
            inp = self.selected_input()
            options = self.fusion_options(error_map="error" in outputs)
        except ValueError as exc:
            show_error(str(exc))
            return None
        self._cancel.clear()
        self._cancel_pressed = self.last_progress = None
        worker = _fusion_job(inp, options, outputs, self._report)
        worker.returned.connect(lambda value: self._on_returned(inp, value))
        worker.errored.connect(self._on_errored)  # a bug: napari shows it with its traceback
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._started = time.perf_counter()
        self.fuse_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self._show_status()
        self._clock.start()
        worker.start()
        return worker

    def cancel(self, _value=None) -> None:
        """Stop the running fusion at its next step (within seconds); nothing is added."""
        if self.worker is not None and not self._cancel.is_set():
            self._cancel.set()
            self._cancel_pressed = time.perf_counter()
            self.cancel_button.enabled = False
            self._show_status()

    def _report(self, p: FusionProgress) -> None:
        """The engine's progress callback, in the worker thread: stop if cancelled, else pass
        the report on to the main thread."""
        if self._cancel.is_set():
            raise FusionCancelled
        self._relay.report.emit(p)

    def _on_progress(self, p: FusionProgress) -> None:
        self.last_progress, self._reported = p, time.perf_counter()
        self._show_status()
        self.progress.value = round(p.fraction * PROGRESS_STEPS)

    def _show_status(self) -> None:
        """The status line while running: what the current tile is doing, elapsed and left."""
        if self.worker is None:
            return
        now = time.perf_counter()
        elapsed = f"{format_seconds(now - self._started)} elapsed"
        p = self.last_progress
        if self._cancel_pressed is not None:
            self.status.value = f"Cancelling at the next step... ({elapsed})"
        elif p is None:
            self.status.value = f"Loading models and reading the stack... ({elapsed})"
        else:
            tile = min(p.tiles_done + 1, p.n_tiles)
            what = p.activity if p.event == "tile" else \
                f"Tile {tile} of {p.n_tiles}: {p.activity}"
            left = "" if p.remaining is None else \
                f", about {format_seconds(max(p.remaining - (now - self._reported), 0))} left"
            self.status.value = f"{what[0].upper()}{what[1:]}\n{elapsed}{left}"

    def _on_returned(self, inp: _layers.FusionInput, value) -> None:
        if value == CANCELLED:
            self.cancel_seconds = time.perf_counter() - (self._cancel_pressed or self._started)
            self.progress.value = 0
            self.status.value = f"Cancelled ({self.cancel_seconds:.1f} s after Cancel)"
            show_info("Focus fusion cancelled; nothing was added.")
            return
        if isinstance(value, Failure):
            self.status.value = "Failed"
            show_error(error_message(value.error))
            return
        self.outputs = _layers.add_output_layers(self.viewer, value, inp.inputs)
        seconds = time.perf_counter() - self._started
        hidden = sum(not layer.visible for layer in self.outputs)
        self.status.value = f"Done in {seconds:.1f} s: {len(self.outputs)} layer(s)" + \
            (f"; {hidden} map(s) hidden: click a layer's eye to show it" if hidden else "")

    def _on_errored(self, _exc: BaseException) -> None:
        self.status.value = "Failed (see the error notification)"

    def _on_finished(self) -> None:
        self._clock.stop()
        self.worker = None
        self.fuse_button.enabled = True
        self.cancel_button.enabled = False
