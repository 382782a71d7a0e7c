"""Person detection with an ONNX detector that has mmdeploy's ``dets`` / ``labels`` outputs (NMS inside).

Made for RTMDet-nano person (``shared/data/models/rtmdet_nano_person``, see its SOURCE.md) and usable with any
detector exported the same way. Pre-processing (mmdeploy ``pipeline.json``): BGR image, resize keeping the aspect
ratio so the long side fits the input size, pad bottom/right with 114, normalize with the BGR mean/std below.
Outputs ``dets`` (N, D, 5) x1 y1 x2 y2 score in the resized (pre-pad) image's pixels and ``labels`` (N, D).
No torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .boxes import Boxes, image_id_from_name
from ..errors import ArtifactError

MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
PAD_VALUE = 114


def letterbox(image_bgr: np.ndarray, size: tuple[int, int] = (320, 320)) -> tuple[np.ndarray, tuple[float, float]]:
    """mmdet ``Resize(keep_ratio=True)`` + ``Pad`` + ``Normalize(to_rgb=False)``.

    Args:
        image_bgr: uint8 (H, W, 3) BGR.
        size: detector input (H, W).

    Returns:
        float32 (1, 3, size_h, size_w) input and the (x, y) resize factors (resized / original pixels).
    """
    h, w = image_bgr.shape[:2]
    ratio = min(size[0] / h, size[1] / w)
    new_w, new_h = max(1, int(w * ratio + 0.5)), max(1, int(h * ratio + 0.5))
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size[0], size[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    x = (canvas.astype(np.float32) - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (new_w / w, new_h / h)


class PersonDetector:
    """``detector(path, image_bgr) -> Boxes`` (xywh in image pixels, scores); a box source for the predictor.

    Args:
        path: detector ONNX with outputs ``dets`` and ``labels``.
        score_thr: keep boxes with score >= this.
        label: class index of *person* in ``labels`` (0 for RTMDet person).
        input_size: detector input (H, W) (320x320 for RTMDet-nano).
        device: ``cpu``, ``cuda`` or ``cuda:N``; provider: ONNX Runtime provider (default from ``device``),
            checked like the pose runners'.
        threads: ONNX Runtime intra-op threads (None: its default).
    """

    def __init__(self, path: str | Path, score_thr: float = 0.3, label: int = 0,
                 input_size: tuple[int, int] = (320, 320), device: str = "cpu", threads: int | None = None,
                 provider: str | None = None) -> None:
        from ..runners.ort import make_session, resolve_provider

        self.path = Path(path)
        self.score_thr = float(score_thr)
        self.label = int(label)
        self.input_size = input_size
        self._session: Any = make_session(self.path, *resolve_provider(provider, device), threads)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or not {"dets", "labels"} <= set(outputs):
            raise ArtifactError(f"{self.path.name}: expected a detector with one image input and outputs 'dets' and "
                                f"'labels' (mmdeploy end2end export), got inputs {[i.name for i in inputs]} and "
                                f"outputs {outputs}")
        self._input = inputs[0].name

    def image_id(self, path: Path) -> int | None:
        return image_id_from_name(path)

    def detect(self, image_bgr: np.ndarray) -> Boxes:
        """uint8 (H, W, 3) BGR -> person boxes (xywh, clipped to the image) with score >= ``score_thr``."""
        x, (fx, fy) = letterbox(image_bgr, self.input_size)
        dets, labels = self._session.run(["dets", "labels"], {self._input: x})
        dets, labels = np.asarray(dets)[0], np.asarray(labels)[0]
        keep = (labels == self.label) & (dets[:, 4] >= self.score_thr)
        d = dets[keep]
        h, w = image_bgr.shape[:2]
        x1 = np.clip(d[:, 0] / fx, 0, w)
        y1 = np.clip(d[:, 1] / fy, 0, h)
        x2 = np.clip(d[:, 2] / fx, 0, w)
        y2 = np.clip(d[:, 3] / fy, 0, h)
        return Boxes.of(np.stack((x1, y1, x2 - x1, y2 - y1), axis=-1), d[:, 4])

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        return self.detect(image_bgr)
