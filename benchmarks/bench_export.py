"""Export benchmark: per-variant export facts and timings, and the ONNX Runtime profile of GTPT-T b1.

For every variant (random weights, seed 0): static b1 and dynamic-batch exports through ``export_onnx`` -> node
counts before/after simplification, TopK k values, parity, export / simplify / check / parity seconds. Then an ONNX
Runtime profile of GTPT-T b1 (time per op type). Latency side by side is ``gtpt-deploy bench`` (the users' table:
``benchmarks/bench_table.py``).

Thread waiting: by default neither backend spins (``OMP_WAIT_POLICY=PASSIVE`` for torch, ORT
``session.intra_op.allow_spinning=0``): on a 2-core machine shared with other jobs, spinning threads made torch up
to 40x and ORT ~2x slower in our runs. ``--spin`` keeps both libraries' defaults (fine on an idle machine).

    python benchmarks/bench_export.py                        # all six variants (~5-10 min on 2 busy cores)
    python benchmarks/bench_export.py --variants gtpt_t_coco --no-dynamic
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

ALL = ["gtpt_t_coco", "gtpt_s_coco", "gtpt_b_coco", "gtpt_t_wholebody", "gtpt_s_wholebody", "gtpt_b_wholebody"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="*", default=ALL, help="variants to export (facts, parity, export time)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-dynamic", action="store_true", help="skip the dynamic-batch exports")
    p.add_argument("--spin", action="store_true", help="let torch / ORT threads spin (library defaults)")
    p.add_argument("--profile-runs", type=int, default=30)
    p.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    return p.parse_args()


ARGS = parse()
if not ARGS.spin:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch is imported

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from gtpt_deploy.export import export_onnx  # noqa: E402
from gtpt_deploy.models import create_model, save_checkpoint  # noqa: E402


def ort_session(path: Path, threads: int, profile: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    if not ARGS.spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_all(work: Path) -> tuple[dict, dict]:
    facts, ckpts = {}, {}
    for name in ARGS.variants:
        torch.manual_seed(0)
        ckpts[name] = work / f"{name}.pth"
        save_checkpoint(create_model(name), ckpts[name])
        row = {}
        modes = [("static_b1", dict(batch=1))] + ([] if ARGS.no_dynamic else [("dynamic", dict(dynamic_batch=True))])
        for mode, kw in modes:
            r = export_onnx(ckpts[name], output=work / f"{name}_{mode}.onnx", **kw)
            row[mode] = {"path": str(r.onnx_path), "nodes_exported": r.nodes_exported, "nodes_final": r.nodes_final,
                         "simplifier": r.simplifier, "topk_k": list(r.topk_k), "seconds": r.seconds,
                         "parity": [{"inputs": c.inputs, "batch": c.batch, "max_abs_diff": c.max_abs_diff,
                                     "argmax_agreement": c.argmax_agreement} for c in r.parity]}
            print(f"  {name:<17} {mode:<9} {r.nodes_exported:>5} -> {r.nodes_final:>4} nodes  TopK {list(r.topk_k)}  "
                  f"max|diff| {r.max_abs_diff:.1e}  argmax {r.argmax_agreement * 100:.0f}%  "
                  f"total {r.seconds['total']:.1f} s (export {r.seconds['export']:.1f}, simplify "
                  f"{r.seconds['simplify']:.1f}, parity {r.seconds['parity']:.1f})", flush=True)
        facts[name] = row
    return facts, ckpts


def profile(path: Path, work: Path) -> list[dict]:
    sess = ort_session(path, ARGS.threads, profile=str(work / "ort_profile"))
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 192)).astype(np.float32)
    for _ in range(ARGS.warmup):
        sess.run(None, {"images": x})
    for _ in range(ARGS.profile_runs):
        sess.run(None, {"images": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    total, runs = sum(per_op.values()), ARGS.warmup + ARGS.profile_runs
    return [{"op": op, "share": us / total, "ms_per_run": us / runs / 1e3, "nodes": count[op] // runs}
            for op, us in per_op.most_common(12)]


def main() -> None:
    load = os.getloadavg()
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {ARGS.threads} threads, "
          f"spin={'default' if ARGS.spin else 'off'}, load average {load[0]:.1f}")
    out: dict = {"threads": ARGS.threads, "spin": ARGS.spin, "load_average_start": load}
    with tempfile.TemporaryDirectory(prefix="gtpt_bench_") as tmp:
        work = Path(tmp)
        print("exports (export + simplify + checks + parity):")
        out["exports"], ckpts = export_all(work)
        t_path = Path(out["exports"].get("gtpt_t_coco", {}).get("static_b1", {}).get("path", ""))
        if t_path.is_file():
            out["ort_profile_gtpt_t_b1"] = profile(t_path, work)
            print("ORT profile, GTPT-T b1 (share of kernel time):")
            for r in out["ort_profile_gtpt_t_b1"]:
                print(f"  {r['op']:<20} {r['share'] * 100:5.1f}%  {r['ms_per_run']:6.3f} ms/run  {r['nodes']} nodes")
    out["load_average_end"] = os.getloadavg()
    if ARGS.json:
        ARGS.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {ARGS.json}")


if __name__ == "__main__":
    sys.exit(main())
