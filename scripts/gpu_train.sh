#!/usr/bin/env bash
# One call of the device tool (a GPU lent to the session): train the Fusion U-Net at scale and
# bring back its EMA weights, loss log and a held-out comparison with the shipped U-Net.
#
# Here, once per session (the device machine has Python 3.12 + PyTorch, scipy, scikit-image,
# OpenCV, tifffile, safetensors, but no dask, platformdirs and no package registry; it gets the
# working tree, not ../shared):
#     scripts/gpu_train.sh --prepare
# Then the device tool's `run` with carry [".carry"] and the command
#     bash scripts/gpu_train.sh
# The files come back from $OUT: fusion_unet.safetensors (warm-start the next call from it:
# copy it to .carry/init/ here and run again), loss.csv, train.log, compare.md, compare.json.
#
# Knobs (environment): N_STACKS per family (default 600), WORKERS generating them (16),
# BATCH (32), BUDGET seconds of training (300: with ~90 s of data and ~60 s of comparison it
# fits the 600 s a call may run), STEPS of the cosine schedule (20000; the budget stops it
# first, resumable), PIXEL_CROP latent cells decoded per step (24: the whole crop), N_COMPARE
# held-out stacks per family and split in the comparison (6), DEVICE (cuda; cpu tries the
# script here at a tiny scale: N_STACKS=2 WORKERS=2 BATCH=2 BUDGET=5 N_COMPARE=1 DEVICE=cpu).
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

OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .carry/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" VAEEDOF_WEIGHTS_DIR="$PWD/.carry/models" PYTHONUNBUFFERED=1
init="shipped"
if compgen -G ".carry/init/fusion_unet.safetensors" > /dev/null; then
    init=".carry/init/fusion_unet.safetensors"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
t0=$(date +%s)
python3 -m napari_vaeedof.cli train --config families-pixel \
    --set data.cache='"runs/gpu_latents"' --set data.n_stacks="${N_STACKS:-600}" \
    --set data.first_seed=10000 --set data.workers="${WORKERS:-16}" \
    --set train.out='"runs/gpu_train"' --set train.init="\"$init\"" \
    --set train.batch="${BATCH:-32}" --set train.steps="${STEPS:-20000}" \
    --set train.pixel_crop="${PIXEL_CROP:-24}" --set train.max_seconds="${BUDGET:-300}" \
    --set train.checkpoint_every=1000 --set train.threads=8 \
    --set train.device="\"${DEVICE:-cuda}\"" \
    2>&1 | tee "$OUT/train.log"
echo "train: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
cp runs/gpu_train/fusion_unet.safetensors runs/gpu_train/loss.csv "$OUT/"
python3 scripts/compare_weights.py --unet runs/gpu_train/fusion_unet.safetensors \
    --n "${N_COMPARE:-6}" \
    --methods "latent shipped" "latent new" vae_ceiling --device "${DEVICE:-cuda}" --out "$OUT" \
    2>&1 | tail -n 30
echo "total: $(( $(date +%s) - t0 )) s"
