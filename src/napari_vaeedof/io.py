"""Reading focus stacks from files and writing results atomically, keeping pixel size."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine.stack import StackError, stack_planes

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True for an output written as OME-Zarr (a folder named *.zarr, e.g. fused.ome.zarr)."""
    return Path(path).suffix.lower() == ".zarr"


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
        elif p.exists():
            raise StackError(f"{p} is not a regular file or a folder; give image files or a "
                             f"folder of them.")
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


#: Y/X size of the chunks of a lazily read TIFF (one plane and channel per chunk otherwise).
LAZY_CHUNK = 1024


class TiffPixels:
    """The pixels of a TIFF's first series (its full-resolution level), read region by region
    when indexed: a lazy source for `dask.array.from_array` that pickles as its path, so each
    dask worker opens the file and reads only its chunks. Uncompressed series are
    memory-mapped; compressed (tiled) ones go through tifffile's Zarr interface (needs zarr).
    Tokenized by path, size and modification time."""

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = str(Path(path).resolve())
        with tifffile.TiffFile(self.path) as tif:
            series = tif.series[0]
            self.shape = tuple(series.shape)
            self.dtype = np.dtype(series.dtype)
            self.axes = series.axes
            self.contiguous = series.dataoffset is not None
        self.ndim = len(self.shape)
        if not self.contiguous:
            try:
                import zarr  # noqa: F401
            except ImportError:
                raise StackError(f"{path} is compressed: reading it lazily needs zarr (pip "
                                 f"install 'napari-vaeedof[distributed]').") from None
        st = os.stat(self.path)
        self._stamp = (st.st_size, st.st_mtime_ns)

    def __dask_tokenize__(self):
        return ("TiffPixels", self.path, self._stamp)

    def __getitem__(self, key) -> np.ndarray:
        import tifffile

        if self.contiguous:
            return np.array(tifffile.memmap(self.path, series=0, mode="r")[key])
        import zarr

        with tifffile.imread(self.path, aszarr=True, series=0, level=0) as store:
            return np.asarray(zarr.open_array(store, mode="r")[key])

    def to_dask(self):
        """A dask array of the series: chunks of one index along every axis but Y, X (up to
        `LAZY_CHUNK`) and samples (whole)."""
        import dask.array as da

        chunks = tuple(min(n, LAZY_CHUNK) if a in "YX" else n if a == "S" else 1
                       for a, n in zip(self.axes, self.shape, strict=True))
        return da.from_array(self, chunks=chunks, asarray=False, fancy=False)


