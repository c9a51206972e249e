"""100 % crops of the three real stacks: latent mode with a previous Fusion U-Net and with the
shipped one, beside pixel mode and a Laplacian pyramid (no ground truth: for the eye).

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/unet_crops.py OLD_UNET.safetensors

OLD_UNET: e.g. `git show 39516b4:src/napari_vaeedof/models/weights/fusion_unet.safetensors >
old.safetensors` (the U-Net before the families). Writes docs/images/unet_families/NAME.png:
columns latent (old), latent (shipped), pixel (shipped), pyramid; a 384 px (algae) or 320 px
window at the stack's centre (algae: a cell cluster).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_vaeedof import fuse_stack
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion
from napari_vaeedof.io import read_stack

STACKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "stacks"
#: (name, half window, centre (y, x) or None for the middle)
SPOTS = [("algae_group", 192, (1824, 2720)), ("focusstack_pcb", 160, None),
         ("openfocus_keyboard", 160, None)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_unet", type=Path)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent / "images" / "unet_families")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, half, centre in SPOTS:
        d = read_stack(STACKS / name).data
        cy, cx = centre or (d.shape[1] // 2, d.shape[2] // 2)
        crop = np.ascontiguousarray(d[:, cy - half:cy + half, cx - half:cx + half, :3])
        old = fuse_stack(crop, mode="latent", unet_path=args.old_unet, error_map=False).image
        new = fuse_stack(crop, mode="latent", error_map=False).image
        pixel = fuse_stack(crop, error_map=False).image
        pyramid = laplacian_pyramid_fusion(crop.astype(np.float32) / 255)
        pyramid = np.round(np.clip(pyramid, 0, 1) * 255).astype(np.uint8)
        iio.imwrite(args.out / f"{name}.png", np.concatenate([old, new, pixel, pyramid], 1))
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
