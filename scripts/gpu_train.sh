#!/usr/bin/env bash
# Training on a GPU lent to the session, one device call per stage; each brings back its
# weights, loss log and a held-out comparison with the shipped weights.
#
# Here, once per session (the device machine has Python 3.12 + PyTorch, scipy, scikit-image,
# OpenCV, tifffile, safetensors, but no dask, platformdirs and no package registry; it gets the
# working tree, not ../shared):
#     scripts/gpu_train.sh --prepare
# Then the device tool's `run`, with carry [".carry"], one stage per call:
#     bash scripts/gpu_train.sh unet        # the Fusion U-Net (families-pixel recipe)
#     bash scripts/gpu_train.sh selection   # the selection head's fine-tune for that U-Net
# Files back from $OUT: unet: fusion_unet.safetensors, loss.csv, train.log, compare.md/json;
# selection: selection_net.safetensors, selection_loss.csv, selection.log, compare.md/json.
# Between calls, here: copy the returned fusion_unet.safetensors to .carry/init/ (the unet
# stage continues from it, the selection stage prepares its data with it) and, after the
# selection stage, selection_net.safetensors too (compare and ship both: docs/model-card.md).
#
# Knobs (environment): N_STACKS per family for the U-Net (default 600), WORKERS generating
# stacks (16), BATCH (32), BUDGET seconds of training per stage (300: with ~90 s of data and
# ~60 s of comparison it fits the 600 s a call may run), STEPS of the cosine schedule (20000;
# the budget stops it first, resumable), PIXEL_CROP latent cells decoded per step (24: the
# whole crop), N_COMPARE held-out stacks per family and split in the comparison (6), DEVICE
# (cuda; cpu tries the script here at a tiny scale: N_STACKS=2 WORKERS=2 BATCH=2 BUDGET=5
# N_COMPARE=1 SEL_STACKS=2 DEVICE=cpu), SEL_STACKS per family for the head (100).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    models="${VAEEDOF_WEIGHTS_DIR:-../shared/models}"
    mkdir -p .carry/models .carry/whl
    cp "$models"/taef2_encoder.pth "$models"/taef2_decoder.pth .carry/models/
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .carry/whl \
        dask==2026.8.0 partd==1.4.2 locket==1.0.0 platformdirs==4.14.8
    du -sh .carry
    exit 0
fi

stage="${1:-unet}"
OUT="${OUT:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .carry/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" VAEEDOF_WEIGHTS_DIR="$PWD/.carry/models" PYTHONUNBUFFERED=1
unet=""
if [[ -f .carry/init/fusion_unet.safetensors ]]; then
    unet=".carry/init/fusion_unet.safetensors"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
t0=$(date +%s)
common=(--set train.max_seconds="${BUDGET:-300}" --set train.device="\"$DEVICE\""
        --set data.workers="${WORKERS:-16}")

case "$stage" in
unet)
    python3 -m napari_vaeedof.cli train --config families-pixel "${common[@]}" \
        --set data.cache='"runs/gpu_latents"' --set data.n_stacks="${N_STACKS:-600}" \
        --set data.first_seed=10000 --set train.out='"runs/gpu_train"' \
        --set train.init="\"${unet:-shipped}\"" --set train.batch="${BATCH:-32}" \
        --set train.steps="${STEPS:-20000}" --set train.pixel_crop="${PIXEL_CROP:-24}" \
        --set train.checkpoint_every=1000 --set train.threads=8 \
        2>&1 | tee "$OUT/train.log"
    echo "train: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
    cp runs/gpu_train/fusion_unet.safetensors runs/gpu_train/loss.csv "$OUT/"
    python3 scripts/compare_weights.py --unet runs/gpu_train/fusion_unet.safetensors \
        --n "${N_COMPARE:-6}" --methods "latent shipped" "latent new" vae_ceiling \
        --device "$DEVICE" --out "$OUT" 2>&1 | tail -n 30
    ;;
selection)
    if [[ -z "$unet" ]]; then
        echo "the selection stage needs .carry/init/fusion_unet.safetensors (the unet stage's)"
        exit 2
    fi
    # the shipped head's stage-2 fine-tune (docs/model-card.md), data prepared with this U-Net
    python3 -m napari_vaeedof.cli train --config selection-families "${common[@]}" \
        --set data.cache='"runs/gpu_pixels"' --set data.unet="\"$unet\"" \
        --set data.n_stacks="${SEL_STACKS:-100}" --set train.out='"runs/gpu_selection"' \
        --set train.steps=600 --set train.lr=2e-4 --set train.warmup=50 \
        --set train.fill_margin=0.5 --set train.checkpoint_every=100 --set train.threads=8 \
        2>&1 | tee "$OUT/selection.log"
    echo "train: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/selection.log"
    cp runs/gpu_selection/selection_net.safetensors "$OUT/"
    cp runs/gpu_selection/loss.csv "$OUT/selection_loss.csv"
    python3 scripts/compare_weights.py --unet "$unet" \
        --selection runs/gpu_selection/selection_net.safetensors --n "${N_COMPARE:-6}" \
        --methods "latent shipped" "latent new" "pixel shipped" "pixel new" \
        laplacian_pyramid vae_ceiling --device "$DEVICE" --out "$OUT" 2>&1 | tail -n 30
    ;;
*)
    echo "usage: scripts/gpu_train.sh [--prepare | unet | selection]"
    exit 2
    ;;
esac
echo "total: $(( $(date +%s) - t0 )) s"
