"""Screenshot of the real napari window for the user guide: sample stack, widget, fused result.

Run headless with:  xvfb-run -a python docs/screenshot.py
Writes docs/images/napari-window.png (and checks it is not blank).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import imageio.v3 as iio
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parent / "images" / "napari-window.png"


def _settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def main() -> int:
    viewer = napari.Viewer(show=True, title="napari-vaeedof")
    viewer.window._qt_window.resize(1440, 860)
    viewer.open_sample("napari-vaeedof", "focus_stack")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vaeedof", "Focus fusion")
    widget.tile_size.value = 128  # the 256 px sample in 3 x 3 tiles, so the progress bar moves
    _settle()

    worker = widget.fuse()
    if worker is None:
        print("the fusion did not start", file=sys.stderr)
        return 1
    while widget.running:
        _settle(0.1)
    names = [layer.name for layer in viewer.layers]
    print("layers:", names)
    if "Synthetic focus stack fused" not in names:
        print("no fused layer was added", file=sys.stderr)
        return 1

    # input (one plane), fused image and error map side by side
    viewer.dims.set_current_step(0, 2)
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 3)
    viewer.layers.selection.active = viewer.layers["Synthetic focus stack error map"]
    viewer.reset_view()
    _settle(1.0)

    shot = viewer.screenshot(canvas_only=False, flash=False)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(OUT, shot[..., :3])
    std = float(np.asarray(shot[..., :3], np.float32).std())
    print(f"wrote {OUT} {shot.shape} (pixel std {std:.1f})")
    viewer.close()
    return 0 if std > 10 else 1


if __name__ == "__main__":
    sys.exit(main())
