"""Is latent mode softer or sharper than the truth? Gradient energy of the fused image over the
noise-free truth's (1 = as much detail; below: soft; above: noise or invented contrast), latent
mode with the shipped U-Net and with another, 3 held-out stacks per physics family and split.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/latent_detail.py OTHER_UNET.safetensors
"""

from __future__ import annotations

import sys

import numpy as np

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import FAMILIES, make_family_stack
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED
from napari_vaeedof.evaluation.metrics import gradient_energy


def main(argv=None) -> int:
    other = (argv if argv is not None else sys.argv[1:])[0]
    for family in FAMILIES:
        for noise in (False, True):
            ratios = {"other": [], "shipped": []}
            for seed in range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + 3):
                st = make_family_stack(family, seed, size=256, noise=noise)
                truth = gradient_energy(st.ground_truth)
                for name, unet in (("other", other), ("shipped", None)):
                    fused = fuse_stack(st.planes, precision="float32", error_map=False,
                                       mode="latent", unet_path=unet).image
                    ratios[name].append(gradient_energy(fused) / truth)
            print(family, "noisy" if noise else "none",
                  {k: round(float(np.mean(v)), 3) for k, v in ratios.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
