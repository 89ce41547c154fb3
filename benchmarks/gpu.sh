#!/usr/bin/env bash
# GPU throughput of medilab on an NVIDIA GPU: ResNet-50 training at 224² and the DRIVE U-Net on
# 96² patches, bf16-mixed with channels-last weights, synthetic data, a fixed number of steps
# (benchmarks/throughput.py --device cuda). Prints images/s of medilab's path and of a plain fp32
# eager loop and of a plain loop at medilab's precision, and the share of the GPU's dense bf16
# peak reached by medilab's training and inference (default peak 989 TFLOP/s, H100/H200 SXM; set
# PEAK_TFLOPS for another GPU).
#
#     benchmarks/gpu.sh                      # from the repository root or anywhere
#     STEPS=100 BATCH=128 PEAK_TFLOPS=312 benchmarks/gpu.sh   # e.g. an A100
#
# Installs nothing beyond `make install`. Rows also go to $OUT/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."

PEAK_TFLOPS=${PEAK_TFLOPS:-989}
STEPS=${STEPS:-50}
WARMUP=${WARMUP:-10}
BATCH=${BATCH:-256}
OUT=${OUT:-runs/bench_gpu}

make install
PY=.venv/bin/python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
mkdir -p "$OUT"

common=(--device cuda --precision bf16-mixed --channels-last --steps "$STEPS" --warmup "$WARMUP"
        --batch "$BATCH" --peak-tflops "$PEAK_TFLOPS")

echo "== ResNet-50, 224x224, bf16-mixed, channels-last, batch $BATCH, $STEPS steps"
"$PY" benchmarks/throughput.py "${common[@]}" --only resnet50_224 --json "$OUT/resnet50_224.json"

echo "== U-Net (depth 4, width 64), DRIVE 96x96 patches, bf16-mixed, channels-last"
"$PY" benchmarks/throughput.py "${common[@]}" --only unet_96 --unet-depth 4 --unet-width 64 \
    --json "$OUT/unet_96.json"

echo "columns per phase (train_*, infer_*): medilab images/s, same (plain loop at medilab's"
echo "precision and layout), fp32 (plain fp32 NCHW loop), gain = same/fp32, overhead ="
echo "1 - medilab/same, share = medilab TFLOP/s / ${PEAK_TFLOPS} TFLOP/s"
