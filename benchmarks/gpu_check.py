"""GPU check: FP32 / FP16 / INT8 TensorRT engines of GTPT-T/S/B, each validated against PyTorch and timed, one report.

Needs an NVIDIA GPU, ``pip install -e '.[tensorrt,eval]'`` (or ``[tensorrt-cu12,eval]``) and a CUDA build of torch.
Run through gpu_check.sh, which adds the real-TensorRT tests and a wall-clock limit.

With TensorRT, per variant: checkpoint (given, the T sample, or fresh seed-0 weights: then AP numbers only compare
backends) -> dynamic-batch ONNX -> FP16 / INT8 ONNX (``convert_fp16`` / ``calibrate_int8``, the same stages as
``gtpt-deploy build --precision``) -> engine (profile 1..8, shared timing cache) -> vs PyTorch on person crops (max
|logit diff|, argmax agreement) and COCO AP on the val subset (GT boxes, flip) -> latency of runner.infer (host copies
included) at batch 1 and 8, median and p99, beside PyTorch eager, and the device-only enqueue time with and without
a CUDA graph (cuda-python only).

Without TensorRT (not installed or not importable) it checks the PyTorch CUDA path instead: the ``.pth`` on
``--torch-device`` vs on the CPU (logits), validate, latency - and lists what it skipped and why.

``--time-limit`` ends the run between cells: cells not started are listed as skipped, the report is still written.
CI runs this end to end against the fake TensorRT (tests/test_gpu_check.py: T only, tiny counts).

    python benchmarks/gpu_check.py --out runs/gpu_check [--variants t,s,b] [--iters 200] [--time-limit 3000]
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
PROFILE = (1, 8, 8)


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


def _graph_times(runner: Any, batch: np.ndarray, warmup: int, iters: int) -> dict[str, Any] | str:
    """Device-only enqueue+sync time of the active TrtRunner, plain and replayed from a captured CUDA graph."""
    from gtpt_deploy.tensorrt import cuda_mem

    if not isinstance(runner._mem, cuda_mem.CudaRuntimeMemory):
        return "not measured: the runner's device memory is not cuda-python's runtime"
    rt = runner._mem.rt
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


class Deadline:
    """The --time-limit: ``expired`` once past it (checked before each cell starts)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end


def _checkpoint(v: str, given: str | None, out: Path) -> tuple[Path, str]:
    import torch

    from gtpt_deploy.models import create_model, save_checkpoint

    if given:
        return Path(given), "checkpoint"
    name = f"gtpt_{v}_coco"
    ckpt = out / "ckpt" / f"{name}_seed0.pth"
    if not ckpt.is_file():
        torch.manual_seed(0)
        save_checkpoint(create_model(name), ckpt)
    return ckpt, "fresh seed-0 weights"


