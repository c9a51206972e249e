"""Shared fixtures: real TAEF2 weights (VAEEDOF_WEIGHTS_DIR, ../shared/models beside the repo, or
the download cache), small real stacks, a random U-Net; viewer tests skipped without a display."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if (REPO.parent / "shared" / "models" / "taef2_encoder.pth").is_file():  # the project's layout
    os.environ.setdefault("VAEEDOF_WEIGHTS_DIR", str(REPO.parent / "shared" / "models"))
torch.set_num_threads(min(2, torch.get_num_threads()))


#: What the viewer tests need from the system (Debian/Ubuntu names; the README lists them too).
VIEWER_PACKAGES = (
    "xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libglib2.0-0 libfontconfig1 "
    "libfreetype6 libdbus-1-3 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 "
    "libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 "
    "libxcb-xfixes0 libxcb-xkb1 libxcb-glx0 fonts-dejavu-core"
)


@functools.cache
def viewer_problem() -> str | None:
    """Why a Qt application cannot start here (None if it can), tried in a subprocess: without
    a display or Qt's xcb libraries Qt aborts the whole process, minutes into the run."""
    hint = (f"run the tests under `xvfb-run -a` with these system packages installed "
            f"(Debian/Ubuntu): apt-get install {VIEWER_PACKAGES}")
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return f"no display (DISPLAY is not set); {hint}"
    code = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired:
        return f"a Qt application did not start within 60 s; {hint}"
    if run.returncode == 0:
        return None
    said = [line for line in run.stderr.splitlines() if line.startswith("qt.qpa")] or \
        [line for line in run.stderr.splitlines() if line.strip()][-1:]
    missing = ""
    try:
        import PyQt6

        xcb = Path(PyQt6.__file__).parent / "Qt6/plugins/platforms/libqxcb.so"
        if xcb.is_file() and shutil.which("ldd"):
            ldd = subprocess.run(["ldd", str(xcb)], capture_output=True, text=True).stdout
            libs = [line.split()[0] for line in ldd.splitlines() if "not found" in line]
            missing = f"; missing libraries: {', '.join(libs)}" if libs else ""
    except ImportError:
        pass
    return f"Qt cannot start (exit {run.returncode}: {' / '.join(said) or 'no message'})" \
        f"{missing}; {hint}"


