"""Triton ``gtpt_pipeline`` (image bytes in, persons out): images/s for 1 vs N concurrent clients, and the served
keypoints against ``gtpt-deploy run``'s (max |diff| in pixels).

Each client sends one image per request (the demo images, round-robin); the levels are measured in interleaved
rounds on one server (median images/s per level), and the server's statistics say which batches the pipeline's
dynamic batcher formed.

    python benchmarks/bench_triton_pipeline.py export/gtpt_t_coco_bdyn.onnx \\
        --detector ../shared/data/models/rtmdet_nano_person/end2end.onnx --clients 1,4 --rounds 3 --instances 1

Numbers on a shared 2-core machine are noisy: compare the levels of one run, not runs (and give `uptime`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gtpt_deploy.serve.launch import package_path  # noqa: E402
from gtpt_deploy.serve.repository import write_repository  # noqa: E402
from gtpt_deploy.serve.server import TritonServer, ensure_server_env  # noqa: E402


def _infer(client, th, data: bytes) -> np.ndarray:
    image = th.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[data]], dtype=object))
    return client.infer("gtpt_pipeline", [image]).as_numpy("keypoints")[0]


def _level(url: str, images: list[bytes], clients: int, n: int) -> float:
    """images/s of ``n`` requests sent by ``clients`` threads, each with its own connection (tritonclient's HTTP
    client is gevent-based: one per thread, created in that thread)."""
    import itertools
    import threading

    import tritonclient.http as th

    counter, lock = itertools.count(), threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client() -> None:
        conn = th.InferenceServerClient(url)
        ready.wait()
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                break
            _infer(conn, th, images[i % len(images)])
        conn.close()

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client) for _ in range(clients)]
        ready.wait()  # connections made: time the requests only
        t0 = time.perf_counter()
        for f in futures:
            f.result()
    return n / (time.perf_counter() - t0)


def _px_diff(url: str, onnx: Path, detector: Path, folder: Path) -> tuple[float, int]:
    """Max |diff| (pixels, x and y of every keypoint) between the served pipeline and ``run`` on ``folder``."""
    import tritonclient.http as th

    from gtpt_deploy.runtime.images import expand_inputs
    from gtpt_deploy.runtime.core import assign_image_ids
    from gtpt_deploy.runtime.options import BoxSpec, OutputSpec
    from gtpt_deploy.runtime.run import run_inputs

    with tempfile.TemporaryDirectory() as out:
        summary = run_inputs(onnx, [folder], Path(out), boxes=BoxSpec(detector=detector),
                             output=OutputSpec(draw=False))
        expected = json.loads(summary.results_path.read_text())
    from gtpt_deploy.coco import to_coco_results
    from gtpt_deploy.runtime.transforms import box_to_center_scale

    client = th.InferenceServerClient(url)
    paths = expand_inputs([folder])
    ids = assign_image_ids(paths)
    rows: dict[str, list] = {"ids": [], "keypoints": [], "box_scores": [], "boxes": []}
    for path in paths:  # the served persons in run's results.json form (same order rules)
        image = th.InferInput("image", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[path.read_bytes()]], dtype=object))
        result = client.infer("gtpt_pipeline", [image])
        out = {k: result.as_numpy(k)[0] for k in ("keypoints", "boxes", "box_scores")}
        rows["ids"].append(np.full(len(out["keypoints"]), ids[path]))
        for key in ("keypoints", "box_scores", "boxes"):
            rows[key].append(out[key])
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    centers, scales = box_to_center_scale(cat["boxes"])
    got = to_coco_results(cat["ids"], cat["keypoints"], cat["box_scores"], centers, scales)
    if [r["image_id"] for r in got] != [r["image_id"] for r in expected]:
        return float("inf"), len(expected)
    xy = lambda rs: np.array([r["keypoints"] for r in rs]).reshape(len(rs), -1, 3)[..., :2]  # noqa: E731
    return float(np.abs(xy(got) - xy(expected)).max()), len(expected)


def _cpu_seconds(pgid: int) -> float:
    """user + system CPU seconds of every live process in the server's process group (server + Python stubs)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp) after the command
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="dynamic-batch pose ONNX")
    ap.add_argument("--detector", type=Path, required=True)
    ap.add_argument("--images", type=Path, default=ROOT / "demo" / "images")
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=24, help="requests per level and round")
    ap.add_argument("--instances", type=int, default=1, help="pipeline and pose model instances")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--env", type=Path, default=None,
                    help="use this server environment as it is (e.g. one with another OpenCV, to measure what the "
                         "pin changes)  [default: ensure_server_env(), the pinned one]")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    images = [p.read_bytes() for p in sorted(args.images.iterdir())]
    env = args.env or ensure_server_env()
    out: dict = {"instances": args.instances, "images_per_s": {c: [] for c in levels}, "batches": {},
                 "server_cpu_s_per_image": {c: [] for c in levels}}
    with tempfile.TemporaryDirectory() as tmp, package_path() as pythonpath:
        repo = Path(tmp) / "repo"
        write_repository([args.onnx], repo, name="gtpt_pose", backend="python", pipeline=True, detector=args.detector,
                         instances=args.instances, max_batch=args.max_batch)
        with TritonServer(repo, env, pythonpath=[pythonpath], ready_timeout=600) as server:
            import tritonclient.http as th

            stats = th.InferenceServerClient(server.url)
            pgid = server.process.pid  # type: ignore[union-attr]

            def counts() -> dict[int, int]:
                s = stats.get_inference_statistics("gtpt_pipeline")["model_stats"][0]["batch_stats"]
                return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s}

            _level(server.url, images, 2, 8)  # warm-up: sessions, first requests
            for _ in range(args.rounds):
                for c in levels:
                    before, cpu0 = counts(), _cpu_seconds(pgid)
                    out["images_per_s"][c].append(round(_level(server.url, images, c, args.requests), 2))
                    out["server_cpu_s_per_image"][c].append(round((_cpu_seconds(pgid) - cpu0) / args.requests, 3))
                    after = counts()
                    formed = out["batches"].setdefault(c, {})
                    for b, n in after.items():
                        formed[b] = formed.get(b, 0) + n - before.get(b, 0)
            out["px_diff_vs_run"], out["persons"] = _px_diff(server.url, args.onnx, args.detector, args.images)
    med = {c: statistics.median(v) for c, v in out["images_per_s"].items()}
    cpu = {c: statistics.median(v) for c, v in out["server_cpu_s_per_image"].items()}
    out["median_images_per_s"] = med
    base = med[levels[0]]
    for c in levels:
        print(f"instances {args.instances} clients {c}: {med[c]:6.2f} images/s ({med[c] / base:.2f}x)  rounds "
              f"{out['images_per_s'][c]}  server CPU {cpu[c]:.3f} s/image = {cpu[c] * med[c]:.2f} cores busy  "
              f"batches {dict(sorted((k, v) for k, v in out['batches'][c].items() if v))}", file=sys.stderr)
    print(f"served vs run: max |diff| {out['px_diff_vs_run']:.3g} px over {out['persons']} persons", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
