"""Export's tie-aware parity at scale: N seeded random inputs + the real crops, per checkpoint (issue 17).

For each checkpoint: trace + simplify exactly as ``gtpt-deploy export`` does (in memory, nothing written), then run
``export.onnx.check_parity`` on the real parity crops and on N random inputs (``default_rng(0)``; the first 4 are
export's own). Prints how many samples were strict-checked as-is, the near-ties (stage, gap, score), how many random
inputs were redrawn, max |diff| and argmax agreement, and whether export would pass. ``--noise`` also measures how
far ONNX Runtime's pruning scores are from PyTorch's (the top-k values of samples with the same kept tokens), in
float32 epsilons (2**-23) of the row's largest |score|: the number ``export.parity.TIE_RTOL`` is chosen against.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/parity_sweep.py models/gtpt_t_coco_sample.pth [more.pth ...] [-n 100]
        [--batch 1 | --dynamic-batch] [--noise] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPS = 2.0 ** -23


def score_noise(net, graph, crops: np.ndarray) -> float:
    """Largest |ONNX Runtime - PyTorch| over the kept top-k scores of samples (batch 1) whose kept sets agree, in
    float32 eps of the row's largest |score|."""
    import onnx
    import torch

    from gtpt_deploy.models.tokens import recording_topk
    from gtpt_deploy.runners.ort import make_session

    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    names = []
    for node in copy.graph.node:
        if node.op_type == "TopK":
            names += [node.output[0], node.output[1]]
            copy.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
            copy.graph.output.append(onnx.helper.make_tensor_value_info(node.output[1], onnx.TensorProto.INT64, None))
    session = make_session(copy.SerializeToString())
    worst = 0.0
    for x in crops:
        with recording_topk() as calls, torch.inference_mode():
            net(torch.from_numpy(x[None]))
        got = session.run(names, {"images": x[None]})
        for (score, idx), values, kept in zip(calls, got[0::2], got[1::2]):
            k = idx.shape[-1]
            s = score.numpy().reshape(-1, score.shape[-1])
            t, o = idx.numpy().reshape(-1, k), kept.reshape(-1, k)
            v = values.reshape(-1, k)
            for r in range(len(s)):
                if set(t[r].tolist()) == set(o[r].tolist()):
                    ref = np.sort(s[r])[::-1][:k]
                    worst = max(worst, float(np.abs(ref - v[r]).max() / max(np.abs(s[r]).max(), 1e-30) / EPS))
    return worst


def sweep(checkpoint: Path, n: int, batch: int | None, noise: bool) -> dict:
    from gtpt_deploy.export.graph import simplify_model
    from gtpt_deploy.export.onnx import _torch_export, check_parity
    from gtpt_deploy.export.samples import load_samples
    from gtpt_deploy.models import create_model

    net = create_model(checkpoint=checkpoint)
    real, _ = load_samples(None, net.cfg.image_size)
    rand = np.random.default_rng(0).standard_normal((n, 3, *net.cfg.image_size)).astype(np.float32)
    graph, _ = simplify_model(_torch_export(net, batch, 17), rand[:batch or 1])
    t = time.perf_counter()
    cases = check_parity(net, graph.SerializeToString(), real, rand, batch)
    row = {"checkpoint": str(checkpoint), "variant": net.cfg.name, "seconds": round(time.perf_counter() - t, 1),
           "passed": all(c.passed for c in cases), "cases": []}
    for c in cases:
        row["cases"].append({
            "inputs": c.inputs, "batch": c.batch, "strict_samples": c.samples, "max_abs_diff": c.max_abs_diff,
            "argmax_agreement": c.argmax_agreement, "redrawn": c.redrawn, "mismatch": c.mismatch,
            "near_ties": [{"sample": x.sample, "stage": x.stage, "gap": x.gap, "score": x.score,
                           "rel_gap_eps": x.gap / max(x.score, 1e-30) / EPS,
                           "forced_max_abs_diff": x.forced_max_abs_diff} for x in c.near_ties]})
    if noise:
        row["score_noise_eps"] = round(score_noise(net, graph, np.concatenate((real, rand))), 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("-n", type=int, default=100, help="seeded random inputs per checkpoint (default 100)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic-batch", action="store_true", help="check batches 1, 3 and 8 of a dynamic graph")
    p.add_argument("--noise", action="store_true", help="also measure ORT vs PyTorch pruning-score noise")
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    a = p.parse_args()
    from gtpt_deploy.export.parity import TIE_RTOL

    rows = []
    print(f"tie tolerance: top-k gap <= {TIE_RTOL:.2e} x max|score| ({TIE_RTOL / EPS:.0f} float32 eps)")
    print(f"{'checkpoint':<34} {'inputs':<10} {'b':>2} {'strict':>6} {'ties':>4} {'redrawn':>7} {'max|diff|':>9} "
          f"{'argmax':>7}  near-ties (stage: gap/|score| in eps)")
    for ck in a.checkpoints:
        row = sweep(ck, a.n, None if a.dynamic_batch else a.batch, a.noise)
        rows.append(row)
        for c in row["cases"]:
            ties = ", ".join(f"{x['stage']}: {x['rel_gap_eps']:.1f}" for x in c["near_ties"][:6])
            more = f" (+{len(c['near_ties']) - 6})" if len(c["near_ties"]) > 6 else ""
            print(f"{ck.name[:34]:<34} {c['inputs']:<10} {c['batch']:>2} {c['strict_samples']:>6} "
                  f"{len(c['near_ties']):>4} {c['redrawn']:>7} {c['max_abs_diff']:>9.2e} "
                  f"{c['argmax_agreement'] * 100:>6.2f}%  {ties}{more}{'  MISMATCH ' + c['mismatch'] if c['mismatch'] else ''}")
        extra = f", ORT-vs-PyTorch score noise {row['score_noise_eps']} eps" if "score_noise_eps" in row else ""
        print(f"  -> {row['variant']}: {'PASS' if row['passed'] else 'FAIL'} ({row['seconds']} s{extra})", flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