def read_tiff(path: Path, *, samples_as_planes: bool = False, lazy: bool = False) -> StackFile:
    """A TIFF's first series as a stack; ``samples_as_planes``: a file without a focus axis
    whose samples or channels (axes SYX, CYX) are planes, as tifffile writes a (3, Y, X)
    array by default.

    An uncompressed, contiguous series is memory-mapped read-only (pixels are read when a tile
    needs them, the file can never be written through it); a compressed one is read whole.
    ``lazy``: a dask array that reads chunks when computed (`TiffPixels`), for stacks larger
    than memory and for dask workers that read their own tiles."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if lazy:
            data = TiffPixels(path).to_dask()
        elif series.dataoffset is None:
            _check_fits_in_memory(path, series.shape, series.dtype)
            data = series.asarray()
        else:
            data = tifffile.memmap(path, series=0, mode="r")
        axes = series.axes
        pixel_size, unit, z = _tiff_resolution(tif)
    # One level of T or a singleton axis is dropped; what remains must be planes, Y, X [, C].
    keep = [i for i, a in enumerate(axes) if data.shape[i] > 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    focus = next((axes.index(a) for a in "ZIQT" if a in axes), None)
    channel = next((axes.index(a) for a in "CS" if a in axes), None)
    if focus is None and channel is not None and data.ndim == 3:
        n, kind = data.shape[channel], "samples" if axes[channel] == "S" else "channels"
        if samples_as_planes:
            axes = axes.replace(axes[channel], "Z")
            return StackFile(data, axes, channel, None, pixel_size, z, unit, [str(path)])
        if channel == 0:  # planar (SYX): maybe planes rather than colours
            raise StackError(
                f"{path} holds one image with {n} {kind} per pixel (axes {axes}) and no focus "
                f"axis; if they are {n} focus planes (tifffile writes a ({n}, Y, X) array so), "
                f"fuse them with --samples-as-planes (Python: read_stack(path, "
                f"samples_as_planes=True)).")
    if samples_as_planes:
        what = "already has a focus axis" if focus is not None else "has no samples to take"
        raise StackError(f"--samples-as-planes: {path} {what} (axes {axes}).")
    if focus is None:
        raise StackError(f"{path} holds a single plane (axes {axes}); a focus stack needs several.")
    return StackFile(data, axes, focus, channel, pixel_size, z, unit, [str(path)])


def _check_fits_in_memory(path: Path, shape, dtype) -> None:
    """Refuse, before reading, a file whose pixels need more memory than is free."""
    from .engine.stack import available_memory, format_bytes

    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    free = available_memory()
    if free is not None and need > free:
        raise StackError(f"{path} holds {' x '.join(map(str, shape))} {np.dtype(dtype)} "
                         f"pixels: {format_bytes(need)}, more than the {format_bytes(free)} of "
                         f"memory free; fuse a crop of it.")


def read_stack(paths: list[str | os.PathLike] | str | os.PathLike, *,
               samples_as_planes: bool = False, lazy: bool = False) -> StackFile:
    """One multi-page TIFF/OME-TIFF, a folder of planes, or several plane files -> a stack.

    Planes (files of a folder, or several files) are each one 2-D image, grayscale or RGB(A):
    TIFF, PNG, JPEG or BMP. ``samples_as_planes``: see `read_tiff` (one TIFF only). ``lazy``:
    one TIFF file comes back as a dask array read chunk by chunk (`read_tiff`); planes from
    several files are read as usual.
    """
    files = expand_inputs([paths] if isinstance(paths, str | os.PathLike) else list(paths))
    if len(files) == 1:
        if files[0].suffix.lower() not in (".tif", ".tiff"):
            raise StackError(f"{files[0]} is a single image; give several planes or a TIFF stack.")
        return _guard(lambda f: read_tiff(f, samples_as_planes=samples_as_planes, lazy=lazy),
                      files[0])
    if samples_as_planes:
        raise StackError("--samples-as-planes is for one TIFF file; several files are planes "
                         "already.")
    planes = []
    for f in files:
        plane = _guard(_read_plane, f)
        if not (plane.ndim == 2 or (plane.ndim == 3 and plane.shape[-1] in (3, 4))):
            raise StackError(f"{f} is not one plane (shape {plane.shape}); give one stack file, "
                             f"or several files of one 2-D (or RGB) image each.")
        planes.append(plane)
    data = stack_planes(planes)
    tiff = files[0].suffix.lower() in (".tif", ".tiff")
    pixel_size, unit, _ = _guard(_tiff_metadata, files[0]) if tiff else (None, None, None)
    channel = 3 if data.ndim == 4 else None
    axes = "ZYXS" if channel else "ZYX"
    if pixel_size:
        return StackFile(data, axes, 0, channel, pixel_size, None, unit, [str(f) for f in files])
    return StackFile(data, axes, 0, channel, source=[str(f) for f in files])


def _tiff_metadata(path: Path):
    """(pixel size, unit, z spacing) of any TIFF, a single plane too."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return _tiff_resolution(tif)


