"""Retrained weights beside the shipped ones, per physics family and noise split, in one run.

With ``--unet``: latent mode (the U-Net's own output) and pixel mode (the U-Net as fill) for
each U-Net, with the VAE ceiling D(E(truth)) as the reference latent mode should approach.
With ``--selection``: pixel mode with each selection head. The Laplacian pyramid beside them.
Held-out seeds (1,000,000 on), never used in training.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/compare_weights.py \
        --unet runs/train_families/fusion_unet.safetensors --n 6 --out runs/exp/unet_families
    ... --selection runs/selection_families/selection_net.safetensors --out runs/exp/heads

Writes ``compare.json`` and ``compare.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_vaeedof.evaluation import heldout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unet", type=Path, help="a retrained U-Net (safetensors)")
    p.add_argument("--selection", type=Path, help="a retrained selection head (safetensors)")
    p.add_argument("--n", type=int, default=6, help="stacks per family and split")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--families", nargs="+", default=list(heldout.FAMILIES))
    p.add_argument("--methods", nargs="+", help="a subset of the methods (default all)")
    p.add_argument("--out", type=Path, default=Path("runs/exp/compare_weights"))
    p.add_argument("--device", default="cpu", help="where our modes and the ceiling run")
    args = p.parse_args(argv)
    if args.unet is None and args.selection is None:
        p.error("give --unet, --selection or both")
    shipped = heldout.method_table(device=args.device)
    new = heldout.method_table(args.unet, args.selection, args.device)
    methods = {}
    if args.unet is not None:
        methods |= {"latent shipped": shipped["vaeedof_latent"],
                    "latent new": new["vaeedof_latent"]}
    methods |= {"pixel shipped": shipped["vaeedof_pixel"], "pixel new": new["vaeedof_pixel"],
                "laplacian_pyramid": shipped["laplacian_pyramid"]}
    if args.unet is not None:
        methods["vae_ceiling"] = shipped["vae_ceiling"]
    if args.methods:
        methods = {k: methods[k] for k in args.methods}
    result = heldout.evaluate_families(methods, args.families, args.n, args.size, "both",
                                       log=print)
    result["unet"], result["selection"] = str(args.unet), str(args.selection)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    lines = [f"# U-Net {args.unet or 'shipped'}, selection head {args.selection or 'shipped'} "
             "beside the shipped weights", "",
             f"{args.n} held-out stacks per family and split, {args.size} px; PSNR (pooled "
             f"PSNR) / SSIM / pooled hard-pixel PSNR against the noise-free truth.", "",
             "| family | split | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for family, splits in result["summary"].items():
        for split, by in splits.items():
            cells = [f"{by[m]['psnr']:.2f} ({by[m]['psnr_pooled']:.2f}) / {by[m]['ssim']:.3f} / "
                     f"{by[m].get('psnr_hard_pooled', float('nan')):.2f}" for m in methods]
            lines.append(f"| {family} | {split} | " + " | ".join(cells) + " |")
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
