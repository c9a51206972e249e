"""Montages and no-reference measures of VAEEDOF on the real stacks -> docs/images/real.

Run from anywhere (extra arguments pass through, e.g. ``--max-side 384`` for a quick look)::

    VAEEDOF_WEIGHTS_DIR=../shared/models python docs/real_stacks.py

It is ``python -m napari_vaeedof.evaluation.real_stacks --stacks-dir ../shared/data/stacks
--out docs/images/real`` with those two paths resolved from the repository root.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_vaeedof.evaluation.real_stacks import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--stacks-dir" not in args:
        args = ["--stacks-dir", str(REPO.parent / "shared" / "data" / "stacks"), *args]
    if "--out" not in args:
        args = ["--out", str(REPO / "docs" / "images" / "real"), *args]
    sys.exit(main(args))
