#!/usr/bin/env bash
# GPU check (issues 10, 18): on a machine with an NVIDIA GPU and TensorRT, build FP32 / FP16 / INT8 engines of
# GTPT-T/S/B, validate each against PyTorch (logits on person crops + COCO AP on the val subset) and time them
# (median / p99 at batch 1 and 8, CUDA graph replay beside plain enqueue). Without TensorRT it checks the PyTorch
# CUDA path and says what it skipped. One report: $OUT/report.md (+ .json), whatever fails on the way.
#
#   bash benchmarks/gpu_check.sh                      # OUT=runs/gpu_check, LIMIT=3600 s in all
#   GTPT_CKPT_S=gtpt_s.pth GTPT_CKPT_B=gtpt_b.pth OUT=/tmp/gc LIMIT=1800 bash benchmarks/gpu_check.sh --iters 500
#
# Without official S/B checkpoints those variants use fresh seed-0 weights: their AP only compares backends.
# Exit code: the worst of the steps (the real-TensorRT tests, the check), so a failed step never hides the report.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_check}
LIMIT=${LIMIT:-3600}
START=$(date +%s)

command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found: this needs an NVIDIA GPU machine" >&2; exit 2; }
"$PY" - <<'PYEOF' || { echo "gpu_check: pip install -e '.[tensorrt,eval]' (or .[tensorrt-cu12,eval]) and a CUDA build of torch first" >&2; exit 2; }
import torch, pycocotools
assert torch.cuda.is_available(), "torch has no CUDA"
try:
    import tensorrt
    trt = f"tensorrt {tensorrt.__version__}"
except ImportError as e:
    trt = f"no tensorrt ({e}): only the PyTorch CUDA path is checked"
print(f"{trt}, torch {torch.__version__}, GPU {torch.cuda.get_device_name(0)}")
PYEOF
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.csv"
rc=0
# the real-TensorRT tests first (skipped with their reason without TensorRT); a failure is reported, not fatal
timeout $((LIMIT / 6)) "$PY" -m pytest -q -m "tensorrt or gpu" tests/test_trt_real.py 2>&1 | tee "$OUT/pytest.txt"
step=${PIPESTATUS[0]}; [ "$step" -ne 0 ] && { echo "gpu_check: real-TensorRT tests failed (rc $step), see $OUT/pytest.txt" >&2; rc=$step; }
LEFT=$((LIMIT - ($(date +%s) - START)))
# the check stops starting cells 60 s before its share ends; timeout is the backstop for a hung cell
timeout "$LEFT" "$PY" benchmarks/gpu_check.py --out "$OUT" --time-limit $((LEFT > 120 ? LEFT - 60 : LEFT / 2)) "$@"
step=$?; [ "$step" -ne 0 ] && { echo "gpu_check: the check ended with rc $step" >&2; [ "$rc" -eq 0 ] && rc=$step; }
echo "report: $OUT/report.md"
exit "$rc"
