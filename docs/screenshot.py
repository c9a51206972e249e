"""Screenshot of the real napari window for the user guide, right after a fusion of the sample
stack with the widget's default settings: the fused image on top, the maps hidden.

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
    _settle()

    worker = widget.fuse()
    if worker is None:
        print("the fusion did not start", file=sys.stderr)
        return 1
    while widget.running:
        _settle(0.1)
    names = [layer.name for layer in viewer.layers]
    print("layers:", names, "| status:", widget.status.value)
    top = viewer.layers[-1]
    if top.name != "Synthetic focus stack fused" or not top.visible:
        print("the fused layer is not on top and visible", file=sys.stderr)
        return 1

    # as the user sees it after Fuse: the fused image on top, the maps hidden below it
    viewer.layers.selection.active = top
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
