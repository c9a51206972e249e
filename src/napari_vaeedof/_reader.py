"""npe2 reader: focus-stack TIFF / OME-TIFF files and folders of planes -> napari layer data.

The pixels come from `napari_vaeedof.io.read_stack`; this module only turns what the file said
(axes, pixel size, z spacing, unit) into napari's ``scale``, ``units`` and ``axis_labels``.
Files that are not focus stacks (a single 2-D or RGB image, another format), and paths that
cannot be read as one (mismatched planes, a corrupt file, too large for memory), get ``None``
from `get_reader`, so napari falls back to its other readers; the reason is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .engine.stack import StackError
from .io import IMAGE_SUFFIXES, StackFile, read_stack

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
LayerData = tuple  # (data, kwargs, layer_type)

_TIFF = (".tif", ".tiff")
#: Axis letters (tifffile) that can hold focus planes, as `io.read_tiff` looks for them.
_FOCUS = "ZIQT"


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list[LayerData]] | None:
    """The reader function when ``path`` is a focus stack this plugin can read, else None.

    The stack is read here (napari calls the reader function right after), so a path that
    looks like a stack but cannot be read gets None instead of an error; nothing is written.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or not _looks_like_stack(paths):
        return None
    try:
        stack = read_stack(paths[0] if len(paths) == 1 else paths)
    except (StackError, OSError, MemoryError) as exc:
        log.info("napari-vaeedof does not read %s: %s", paths, exc)
        return None

    def read(_path=None, **_kwargs) -> list[LayerData]:
        return stack_layer_data(stack)

    return read


def _looks_like_stack(paths: list[PathLike]) -> bool:
    """Cheap claim by name and header: a folder of planes, a TIFF with several planes, or
    several image files."""
    if len(paths) == 1:
        p = Path(paths[0])
        if p.is_dir():
            return _folder_of_planes(p)
        return p.suffix.lower() in _TIFF and p.is_file() and _tiff_is_stack(p)
    # Several files: each one a plane (as napari passes them with "open as stack").
    return all(Path(f).is_file() and Path(f).suffix.lower() in IMAGE_SUFFIXES for f in paths)


def _folder_of_planes(folder: Path) -> bool:
    n = sum(1 for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return n >= 2


def _tiff_is_stack(path: Path) -> bool:
    """True when the first series has a planes axis with more than one entry (cheap: no pixels)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
    except Exception:  # not a TIFF we can parse: not ours
        return False
    return any(a in _FOCUS and n > 1 for a, n in zip(axes, shape, strict=True))


def read_focus_stack(path: PathLike | Sequence[PathLike]) -> list[LayerData] | None:
    """Read a focus stack into napari layer data (one layer, or one per fluorescence channel);
    None when the path cannot be read as one."""
    reader = get_reader(path)
    return None if reader is None else reader(path)


def stack_layer_data(stack: StackFile) -> list[LayerData]:
    """A `StackFile` -> [(data, kwargs, "image")] with scale, units, axis labels and metadata.

    RGB(A) with the samples last stays one RGB layer; any other channel axis is handed to
    napari as ``channel_axis`` so each channel becomes its own (grayscale stack) layer.
    """
    data, axes = stack.data, stack.axes
    ch = stack.channel_axis
    rgb = ch is not None and ch == data.ndim - 1 and data.shape[ch] in (3, 4) and axes[ch] == "S"
    spatial = [i for i in range(data.ndim) if i != ch]  # the axes of each resulting layer
    focus = spatial.index(stack.axis)

    scale = [1.0] * len(spatial)
    if stack.z_spacing:
        scale[focus] = float(stack.z_spacing)
    if stack.pixel_size:
        scale[-2], scale[-1] = (float(s) for s in stack.pixel_size)
    units = _units(stack, len(spatial), focus)
    labels = [axes[i].lower() for i in spatial]
    labels[focus] = "z" if "z" not in labels or labels.index("z") == focus else labels[focus]

    source = Path(stack.source[0]) if stack.source else None
    if source is not None and len(stack.source) > 1:
        source = source.parent
    name = _stem(source) if source is not None else "focus stack"
    metadata = {
        "source": list(stack.source),
        "axes": axes,
        "focus_axis": focus,
        "pixel_size": list(stack.pixel_size) if stack.pixel_size else None,
        "z_spacing": stack.z_spacing,
        "unit": stack.unit,
    }
    kwargs: dict = {
        "name": name,
        "scale": tuple(scale),
        "axis_labels": tuple(labels),
        "metadata": metadata,
    }
    if units is not None:
        kwargs["units"] = units
    if rgb:
        kwargs["rgb"] = True
        return [(data, kwargs, "image")]
    if ch is None:
        kwargs["rgb"] = False
        return [(data, kwargs, "image")]
    # Split channels: give napari one value per channel, so nothing is read as per-channel
    # by accident (a 3-tuple of scales with 3 channels, strings, dict keys).
    n = data.shape[ch]
    kwargs = {
        "channel_axis": ch,
        "name": [f"{name} ch{c}" for c in range(n)],
        "scale": [tuple(scale)] * n,
        "axis_labels": [tuple(labels)] * n,
        "metadata": [{**metadata, "channel": c} for c in range(n)],
        "rgb": False,
        **({"units": [units] * n} if units is not None else {}),
    }
    return [(data, kwargs, "image")]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() else name


def _units(stack: StackFile, ndim: int, focus: int) -> tuple[str, ...] | None:
    """Per-axis units napari (pint) understands, or None when the file gave none usable."""
    if not stack.unit or not stack.pixel_size:
        return None
    unit = "µm" if stack.unit in ("um", "micron", "microns") else stack.unit
    try:
        import pint

        pint.get_application_registry()(unit)
    except Exception:  # a unit pint does not know (e.g. a free-text ImageJ unit): leave it out
        return None
    units = ["pixel"] * ndim
    units[-2] = units[-1] = unit
    if stack.z_spacing:
        units[focus] = unit
    return tuple(units)
