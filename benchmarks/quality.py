"""Quality beside the tools users would pick instead: held-out synthetic stacks and real stacks.

Synthetic (exact ground truth): stacks ``make_stack(HELDOUT_FIRST_SEED + k, size=256)``, k < n,
quantised to uint8 RGB (what every method gets); metrics from
`napari_vaeedof.evaluation.metrics.evaluate` against the float ground truth, the hard-pixel mask
from the noise-free rendering of the same scene (as `napari-vaeedof evaluate` does: pixels no
plane holds, not pixels sensor noise moved), plus PSNR on the complementary easy pixels.
The VAE ceiling D(E(ground truth)) is given as a reference row. -> ``quality_synthetic.{csv,md}``
(means) and ``quality_synthetic_per_stack.csv``.

Real stacks (no ground truth; ``--real``): every stack folder under ``--stacks-dir``, downsampled
so the longer side is at most ``--max-side`` (only algae_group, 5440 px, is affected by the
default 2048, by docs/real_stacks.py's `load_stack`); no-reference measures from
`napari_vaeedof.evaluation.metrics` (``gradient_energy``, ``consistency``, 0-255 units) ->
``quality_real.{csv,md}`` and ``real_<stack>_crops.png`` (1:1 crops of every method at the most
detailed spot of the inputs).

Every method runs in its own process through ``peer_worker.py``; peers in the peers venv.

    python benchmarks/quality.py --n 50 --real --stacks-dir ../shared/data/stacks
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "docs"))  # real_stacks.py

import common
from common import Method

SYNTH_COLUMNS = ("psnr", "psnr_hard", "psnr_easy", "ssim", "ms_ssim", "iw_ssim", "haarpsi",
                 "mdsi", "ms_gmsd")
LOWER_BETTER = {"mdsi", "ms_gmsd"}
REAL_CROP = 256


def _u8(planes: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(planes) * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- synthetic


def synthetic(methods: list[Method], status: dict[str, str], *, n: int, size: int, work: Path,
              device: str, threads: int, log=print, wait=lambda: None
              ) -> tuple[list[dict], list[dict]]:
    """Per-stack rows and per-method mean rows on the held-out synthetic set."""
    from napari_vaeedof.data.synth import make_stack
    from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED, vae_ceiling
    from napari_vaeedof.evaluation.metrics import evaluate, hard_pixel_mask, psnr

    stacks, clean = [], {}
    for k in range(n):
        seed = HELDOUT_FIRST_SEED + k
        st = make_stack(seed, size=size)
        clean[seed] = make_stack(seed, size=size, noise=False).planes
        path = work / f"synth_{seed}.npy"
        np.save(path, _u8(st.planes))
        stacks.append((seed, st, path))
    log(f"synthetic: {n} stacks of {size} px written")

    def score(name: str, pred: np.ndarray, seed: int, st) -> dict:
        scores = evaluate(pred, st.ground_truth, clean[seed])
        easy = ~hard_pixel_mask(clean[seed], st.ground_truth)
        return {"seed": seed, "method": name, "kind": st.kind, "gray": st.gray,
                "n_planes": len(st.planes), **scores,
                "psnr_easy": psnr(pred, st.ground_truth, easy)}

    rows, per_method = [], {}
    t0 = time.perf_counter()
    for seed, st, _ in stacks:
        rows.append(score("vae_ceiling", np.clip(vae_ceiling(st.ground_truth), 0, 1), seed, st))
    per_method["vae_ceiling"] = {"seconds": (time.perf_counter() - t0) / n, "max_rss_mib": ""}
    for m in methods:
        if status[m.key] != "ok":
            continue
        items = [{"stack": p, "out": work / f"out_{m.key.replace(':', '_')}_{seed}.npy"}
                 for seed, _, p in stacks]
        wait()
        res = common.run_job(m, items, device=device, threads=threads, workdir=work)
        if "error" in res:
            status[m.key] = res["error"].splitlines()[0][:300]
            log(f"  {m.key}: FAILED {status[m.key]}")
            continue
        secs = [it["seconds"][0] for it in res["items"]]
        per_method[m.key] = {"seconds": float(np.mean(secs)), "max_rss_mib": res["max_rss_mib"]}
        for (seed, st, _), item in zip(stacks, items, strict=True):
            pred = np.load(item["out"]).astype(np.float32) / np.float32(255)
            rows.append(score(m.key, pred, seed, st))
            Path(item["out"]).unlink()
        log(f"  {m.key}: {per_method[m.key]['seconds']:.3f} s/stack, "
            f"PSNR {np.mean([r['psnr'] for r in rows if r['method'] == m.key]):.2f} dB")
    means = []
    for name, extra in per_method.items():
        mine = [r for r in rows if r["method"] == name]
        label = "VAE ceiling D(E(GT)) (reference)" if name == "vae_ceiling" else \
            common.BY_KEY[name].label
        row = {"method": name, "label": label, "n": len(mine)}
        for c in (*SYNTH_COLUMNS, "hard_fraction"):
            row[c] = float(np.nanmean([r[c] for r in mine]))
        row["s_per_stack"] = extra["seconds"]
        row["max_rss_mib"] = extra["max_rss_mib"]
        means.append(row)
    return rows, means


def synthetic_markdown(means: list[dict], n: int, size: int) -> str:
    from napari_vaeedof.evaluation.heldout import HELDOUT_FIRST_SEED

    best = {}
    for c in SYNTH_COLUMNS:
        vals = [(r[c], r["method"]) for r in means if r["method"] != "vae_ceiling"]
        best[c] = (min if c in LOWER_BETTER else max)(vals)[1]
    rows = []
    for r in sorted(means, key=lambda r: (r["method"] != "vae_ceiling", -r["psnr"])):
        out = dict(r)
        for c in SYNTH_COLUMNS:
            digits = 2 if c.startswith("psnr") else 4
            out[c] = f"{r[c]:.{digits}f}"
            if best[c] == r["method"]:
                out[c] = f"**{out[c]}**"
        rows.append(out)
    arrows = {c: "↓" if c in LOWER_BETTER else "↑" for c in SYNTH_COLUMNS}
    cols = [("label", "method"), *((c, f"{c} {arrows[c]}") for c in SYNTH_COLUMNS),
            ("s_per_stack", "s/stack"), ("max_rss_mib", "peak RSS MiB")]
    hard = means[0]["hard_fraction"]
    return (f"Held-out synthetic stacks: {n} stacks of {size} px, seeds {HELDOUT_FIRST_SEED}.."
            f"{HELDOUT_FIRST_SEED + n - 1}, inputs quantised to uint8; mean hard-pixel fraction "
            f"{hard:.3f}. Means over stacks; bold = best method (the VAE ceiling is a reference, "
            "not a method).\n\n" + common.markdown_table(rows, cols))


# ----------------------------------------------------------------------------- real stacks


def _detail_box(planes: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The ``size`` square with the most input detail (max over planes of gradient energy)."""
    from real_stacks import best_window
    from scipy import ndimage

    from napari_vaeedof.evaluation.metrics import gradient_energy_map

    energy = np.max([gradient_energy_map(p) for p in planes], axis=0)
    return best_window(ndimage.gaussian_filter(energy, 2.0), size)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def crops_png(path: Path, title: str, panels: list[tuple[str, np.ndarray]], columns: int = 4,
              pad: int = 8) -> None:
    """Equally sized RGB crops in a grid, each with its caption above, title on top."""
    from PIL import Image, ImageDraw

    ch, cw = panels[0][1].shape[:2]
    font, small = _font(16), _font(13)
    cap_h, top = 20, pad + 24 * len(title.split("\n")) + pad
    rows = -(-len(panels) // columns)
    img = Image.new("RGB", (pad + columns * (cw + pad), top + rows * (cap_h + ch + pad)), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(title.split("\n")):
        draw.text((pad, pad + 24 * i), line, fill="black", font=font)
    for i, (caption, cell) in enumerate(panels):
        r, c = divmod(i, columns)
        x, y = pad + c * (cw + pad), top + r * (cap_h + ch + pad)
        draw.text((x, y + 2), caption, fill="black", font=small)
        img.paste(Image.fromarray(cell), (x, y + cap_h))
    img.save(path, "PNG", compress_level=9)


def real(methods: list[Method], status: dict[str, str], *, stacks_dir: Path, names, max_side,
         work: Path, out: Path, device: str, threads: int, log=print,
         wait=lambda: None, crops: bool = True) -> list[dict]:
    """Per stack and method the no-reference measures; with ``crops`` also the crops PNG (of
    the methods run now)."""
    import real_stacks as rs

    from napari_vaeedof.evaluation.metrics import consistency, gradient_energy, sharpest_plane

    rows = []
    for folder in rs.stack_folders(stacks_dir, names):
        planes, factor, orig = rs.load_stack(folder, max_side)
        if planes.ndim == 3:
            planes = np.repeat(planes[..., None], 3, -1)
        if planes.dtype != np.uint8:
            planes = (planes.astype(np.float32) * (255 / rs.unit_scale(planes.dtype)))
            planes = np.clip(np.rint(planes), 0, 255).astype(np.uint8)
        z, h, w = planes.shape[:3]
        log(f"{folder.name}: {z} planes {orig[1]}x{orig[0]} -> {w}x{h}")
        path = work / f"real_{folder.name}.npy"
        np.save(path, planes)
        common_row = {"stack": folder.name, "planes": z, "width": w, "height": h,
                      "orig_width": orig[1], "orig_height": orig[0],
                      "downsample": round(factor, 4)}
        sharp, _ = sharpest_plane(planes)
        images = {"sharpest_plane": planes[sharp]}
        seconds = {"sharpest_plane": ""}
        for m in methods:
            if status[m.key] != "ok":
                continue
            o = work / f"real_{folder.name}_{m.key.replace(':', '_')}.npy"
            wait()
            res = common.run_job(m, [{"stack": path, "out": o}], device=device, threads=threads,
                                 warmup=False, workdir=work)
            if "error" in res:
                log(f"  {m.key}: FAILED {res['error'].splitlines()[0][:200]}")
                rows.append({**common_row, "method": m.key, "label": m.label,
                             "error": res["error"].splitlines()[0][:200]})
                continue
            images[m.key] = np.load(o)
            o.unlink()
            seconds[m.key] = res["items"][0]["seconds"][0]
            log(f"  {m.key}: {seconds[m.key]:.1f} s")
        for key, img in images.items():
            label = (f"sharpest input plane ({sharp:02d})" if key == "sharpest_plane"
                     else common.BY_KEY[key].label)
            rows.append({**common_row, "method": key, "label": label,
                         "grad_energy": gradient_energy(img),
                         "consistency": consistency(img, planes),
                         "seconds": seconds[key]})
        y0, y1, x0, x1 = _detail_box(planes, REAL_CROP)
        shown = "" if factor == 1 else f", downsampled 1/{factor:.3g} from {orig[1]}x{orig[0]}"
        title = (f"{folder.name}: {z} planes {w}x{h}{shown}; 1:1 crops, rows {y0}-{y1}, "
                 f"columns {x0}-{x1}\n(the {REAL_CROP} px square with the most input detail)")
        if crops:
            crops_png(out / f"real_{folder.name}_crops.png", title,
                      [(_short(key, sharp), img[y0:y1, x0:x1]) for key, img in images.items()
                       if key != "ours:vaeedof_error"])  # the same image as ours:vaeedof
        del images
    return rows


def _short(key: str, sharp: int) -> str:
    if key == "sharpest_plane":
        return f"sharpest plane ({sharp:02d})"
    label = common.BY_KEY[key].label
    return label.replace(" (our baseline)", " (our bl.)").replace("openfocus ", "OF ")


def real_markdown(rows: list[dict]) -> str:
    cols = [("stack", "stack"), ("label", "method"), ("grad_energy", "gradient energy"),
            ("consistency", "consistency ↓"), ("seconds", "s")]
    return ("No-reference measures at the size fused (0-255 units): gradient energy = mean "
            "squared forward-difference gradient of luma (higher = sharper, but also higher for "
            "noise and invented detail); consistency = mean over pixels of the min over planes "
            "of |fused - plane| (0 for any per-pixel plane selection; higher = values no input "
            "holds).\n\n" + common.markdown_table([r for r in rows if "error" not in r], cols))


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/quality.py", description=__doc__)
    p.add_argument("--n", type=int, default=50, help="held-out synthetic stacks (0: none)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--real", action="store_true", help="also the real stacks under --stacks-dir")
    p.add_argument("--stacks-dir", type=Path, default=common.REPO.parent / "shared" / "data"
                   / "stacks")
    p.add_argument("--stacks", nargs="+", help="only these real stack folders")
    p.add_argument("--max-side", type=int, default=2048, help="downsample real stacks above")
    p.add_argument("--methods", nargs="+", default=["all"],
                   help="method keys or families (ours, openfocus, focusweave, zstackr)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (passed to every method)")
    p.add_argument("--threads", type=int, default=0, help="threads per method (0: all cores)")
    p.add_argument("--out", type=Path, default=common.DOCS)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    p.add_argument("--require-trained", action="store_true",
                   help="refuse to run unless the Fusion U-Net's metadata status is 'trained'")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for training/evaluation/tests to finish first")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of an earlier run's CSVs for methods this run does not "
                   "redo (the tables are then rebuilt from the merged rows)")
    p.add_argument("--quiet", action="store_true")
    return p


def merge(path: Path, new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """The rows of ``path`` (an earlier run's CSV) with the methods run now replaced."""
    if not path.is_file():
        return new
    redone = {r["method"] for r in new}
    with path.open() as f:
        old = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)
               if r["method"] not in redone]
    return sorted(old + new, key=lambda r: tuple(str(r.get(k, "")) for k in key))


