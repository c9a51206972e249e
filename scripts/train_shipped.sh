#!/usr/bin/env bash
# Reproduces the shipped Fusion U-Net (src/napari_vaeedof/models/weights/fusion_unet.safetensors)
# with the recipe in src/napari_vaeedof/training/default.toml. Wall times on 2 CPU cores are in
# docs/model-card.md (about 25 min to generate and encode the data, 33 min to train).
set -euo pipefail
cd "$(dirname "$0")/.."
export VAEEDOF_WEIGHTS_DIR="${VAEEDOF_WEIGHTS_DIR:-$(cd .. && pwd)/shared/models}"
napari-vaeedof train
cp runs/train/fusion_unet.safetensors src/napari_vaeedof/models/weights/fusion_unet.safetensors
