"""AP of an in-memory model on preprocessed person crops: the yardstick of the precision recipes and the budget search.

The crops are the GT person boxes of an annotation file through the inference preprocessing (``runtime.crops``), so
this AP equals ``validate``'s GT-box AP for the same file; here every candidate graph is scored without writing it
to disk. No torch import.
"""

from __future__ import annotations

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


def session_infer(model: Any, threads: int | None = None) -> InferFn:
    """An ONNX Runtime CPU ``infer`` for an in-memory ``onnx.ModelProto`` (or serialized bytes).

    Returns a function float32 (B, 3, H, W) -> (simcc_x, simcc_y) float32 arrays.
    """
    import onnxruntime as ort

    data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(bytes(data), sess_options=opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    static = session.get_inputs()[0].shape[0]
    static = static if isinstance(static, int) and static > 0 else None

    def infer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(batch)
        if static and n != static:  # a static-batch file: run padded chunks of its own size
            outs = [infer(np.concatenate((c, np.zeros((static - len(c), *c.shape[1:]), np.float32)))
                          if len(c) < static else c) for c in np.array_split(batch, range(static, n, static))]
            return (np.concatenate([o[0] for o in outs])[:n], np.concatenate([o[1] for o in outs])[:n])
        x, y = session.run(["simcc_x", "simcc_y"], {name: np.ascontiguousarray(batch, np.float32)})
        return x[:n], y[:n]

    return infer


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