def _latency(runner: Any, x1: np.ndarray, x8: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    return {f"b{b}": _times(lambda x=x: runner.infer(x), args.warmup, args.iters) for b, x in ((1, x1), (8, x8))}


def _validate(ckpt: Path, artifact: Path, device: str, baseline_device: str, args: argparse.Namespace) -> dict:
    from gtpt_deploy.eval.validate import validate

    rep = validate(ckpt, [artifact], args.val_ann, args.val_images, boxes="gt", batch=8, device=device,
                   baseline_device=baseline_device, max_ap_drop=1.0, threads=args.threads)
    base, cand = rep.rows
    return {"torch": base.AP, "candidate": cand.AP, "delta": cand.delta_AP, "argmax": cand.argmax_agreement}


def _precision_onnx(p: str, fp32: Path, out: Path, name: str, args: argparse.Namespace) -> Path:
    """The ONNX file of precision ``p``, made by the same stages as ``gtpt-deploy build --precision p``."""
    from gtpt_deploy.calib import calibrate_int8
    from gtpt_deploy.export.fp16 import convert_fp16

    if p == "fp32":
        return fp32
    if p == "fp16":
        return Path(convert_fp16(fp32, output=out / "onnx" / f"{name}_fp16.onnx", force=True).output)
    if p == "int8":
        return Path(calibrate_int8(fp32, args.calib_ann, args.calib_images, num=args.calib_num,
                                   output=out / "onnx" / f"{name}_int8.onnx", force=True, report=lambda s: None).output)
    raise ValueError(f"unknown precision {p}")


def check_variant_trt(v: str, given: str | None, precisions: list[str], out: Path, args: argparse.Namespace,
                      rows: list[dict[str, Any]], skipped: list[str], deadline: Deadline) -> None:
    """TensorRT cells of one variant: one row per precision (plus the PyTorch row)."""
    from gtpt_deploy.engines import build_engine
    from gtpt_deploy.eval.compare import compare_runners
    from gtpt_deploy.export import export_onnx
    from gtpt_deploy.runners import create_runner
    from gtpt_deploy.runtime.crops import person_crops

    name = f"gtpt_{v}_coco"
    if deadline.expired:
        skipped.extend(f"{name} {p}: --time-limit reached before it started" for p in precisions)
        return
    ckpt, weights = _checkpoint(v, given, out)
    fp32 = Path(export_onnx(ckpt, dynamic_batch=True, output=out / "onnx" / f"{name}_bdyn.onnx", force=True).onnx_path)
    crops = person_crops(args.val_ann, args.val_images, num=args.crops, input_size=(256, 192), at_most=True).crops
    x1, x8 = crops[:1], np.resize(crops, (8, *crops.shape[1:]))
    with create_runner(ckpt, device=args.torch_device) as torch_runner:
        rows.append({"variant": name, "precision": f"torch eager ({args.torch_device})", "weights": weights,
                     "latency": _latency(torch_runner, x1, x8, args)})
        for p in precisions:
            if deadline.expired:
                skipped.append(f"{name} {p}: --time-limit reached before it started")
                continue
            row: dict[str, Any] = {"variant": name, "precision": p, "weights": weights}
            rows.append(row)
            try:
                onnx = _precision_onnx(p, fp32, out, name, args)
                eng = build_engine(onnx, dynamic_batch=PROFILE, output=out / "engines" / f"{name}_{p}.engine",
                                   timing_cache=out / "engines" / "timing.cache", force=True, progress=False)
                row.update(engine=str(eng.engine_path), build_s=eng.build_seconds, layers=eng.layers,
                           tensorrt=eng.tensorrt_version, gpu=eng.gpu)
                # device left to the artifact: an engine runs on cuda (a wrong default would fail right here)
                with create_runner(eng.engine_path) as trt_runner:
                    row["vs_torch"] = compare_runners(torch_runner, trt_runner, crops, batch=8).to_dict()
                    row["latency"] = _latency(trt_runner, x1, x8, args)
                    row["device_only_b8"] = _graph_times(trt_runner, x8, args.warmup, args.iters)
                row["AP"] = _validate(ckpt, eng.engine_path, "cuda", args.torch_device, args)
            except Exception as e:  # noqa: BLE001 - one failed cell must not hide the others
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()


def check_variant_torch(v: str, given: str | None, out: Path, args: argparse.Namespace, rows: list[dict[str, Any]],
                        skipped: list[str], deadline: Deadline) -> None:
    """No TensorRT: the PyTorch CUDA path of one variant (.pth on --torch-device vs CPU, validate, latency)."""
    from gtpt_deploy.eval.compare import compare_runners
    from gtpt_deploy.runners import create_runner
    from gtpt_deploy.runtime.crops import person_crops

    name = f"gtpt_{v}_coco"
    if deadline.expired:
        skipped.append(f"{name} torch: --time-limit reached before it started")
        return
    ckpt, weights = _checkpoint(v, given, out)
    row: dict[str, Any] = {"variant": name, "precision": f"torch eager ({args.torch_device})", "weights": weights}
    rows.append(row)
    try:
        crops = person_crops(args.val_ann, args.val_images, num=args.crops, input_size=(256, 192), at_most=True).crops
        x1, x8 = crops[:1], np.resize(crops, (8, *crops.shape[1:]))
        with create_runner(ckpt, device="cpu") as cpu, create_runner(ckpt, device=args.torch_device) as gpu:
            row["vs_torch"] = compare_runners(cpu, gpu, crops, batch=8).to_dict()   # vs the CPU run
            row["latency"] = _latency(gpu, x1, x8, args)
        if args.torch_device == "cpu":   # the CPU baseline against itself certifies nothing (validate refuses it)
            row["AP"] = "not measured: --torch-device cpu is the baseline itself"
        else:
            row["AP"] = _validate(ckpt, ckpt, args.torch_device, "cpu", args)
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()


def _markdown(rows: list[dict[str, Any]], skipped: list[str], env: dict[str, Any]) -> str:
    lines = ["# GPU check", "", "environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| variant | precision | AP torch | AP candidate | dAP | max diff | argmax | b1 med/p99 ms | "
             "b8 med/p99 ms | b8 enqueue / graph ms | layers |", "|---" * 11 + "|"]
    for r in rows:
        lat = r.get("latency", {})
        cell = lambda k: (f"{lat[k]['median_ms']:.3f} / {lat[k]['p99_ms']:.3f}" if k in lat else "")  # noqa: E731
        ap, vs, dev = r.get("AP", {}), r.get("vs_torch", {}), r.get("device_only_b8")
        ap = ap if isinstance(ap, dict) else {"torch": ap}
        g = ""
        if isinstance(dev, dict):
            graph = dev.get("cuda_graph")
            g = f"{dev['enqueue']['median_ms']:.3f} / " + (f"{graph['median_ms']:.3f}" if isinstance(graph, dict)
                                                            else "n/a")
        layers = (r.get("layers") or {}).get("by_precision") or ""
        lines.append(f"| {r['variant']} | {r['precision']} | {ap.get('torch', '')} | {ap.get('candidate', '')} | "
                     f"{ap.get('delta', '')} | {vs.get('max_abs_diff', '')} | {vs.get('argmax_agreement', '')} | "
                     f"{cell('b1')} | {cell('b8')} | {g} | {layers} |"
                     + (f" error: {r['error']}" if "error" in r else ""))
    lines += ["", "skipped:" if skipped else "skipped: nothing"] + [f"* {s}" for s in skipped]
    return "\n".join(lines)


def _environment() -> tuple[dict[str, Any], str | None]:
    """What is installed -> (environment facts, why TensorRT cannot be used or None)."""
    import torch

    from gtpt_deploy.errors import GtptError
    from gtpt_deploy.tensorrt import cuda_mem
    from gtpt_deploy.tensorrt.api import load_tensorrt

    env: dict[str, Any] = {"torch": torch.__version__, "torch_cuda": torch.cuda.is_available()}
    try:
        env["tensorrt"] = load_tensorrt("The GPU check's engine cells").version
        env["gpu"] = cuda_mem.open_gpu(0)[1].name
    except GtptError as e:
        return env, str(e)
    return env, None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    ap.add_argument("--variants", default="t,s,b")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--crops", type=int, default=64, help="person crops for the logit comparison")
    ap.add_argument("--time-limit", type=float, default=3000.0, help="seconds; cells not started by then are skipped")
    ap.add_argument("--torch-device", default="cuda", help="where the PyTorch reference runs")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of CPU-side runners")
    ap.add_argument("--val-ann", type=Path, default=VAL / "person_keypoints_val2017_subset.json")
    ap.add_argument("--val-images", type=Path, default=VAL / "images")
    ap.add_argument("--calib-ann", type=Path, default=TRAIN / "person_keypoints_train2017_subset.json")
    ap.add_argument("--calib-images", type=Path, default=TRAIN / "images")
    ap.add_argument("--calib-num", type=int, default=256)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """0: every cell ran; 1: a cell failed; 2: nothing to check (neither TensorRT nor a PyTorch CUDA device)."""
    args = parse_args(argv)
    deadline = Deadline(args.time_limit)
    args.out.mkdir(parents=True, exist_ok=True)
    given = {"t": os.environ.get("GTPT_CKPT_T") or str(ROOT / "models" / "gtpt_t_coco_sample.pth"),
             "s": os.environ.get("GTPT_CKPT_S"), "b": os.environ.get("GTPT_CKPT_B")}
    env, no_trt = _environment()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    variants = args.variants.split(",")
    if no_trt is None:
        for v in variants:
            check_variant_trt(v, given.get(v), args.precisions.split(","), args.out, args, rows, skipped, deadline)
    else:
        skipped.append(f"TensorRT engines ({args.precisions}) of {args.variants}: {no_trt}")
        if args.torch_device.startswith("cuda") and not env["torch_cuda"]:
            skipped.append(f"PyTorch on {args.torch_device}: torch {env['torch']} has no CUDA device")
            print(_markdown(rows, skipped, env))
            return 2
        for v in variants:
            check_variant_torch(v, given.get(v), args.out, args, rows, skipped, deadline)
    report = {"environment": env, "rows": rows, "skipped": skipped}
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = _markdown(rows, skipped, env)
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
