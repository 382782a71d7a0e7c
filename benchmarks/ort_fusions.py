"""ONNX Runtime FP32 on our graph: do ORT's offline transformer fusions or session options help, exactly?

Each variant is checked for parity with the plain session on the bundled demo crops (max |logit diff|, argmax) and
timed at batch 1, one thread, in interleaved rounds (A B C A B C ...). Variants: the ``onnxruntime.transformers``
optimizer with the ``vit`` and ``bert`` fusion sets, ``session.dynamic_block_base`` and
``session.set_denormal_as_zero``.

    python benchmarks/ort_fusions.py export/gtpt_t_coco_bdyn.onnx --rounds 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np


def session(path: str, entries: dict[str, str]):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in entries.items():
        opts.add_session_config_entry(key, value)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", type=Path)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    from onnxruntime.transformers import optimizer

    from gtpt_deploy.eval.bench import DEMO_ANN
    from gtpt_deploy.runtime.crops import person_crops

    tmp = Path(tempfile.mkdtemp())
    variants = {"plain": (str(args.onnx), {})}
    for kind in ("vit", "bert"):
        opt = optimizer.optimize_model(str(args.onnx), model_type=kind, num_heads=0, hidden_size=0, opt_level=0)
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        print(f"{kind} fusions: {fused}", file=sys.stderr)
        opt.save_model_to_file(str(tmp / f"{kind}.onnx"))
        variants[kind] = (str(tmp / f"{kind}.onnx"), {})
    variants["dynamic_block_base=4"] = (str(args.onnx), {"session.dynamic_block_base": "4"})
    variants["denormal_as_zero"] = (str(args.onnx), {"session.set_denormal_as_zero": "1"})
    sessions = {k: session(path, cfg) for k, (path, cfg) in variants.items()}
    crops = person_crops(DEMO_ANN, DEMO_ANN.parent / "images").crops
    name = sessions["plain"].get_inputs()[0].name
    outs = {k: [s.run(["simcc_x", "simcc_y"], {name: c[None]}) for c in crops] for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    x = crops[:1].copy()
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {name: x})
    for _ in range(args.rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(["simcc_x", "simcc_y"], {name: x})
            times[k].append(time.perf_counter() - t0)
    base = float(np.median(times["plain"]))
    for k in sessions:
        pairs = [(a, b) for o1, o2 in zip(outs["plain"], outs[k]) for a, b in zip(o1, o2)]
        diff = max(float(np.abs(a - b).max()) for a, b in pairs)
        same = all((a.argmax(-1) == b.argmax(-1)).all() for a, b in pairs)
        med = float(np.median(times[k]))
        print(f"{k:22s} max|diff| {diff:.2e}  argmax same {same}  median {med * 1e3:7.2f} ms  "
              f"plain/this {base / med:.3f}")
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(args.onnx)).graph.node).most_common(8)
    print(f"ops of the plain graph: {ops}")


if __name__ == "__main__":
    main()
