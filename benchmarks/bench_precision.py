"""ONNX Runtime CPU latency of FP16 and both INT8 forms vs FP32, GTPT-T/S/B at batch 1 and 8, side by side in one run.

Per variant: random weights (seed 0; latency does not depend on the values) -> dynamic-batch ONNX (export_onnx) ->
FP16 (``export.fp16.to_fp16``, default islands) and INT8 in the TensorRT form (symmetric int8 Q/DQ on weight-layer
inputs) and the CPU form (U8S8), calibrated with ``--calib-num`` GT crops of coco_train2017_mini. The four sessions
(``--threads`` threads, no spinning) run interleaved in rounds (``--per-round`` calls each per round) so the drift of
a shared machine hits all of them; the table gives the median ms per call and the ratio FP32 time / candidate time
(> 1 = faster than FP32). The CPU's flags are printed: ONNX Runtime's int8 kernels need AVX-512 VNNI / AVX-VNNI to
beat FP32, and FP16 on the CPU provider runs through inserted casts (an accuracy check, not a speed-up).

    python benchmarks/bench_precision.py                             # T, S, B at batch 1 and 8 (~10 min, 2 cores)
    python benchmarks/bench_precision.py --variants gtpt_t_coco --rounds 5
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|amx_int8|f16c)\b", text)))
    return f"{model.group(1) if model else '?'}; flags: {' '.join(flags)}"


def build(variant: str, tmp: Path, calib_num: int) -> dict[str, object]:
    """variant -> {precision: ModelProto} and the time each conversion took."""
    import onnx

    from gtpt_deploy.calib.int8 import Int8Recipe, collect_ranges, quantize
    from gtpt_deploy.export import export_onnx
    from gtpt_deploy.export.fp16 import to_fp16
    from gtpt_deploy.models import create_model, save_checkpoint
    from gtpt_deploy.runtime.crops import person_crops

    ckpt = tmp / f"{variant}.pth"
    save_checkpoint(create_model(variant), ckpt)
    res = export_onnx(ckpt, output=tmp / f"{variant}_bdyn.onnx", dynamic_batch=True)
    fp32 = onnx.load(str(res.onnx_path))
    times = {}
    t = time.perf_counter()
    fp16, _ = to_fp16(fp32)
    times["fp16"] = time.perf_counter() - t
    mini = SHARED / "coco_train2017_mini"
    crops = person_crops(mini / "person_keypoints_train2017_subset.json", mini / "images", num=calib_num)
    t = time.perf_counter()
    ranges = collect_ranges(fp32, crops.crops, "minmax")
    times["calibrate"] = time.perf_counter() - t
    models = {"fp32": fp32, "fp16": fp16}
    for target in ("tensorrt", "cpu"):
        t = time.perf_counter()
        models[f"int8_{target}"] = quantize(fp32, ranges, Int8Recipe(target))
        times[f"quantize_{target}"] = time.perf_counter() - t
    return {"models": models, "times": times}


def session(model: object, threads: int) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure(models: dict[str, object], batch: int, threads: int, rounds: int, per_round: int) -> dict[str, float]:
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, 3, 256, 192)).astype(np.float32)
    sessions = {k: session(m, threads) for k, m in models.items()}
    for s in sessions.values():                     # warm-up
        for _ in range(2):
            s.run(None, {"images": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(per_round):
                t = time.perf_counter()
                s.run(None, {"images": x})
                times[k].append(time.perf_counter() - t)
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["gtpt_t_coco", "gtpt_s_coco", "gtpt_b_coco"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--calib-num", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"CPU: {cpu_flags()}; onnxruntime {ort.__version__}; {args.threads} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_precision_") as d:
        for variant in args.variants:
            built = build(variant, Path(d), args.calib_num)
            print(f"{variant}: conversion s " + ", ".join(f"{k} {v:.1f}" for k, v in built["times"].items()),
                  flush=True)
            for batch in args.batches:
                ms = measure(built["models"], batch, args.threads, args.rounds, args.per_round)
                row = {"variant": variant, "batch": batch, "ms": ms,
                       "speedup_vs_fp32": {k: ms["fp32"] / v for k, v in ms.items()}, "times": built["times"]}
                rows.append(row)
                print(f"{variant} b{batch}: " + "  ".join(f"{k} {v:.1f} ms ({ms['fp32'] / v:.2f}x)"
                                                        for k, v in ms.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
