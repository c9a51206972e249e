#!/usr/bin/env bash
# Reproduces the shipped selection head (src/napari_vaeedof/models/weights/selection_net.safetensors):
# a head of kind "bands" on the four physics families (training/selection_families.toml, warm
# start from the packaged head), then 600 steps of fine-tune with the fill target's margin at
# 0.5, on top of the shipped Fusion U-Net, then the same fine-tune again on data prepared with
# the U-Net's second stage. Wall times on 2 CPU cores are in docs/model-card.md.
# (The first head, of kind "latents", came from `napari-vaeedof train --config selection`.)
set -euo pipefail
cd "$(dirname "$0")/.."
export VAEEDOF_WEIGHTS_DIR="${VAEEDOF_WEIGHTS_DIR:-$(cd .. && pwd)/shared/models}"
napari-vaeedof train --config selection-families
napari-vaeedof train --config selection-families \
    --set train.init=runs/selection_families/selection_net.safetensors \
    --set train.steps=600 --set train.lr=2e-4 --set train.warmup=50 \
    --set train.fill_margin=0.5 --set train.out=runs/selection_families_m50
# After the U-Net's decoder-pixel-term stage (recipe families-pixel): the prepared data
# rebuilt with that U-Net's decoded fusion, and the same 600-step fine-tune on them.
napari-vaeedof train --config selection-families \
    --set train.init=runs/selection_families_m50/selection_net.safetensors \
    --set data.cache=runs/pixels_families_v2 \
    --set train.steps=600 --set train.lr=2e-4 --set train.warmup=50 \
    --set train.fill_margin=0.5 --set train.out=runs/selection_m50_v2
cp runs/selection_m50_v2/selection_net.safetensors \
    src/napari_vaeedof/models/weights/selection_net.safetensors
