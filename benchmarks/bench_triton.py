"""Triton (PyTriton's CPU tritonserver, Python-backend pose model) vs the same ONNX in-process.

For each client concurrency: crops/s, p50/p90 request latency (batch-1 requests, one runner per client thread),
and for Triton the batch sizes the server's dynamic batcher formed (from its statistics). Also the server start
time and, with --ann/--images, validate's AP through Triton vs in-process (GT boxes, flip test).

    python benchmarks/bench_triton.py export/gtpt_t_coco_bdyn.onnx --concurrency 1,4,16 --requests 48 \\
        --ann ../shared/data/coco_val2017_pose/person_keypoints_val2017_subset.json \\
        --images ../shared/data/coco_val2017_pose/images

Needs tritonclient in this environment; the server environment is made by ensure_server_env (cached).
Numbers on a shared 2-core machine are noisy: compare the two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtpt_deploy.runners import create_runner  # noqa: E402
from gtpt_deploy.runners.triton import concurrent_infer, run_clients  # noqa: E402
from gtpt_deploy.serve.repository import write_repository  # noqa: E402
from gtpt_deploy.serve.server import TritonServer, ensure_server_env  # noqa: E402


def _row(name: str, c: int, lat: list[float], seconds: float) -> dict:
    ms = np.array(lat) * 1000
    return {"backend": name, "concurrency": c, "requests": len(lat), "crops_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1)}


def _timed(make, crops, c, n):
    """(latencies, seconds) with every client's connection opened before the clock starts."""
    return run_clients(make, crops, clients=c, requests=n, batch=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="dynamic-batch ONNX")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=48, help="requests per level (batch 1 each)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--ann", type=Path)
    ap.add_argument("--images", type=Path)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    crops = np.random.default_rng(0).standard_normal((16, 3, 256, 192)).astype(np.float32)
    env = ensure_server_env()
    out: dict = {"rows": [], "batches": {}}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repository([args.onnx], repo, name="gtpt_pose", backend="python", max_batch=args.max_batch)
        with TritonServer(repo, env) as server:
            out["server_start_s"] = round(server.start_seconds or 0, 2)
            url = f"triton://{server.url}/gtpt_pose"
            import tritonclient.http as th

            client = th.InferenceServerClient(server.url)

            def counts() -> dict[int, int]:
                s = client.get_inference_statistics("gtpt_pose")["model_stats"][0]["batch_stats"]
                return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s}

            concurrent_infer(lambda: create_runner(url), crops, 2, 4)  # warm-up
            for c in levels:
                before = counts()
                lat, sec = _timed(lambda: create_runner(url), crops, c, args.requests)
                out["rows"].append(_row("triton", c, lat, sec))
                after = counts()
                out["batches"][c] = {b: n - before.get(b, 0) for b, n in sorted(after.items()) if n > before.get(b, 0)}
                lat, sec = _timed(lambda: create_runner(args.onnx), crops, c, args.requests)
                out["rows"].append(_row("onnxruntime", c, lat, sec))
            if args.ann and args.images:
                from gtpt_deploy.eval.validate import validate

                rep = validate(args.onnx, [url], args.ann, args.images, boxes="gt")
                out["validate"] = [{"runner": r.runner, "AP": r.AP, "delta_AP": r.delta_AP,
                                    "argmax_agreement": r.argmax_agreement} for r in rep.rows]
    for r in out["rows"]:
        print("{backend:12s} c={concurrency:<3d} {crops_per_s:7.1f} crops/s  p50 {p50_ms:7.1f} ms  p90 {p90_ms:7.1f} ms"
              .format(**r), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
