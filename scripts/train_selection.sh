#!/usr/bin/env bash
# Reproduces the shipped selection head (src/napari_vaeedof/models/weights/selection_net.safetensors)
# with the recipe in src/napari_vaeedof/training/selection.toml, on top of the shipped Fusion U-Net.
# Wall times on 2 CPU cores are in docs/model-card.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export VAEEDOF_WEIGHTS_DIR="${VAEEDOF_WEIGHTS_DIR:-$(cd .. && pwd)/shared/models}"
napari-vaeedof train --config selection
cp runs/selection/selection_net.safetensors src/napari_vaeedof/models/weights/selection_net.safetensors