def _read_plane(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    try:
        return iio.imread(path)
    except OSError as exc:  # imageio: "Could not find a backend ... pip install imageio[...]"
        if "backend" not in str(exc):
            raise
        raise StackError(f"Cannot read {path}: not a {path.suffix.lstrip('.').upper()} image "
                         f"that can be decoded (corrupt, empty or another format).") from None


def _guard(fn, path: Path):
    try:
        return fn(path)
    except StackError:
        raise
    except Exception as exc:  # any decoder error: say which file, not a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise StackError(f"Cannot read {path}: {message}") from exc


def _file_mode(path: Path) -> int:
    """The permissions a file written at ``path`` gets: those of the file it replaces, else
    0666 less the umask, as for any new file."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        pass
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class OutputPathError(ValueError):
    """An output path that cannot be written, or would replace an input; found before any work."""


def check_outputs(outputs: dict[str, str | os.PathLike | None],
                  inputs: list[str | os.PathLike] = ()) -> None:
    """One check of all output paths ({label: path}, None skipped) before any work: each must
    name a file (not a folder or a device) in a folder this process can write to (or create),
    differ from every input and from the other outputs."""
    seen: dict[str, str] = {}
    real_inputs = {os.path.realpath(p): Path(p) for p in inputs}
    for label, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        where = f"{label} {path}"
        if is_zarr_path(path):
            if path.exists() and not (path / "zarr.json").is_file():
                raise OutputPathError(f"{where} exists and is not a Zarr store; remove it or "
                                      f"give another name (a Zarr output replaces the store).")
        elif path.is_dir():
            raise OutputPathError(f"{where} is a folder; give a file name, e.g. "
                                  f"{path / 'fused.tif'}.")
        if path.exists() and not path.is_file() and not is_zarr_path(path):
            raise OutputPathError(f"{where} is not a regular file (a device or a pipe); outputs "
                                  f"are written beside their target and then moved into place, "
                                  f"so give a file name.")
        real = os.path.realpath(path)
        same = real_inputs.get(real)
        if same is None and path.exists():
            same = next((p for p in inputs if Path(p).exists() and os.path.samefile(p, path)),
                        None)
        if same is not None:
            raise OutputPathError(f"{where} is also an input ({same}); give another name (the "
                                  f"input would be replaced).")
        if real in seen:
            raise OutputPathError(f"{where}: {seen[real]} names the same file; give each output "
                                  f"its own name.")
        seen[real] = label
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputPathError(f"{where} exists and is read-only; remove it, make it "
                                  f"writable or give another name.")
        folder = Path(os.path.abspath(path)).parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise OutputPathError(f"{where}: {folder} is a file, not a folder.")
        try:  # the real test of writing there (as root, os.access says yes to everything)
            fd, probe = tempfile.mkstemp(prefix=".napari-vaeedof-", suffix=".probe", dir=folder)
        except OSError as exc:
            raise OutputPathError(f"{where}: cannot write in {folder} ({exc.strerror}).") from None
        os.close(fd)
        os.unlink(probe)


def write_tiff(path: str | os.PathLike, image: np.ndarray, *, pixel_size=None,
               unit: str | None = None, info: str | None = None) -> Path:
    """Write a TIFF to a temporary file in the target folder, then move it into place.

    ``pixel_size`` is (y, x) in ``unit``; ``info`` is free text kept in the file (parameters).
    """
    meta = {"pixel_size": pixel_size, "unit": unit, "info": info}
    return write_tiffs([(path, image, meta)])[0]


def write_tiffs(outputs) -> list[Path]:
    """Write several TIFFs all or nothing: ``outputs`` is [(path, image, {pixel_size, unit,
    info})]. Every file is first written to a temporary file beside its target; only when all
    are written are they moved into place. If a move fails, those already moved are put back
    (the old files are kept as hard links until the end), so the set is never half replaced.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, image, meta in outputs:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            staged.append((tmp, path))
            os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600 files
            _write_tiff_file(tmp, image, **meta)
        _move_all(staged)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
    return [path for _, path in staged]


def _move_all(staged: list[tuple[str, Path]]) -> None:
    done: list[tuple[Path, Path | None]] = []
    backup = None
    try:
        for tmp, path in staged:
            backup = None
            if path.is_file():
                backup = path.with_name(f".{path.name}.{os.urandom(4).hex()}.old")
                try:
                    os.link(path, backup)
                except OSError:  # no hard links here: no way back for this one
                    backup = None
            os.replace(tmp, path)
            done.append((path, backup))
            backup = None
    except BaseException:
        for path, old in reversed(done):
            if old is not None:
                os.replace(old, path)
            else:
                path.unlink(missing_ok=True)
        if backup is not None:
            backup.unlink(missing_ok=True)
        raise
    finally:
        for _, old in done:
            if old is not None:
                old.unlink(missing_ok=True)


def _write_tiff_file(tmp: str, image: np.ndarray, *, pixel_size=None, unit: str | None = None,
                     info: str | None = None) -> None:
    import tifffile

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


#: OME-Zarr (NGFF) wants UDUNITS names for space units.
_NGFF_UNITS = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer",
               "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
               "inch": "inch"}  # fmt: skip


