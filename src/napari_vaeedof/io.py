"""Reading focus stacks from files and writing results atomically, keeping pixel size."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine.stack import StackError, stack_planes

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class StackFile:
    """Pixels plus what the file said about them: axes letters, Y/X pixel size and its unit."""

    data: np.ndarray
    axes: str
    axis: int = 0
    channel_axis: int | None = None
    pixel_size: tuple[float, float] | None = None  # (y, x), in `unit`
    z_spacing: float | None = None
    unit: str | None = None
    source: list[str] = field(default_factory=list)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def expand_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders replaced by their image files in natural order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES),
                           key=_natural_key)
            if not files:
                raise StackError(f"The folder {p} holds no image files ({sorted(IMAGE_SUFFIXES)}).")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise StackError(f"{p} does not exist.")
    return out


def _tiff_resolution(tif) -> tuple[tuple[float, float] | None, str | None, float | None]:
    """(y, x) pixel size, unit and z spacing from OME, ImageJ or baseline TIFF tags."""
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(tif.ome_metadata)
        pix = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
        if pix is not None and pix.get("PhysicalSizeX"):
            px = float(pix.get("PhysicalSizeX"))
            py = float(pix.get("PhysicalSizeY", px))
            z = pix.get("PhysicalSizeZ")
            unit = pix.get("PhysicalSizeXUnit", "µm")
            return (py, px), unit, float(z) if z else None
    page = tif.pages[0]
    tags = page.tags
    ij = tif.imagej_metadata or {}
    if "XResolution" in tags and "YResolution" in tags:
        xr = tags["XResolution"].value
        yr = tags["YResolution"].value
        xres, yres = xr[0] / xr[1], yr[0] / yr[1]
        if xres > 0 and yres > 0 and not (xres == 1 and yres == 1 and "unit" not in ij):
            unit = ij.get("unit") or (tif.shaped_metadata or [{}])[0].get("unit")
            if unit is None:
                runit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 1
                unit = {2: "inch", 3: "cm"}.get(int(runit))
            if unit in ("micron", "\\u00B5m", "um"):
                unit = "µm"
            spacing = ij.get("spacing")
            return (1 / yres, 1 / xres), unit, float(spacing) if spacing else None
    return None, None, None


def read_tiff(path: Path) -> StackFile:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        pixel_size, unit, z = _tiff_resolution(tif)
    # One level of T or a singleton axis is dropped; what remains must be planes, Y, X [, C].
    keep = [i for i, a in enumerate(axes) if data.shape[i] > 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    focus = next((axes.index(a) for a in "ZIQT" if a in axes), None)
    channel = next((axes.index(a) for a in "CS" if a in axes), None)
    if focus is None:
        raise StackError(f"{path} holds a single plane (axes {axes}); a focus stack needs several.")
    return StackFile(data, axes, focus, channel, pixel_size, z, unit, [str(path)])


def read_stack(paths: list[str | os.PathLike] | str | os.PathLike) -> StackFile:
    """One multi-page TIFF/OME-TIFF, a folder of planes, or several plane files -> a stack."""
    files = expand_inputs([paths] if isinstance(paths, str | os.PathLike) else list(paths))
    if len(files) == 1:
        if files[0].suffix.lower() not in (".tif", ".tiff"):
            raise StackError(f"{files[0]} is a single image; give several planes or a TIFF stack.")
        return _guard(read_tiff, files[0])
    planes = [_guard(_read_plane, f) for f in files]
    data = stack_planes(planes)
    first = _guard(read_tiff, files[0]) if files[0].suffix.lower() in (".tif", ".tiff") else None
    channel = 3 if data.ndim == 4 else None
    axes = "ZYXS" if channel else "ZYX"
    if first is not None and first.pixel_size:
        return StackFile(data, axes, 0, channel, first.pixel_size, None, first.unit,
                         [str(f) for f in files])
    return StackFile(data, axes, 0, channel, source=[str(f) for f in files])


def _read_plane(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return iio.imread(path)


def _guard(fn, path: Path):
    try:
        return fn(path)
    except StackError:
        raise
    except Exception as exc:  # any decoder error: say which file, not a traceback
        raise StackError(f"Cannot read {path}: {exc}") from exc


def write_tiff(path: str | os.PathLike, image: np.ndarray, *, pixel_size=None,
               unit: str | None = None, info: str | None = None) -> Path:
    """Write a TIFF to a temporary file in the target folder, then move it into place.

    ``pixel_size`` is (y, x) in ``unit``; ``info`` is free text kept in the file (parameters).
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if pixel_size is not None:
        kwargs["resolution"] = (1 / pixel_size[1], 1 / pixel_size[0])
        if unit in ("cm",):
            kwargs["resolutionunit"] = "CENTIMETER"
        elif unit in ("inch",):
            kwargs["resolutionunit"] = "INCH"
        else:
            kwargs["resolutionunit"] = "NONE"
    rgb = image.ndim == 3 and image.shape[-1] == 3
    ij_ok = image.dtype in (np.uint8, np.uint16, np.float32) and not rgb
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if ij_ok:
            ij_unit = "micron" if unit in ("µm", "um") else unit
            ij_meta = {"unit": ij_unit} if unit and unit not in ("cm", "inch") else {}
            if info:
                ij_meta["Info"] = info
            tifffile.imwrite(tmp, image, imagej=True, metadata=ij_meta, **kwargs)
        else:
            meta = {"unit": unit, "info": info}
            tifffile.imwrite(tmp, image, photometric="rgb" if rgb else "minisblack",
                             metadata={k: v for k, v in meta.items() if v}, **kwargs)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
