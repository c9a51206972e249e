import subprocess
import sys

import numpy as np
import tifffile

import napari_vaeedof


def test_import_and_reader_probe_leave_torch_unimported(tmp_path):
    """napari asks the reader about every file it opens: that must not cost a torch import."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 32, 32), np.uint8))
    code = (
        "import sys, napari_vaeedof\n"
        "from napari_vaeedof._reader import get_reader\n"
        f"reader = get_reader({str(path)!r})\n"
        "assert reader is not None\n"
        f"assert reader({str(path)!r})[0][0].shape == (5, 32, 32)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_public_names_load_on_first_use():
    assert set(napari_vaeedof.__all__) <= set(dir(napari_vaeedof))
    assert napari_vaeedof.fuse_stack.__module__ == "napari_vaeedof.api"
    assert napari_vaeedof.StackError.__module__ == "napari_vaeedof.engine.stack"
    try:
        napari_vaeedof.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_package_works_without_docstrings():
    """python -OO strips docstrings: nothing may be built from them at import time."""
    code = "from napari_vaeedof import fuse_stack, iter_fuse_stack; print(fuse_stack.__doc__)"
    out = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_the_cli_imports_evaluation_and_training_only_when_they_run():
    """Parsing any command (what every `napari-vaeedof` call does first) imports no torch and
    neither the evaluation nor the training code; `evaluate` and `train` load theirs when run."""
    heavy = ("torch", "napari_vaeedof.evaluation.heldout", "napari_vaeedof.training.train",
             "napari_vaeedof.api")
    code = (
        "import sys\n"
        "from napari_vaeedof.cli import build_parser\n"
        "for argv in (['evaluate'], ['train'], ['weights'], ['fuse', '-o', 'x.tif']):\n"
        "    build_parser().parse_args(argv)\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
