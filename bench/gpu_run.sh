#!/usr/bin/env bash
# The GPU run owed by the benchmark issue (see docs/benchmarks.md): TorchServe on CUDA with batches
# of 64, loaded by locust from 8 processes on loopback, for 60 s and at most 8 x 40,000 requests.
# Target: >= 2,000 req/s with p99 < 100 ms. Run from the repository root on a machine with a GPU:
#   bash bench/gpu_run.sh [WEIGHTS]
# Writes reports/gpu-<time>/ (locust reports, summary.json) and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
WEIGHTS=${1:-model_store/skin_resnet34.pt}
PY=.venv/bin/python
OUT=reports/gpu-$(date +%Y%m%d-%H%M%S)
HOME_DIR=.run/gpu
mkdir -p "$OUT"

$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
# The GPU archive replaces the build output model_store/skin.mar; `make archive` restores the CPU one
# (the GPU archive records other inputs, so it is never taken for the CPU one).
$PY -m tools.archive --weights "$WEIGHTS" --config-file bench/gpu-model-config.yaml
$PY -m serve.torchserve --home "$HOME_DIR" > "$OUT/torchserve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER; wait $SERVER || true' EXIT
for _ in $(seq 120); do
  grep -q "is READY" "$OUT/torchserve.log" && break
  sleep 1
done
$PY -m ops --key-file "$HOME_DIR/key_file.json" describe skin | tee "$OUT/describe.txt"
# Warm-up (cuDNN autotuning, first batches), then the measured run.
$PY -m loadtest --key-file "$HOME_DIR/key_file.json" --users 64 --duration 15 --processes 4 \
  --out "$OUT/warmup" || true
$PY -m loadtest --key-file "$HOME_DIR/key_file.json" --users 256 --duration 60 --processes 8 \
  --max-requests 40000 --out "$OUT/run" | tee "$OUT/summary.txt"
$PY -m ops --key-file "$HOME_DIR/key_file.json" metrics | tee "$OUT/metrics.txt"
