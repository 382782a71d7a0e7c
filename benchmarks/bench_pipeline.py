"""Is the pipeline the bottleneck? End-to-end pose time vs pure model time, measured side by side in one run.

End to end = what ``gtpt-deploy run`` / ``validate`` do per image: decode the JPEG, person boxes (GT), affine crops +
normalization, batching (padding to the static batch), the model on the crops and on the flipped crops, SimCC
decoding with the flip test, back to image pixels, then rescoring + OKS NMS into COCO results records.
Pure model = the same ``runner.infer`` calls on the same batches (recorded in the warm-up, kept in memory) and
nothing else.
overhead = (end to end - model time inside it) / model time inside it, and end_to_end / pure_model - 1 side by side.
Rounds alternate the two measurements (the machine is shared); medians are reported.

    python benchmarks/bench_pipeline.py                        # GTPT-T, fresh weights, ONNX Runtime, batch 1
    python benchmarks/bench_pipeline.py --onnx export/gtpt_t_coco_b8.onnx --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("GTPT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data" / "coco_val2017_pose"


def _export(batch: int, folder: Path) -> Path:
    """GTPT-T with fresh weights -> ONNX (timing does not depend on the weights: every shape is static)."""
    from gtpt_deploy.models import create_model, save_checkpoint

    ckpt = folder / "gtpt_t_coco_bench.pth"
    save_checkpoint(create_model("gtpt_t_coco"), ckpt)
    out = folder / f"gtpt_t_coco_b{batch}.onnx"
    try:
        from gtpt_deploy.export import export_onnx
    except ImportError:  # before the exporter existed: a plain legacy export + metadata
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from gtpt_fixtures import export_test_onnx

        return export_test_onnx(ckpt, out, batch)
    result = export_onnx(checkpoint=ckpt, output=out, batch=batch, dynamic_batch=False)
    return Path(getattr(result, "onnx_path", getattr(result, "path", out)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, help="exported GTPT ONNX (default: export GTPT-T at --batch)")
    ap.add_argument("--batch", type=int, default=1, help="static batch of the exported model (default 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--draw", action="store_true", help="also draw skeletons and JPEG-encode each image (as `run`)")
    args = ap.parse_args()

    import cv2

    from gtpt_deploy.runtime.boxes import GroundTruthBoxes
    from gtpt_deploy.runtime.draw import draw_poses
    from gtpt_deploy.coco import to_coco_results
    from gtpt_deploy.runtime.predictor import ImagePoses, Predictor
    from gtpt_deploy.runtime.run import stack_poses
    from gtpt_deploy.runners import create_runner

    ann = DATA / "person_keypoints_val2017_subset.json"
    boxes = GroundTruthBoxes(ann)
    paths = [DATA / "images" / n for n in boxes.file_names]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or _export(args.batch, Path(tmp))
        with create_runner(onnx_path, threads=args.threads) as runner:
            pred = Predictor(runner, flip=not args.no_flip, keep_images=args.draw)
            k = runner.meta.num_keypoints

            def end_to_end() -> tuple[float, float, int]:
                runner.times.clear()
                t0 = time.perf_counter()
                poses = [p for p in pred.predict(paths, boxes) if isinstance(p, ImagePoses)]
                for p in poses if args.draw else ():
                    cv2.imencode(".jpg", draw_poses(p.image, p.keypoints, pred.dataset, p.boxes))
                    p.image = None
                to_coco_results(*stack_poses(poses, k))
                return time.perf_counter() - t0, sum(runner.times), sum(len(p.keypoints) for p in poses)

            # the exact batches end_to_end feeds the runner (flipped ones included), recorded once, kept in memory
            recorded: list[np.ndarray] = []

            class _Recorder:
                def __getattr__(self, name: str) -> object:
                    return getattr(runner, name)

                def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                    recorded.append(batch.copy())
                    return runner.infer(batch)

            pred.runner = _Recorder()  # type: ignore[assignment]
            _, _, n_persons = end_to_end()  # also the warm-up
            pred.runner = runner

            def pure_model() -> float:
                t0 = time.perf_counter()
                for b in recorded:
                    runner.infer(b)
                return time.perf_counter() - t0

            e2e, inner, pure = [], [], []
            for _ in range(args.rounds):
                t, m, _ = end_to_end()
                e2e.append(t)
                inner.append(m)
                pure.append(pure_model())
            description = runner.description
    e, p, i = statistics.median(e2e), statistics.median(pure), statistics.median(inner)
    print(f"{len(paths)} images, {n_persons} persons, {len(recorded)} runner calls of batch {pred.batch}, "
          f"flip {pred.flip}, draw {args.draw}, {description}, {args.rounds} rounds (median; min in brackets)")
    print(f"end to end      {e:7.3f} s  ({1000 * e / len(paths):6.1f} ms/image)")
    print(f"pure model      {p:7.3f} s  ({1000 * p / n_persons:6.1f} ms/person incl. flip)")
    print(f"model inside e2e {i:6.3f} s")
    # Headline: time outside runner.infer relative to the time inside it, within the same end-to-end passes (robust
    # to a busy machine). Second figure: end to end vs the separate pure-model passes (noisier when shared).
    inside = statistics.median((t - m) / m for t, m in zip(e2e, inner))
    print(f"pipeline overhead: {100 * inside:+.1f}% (non-model / model time in the end-to-end run); "
          f"end to end vs pure-model pass: {100 * (e / p - 1):+.1f}% [min: {100 * (min(e2e) / min(pure) - 1):+.1f}%]")


if __name__ == "__main__":
    main()
