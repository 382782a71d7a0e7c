#!/usr/bin/env python3
"""How noisy is calibrate's ΔAP on a small measured set, and does the bootstrap bound (``calib.noise``) cover it?

For each (FP32, INT8) pair: score every person of a large annotation file once (the population, e.g. the 137-person
val subset), print COCOeval's ΔAP next to the bootstrap's own AP and the population's own two-sided 90% interval,
then draw random subsets of n persons (n = 8, 29, 43: held-out sizes calibrate sees on the bundled files) and on
each compute the exact COCO ΔAP of the subset and its lower bound at several confidences. Reports, per n and
confidence: coverage (share of subsets whose bound <= the population's ΔAP: should be >= the confidence), the share
whose bound meets the 0.005 budget, the mean margin, the subsets' ΔAP spread, and the time of one bootstrap.

Usage:
  python benchmarks/int8_noise.py FP32.onnx INT8.onnx [INT8.onnx ...] [--ann A --images I] [--draws 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx

from gtpt_deploy.calib.evalset import score_crops, session_infer
from gtpt_deploy.calib.noise import RESAMPLES, MeasuredPersons, PersonRecords, paired_bootstrap, resampled_ap
from gtpt_deploy.coco import load_annotations
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_deploy.runtime.crops import person_crops

CONFIDENCES = (0.8, 0.9, 0.95, 0.99)


def sub(r: PersonRecords, idx: np.ndarray) -> PersonRecords:
    return PersonRecords(r.score[idx], r.oks[idx], r.ignored_oks[idx])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32", type=Path)
    ap.add_argument("int8", type=Path, nargs="+")
    shared = Path("../shared/data/coco_val2017_pose")
    ap.add_argument("--ann", type=Path, default=shared / "person_keypoints_val2017_subset.json")
    ap.add_argument("--images", type=Path, default=shared / "images")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--sizes", default="8,29,43")
    args = ap.parse_args()
    gt = load_annotations(args.ann)
    model = onnx.load(str(args.fp32))
    meta = read_onnx_meta(model)
    crops = person_crops(gt, args.images, input_size=tuple(meta.input_size))
    measured = MeasuredPersons(crops, gt)
    n_all = len(measured.persons)
    f = score_crops(session_infer(model), crops, meta, gt)
    pf = measured.records(f.keypoints)
    for path in args.int8:
        q = score_crops(session_infer(onnx.load(str(path))), crops, meta, gt)
        pq = measured.records(q.keypoints)
        full = q.ap - f.ap
        point, deltas = paired_bootstrap(pf, pq)
        lo, hi = np.quantile(deltas, [0.05, 0.95])
        print(f"\n{path.name}: population {n_all} persons, COCOeval ΔAP {full:+.4f} (AP {f.ap:.4f} -> {q.ap:.4f}); "
              f"bootstrap's AP {resampled_ap(pf, np.arange(n_all)[None])[0]:.4f} -> "
              f"{resampled_ap(pq, np.arange(n_all)[None])[0]:.4f}; its own 90% interval [{full - point + lo:+.4f}, "
              f"{full - point + hi:+.4f}]; NMS-dropped persons FP32 {np.isinf(pf.score).sum()}, INT8 "
              f"{np.isinf(pq.score).sum()}")
        print("| n | confidence | coverage (bound <= population ΔAP) | bound meets 0.005 | mean margin | "
              "subset ΔAP mean, sd |")
        print("|---|---|---|---|---|---|")
        rng = np.random.default_rng(0)
        for n in (int(s) for s in args.sizes.split(",")):
            rows, secs = [], []
            for r in range(args.draws):
                idx = np.sort(rng.choice(n_all, n, replace=False))
                a, b = sub(pf, idx), sub(pq, idx)
                d = float(resampled_ap(b, np.arange(n)[None])[0] - resampled_ap(a, np.arange(n)[None])[0])
                t = time.perf_counter()
                point, deltas = paired_bootstrap(a, b, RESAMPLES, seed=r)
                secs.append(time.perf_counter() - t)
                rows.append((d, [d - max(0.0, point - np.quantile(deltas, 1 - c)) for c in CONFIDENCES]))
            ds = np.array([x for x, _ in rows])
            for j, c in enumerate(CONFIDENCES):
                bnd = np.array([y[j] for _, y in rows])
                print(f"| {n} | {c:.2f} | {np.mean(bnd <= full + 1e-12):.2f} | {np.mean(bnd >= -0.005):.2f} | "
                      f"{np.mean(ds - bnd):.4f} | {ds.mean():+.4f}, {ds.std():.4f} |")
            print(f"(one bootstrap of {RESAMPLES} resamples on {n} persons: {np.mean(secs):.2f} s)")


if __name__ == "__main__":
    main()
