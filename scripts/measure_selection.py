"""What each part of the pixel-faithful mode contributes, on the first N held-out stacks.

Prints mean PSNR (all pixels, and hard pixels as `napari-vaeedof evaluate` defines them) of:
the selection blend without and with the fill step, the decoded latent fusion alone, the best
single plane per pixel chosen with the ground truth (an oracle no method can use), and the
Laplacian pyramid; plus how much of the image the fill touches.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/measure_selection.py --n 12
"""

import argparse

import numpy as np
import torch

from napari_vaeedof.data.synth import make_stack
from napari_vaeedof.engine import compose as C
from napari_vaeedof.engine.fusion import fuse_latents, head_inputs
from napari_vaeedof.engine.runtime import load_models
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion
from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED
from napari_vaeedof.evaluation.metrics import hard_pixel_mask, psnr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    m = load_models("cpu", "float32")
    res: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        res.setdefault(key, []).append(value)

    for k in range(args.n):
        seed = HELDOUT_FIRST_SEED + k
        st = make_stack(seed, size=args.size)
        gt = st.ground_truth
        hard = hard_pixel_mask(make_stack(seed, size=args.size, noise=False).planes, gt)
        x = torch.from_numpy(st.planes).permute(0, 3, 1, 2)
        with torch.inference_mode():
            lat = m.ae.encode(x)
            decoded = m.ae.decode(fuse_latents(lat, m.unet)[0][None])[0]
            logits, fill_logit = m.selection(head_inputs(m.selection.config.inputs, x, lat))
            blend, _, fill = C.pixel_blend(logits[0], fill_logit[0], x)
            err = (x - torch.from_numpy(gt).permute(2, 0, 1)[None]).abs().amax(1)
            idx = err.argmin(0)[None, None].expand(1, 3, *err.shape[1:])
            oracle = torch.gather(x, 0, idx)[0]
        images = {"blend (no fill)": blend, "pixel-faithful": C.compose(blend, decoded, fill),
                  "decoded latent fusion": decoded, "oracle best plane": oracle}
        for name, img in images.items():
            im = img.permute(1, 2, 0).numpy().clip(0, 1)
            add(name, psnr(im, gt))
            if hard.any():
                add(name + ", hard", psnr(im, gt, hard))
        lap = np.clip(laplacian_pyramid_fusion(st.planes), 0, 1)
        add("Laplacian pyramid", psnr(lap, gt))
        if hard.any():
            add("Laplacian pyramid, hard", psnr(lap, gt, hard))
        f = fill.numpy()
        add("fraction with fill > 0", float((f > 0).mean()))
        if hard.any():
            add("mean fill on hard pixels", float(f[hard].mean()))
        add("mean fill elsewhere", float(f[~hard].mean()))
    for key, values in res.items():
        print(f"{key}: {np.nanmean(values):.3f}")


if __name__ == "__main__":
    main()