def pytest_collection_modifyitems(config, items):
    """Viewer tests are skipped with the reason when no Qt application can start (or, with
    VAEEDOF_REQUIRE_VIEWER=1 as in CI, the run stops at once with it)."""
    viewer = [item for item in items if item.get_closest_marker("viewer")]
    problem = viewer_problem() if viewer else None
    if problem is None:
        return
    if os.environ.get("VAEEDOF_REQUIRE_VIEWER") == "1":
        raise pytest.UsageError(f"the napari viewer tests cannot run: {problem}")
    skip = pytest.mark.skip(reason=f"needs a display: {problem}")
    for item in viewer:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The folder the TAEF2 files are found in (VAEEDOF_WEIGHTS_DIR, else the download cache that
    the first fusion fills); tests do not download."""
    from napari_vaeedof.models.weights import WeightsError, weight_path

    try:
        folders = {weight_path(name, allow_download=False).parent
                   for name in ("taef2_encoder", "taef2_decoder")}
    except WeightsError as exc:
        pytest.fail(f"TAEF2 weights not found (run `napari-vaeedof weights`): {exc}")
    if len(folders) > 1:
        pytest.fail(f"The TAEF2 encoder and decoder are in different folders: {folders}")
    return folders.pop()


@pytest.fixture(scope="session")
def random_unet(tmp_path_factory) -> Path:
    """A Fusion U-Net with random weights everywhere (heads too): plumbing, not quality."""
    from napari_vaeedof.models.fusion_unet import FusionUNet, UNetConfig, save_unet

    torch.manual_seed(0)
    model = FusionUNet(UNetConfig(widths=(16, 32, 32), heads=2, groups=4))
    for head in (model.select, model.residual):
        torch.nn.init.normal_(head.weight, std=0.02)
    path = tmp_path_factory.mktemp("unet") / "random_unet.safetensors"
    save_unet(model, path, {"status": "random test model"})
    return path


@pytest.fixture(scope="session")
def random_selection(tmp_path_factory) -> Path:
    """A selection head with random weights, its fill bias lowered so that fill is zero in
    some places and not in others: plumbing, not quality."""
    from napari_vaeedof.models.selection_net import SelectionConfig, SelectionNet, save_selection

    torch.manual_seed(1)
    model = SelectionNet(SelectionConfig(width=16, groups=4))
    with torch.no_grad():
        model.fill[1].bias.fill_(-0.4)  # sigmoid 0.4: about FILL_DEAD
    path = tmp_path_factory.mktemp("selection") / "random_selection.safetensors"
    save_selection(model, path, {"status": "random test model"})
    return path


@pytest.fixture(scope="session")
def random_bands_selection(tmp_path_factory) -> Path:
    """A selection head of kind "bands" with random weights; its fill bias is set per test."""
    from napari_vaeedof.models.selection_net import SelectionConfig, SelectionNet, save_selection

    torch.manual_seed(2)
    model = SelectionNet(SelectionConfig(width=16, groups=4, inputs="bands"))
    path = tmp_path_factory.mktemp("selection") / "random_bands_selection.safetensors"
    save_selection(model, path, {"status": "random test model"})
    return path


def two_focus_stack(size: int = 128, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A real photo, left half sharp in plane 0, right half sharp in plane 1 -> (stack, sharp)."""
    from scipy import ndimage
    from skimage import data

    sharp = data.astronaut()[:size, 100 : 100 + size].astype(np.float32) / 255
    blurred = ndimage.gaussian_filter(sharp, (3, 3, 0))
    half = size // 2
    a, b = sharp.copy(), sharp.copy()
    a[:, half:] = blurred[:, half:]
    b[:, :half] = blurred[:, :half]
    stack = np.stack([a, b])
    if not rgb:
        return stack.mean(-1), sharp.mean(-1)
    return stack, sharp


@pytest.fixture
def batch_inputs(tmp_path) -> list[Path]:
    """Three tiny 3-plane uint8 stacks for `batch`: an OME-TIFF, a folder of planes, a TIFF."""
    import tifffile

    from napari_vaeedof.data.synth import make_stack, quantize

    stacks = [quantize(make_stack(seed, size=64, n_planes=3, gray=True).planes[..., 0], np.uint8)
              for seed in (1, 2, 3)]
    ome = tmp_path / "in" / "alpha.ome.tif"
    ome.parent.mkdir()
    tifffile.imwrite(ome, stacks[0], ome=True, metadata={"axes": "ZYX"})
    folder = tmp_path / "in" / "beta"
    folder.mkdir()
    for i, plane in enumerate(stacks[1]):
        tifffile.imwrite(folder / f"plane_{i}.tif", plane)
    plain = tmp_path / "in" / "gamma.tif"
    tifffile.imwrite(plain, stacks[2], imagej=True, metadata={"axes": "ZYX"})
    return [ome, folder, plain]


@pytest.fixture
def batch_matches_fuse(tmp_path):
    """check(inputs, out_dir, options): each OUT_DIR/NAME.tif that `batch` wrote from
    `batch_inputs` equals `fuse` of that input alone with the same options, within 1 grey
    level."""
    import tifffile

    from napari_vaeedof.cli import main

    def check(inputs, out, opts) -> None:
        for given, name in zip(inputs, ("alpha", "beta", "gamma"), strict=True):
            single = tmp_path / f"{name}_single.tif"
            assert main(["fuse", str(given), "-o", str(single), *opts, "-q"]) == 0
            got, want = tifffile.imread(out / f"{name}.tif"), tifffile.imread(single)
            assert got.shape == want.shape == (64, 64) and got.dtype == want.dtype
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1

    return check
