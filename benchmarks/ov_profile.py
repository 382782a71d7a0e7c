"""Where OpenVINO spends its time on one of our ONNX files: per layer type and kernel, from its own counters.

Compiles the file for the CPU at the given inference precision (as ``--provider openvino:<precision>`` does, with
``PERF_COUNT``), runs batch 8 of random crops a few times, and prints the share of time per (layer type, kernel),
e.g. ``FullyConnected brgemm_avx512_amx_bf16`` or ``FakeQuantize jit_avx512_f32`` (benchmarks/README.md, issue 20).

    python benchmarks/ov_profile.py export/gtpt_t_coco_bdyn_int8.onnx bf16 --threads 1
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("onnx")
    p.add_argument("precision", choices=["f32", "bf16"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--top", type=int, default=14)
    args = p.parse_args()
    import openvino as ov

    compiled = ov.Core().compile_model(args.onnx, "CPU", {
        "INFERENCE_PRECISION_HINT": args.precision, "PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": args.threads,
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 256, 192)).astype(np.float32)
    for _ in range(3):
        request.infer({0: x})
    spent: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for info in request.profiling_info:  # the last call's counters
        us = info.real_time.total_seconds() * 1e6
        if us > 0:
            spent[info.node_type, info.exec_type] += us
            count[info.node_type, info.exec_type] += 1
    total = sum(spent.values())
    print(f"{args.onnx} {args.precision}: {total / 1e3:.1f} ms (batch {args.batch}, {args.threads} thread(s))")
    for key, us in sorted(spent.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {us / total * 100:5.1f}%  {us / 1e3:7.1f} ms  x{count[key]:3d}  {key[0]:30s} {key[1]}")


if __name__ == "__main__":
    main()
