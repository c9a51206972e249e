"""Pictures of the held-out stacks where our fusion falls furthest below the VAE ceiling.

Run after `napari-vaeedof evaluate --legacy --out docs/evaluation` (from the repository root;
this reads docs/evaluation/heldout.json)::

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/failure_cases.py
"""

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "docs"))

from real_stacks import Panel, inferno, write_montage  # noqa: E402

from napari_vaeedof import fuse_stack  # noqa: E402
from napari_vaeedof.data.synth import make_stack  # noqa: E402
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion  # noqa: E402
from napari_vaeedof.evaluation.heldout import vae_ceiling  # noqa: E402
from napari_vaeedof.evaluation.metrics import sharpest_plane  # noqa: E402


def main(n: int = 3) -> None:
    result = json.loads((REPO / "docs/evaluation/heldout.json").read_text())
    rows = {(r["seed"], r["method"]): r for r in result["rows"]}
    seeds = sorted({r["seed"] for r in result["rows"]})
    gap = {s: rows[(s, "vae_ceiling")]["psnr"] - rows[(s, "vaeedof")]["psnr"] for s in seeds}
    out = REPO / "docs/images/failures"
    out.mkdir(parents=True, exist_ok=True)
    for seed in sorted(seeds, key=gap.get, reverse=True)[:n]:
        st = make_stack(seed, size=result["size"])
        ours = fuse_stack(st.planes, error_map=False).image
        diff = np.abs(ours - st.ground_truth).mean(-1) * 255
        to8 = lambda a: (np.clip(a, 0, 1) * 255).round().astype(np.uint8)  # noqa: E731
        k, _ = sharpest_plane(st.planes)
        hi = float(np.percentile(diff, 99.5))
        panels = [
            Panel("ground truth", to8(st.ground_truth)),
            Panel(f"sharpest plane ({k})", to8(st.planes[k])),
            Panel(f"ours {rows[(seed, 'vaeedof')]['psnr']:.1f} dB", to8(ours)),
            Panel(f"VAE ceiling {rows[(seed, 'vae_ceiling')]['psnr']:.1f} dB",
                  to8(vae_ceiling(st.ground_truth))),
            Panel(f"Laplacian {rows[(seed, 'laplacian_pyramid')]['psnr']:.1f} dB",
                  to8(laplacian_pyramid_fusion(st.planes))),
            Panel("|ours - truth|", inferno(diff, 0, hi), (0.0, hi)),
        ]
        header = (f"held-out seed {seed}: {st.kind}, {'gray' if st.gray else 'colour'}, "
                  f"{len(st.focus)} planes; {gap[seed]:.1f} dB below the VAE ceiling")
        write_montage(out / f"seed_{seed}.png", panels, header, panel_px=256)
        print(out / f"seed_{seed}.png", f"gap {gap[seed]:.2f} dB")


if __name__ == "__main__":
    main()
