"""AP of an in-memory model on preprocessed person crops: the yardstick of the precision recipes and the budget search.

The crops are the GT person boxes of an annotation file through the inference preprocessing (``runtime.crops``), so
this AP equals ``validate``'s GT-box AP for the same file; here every candidate graph is scored without writing it
to disk. Scoring goes through the Predictor (padding, flip test, decoding), the one crop -> pose path. No torch
import.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..coco import to_coco_results
from ..errors import GtptError
from ..eval.compare import Agreement, compare_keypoints
from ..eval.metrics import evaluate
from ..metadata import ModelMeta
from ..runtime.predictor import Predictor

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


class CropModel:
    """An in-memory model on ONNX Runtime's CPU provider (``create_runner``), run on person crops through the
    Predictor: its padding to a static batch, flip test and decoding, the same as ``run`` and ``validate``.

    Calling it gives raw logits (no flip): float32 (B, 3, H, W) -> (simcc_x, simcc_y) float32 arrays. The runner
    stays active until :meth:`close` or the end of a ``with`` block; a caller that only drops it
    (``score_crops(session_infer(m), ...)``) releases it then too, through a finalizer.
    """

    def __init__(self, model: Any, threads: int | None = None) -> None:
        from ..runners import create_runner

        self.runner = create_runner(model, threads=threads).activate()
        self._finalizer = weakref.finalize(self, self.runner.deactivate)

    def predictor(self, flip: bool, batch: int = 16) -> Predictor:
        """A Predictor of at most ``batch`` rows per call (a static-batch model: its own)."""
        return Predictor(self.runner, flip=flip, batch=None if self.runner.static_batch else batch, prefetch=0)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y, _, _ = self.predictor(flip=False).infer_crops(np.ascontiguousarray(crops, np.float32))
        return x, y

    def poses(self, crops: Any, flip: bool = True, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``PersonCrops`` -> (keypoints float32 (N, K, 3) in image pixels + confidence, bins int32 (N, K, 2)),
        run ``batch`` crops at a time (their flipped copies too with ``flip``)."""
        predictor = self.predictor(flip, batch)
        arr = crops.crops
        outs = [predictor.infer_crops(np.ascontiguousarray(arr[s:s + batch], np.float32))
                for s in range(0, len(arr), batch)]
        x, y, fx, fy = (np.concatenate(o) if o[0] is not None else None for o in zip(*outs))
        return predictor.decode(x, y, fx, fy, np.asarray(crops.centers), np.asarray(crops.scales))

    def close(self) -> None:
        """Release the session (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "CropModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session_infer(model: Any, threads: int | None = None) -> CropModel:
    """The :class:`CropModel` of an in-memory ``onnx.ModelProto`` (or serialized bytes): call it for logits, pass
    it to :func:`score_crops` for AP."""
    return CropModel(model, threads)


def score_crops(infer: CropModel, crops: Any, meta: ModelMeta, gt: dict, flip: bool = True,
                batch: int = 16) -> CropScore:
    """COCO AP of the model on ``crops`` (a ``PersonCrops``: crops (N, 3, H, W) float32, centers, scales,
    image_ids) against ``gt`` (the loaded annotation dict), with the official flip test; ``meta``: the metadata the
    caller expects (the model's own must have its keypoints, GtptError otherwise)."""
    if infer.runner.meta.num_keypoints != meta.num_keypoints:
        raise GtptError(f"score_crops: the model predicts {infer.runner.meta.num_keypoints} keypoints, expected "
                        f"{meta.num_keypoints} ({meta.variant})")
    kpts, bins = infer.poses(crops, flip, batch)
    centers, scales = np.asarray(crops.centers), np.asarray(crops.scales)
    results = to_coco_results(np.asarray(crops.image_ids), kpts, np.ones(len(kpts), np.float32), centers, scales)
    metrics = evaluate(gt, results)
    head = getattr(metrics, "wholebody", metrics)
    return CropScore(float(head.AP), kpts, bins)
