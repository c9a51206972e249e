"""100 % crops of the pixel-faithful composition on the real stacks, and a measure of fog.

For each stack in ../shared/data/stacks, as shipped and re-encoded as JPEG (quality 80), two
spots are chosen automatically on the planes (not on any output):

- "one plane sharp": the window where one plane's fine detail most exceeds every other plane's
  (lettering, thin edges: where fog or ghost rings would show);
- "depth edge": the window where the sharpest plane changes most often among strong detail
  (occlusion edges, where halos would show).

A 512 px context around each spot is fused (so every method sees the same planes; tiles of the
full plane would see the same), and the central 256 px are shown 1:1: the sharpest plane of the
window, the Laplacian pyramid (5 levels, max-abs detail, mean base), focusweave (when the peers
venv from benchmarks/setup_peers.sh exists), ours in pixel mode and our error map (pixel mode:
the output's departure from the planes, 0-32 grey levels).

The measure ("fine-band fidelity"), on pixels where one plane is clearly the sharpest (its
finest Laplacian band energy, smoothed over 9 px, at least 4x every other plane's and above a
floor): the energy of (fine band of the output - fine band of that plane) relative to that
plane's fine-band energy, in dB (lower is better: -10 dB means the output's fine detail is
within 10 % of the plane's in energy), and the output's fine-band energy as a fraction of the
plane's (1 = as crisp; below 1 = fog, above 1 = added ringing).

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/compose_crops.py
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "docs"))

from real_stacks import grid_image, inferno, png_bytes  # noqa: E402

from napari_vaeedof import fuse_stack  # noqa: E402
from napari_vaeedof.engine.stack import LUMA_WEIGHTS  # noqa: E402
from napari_vaeedof.evaluation.baselines import laplacian_pyramid_fusion  # noqa: E402

STACKS = REPO.parent / "shared" / "data" / "stacks"
PEERS_PY = REPO / "benchmarks" / ".peers-venv" / "bin" / "python"
CROP, CONTEXT = 256, 512
#: Display range of the error map (departure from the planes), grey levels of 8 bits.
DEPARTURE_RANGE = (0.0, 32.0)
#: Spots chosen by eye in addition (top-left corners, full-resolution pixels).
EXTRA_SPOTS = {"focusstack_pcb": [("silkscreen lettering", (830, 760))]}


def read_planes(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])


def jpeg(planes: np.ndarray, quality: int = 80) -> np.ndarray:
    out = []
    for p in planes:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def fine_band(img: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) -> (..., H, W) finest Laplacian band of the luma (1 px scale)."""
    lum = np.asarray(img, np.float32) @ LUMA_WEIGHTS.astype(np.float32)
    sigma = [0] * (lum.ndim - 2) + [1.0, 1.0]
    return lum - ndimage.gaussian_filter(lum, sigma)


def fine_energy(planes: np.ndarray) -> np.ndarray:
    band = fine_band(planes)
    size = [1] * (band.ndim - 2) + [9, 9]
    return ndimage.uniform_filter(band * band, size)