def _number(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    weights = common.weights_status()
    if args.require_trained and weights["status"] != "trained":
        raise SystemExit(f"Fusion U-Net status is {weights['status']!r}, not 'trained'")
    methods = common.select_methods(args.methods)
    status = common.availability(methods)
    for key, st in status.items():
        if st != "ok":
            log(f"skip {key}: {st}")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vaeedof-quality-", dir=args.work))
    meta = {"command": command, "weights": weights, "versions": common.versions(),
            "waits": []}

    def wait() -> None:  # before each method: no training, evaluation, tests or CPU hogs
        if not args.no_wait:
            meta["waits"].append(common.wait_for_quiet(log=log)["waited_s"])

    wline = (f"Fusion U-Net: status {weights['status']!r}, steps {weights['steps'] or '?'}, "
             f"sha256 {weights['sha256'][:12]}.\n\n")
    try:
        if args.n > 0:
            rows, means = synthetic(methods, status, n=args.n, size=args.size, work=work,
                                    device=args.device, threads=args.threads, log=log,
                                    wait=wait)
            if args.merge:
                rows = merge(args.out / "quality_synthetic_per_stack.csv", rows,
                             ("seed", "method"))
                means = merge(args.out / "quality_synthetic.csv", means, ())
            common.write_csv(args.out / "quality_synthetic_per_stack.csv", rows)
            common.write_csv(args.out / "quality_synthetic.csv", means)
            info = common.machine(args.device)
            md = synthetic_markdown(means, args.n, args.size)
            (args.out / "quality_synthetic.md").write_text(
                "\n".join(common.header_lines(info, command)) + wline + md)
            meta["synthetic_machine"] = info
        if args.real:
            rows = real(methods, status, stacks_dir=args.stacks_dir, names=args.stacks,
                        max_side=args.max_side, work=work, out=args.out, device=args.device,
                        threads=args.threads, log=log, wait=wait, crops=not args.merge)
            if args.merge:
                order = {m.key: i for i, m in enumerate(common.METHODS)}
                rows = merge(args.out / "quality_real.csv", rows, ())
                rows.sort(key=lambda r: (r["stack"], order.get(r["method"], -1)))
            common.write_csv(args.out / "quality_real.csv", rows)
            info = common.machine(args.device)
            (args.out / "quality_real.md").write_text(
                "\n".join(common.header_lines(info, command)) + wline + real_markdown(rows))
            meta["real_machine"] = info
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["status"] = status
    (args.out / "quality_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
