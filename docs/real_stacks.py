"""Montages and no-reference measures of VAEEDOF on the real stacks -> docs/images/real.

For each stack folder under ``--stacks-dir`` (planes ``NN.<ext>``; default ../shared/data/stacks):
read it (optionally downsampled so its longer side is at most ``--max-side``), fuse it with
`fuse_stack` in pixel-faithful mode (error map on) and in latent mode, run the Laplacian-pyramid
and variance-argmax baselines, and write

- ``<stack>_montage.png``: sharpest input plane | VAEEDOF pixel-faithful | VAEEDOF latent |
  Laplacian pyramid | error map (inferno, 0 to the 99.5th percentile) | depth map (turbo) |
  fill map, scaled down for display, with the two crop spots boxed;
- ``<stack>_crops.png``: 1:1 crops of the same panels at (A) the highest error-map value and
  (B) the highest local gradient energy of the fused image;
- ``real_stacks.csv`` and ``real_stacks.md``: per stack and method the mean gradient energy,
  the consistency with the inputs, the border-gradient ratio on our tile grid, the error map's
  mean and 99th percentile, and seconds.

Measures (all at the size fused, intensities in 0-255 units; the first two are the package's
no-reference measures in `napari_vaeedof.evaluation.metrics`):

- ``grad_energy``: mean squared forward-difference gradient of BT.601 luma (higher = sharper;
  also higher for noise and invented detail, so read it with the next one);
- ``consistency``: mean over pixels of min over planes of |fused - plane| (channel mean):
  how far the result is from every input at that pixel (lower = fewer values no input holds;
  0 for any per-pixel plane selection);
- ``border_ratio``: `border_gradient_ratio` on the tile grid VAEEDOF used (1.0 = no seam);
  given for the untiled baselines too, as the value an image without seams has there;
- ``error_mean``, ``error_p99``: VAEEDOF's reconstruction-error map.

Run from anywhere (full size, several minutes per stack on a CPU; add ``--max-side 384`` for a
quick look)::

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/real_stacks.py

The reading (`load_stack`, `stack_folders`), crop-spot (`best_window`) and drawing helpers
(`grid_image`, `inferno`, `write_montage`, ...) are shared with the other figure scripts here
and with benchmarks/quality.py and benchmarks/speed.py, which import this file.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_vaeedof.engine.tiling import TileGrid  # noqa: E402
from napari_vaeedof.evaluation.baselines import (  # noqa: E402
    laplacian_pyramid_fusion,
    variance_argmax_fusion,
)
from napari_vaeedof.evaluation.metrics import (  # noqa: E402
    consistency,
    gradient_energy,
    gradient_energy_map,
    sharpest_plane,
)
from napari_vaeedof.evaluation.seams import border_gradient_ratio  # noqa: E402
from napari_vaeedof.io import IMAGE_SUFFIXES, read_stack  # noqa: E402

STACKS = REPO.parent / "shared" / "data" / "stacks"
OUT = REPO / "docs" / "images" / "real"

METHODS = ("sharpest_plane", "vaeedof", "vaeedof_latent", "laplacian_pyramid", "variance_argmax")
LABELS = {
    "sharpest_plane": "sharpest input plane",
    "vaeedof": "VAEEDOF pixel-faithful (ours)",
    "vaeedof_latent": "VAEEDOF latent (ours)",
    "laplacian_pyramid": "Laplacian pyramid",
    "variance_argmax": "variance argmax",
}
CSV_FIELDS = (
    "stack", "method", "planes", "height", "width", "orig_height", "orig_width", "downsample",
    "grad_energy", "consistency", "border_ratio", "fill_fraction", "error_mean", "error_p99",
    "seconds",
    "tile_size", "overlap", "n_tiles", "device",
)
MAX_PNG_BYTES = 1_500_000
# Polynomial fit of matplotlib's inferno (Matt Zucconi / mattz), within 9/255 of the table.
_INFERNO = np.array([
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172],
])


# ----------------------------------------------------------------------------- reading


def downsample_factor(shape: Sequence[int], max_side: int | None) -> float:
    """Factor (>= 1) that brings the longer of (H, W) to at most ``max_side``."""
    if not max_side:
        return 1.0
    return max(1.0, max(shape[:2]) / max_side)


def _resize(plane: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if plane.dtype == np.uint8 and (plane.ndim == 2 or plane.shape[-1] in (3, 4)):
        img = Image.fromarray(plane)
        return np.asarray(img.resize(size_hw[::-1], Image.Resampling.LANCZOS, reducing_gap=3.0))
    from skimage.transform import resize

    out = resize(plane, size_hw + plane.shape[2:], preserve_range=True, anti_aliasing=True)
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(plane.dtype)


def load_stack(folder: str | Path, max_side: int | None = None
               ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """A folder of planes -> ((Z, H, W[, C]) planes, downsample factor, original (H, W))."""
    sf = read_stack(folder)
    data = np.moveaxis(np.asarray(sf.data), sf.axis, 0)
    if sf.channel_axis is not None and data.ndim == 4 and data.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{folder}: only grayscale or RGB stacks with channels last are handled")
    if data.ndim == 4 and data.shape[-1] == 4:
        data = data[..., :3]
    orig = (int(data.shape[1]), int(data.shape[2]))
    factor = downsample_factor(orig, max_side)
    if factor > 1:
        size = (max(1, round(orig[0] / factor)), max(1, round(orig[1] / factor)))
        data = np.stack([_resize(p, size) for p in data])
    return data, factor, orig


def unit_scale(dtype: np.dtype) -> float:
    """Value of full scale for the dtype (255 for uint8): divides to [0, 1]."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


