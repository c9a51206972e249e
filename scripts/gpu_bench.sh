#!/usr/bin/env bash
# One call of the device tool (a GPU lent to the session): issue 12's GPU rows. Our default
# mode with the error map (what the widget runs), latent mode, and openfocus's StackMFF V3 on
# the same GPU, through benchmarks/speed.py: time versus planes (synthetic 512 px) and versus
# plane size (algae_group, 512 px to the full 20 MPx frame, 7 planes: its 5 then 2 repeated),
# wall seconds, MPx-planes/s, peak RSS and peak GPU memory.
#
# Here, once per session (after scripts/gpu_train.sh --prepare, whose wheels and TAEF2 it
# shares; it adds openfocus with StackMFF V3's weights, dtcwt, and the algae_group planes:
# about 10 MB in .carry/ with the rest; tree and carry must stay under 64 MiB):
#     scripts/gpu_bench.sh --prepare
# Then the device tool's `run` with carry [".carry"] and the command
#     bash scripts/gpu_bench.sh
# Files back from $OUT/speed: speed_planes.{md,csv}, speed_size.{md,csv}, speed_meta.json.
# Knobs (environment): PLANES ("2 7 15 30 60"), SIZES ("512 1MPx 4K 20MPx"), SIZE_PLANES (7),
# METHODS ("ours:vaeedof_error ours:vaeedof_latent openfocus:stackmffv3"), DEVICE (cuda; cpu
# tries the script here: PLANES=2 SIZES=512 DEVICE=cpu), MINUTES of runs at most (8).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    stacks="${STACKS:-../shared/data/stacks}"
    rm -rf .carry/peers && mkdir -p .carry/peers .carry/stacks
    # pure Python: installed here into a folder the device imports from; StackMFF V1's and
    # V2's weights (24 MB, unused) are dropped so that the tree and .carry stay under the
    # device's 64 MiB
    python -m pip install -q --no-deps --no-compile --target .carry/peers \
        openfocus==1.72.0 dtcwt==0.14.0
    rm -f .carry/peers/weights/stackmff_final.pth .carry/peers/weights/stackmff_v2_final.pth
    cp -r "$stacks/algae_group" .carry/stacks/
    du -sh .carry
    exit 0
fi

OUT="${OUT:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .carry/whl/*.whl
# the harness runs peers with "the peers venv's python": here the same python3 (a wrapper,
# not a link: a link would lose that python's own venv), seeing the peers through PYTHONPATH
mkdir -p /tmp/peers-venv/bin
rm -f /tmp/peers-venv/bin/python  # never write through an earlier link
printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/peers-venv/bin/python
chmod +x /tmp/peers-venv/bin/python
export VAEEDOF_PEERS_VENV=/tmp/peers-venv PYTHONUNBUFFERED=1
export PYTHONPATH="/tmp/site:$PWD/.carry/peers:$PWD/src" VAEEDOF_WEIGHTS_DIR="$PWD/.carry/models"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
# shellcheck disable=SC2086  # the lists are meant to split
python3 benchmarks/speed.py --device "$DEVICE" --planes ${PLANES:-2 7 15 30 60} \
    --sizes ${SIZES:-512 1MPx 4K 20MPx} --size-planes "${SIZE_PLANES:-7}" \
    --stacks-dir .carry/stacks \
    --methods ${METHODS:-ours:vaeedof_error ours:vaeedof_latent openfocus:stackmffv3} \
    --repeats 3 --repeat-budget 20 --cap 120 --budget-min "${MINUTES:-8}" --no-wait \
    --no-plot --out "$OUT/speed" 2>&1 | tee "$OUT/speed.log"
