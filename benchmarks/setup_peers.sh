#!/usr/bin/env bash
# Create benchmarks/.peers-venv with the PyPI focus-stacking tools a user would pick instead of
# napari-vaeedof (openfocus, z-stackr, focusweave) plus matplotlib for the plots.
# The peers never enter the package's own environment: the harness runs them through
# benchmarks/peer_worker.py with this venv's python.
#
#   bash benchmarks/setup_peers.sh            # PYTHON=/path/to/python3.11 to choose the interpreter
#
# torch is pinned to the CPU build that installs from the local wheel cache; every later pip call
# is constrained to it so nothing pulls a different (multi-gigabyte) torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peers-venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python="python3"
torch_pin="${TORCH_PIN:-torch==2.13.0}"

"$python" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install --quiet --upgrade pip
$pip install --quiet "$torch_pin"
constraints="$venv/constraints.txt"
echo "$torch_pin" > "$constraints"
# openfocus: classical methods + the StackMFF neural models; focusweave: Laplacian pyramid;
# z-stackr: Rust engine (sdist: needs cargo on PATH to build); matplotlib: the plots.
$pip install --quiet -c "$constraints" openfocus focusweave matplotlib
if ! $pip install --quiet -c "$constraints" z-stackr; then
    echo "setup_peers: z-stackr failed to install (it builds from source: is cargo on PATH?)" >&2
fi
$pip freeze > "$venv/freeze.txt"
echo "peers venv ready: $venv"
"$venv/bin/python" "$here/peer_worker.py" --list || true