# ----------------------------------------------------------------------------- drawing


def _poly_colormap(table: np.ndarray, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> (..., 3) uint8 colours of a polynomial colormap fit (rows: powers of t)."""
    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)[..., None]
    rgb = np.zeros((*t.shape[:-1], 3))
    for c in table[::-1]:
        rgb = rgb * t + c
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def inferno(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> (..., 3) uint8 inferno colours, ``lo``..``hi`` spread over the map."""
    return _poly_colormap(_INFERNO, values, lo, hi)


# Anton Mikhailov's Turbo colormap, polynomial fit by Ruofei Du (powers 0..5 of t).
_TURBO = np.array([
    [0.13572138, 0.09140261, 0.10667330],
    [4.61539260, 2.19418839, 12.64194608],
    [-42.66032258, 4.84296658, -60.58204836],
    [132.13108234, -14.18503333, 110.36276771],
    [-152.94239396, 4.27729857, -89.90310912],
    [59.28637943, 2.82956604, 27.34824973],
])


def turbo(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values -> (..., 3) uint8 turbo colours (blue = ``lo``, red = ``hi``): depth maps."""
    return _poly_colormap(_TURBO, values, lo, hi)


def fill_rgb(fill: np.ndarray) -> np.ndarray:
    """Fill map in [0, 1] -> magenta on black, as the plugin shows it."""
    f = np.clip(np.asarray(fill, np.float64), 0, 1)
    return np.rint(np.stack([f, np.zeros_like(f), f], -1) * 255).astype(np.uint8)


def _to_rgb8(image: np.ndarray, scale: float) -> np.ndarray:
    img = np.asarray(image, np.float64) / scale
    img = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _text_height(font: ImageFont.ImageFont) -> int:
    box = font.getbbox("Ag(0)")
    return int(box[3] - box[1]) + 2


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


@dataclass
class Panel:
    title: str
    rgb: np.ndarray  # (H, W, 3) uint8 at the size fused
    colorbar: tuple[float, float] | None = None  # (lo, hi) for the error map, 0-255 units


def grid_image(cells: list[list[np.ndarray]], col_titles: list[str], row_titles: list[str],
                header: str, colorbars: list[tuple[float, float] | None],
                boxes: list[tuple[str, tuple[int, int, int, int], tuple[int, int, int]]] = (),
                pad: int = 8) -> Image.Image:
    """Rows x columns of equally sized RGB cells with titles; optional colour bar per column."""
    ch, cw = cells[0][0].shape[:2]
    font_size = int(np.clip(cw / 28, 12, 22))
    font, small = _font(font_size), _font(max(10, font_size - 3))
    th, sh = _text_height(font), _text_height(small)
    header_lines = header.split("\n")
    top = pad + len(header_lines) * (th + 2) + pad
    label_h = sh + 4 if any(row_titles) else 0
    row_h = label_h + ch + pad
    bar_h = (10 + sh + 4 + pad) if any(colorbars) else 0
    width = pad + len(col_titles) * (cw + pad)
    height = top + th + 4 + len(cells) * row_h + bar_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(header_lines):
        draw.text((pad, pad + i * (th + 2)), line, fill="black", font=font)
    for j, title in enumerate(col_titles):
        draw.text((pad + j * (cw + pad), top), title, fill="black", font=font)
    y = top + th + 4
    for r, row in enumerate(cells):
        if row_titles[r]:
            draw.text((pad, y), row_titles[r], fill="dimgray", font=small)
        for j, cell in enumerate(row):
            x0, y0 = pad + j * (cw + pad), y + label_h
            canvas.paste(Image.fromarray(cell), (x0, y0))
            for label, (by0, by1, bx0, bx1), colour in boxes:
                draw.rectangle((x0 + bx0, y0 + by0, x0 + bx1 - 1, y0 + by1 - 1), outline=colour,
                               width=2)
                draw.text((x0 + bx0 + 3, y0 + by0 + 1), label, fill=colour, font=small)
        y += row_h
    for j, bar in enumerate(colorbars):
        if bar is None:
            continue
        lo, hi = bar
        x0 = pad + j * (cw + pad)
        ramp = inferno(np.linspace(lo, hi, cw)[None].repeat(10, 0), lo, hi)
        canvas.paste(Image.fromarray(ramp), (x0, y))
        draw.text((x0, y + 12), f"{lo:.3g}", fill="black", font=small)
        label = f"{hi:.3g} (0-255 units)"
        lw = draw.textlength(label, font=small)
        draw.text((x0 + cw - lw, y + 12), label, fill="black", font=small)
    return canvas


def _display_size(h: int, w: int, panel_px: int) -> tuple[int, int]:
    s = min(1.0, panel_px / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def write_montage(path: Path, panels: list[Panel], header: str, panel_px: int = 640,
                  spots: Sequence[tuple[str, tuple[int, int, int, int]]] = (),
                  max_bytes: int = MAX_PNG_BYTES) -> float:
    """Panels side by side, scaled so the longer side is at most ``panel_px`` (less if the PNG
    would pass ``max_bytes``); ``{scale}`` in the header becomes the scale used, returned."""
    h, w = panels[0].rgb.shape[:2]
    colours = [(0, 220, 255), (60, 255, 60)]
    px = panel_px
    for _ in range(8):
        dh, dw = _display_size(h, w, px)
        s = dh / h
        cells = [[np.asarray(Image.fromarray(p.rgb).resize((dw, dh), Image.Resampling.LANCZOS))
                  if (dh, dw) != (h, w) else p.rgb for p in panels]]
        boxes = [(label, tuple(round(v * s) for v in box), colours[k % 2])
                 for k, (label, box) in enumerate(spots)]
        img = grid_image(cells, [p.title for p in panels], [""],
                         header.replace("{scale}", f"{s:.3g}"), [p.colorbar for p in panels],
                         boxes)
        data = png_bytes(img)
        if len(data) <= max_bytes or px <= 128:
            break
        px = max(128, int(px * 0.95 * math.sqrt(max_bytes / len(data))))
    path.write_bytes(data)
    return s


def crop_box(center: tuple[int, int], size: int, shape: Sequence[int]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a ``size`` square around ``center``, moved inside ``shape``."""
    h, w = shape[:2]
    sh, sw = min(size, h), min(size, w)
    y0 = int(np.clip(center[0] - sh // 2, 0, h - sh))
    x0 = int(np.clip(center[1] - sw // 2, 0, w - sw))
    return y0, y0 + sh, x0, x0 + sw


def best_window(energy: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the ``size`` square inside the image with the largest sum."""
    h, w = energy.shape
    sh, sw = min(size, h), min(size, w)
    c = np.pad(np.asarray(energy, np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[sh:, sw:] - c[:-sh, sw:] - c[sh:, :-sw] + c[:-sh, :-sw]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(y0) + sh, int(x0), int(x0) + sw


def find_spots(error: np.ndarray, fused: np.ndarray, size: int
               ) -> list[tuple[str, tuple[int, int], tuple[int, int, int, int]]]:
    """(A) around the highest error-map value (lightly smoothed), (B) the crop of the fused image
    with the highest mean gradient energy: (label, centre, box) each."""
    e = ndimage.gaussian_filter(np.asarray(error, np.float32), 2.0)
    ca = np.unravel_index(int(np.argmax(e)), e.shape)
    box_b = best_window(gradient_energy_map(fused), size)
    cb = ((box_b[0] + box_b[1]) // 2, (box_b[2] + box_b[3]) // 2)
    return [
        ("A: max error", (int(ca[0]), int(ca[1])), crop_box(ca, size, e.shape)),
        ("B: max detail", cb, box_b),
    ]


def write_crops(path: Path, panels: list[Panel], spots, header: str) -> None:
    """1:1 crops of every panel at each spot (rows = spots)."""
    cells, rows = [], []
    for label, centre, (y0, y1, x0, x1) in spots:
        cells.append([p.rgb[y0:y1, x0:x1] for p in panels])
        rows.append(f"{label}, centre (y={centre[0]}, x={centre[1]}): "
                    f"rows {y0}-{y1}, columns {x0}-{x1}")
    img = grid_image(cells, [p.title for p in panels], rows, header,
                     [p.colorbar for p in panels])
    path.write_bytes(png_bytes(img))  # crops stay 1:1


# ----------------------------------------------------------------------------- the run


@dataclass
class StackReport:
    """One stack: its rows (one per method) and timings."""

    name: str
    rows: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    sharpest: int = 0
    shape: tuple[int, ...] = ()
    orig: tuple[int, int] = (0, 0)
    factor: float = 1.0
    metadata: dict = field(default_factory=dict)


def evaluate_stack(folder: str | Path, out_dir: str | Path, *, max_side: int | None = None,
                   tile_size: int = 512, overlap: int | None = None, device: str = "auto",
                   crop: int = 256, panel_px: int = 640, unet_path: str | Path | None = None,
                   log: Callable[[str], None] | None = None) -> StackReport:
    """Fuse one stack folder and its baselines; write its montage and crops PNGs."""
    from napari_vaeedof.api import fuse_stack

    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: None)
    rep = StackReport(folder.name)
    t0 = time.perf_counter()
    planes, factor, orig = load_stack(folder, max_side)
    rep.seconds["read"] = time.perf_counter() - t0
    rep.shape, rep.orig, rep.factor = planes.shape, orig, factor
    z, h, w = planes.shape[:3]
    log(f"{folder.name}: {z} planes {orig[1]}x{orig[0]} -> {w}x{h} (1/{factor:.3g}), "
        f"read in {rep.seconds['read']:.1f} s")
    unit = unit_scale(planes.dtype)
    to255 = 255.0 / unit

    def progress(p) -> None:
        done, total = p.tiles_done, p.n_tiles
        if p.event == "tile" and (done == total or done % max(1, total // 10) == 0):
            log(f"  tiles {done}/{total}")

    t0 = time.perf_counter()
    result = fuse_stack(planes, axis=0, channel_axis=3 if planes.ndim == 4 else None,
                        tile_size=tile_size, overlap=overlap, device=device, error_map=True,
                        progress=progress, unet_path=unet_path)
    rep.seconds["vaeedof"] = time.perf_counter() - t0
    rep.metadata = result.metadata
    log(f"  VAEEDOF {rep.seconds['vaeedof']:.1f} s on {result.metadata['device']}")
    t0 = time.perf_counter()
    latent = fuse_stack(planes, axis=0, channel_axis=3 if planes.ndim == 4 else None,
                        tile_size=tile_size, overlap=overlap, device=device, error_map=False,
                        mode="latent", progress=progress, unet_path=unet_path)
    rep.seconds["vaeedof_latent"] = time.perf_counter() - t0
    log(f"  VAEEDOF latent mode {rep.seconds['vaeedof_latent']:.1f} s")

    floats = planes.astype(np.float32) / np.float32(unit)  # baselines work in [0, 1]
    images = {}
    for name, fn in (("laplacian_pyramid", laplacian_pyramid_fusion),
                     ("variance_argmax", variance_argmax_fusion)):
        t0 = time.perf_counter()
        images[name] = np.asarray(fn(floats), np.float32) * np.float32(255)
        rep.seconds[name] = time.perf_counter() - t0
        log(f"  {name} {rep.seconds[name]:.1f} s")
    del floats
    sharp, _ = sharpest_plane(planes)
    rep.sharpest = sharp
    images["sharpest_plane"] = planes[sharp].astype(np.float32) * np.float32(to255)
    images["vaeedof"] = result.image.astype(np.float32) * np.float32(to255)
    images["vaeedof_latent"] = latent.image.astype(np.float32) * np.float32(to255)
    planes255 = planes if unit == 255 else (planes.astype(np.float32) * np.float32(to255))
    error = np.asarray(result.error, np.float32) * np.float32(to255)

    meta = result.metadata
    grid = TileGrid.build(h, w, tile_size, meta["overlap"])
    common = {"stack": folder.name, "planes": z, "height": h, "width": w,
              "orig_height": orig[0], "orig_width": orig[1], "downsample": round(factor, 4)}
    for name in METHODS:
        img = images[name]
        row = {**common, "method": name,
               "grad_energy": gradient_energy(img),
               "consistency": consistency(img, planes255),
               "border_ratio": border_gradient_ratio(img, grid),
               "seconds": rep.seconds.get(name, 0.0)}
        if name == "vaeedof":
            row.update(fill_fraction=float((result.fill > 0).mean()),
                       error_mean=float(error.mean()), error_p99=float(np.percentile(error, 99)),
                       tile_size=meta["tile_size"], overlap=meta["overlap"],
                       n_tiles=meta["n_tiles"], device=meta["device"])
        rep.rows.append(row)

    hi = float(np.percentile(error, 99.5))
    hi = hi if hi > 0 else float(error.max()) or 1.0
    panels = [
        Panel(f"sharpest input (plane {sharp:02d})", _to_rgb8(images["sharpest_plane"], 255)),
        Panel(LABELS["vaeedof"], _to_rgb8(images["vaeedof"], 255)),
        Panel(LABELS["vaeedof_latent"], _to_rgb8(images["vaeedof_latent"], 255)),
        Panel(LABELS["laplacian_pyramid"], _to_rgb8(images["laplacian_pyramid"], 255)),
        Panel(f"error map (0-{hi:.3g})", inferno(error, 0.0, hi), (0.0, hi)),
        Panel(f"depth (turbo, plane 0-{z - 1})", turbo(result.depth, 0, max(z - 1, 1))),
        Panel(f"fill map ({100 * (result.fill > 0).mean():.1f}% > 0)", fill_rgb(result.fill)),
    ]
    size = f"{w}x{h}" + (f" (1/{factor:.3g} of {orig[1]}x{orig[0]})" if factor > 1 else "")
    n = meta["n_tiles"]
    tiles = f"{n} tile{'s' * (n != 1)} of {meta['tile_size']} px, overlap {meta['overlap']}"
    spots = find_spots(error, images["vaeedof"], crop)
    header = f"{folder.name}: {z} planes, fused at {size}; {tiles}"
    montage = out_dir / f"{folder.name}_montage.png"
    write_montage(montage, panels, header + "\nshown at {scale}x; boxes = the 1:1 crop spots",
                  panel_px, [(lab.split(":")[0], box) for lab, _, box in spots])
    crops = out_dir / f"{folder.name}_crops.png"
    write_crops(crops, panels, spots, header + f"\n1:1 crops ({crop} px) at the size fused")
    rep.files = [montage, crops]
    log(f"  wrote {montage.name} ({montage.stat().st_size / 1e6:.2f} MB), "
        f"{crops.name} ({crops.stat().st_size / 1e6:.2f} MB)")
    return rep


def _fmt(v) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def write_tables(reports: list[StackReport], out_dir: str | Path, command: str = "") -> None:
    """``real_stacks.csv`` (every row) and ``real_stacks.md`` (tables and image links)."""
    out_dir = Path(out_dir)
    with open(out_dir / "real_stacks.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, restval="")
        writer.writeheader()
        for rep in reports:
            for row in rep.rows:
                writer.writerow({k: _fmt(v) for k, v in row.items()})
    lines = ["# VAEEDOF on real focus stacks (no ground truth)", ""]
    if command:
        lines += ["Made with:", "", "```", command, "```", ""]
    lines += [
        "Measures at the size fused, intensities in 0-255 units. `grad_energy`: mean squared "
        "luma gradient (higher = sharper, but noise and invented detail raise it too). "
        "`consistency`: mean over pixels of the smallest |result - plane| over the planes "
        "(lower = fewer values that no input holds; 0 for per-pixel plane selection). "
        "`border_ratio`: gradient across VAEEDOF's tile borders over that elsewhere (1.0 = no "
        "seam; for the untiled baselines it is the value on the same lines without seams). "
        "`fill`: fraction of pixels whose fill map is above 0 (content not taken from the "
        "planes). `error`: VAEEDOF's reconstruction-error map, mean and 99th percentile.", "",
        "| stack | planes | original | fused at | downsample | tiles | device | read s "
        "| VAEEDOF s | latent mode s | Laplacian s | variance s | total s |",
        "| --- | ---: | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rep in reports:
        m, s = rep.metadata, rep.seconds
        lines.append(
            f"| {rep.name} | {rep.shape[0]} | {rep.orig[1]}x{rep.orig[0]} | "
            f"{rep.shape[2]}x{rep.shape[1]} | {rep.factor:.3g} | {m.get('n_tiles', '')} "
            f"({m.get('tile_size', '')} px) | {m.get('device', '')} | {s.get('read', 0):.1f} | "
            f"{s.get('vaeedof', 0):.1f} | {s.get('vaeedof_latent', 0):.1f} | "
            f"{s.get('laplacian_pyramid', 0):.1f} | "
            f"{s.get('variance_argmax', 0):.1f} | {sum(s.values()):.1f} |")
    lines += ["", "| stack | method | grad_energy | consistency | border_ratio | fill "
              "| error_mean | error_p99 | seconds |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rep in reports:
        for row in rep.rows:
            label = LABELS[row["method"]]
            if row["method"] == "sharpest_plane":
                label += f" ({rep.sharpest:02d})"
            vals = [_fmt(row.get(k, "")) for k in ("grad_energy", "consistency", "border_ratio",
                                                    "fill_fraction", "error_mean", "error_p99",
                                                    "seconds")]
            lines.append(f"| {rep.name} | {label} | " + " | ".join(vals) + " |")
    for rep in reports:
        lines += ["", f"## {rep.name}", ""]
        lines += [f"![{rep.name} {p.stem.rsplit('_', 1)[-1]}]({p.name})" for p in rep.files]
    (out_dir / "real_stacks.md").write_text("\n".join(lines) + "\n")


def stack_folders(stacks_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Sub-folders of ``stacks_dir`` holding image planes (all, or those named), sorted."""
    root = Path(stacks_dir)
    if names:
        folders = [root / n for n in names]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise FileNotFoundError(f"no such stack folder: {', '.join(missing)}")
        return folders
    return sorted(d for d in root.iterdir()
                  if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()))


def run_real_stacks(stacks_dir: str | Path, out_dir: str | Path, *,
                    names: Sequence[str] | None = None, max_side: int | None = None,
                    tile_size: int = 512, overlap: int | None = None, device: str = "auto",
                    crop: int = 256, panel_px: int = 640, unet_path: str | Path | None = None,
                    log: Callable[[str], None] | None = None, command: str = ""
                    ) -> list[StackReport]:
    """Every stack folder under ``stacks_dir``: montage, crops, and the CSV / markdown tables."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for folder in stack_folders(stacks_dir, names):
        reports.append(evaluate_stack(folder, out_dir, max_side=max_side, tile_size=tile_size,
                                      overlap=overlap, device=device, crop=crop,
                                      panel_px=panel_px, unet_path=unet_path, log=log))
        write_tables(reports, out_dir, command)  # keep what is done if a later stack fails
    return reports


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python docs/real_stacks.py",
        description="Montages and no-reference measures of VAEEDOF and baselines on real stacks.")
    p.add_argument("--stacks-dir", default=str(STACKS),
                   help="folder of stack folders (planes NN.ext; default ../shared/data/stacks)")
    p.add_argument("--out", default=str(OUT), help="output folder (default docs/images/real)")
    p.add_argument("--stacks", nargs="+", help="only these stack folders (names)")
    p.add_argument("--max-side", type=int, default=None,
                   help="downsample so the longer side is at most this (default: full size)")
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--overlap", type=int, default=None, help="default: a quarter of the tile")
    p.add_argument("--device", default="auto")
    p.add_argument("--crop", type=int, default=256, help="side of the 1:1 crops")
    p.add_argument("--panel-px", type=int, default=640, help="montage panel's longer side")
    p.add_argument("--unet", default=None, help="a Fusion U-Net safetensors file")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python docs/real_stacks.py " + " ".join(argv)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    run_real_stacks(args.stacks_dir, args.out, names=args.stacks, max_side=args.max_side,
                    tile_size=args.tile_size, overlap=args.overlap, device=args.device,
                    crop=args.crop, panel_px=args.panel_px, unet_path=args.unet, log=log,
                    command=command)
    log(f"done in {time.perf_counter() - t0:.1f} s -> {args.out}/real_stacks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