def _ngff_attrs(name: str, ndim: int, pixel_size, unit: str | None, info: str | None) -> dict:
    """Root attributes of a single-scale OME-Zarr 0.5 image with axes (c,) y, x."""
    space_unit = _NGFF_UNITS.get(unit or "")
    space = [{"name": a, "type": "space", **({"unit": space_unit} if space_unit else {})}
             for a in "yx"]
    axes = ([{"name": "c", "type": "channel"}] if ndim == 3 else []) + space
    scale = [1.0] * (ndim - 2) + (list(map(float, pixel_size)) if pixel_size else [1.0, 1.0])
    ms = {"name": name, "axes": axes,
          "datasets": [{"path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}
    attrs = {"ome": {"version": "0.5", "multiscales": [ms]}}
    if info:
        attrs["napari_vaeedof"] = json.loads(info)
    return attrs


def write_ome_zarrs(outputs, *, chunk: int = 1024, scheduler="threads") -> list[Path]:
    """Write dask arrays as OME-Zarr 0.5 images, all or nothing, without holding them in memory.

    ``outputs`` is [(path, array, {pixel_size, unit, info})], each array (Y, X) or (C, Y, X)
    (numpy or dask). All are computed in one pass (``scheduler``: a dask scheduler name or a
    distributed client; shared work is done once) into stores beside their targets, chunks of
    `chunk` px, then moved into place; an existing store at a target is replaced only when all
    are written. ``info`` (JSON text) is kept in the root attributes under "napari_vaeedof".
    """
    import shutil

    import dask.array as da
    import zarr

    staged: list[tuple[Path, Path]] = []
    try:
        sources, targets = [], []
        for path, array, meta in outputs:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            staged.append((tmp, path))
            array = da.asarray(array)
            chunks = (*array.shape[:-2], chunk, chunk)
            group = zarr.open_group(tmp, mode="w", zarr_format=3)
            group.attrs.update(_ngff_attrs(path.name.split(".")[0] or path.name, array.ndim,
                                           meta.get("pixel_size"),
                                           meta.get("unit"), meta.get("info")))
            target = group.create_array("0", shape=array.shape, dtype=array.dtype,
                                        chunks=chunks, fill_value=0,
                                        dimension_names=["c", "y", "x"][3 - array.ndim:])
            sources.append(array.rechunk(chunks))
            targets.append(target)
        da.store(sources, targets, lock=False, scheduler=scheduler)
        _move_dirs(staged)
        staged = []
    finally:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
    return [Path(p) for p, _a, _m in outputs]


def _move_dirs(staged: list[tuple[Path, Path]]) -> None:
    """Move staged folders into place; existing targets are set aside and restored if any move
    fails, removed once all succeeded."""
    import shutil

    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, path in staged:
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.{os.urandom(4).hex()}.old")
                os.replace(path, old)
            done.append((path, old))
            os.replace(tmp, path)
    except BaseException:
        for path, old in reversed(done):
            if old is not None:
                if path.exists():
                    shutil.rmtree(path, ignore_errors=True)
                os.replace(old, path)
        raise
    for _, old in done:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