def one_sharp_mask(planes: np.ndarray, ratio: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) mask where one plane's fine energy is >= ratio x every other's, and that plane."""
    e = fine_energy(planes)
    order = np.sort(e, axis=0)
    floor = np.percentile(e.max(0), 50)
    mask = (order[-1] >= ratio * order[-2]) & (order[-1] > floor)
    return mask, e.argmax(0)


def pick_spots(planes: np.ndarray) -> list[tuple[str, tuple[int, int]]]:
    """Top-left corners of the CROP windows for the two kinds of spot (module docstring)."""
    h, w = planes.shape[1:3]
    e = fine_energy(planes)
    best = e.argmax(0)
    mask, _ = one_sharp_mask(planes)
    strong = e.max(0) > np.percentile(e.max(0), 70)
    change = strong & ((np.diff(best, axis=0, append=best[-1:]) != 0)
                       | (np.diff(best, axis=1, append=best[:, -1:]) != 0))
    spots = []
    for name, score in (("one plane sharp", mask * np.log1p(e.max(0))),
                        ("depth edge", change.astype(np.float32))):
        s = ndimage.uniform_filter(score.astype(np.float32), CROP)
        margin = CROP // 2
        inner = s[margin: h - margin + 1, margin: w - margin + 1] if h > CROP and w > CROP else s
        cy, cx = np.unravel_index(np.argmax(inner), inner.shape)
        if h > CROP and w > CROP:
            cy, cx = cy + margin, cx + margin
        y0 = int(np.clip(cy - CROP // 2, 0, max(h - CROP, 0)))
        x0 = int(np.clip(cx - CROP // 2, 0, max(w - CROP, 0)))
        spots.append((name, (y0, x0)))
    return spots


def focusweave(planes: np.ndarray) -> np.ndarray | None:
    if not PEERS_PY.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, planes)
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"method": "focusweave:laplacian", "device": "cpu", "threads": 0,
                                   "repeats": 1, "warmup": False,
                                   "items": [{"stack": str(src), "out": str(out)}]}))
        subprocess.run([str(PEERS_PY), str(REPO / "benchmarks" / "peer_worker.py"), "--job",
                        str(job), "--result", str(Path(tmp) / "r.json")], check=True,
                       capture_output=True)
        return np.load(out)


def methods(planes: np.ndarray) -> dict[str, np.ndarray]:
    """Every method on one (Z, H, W, 3) uint8 context window -> (H, W, 3) uint8."""
    e = fine_energy(planes).mean((1, 2))
    out = {f"sharpest plane ({int(e.argmax())})": planes[int(e.argmax())]}
    pyr = laplacian_pyramid_fusion(planes.astype(np.float32) / 255, levels=5)
    out["Laplacian pyramid"] = np.rint(pyr * 255).astype(np.uint8)
    fw = focusweave(planes)
    if fw is not None:
        out["focusweave"] = fw
    res = fuse_stack(planes, precision="float32", error_map=True, device="cpu")
    out["VAEEDOF pixel (ours)"] = res.image
    out["ours: departure from the planes"] = inferno(res.error, *DEPARTURE_RANGE)
    return out


def fidelity(out: np.ndarray, planes: np.ndarray) -> tuple[float, float]:
    mask, best = one_sharp_mask(planes)
    if not mask.any():
        return float("nan"), float("nan")
    ref = np.take_along_axis(fine_band(planes), best[None], 0)[0]
    got = fine_band(out)
    err = ((got - ref) ** 2)[mask].sum() / (ref**2)[mask].sum()
    return float(10 * np.log10(err)), float((got**2)[mask].sum() / (ref**2)[mask].sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stacks", default=str(STACKS))
    p.add_argument("--out", default=str(REPO / "docs" / "images" / "compose"))
    p.add_argument("--only", nargs="*", help="stack folder names (default: all)")
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in sorted(Path(args.stacks).iterdir()):
        if not folder.is_dir() or (args.only and folder.name not in args.only):
            continue
        original = read_planes(folder)
        for variant, planes in (("as shipped", original), ("JPEG q80", jpeg(original))):
            cells, titles, labels = [], None, []
            spots = pick_spots(original) + EXTRA_SPOTS.get(folder.name, [])
            for spot, (y0, x0) in spots:
                h, w = planes.shape[1:3]
                cy0 = int(np.clip(y0 - (CONTEXT - CROP) // 2, 0, max(h - CONTEXT, 0)))
                cx0 = int(np.clip(x0 - (CONTEXT - CROP) // 2, 0, max(w - CONTEXT, 0)))
                ctx = planes[:, cy0: cy0 + CONTEXT, cx0: cx0 + CONTEXT]
                outs = methods(ctx)
                oy, ox = y0 - cy0, x0 - cx0
                cells.append([o[oy: oy + CROP, ox: ox + CROP] for o in outs.values()])
                titles = [k.replace(" (ours)", "") for k in outs]
                labels.append(f"{spot} at y={y0}, x={x0}")
                for name, o in outs.items():
                    if name.startswith("sharpest") or "departure" in name:
                        continue
                    db, ratio = fidelity(o, ctx)
                    rows.append({"stack": folder.name, "planes": variant, "spot": spot,
                                 "method": name, "fine_band_error_db": db,
                                 "fine_energy_ratio": ratio})
                    print(f"{folder.name:20s} {variant:10s} {spot:16s} {name:22s} "
                          f"error {db:6.2f} dB  energy ratio {ratio:.3f}", flush=True)
            tag = "jpeg80" if variant.startswith("JPEG") else "shipped"
            img = grid_image(cells, titles, labels,
                             f"{folder.name}, planes {variant}: 1:1 crops ({CROP} px) of each "
                             f"method fused on a {CONTEXT} px window; error map 0-32 grey levels",
                             [DEPARTURE_RANGE if "departure" in t else None for t in titles])
            (out_dir / f"{folder.name}_{tag}.png").write_bytes(png_bytes(img))
    table = out_dir / "fine_band.json"
    if args.only and table.exists():  # a partial run replaces only its stacks' rows
        rows = [r for r in json.loads(table.read_text()) if r["stack"] not in args.only] + rows
    table.write_text(json.dumps(rows, indent=1))
    lines = ["| stack | planes | spot | method | fine-band error (dB) ↓ | fine energy ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['stack']} | {r['planes']} | {r['spot']} | {r['method']} | "
              f"{r['fine_band_error_db']:.2f} | {r['fine_energy_ratio']:.3f} |" for r in rows]
    (out_dir / "fine_band.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
