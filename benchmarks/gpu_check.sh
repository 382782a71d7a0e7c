#!/usr/bin/env bash
# GPU check (issue 10): on a machine with an NVIDIA GPU and TensorRT, build FP32 / FP16 / INT8 engines of
# GTPT-T/S/B, validate each against PyTorch (logits on person crops + COCO AP on the val subset) and time them
# (median / p99 at batch 1 and 8, CUDA graph replay beside plain enqueue). One report: $OUT/report.md (+ .json).
#
#   bash benchmarks/gpu_check.sh                      # OUT=runs/gpu_check
#   GTPT_CKPT_S=gtpt_s.pth GTPT_CKPT_B=gtpt_b.pth OUT=/tmp/gc bash benchmarks/gpu_check.sh --iters 500
#
# Without official S/B checkpoints those variants use fresh seed-0 weights: their AP only compares backends.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_check}

command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found: this needs an NVIDIA GPU machine" >&2; exit 2; }
"$PY" - <<'PYEOF' || { echo "gpu_check: pip install -e '.[tensorrt,eval]' and a CUDA build of torch first" >&2; exit 2; }
import tensorrt, torch
from cuda.bindings import runtime
import pycocotools
assert torch.cuda.is_available(), "torch has no CUDA"
print(f"tensorrt {tensorrt.__version__}, torch {torch.__version__}, GPU {torch.cuda.get_device_name(0)}")
PYEOF
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.csv"
# the real-TensorRT tests first: if they fail, the numbers below mean little
"$PY" -m pytest -q -m "tensorrt or gpu" tests/test_trt_real.py | tee "$OUT/pytest.txt"
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@"
echo "report: $OUT/report.md"
