"""100 % crops of a real macro stack fused without and with plane alignment (issue 13).

The planes of ../shared/data/stacks/focusstack_pcb (7 JPEG planes, 2048 x 1536, a macro stack)
breathe by 0.5-1 % a plane (scale 0.980 to 1.017 against the middle plane) and drift, which
moves the frame's corners by up to about 25 px. They are registered on
the whole planes (`engine.align.align_planes`, similarity, as ``fuse_stack(align="similarity")``
does before tiling); then, at each spot, a 512 px window of the planes as taken and of the
registered planes is fused (pixel mode) and its central 256 px are shown side by side. Spots:
the lettering of `compose_crops.EXTRA_SPOTS` and the first automatic spot of
`compose_crops.pick_spots` (where one plane's fine detail stands out most).

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/align_crops.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "docs"))

from compose_crops import CONTEXT, CROP, EXTRA_SPOTS, STACKS, pick_spots, read_planes  # noqa: E402
from real_stacks import grid_image  # noqa: E402

from napari_vaeedof import fuse_stack  # noqa: E402
from napari_vaeedof.engine.align import align_planes  # noqa: E402

STACK = "focusstack_pcb"
#: The figure is saved with an adaptive 256-colour palette: a photo crop as PNG stays small.
COLOURS = 256


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stack", default=str(STACKS / STACK))
    p.add_argument("--out", default=str(REPO / "docs" / "images" / "align"))
    args = p.parse_args(argv)
    planes = read_planes(Path(args.stack))
    reg = align_planes(planes, model="similarity")
    shifts = [np.abs(t @ [1023.5, 767.5, 1] - [1023.5, 767.5, 1]).max() for t in reg.transforms]
    scales = [np.sqrt(abs(np.linalg.det(t[:2, :2]))) for t in reg.transforms]
    print(f"centre shifts up to {max(shifts):.1f} px, scales {min(scales):.4f}-"
          f"{max(scales):.4f}", flush=True)
    spots = EXTRA_SPOTS.get(STACK, []) + pick_spots(planes)[:1]
    cells, labels = [], []
    h, w = planes.shape[1:3]
    for spot, (y0, x0) in spots:
        cy0 = int(np.clip(y0 - (CONTEXT - CROP) // 2, 0, max(h - CONTEXT, 0)))
        cx0 = int(np.clip(x0 - (CONTEXT - CROP) // 2, 0, max(w - CONTEXT, 0)))
        window = (slice(None), slice(cy0, cy0 + CONTEXT), slice(cx0, cx0 + CONTEXT))
        oy, ox = y0 - cy0, x0 - cx0
        row = []
        for stack in (planes[window], reg.planes[window]):
            fused = fuse_stack(stack, error_map=False, device="cpu").image
            row.append(fused[oy: oy + CROP, ox: ox + CROP])
        cells.append(row)
        labels.append(f"{spot} at y={y0}, x={x0}")
        print(f"{spot}: done", flush=True)
    img = grid_image(cells, ["not aligned", "--align similarity"], labels,
                     f"{STACK}: 1:1 crops ({CROP} px), VAEEDOF pixel mode", [None, None])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{STACK}_align.png"
    img.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
