"""AP of an in-memory model on preprocessed person crops: the yardstick of the precision recipes and the budget search.

The crops are the GT person boxes of an annotation file through the inference preprocessing (``runtime.crops``), so
this AP equals ``validate``'s GT-box AP for the same file; here every candidate graph is scored without writing it
to disk. No torch import.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..coco import to_coco_results
from ..eval.compare import Agreement, compare_keypoints
from ..eval.metrics import evaluate
from ..keypoints import flip_permutation
from ..metadata import ModelMeta
from ..runtime import codec

InferFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class CropScore:
    """One model's result on an evaluation crop set.

    Attributes:
        ap: headline COCO keypoint AP in 0-1 (COCO-WholeBody: the all-133-points AP).
        keypoints: float32 (N, K, 3) x, y in image pixels + confidence; bins: int32 (N, K, 2) argmax bins.
    """

    ap: float
    keypoints: np.ndarray
    bins: np.ndarray

    def agreement(self, base: "CropScore") -> Agreement:
        """Argmax agreement and pixel drift vs ``base`` (same crops)."""
        return compare_keypoints(base.keypoints, base.bins, self.keypoints, self.bins)


class SessionInfer:
    """``infer`` for an in-memory ``onnx.ModelProto`` (or serialized bytes) on ONNX Runtime's CPU provider, through
    the common runner (``create_runner``). A static-batch model gets padded batches of its own size.

    Calling it maps float32 (B, 3, H, W) -> (simcc_x, simcc_y) float32 arrays. It owns an active runner (an ONNX
    Runtime session holding the model's weights): ``close()`` it, or use it as a context manager; a caller that only
    drops it (``score_crops(session_infer(m), ...)``) still releases the session then, through a finalizer, instead
    of leaving it to whenever the garbage collector runs.
    """

    def __init__(self, model: Any, threads: int | None = None) -> None:
        from ..runners import create_runner

        self._runner = create_runner(model, threads=threads).activate()
        self._static = self._runner.static_batch
        self._finalizer = weakref.finalize(self, self._runner.deactivate)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        static, runner = self._static, self._runner
        if not static or len(batch) == static:
            return runner.infer(np.ascontiguousarray(batch, np.float32))
        xs, ys = [], []
        for s in range(0, len(batch), static):
            chunk = batch[s:s + static]
            n = len(chunk)
            if n < static:
                chunk = np.concatenate((chunk, np.zeros((static - n, *chunk.shape[1:]), np.float32)))
            x, y = runner.infer(np.ascontiguousarray(chunk, np.float32))
            xs.append(x[:n]), ys.append(y[:n])
        return np.concatenate(xs), np.concatenate(ys)

    def close(self) -> None:
        """Release the session (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "SessionInfer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


session_infer = SessionInfer   # the name the calibration code calls


def score_crops(infer: InferFn, crops: Any, meta: ModelMeta, gt: dict, flip: bool = True,
                batch: int = 16) -> CropScore:
    """Run ``infer`` over ``crops`` (a ``PersonCrops``: crops (N, 3, H, W) float32, centers, scales, image_ids),
    with the official flip test, decode, and evaluate against ``gt`` (the loaded annotation dict)."""
    x, y, fx, fy = [], [], [], []
    arr = crops.crops
    for s in range(0, len(arr), batch):
        chunk = np.ascontiguousarray(arr[s:s + batch])
        a, b = infer(chunk)
        x.append(a), y.append(b)
        if flip:
            a, b = infer(np.ascontiguousarray(chunk[..., ::-1]))
            fx.append(a), fy.append(b)
    x, y = np.concatenate(x), np.concatenate(y)
    flipped = None
    if flip:
        flipped = codec.flip_back(np.concatenate(fx), np.concatenate(fy),
                                  flip_permutation(meta.flip_pairs, meta.num_keypoints))
    coords, conf = codec.decode(x, y, meta.split_ratio, flipped)
    centers, scales = np.asarray(crops.centers), np.asarray(crops.scales)
    xy = codec.to_image(coords, centers, scales, tuple(meta.input_size))
    kpts = np.concatenate((xy, conf[..., None]), axis=-1)
    bins = np.rint(coords * meta.split_ratio).astype(np.int32)
    results = to_coco_results(np.asarray(crops.image_ids), kpts, np.ones(len(kpts), np.float32), centers, scales)
    metrics = evaluate(gt, results)
    head = getattr(metrics, "wholebody", metrics)
    return CropScore(float(head.AP), kpts, bins)
