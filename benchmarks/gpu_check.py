"""GPU check: FP32 / FP16 / INT8 TensorRT engines of GTPT-T/S/B, each validated against PyTorch and timed, one report.

Needs an NVIDIA GPU, ``pip install -e '.[tensorrt,eval]'`` and a CUDA build of torch. Run through gpu_check.sh.
Per variant: checkpoint (given, the T sample, or fresh seed-0 weights: then AP numbers only compare backends) ->
dynamic-batch ONNX -> FP16 / INT8 ONNX (the precision stages; "unavailable" when this build lacks one) -> engine
(profile 1..8, shared timing cache) -> vs PyTorch CUDA on person crops (max |logit diff|, argmax agreement) and
COCO AP on the val subset (GT boxes, flip) -> latency of runner.infer (host copies included) at batch 1 and 8,
median and p99, beside PyTorch eager, and the device-only enqueue time with and without a CUDA graph.

    python benchmarks/gpu_check.py --out runs/gpu_check [--variants t,s,b] [--iters 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GTPT_SHARED", ROOT.parent / "shared"))
VAL = SHARED / "data" / "coco_val2017_pose"
TRAIN = SHARED / "data" / "coco_train2017_mini"


def _times(fn: Callable[[], Any], warmup: int, iters: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return {"median_ms": statistics.median(ts), "p99_ms": ts[min(len(ts) - 1, int(0.99 * len(ts)))]}


def _graph_times(runner: Any, batch: np.ndarray, warmup: int, iters: int) -> dict[str, Any]:
    """Device-only enqueue+sync time of the active TrtRunner, plain and replayed from a captured CUDA graph."""
    from cuda.bindings import runtime as rt

    runner.infer(batch)  # sets the input shape and leaves the input in device memory
    ctx, stream = runner._context, runner._stream

    def check(result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        assert err == rt.cudaError_t.cudaSuccess, err
        return rest[0] if rest else None

    def plain() -> None:
        ctx.execute_async_v3(stream)
        check(rt.cudaStreamSynchronize(stream))

    out: dict[str, Any] = {"enqueue": _times(plain, warmup, iters)}
    try:
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        ctx.execute_async_v3(stream)
        graph = check(rt.cudaStreamEndCapture(stream))
        exe = check(rt.cudaGraphInstantiate(graph, 0))

        def replay() -> None:
            check(rt.cudaGraphLaunch(exe, stream))
            check(rt.cudaStreamSynchronize(stream))

        out["cuda_graph"] = _times(replay, warmup, iters)
        check(rt.cudaGraphExecDestroy(exe))
        check(rt.cudaGraphDestroy(graph))
    except Exception as e:  # noqa: BLE001 - capture is optional; report why it did not work
        out["cuda_graph"] = f"not captured: {type(e).__name__}: {e}"
    return out


def _crops(input_size: tuple[int, int], num: int = 64) -> np.ndarray:
    """Seeded GT person crops of the val subset, through the exact inference preprocessing."""
    from gtpt_deploy.runtime.crops import person_crops

    return person_crops(VAL / "person_keypoints_val2017_subset.json", VAL / "images", num=num,
                        input_size=input_size).crops


def check_variant(v: str, ckpt: Path | None, precisions: list[str], out: Path, args: argparse.Namespace,
                  rows: list[dict[str, Any]]) -> None:
    import torch

    from gtpt_deploy.engines import build_engine
    from gtpt_deploy.engines.chain import precision_stage, stage_output
    from gtpt_deploy.eval.compare import compare_runners
    from gtpt_deploy.eval.validate import validate
    from gtpt_deploy.export import export_onnx
    from gtpt_deploy.models import create_model, save_checkpoint
    from gtpt_deploy.runners import create_runner

    name = f"gtpt_{v}_coco"
    weights = "checkpoint"
    if ckpt is None:
        ckpt, weights = out / "ckpt" / f"{name}_seed0.pth", "fresh seed-0 weights"
        torch.manual_seed(0)
        save_checkpoint(create_model(name), ckpt)
    fp32 = Path(export_onnx(ckpt, dynamic_batch=True, output=out / "onnx" / f"{name}_bdyn.onnx", force=True).onnx_path)
    crops = _crops((256, 192))
    x1, x8 = crops[:1], crops[:8]
    with create_runner(ckpt, device="cuda") as torch_runner:
        torch_t = {f"b{b}": _times(lambda x=x: torch_runner.infer(x), args.warmup, args.iters)
                   for b, x in ((1, x1), (8, x8))}
        rows.append({"variant": name, "precision": "torch eager", "weights": weights, "latency": torch_t})
        for p in precisions:
            row: dict[str, Any] = {"variant": name, "precision": p, "weights": weights}
            rows.append(row)
            try:
                stage = precision_stage(p)
                onnx = fp32
                if p == "fp16":
                    onnx = stage_output(stage(fp32, force=True))
                elif p == "int8":
                    onnx = stage_output(stage(fp32, ann=args.calib_ann, images=args.calib_images, force=True))
                eng = build_engine(onnx, dynamic_batch=(1, 8, 8), output=out / "engines" / f"{name}_{p}.engine",
                                   timing_cache=out / "engines" / "timing.cache", force=True, progress=False)
                row.update(engine=str(eng.engine_path), build_s=eng.build_seconds, layers=eng.layers,
                           tensorrt=eng.tensorrt_version, gpu=eng.gpu)
                with create_runner(eng.engine_path, device="cuda:0") as trt_runner:
                    row["vs_torch"] = compare_runners(torch_runner, trt_runner, crops, batch=8).to_dict()
                    row["latency"] = {f"b{b}": _times(lambda x=x: trt_runner.infer(x), args.warmup, args.iters)
                                      for b, x in ((1, x1), (8, x8))}
                    row["device_only_b8"] = _graph_times(trt_runner, x8, args.warmup, args.iters)
                rep = validate(ckpt, [eng.engine_path], VAL / "person_keypoints_val2017_subset.json",
                               VAL / "images", boxes="gt", batch=8, device="cuda", baseline_device="cuda",
                               max_ap_drop=1.0)
                base, cand = rep.rows
                row["AP"] = {"torch": base.AP, "engine": cand.AP, "delta": cand.delta_AP}
            except Exception as e:  # noqa: BLE001 - one failed cell must not hide the others
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | precision | AP torch | AP engine | dAP | max diff | argmax | b1 med/p99 ms | "
             "b8 med/p99 ms | b8 enqueue / graph ms |", "|---" * 10 + "|"]
    for r in rows:
        lat = r.get("latency", {})
        cell = lambda k: (f"{lat[k]['median_ms']:.3f} / {lat[k]['p99_ms']:.3f}" if k in lat else "")  # noqa: E731
        ap, vs, dev = r.get("AP", {}), r.get("vs_torch", {}), r.get("device_only_b8", {})
        graph = dev.get("cuda_graph")
        g = f"{dev['enqueue']['median_ms']:.3f} / " + (f"{graph['median_ms']:.3f}" if isinstance(graph, dict) else
                                                        "n/a") if dev else ""
        lines.append(f"| {r['variant']} | {r['precision']} | {ap.get('torch', '')} | {ap.get('engine', '')} | "
                     f"{ap.get('delta', '')} | {vs.get('max_abs_diff', '')} | {vs.get('argmax_agreement', '')} | "
                     f"{cell('b1')} | {cell('b8')} | {g} |" + (f" error: {r['error']}" if "error" in r else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    ap.add_argument("--variants", default="t,s,b")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--calib-ann", type=Path, default=TRAIN / "person_keypoints_train2017_subset.json")
    ap.add_argument("--calib-images", type=Path, default=TRAIN / "images")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    given = {"t": os.environ.get("GTPT_CKPT_T") or str(ROOT / "models" / "gtpt_t_coco_sample.pth"),
             "s": os.environ.get("GTPT_CKPT_S"), "b": os.environ.get("GTPT_CKPT_B")}
    rows: list[dict[str, Any]] = []
    for v in args.variants.split(","):
        check_variant(v, Path(given[v]) if given.get(v) else None, args.precisions.split(","), args.out, args, rows)
    (args.out / "report.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    (args.out / "report.md").write_text("# GPU check\n\n" + _markdown(rows) + "\n")
    print(_markdown(rows))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
