"""Person detection with an ONNX detector that has mmdeploy's ``dets`` / ``labels`` outputs (NMS inside).

Any mmdeploy RTMDet / YOLOX ``end2end.onnx`` works: the pre-processing (input size, keep-ratio resize, padding,
normalization, colour order) comes from the ``pipeline.json`` mmdeploy writes beside it (:mod:`detector_config`),
else from the ONNX's declared input shape and RTMDet's defaults. Outputs: ``dets`` (N, D, 5) x1 y1 x2 y2 score in
the resized (pre-pad) image's pixels and ``labels`` (N, D). No torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .boxes import Boxes, image_id_from_name
from .detector_config import DetectorConfig, load_detector_config, resized_size
from ..errors import ArtifactError


def preprocess(image_bgr: np.ndarray, cfg: DetectorConfig) -> tuple[np.ndarray, tuple[float, float]]:
    """mmdeploy ``Resize`` + ``Pad`` + ``Normalize`` of one image.

    Args:
        image_bgr: uint8 (H, W, 3) BGR.
        cfg: the detector's pre-processing.

    Returns:
        float32 (1, 3, H_in, W_in) input and the (x, y) resize factors (resized / original pixels).
    """
    h, w = image_bgr.shape[:2]
    new_h, new_w = resized_size(cfg, h, w)
    resized = image_bgr if (new_h, new_w) == (h, w) else cv2.resize(image_bgr, (new_w, new_h),
                                                                   interpolation=cv2.INTER_LINEAR)
    out_h, out_w = cfg.output_size(h, w)
    canvas = np.full((max(out_h, new_h), max(out_w, new_w), 3), cfg.pad_value, dtype=np.float32)
    canvas[:new_h, :new_w] = resized
    canvas = canvas[:out_h, :out_w]
    if cfg.to_rgb:
        canvas = canvas[..., ::-1]
    x = (canvas - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32), (new_w / w, new_h / h)


def letterbox(image_bgr: np.ndarray, size: tuple[int, int] = (320, 320)) -> tuple[np.ndarray, tuple[float, float]]:
    """RTMDet's letterbox to ``size`` (H, W) with its defaults (the bundled RTMDet-nano's pipeline)."""
    return preprocess(image_bgr, DetectorConfig(resize=size, pad_size=size))


def _dim(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and v > 0 else None


class PersonDetector:
    """``detector(path, image_bgr) -> Boxes`` (xywh in image pixels, scores); a box source for the predictor.

    Args:
        path: detector ONNX with outputs ``dets`` and ``labels``.
        score_thr: keep boxes with score >= this.
        label: class index of *person* in ``labels`` (0 for a person-only detector and for COCO's 80 classes).
        config: pre-processing; default read from ``pipeline.json`` beside ``path`` (see :mod:`detector_config`).
        device: ``cpu``, ``cuda`` or ``cuda:N``; provider: ONNX Runtime provider (default from ``device``),
            checked like the pose runners'.
        threads: ONNX Runtime intra-op threads (None: its default).
    """

    def __init__(self, path: str | Path, score_thr: float = 0.3, label: int = 0, config: DetectorConfig | None = None,
                 device: str = "cpu", threads: int | None = None, provider: str | None = None) -> None:
        from ..runners.ort import make_session, resolve_provider

        self.path = Path(path)
        self.score_thr = float(score_thr)
        self.label = int(label)
        self._session: Any = make_session(self.path, *resolve_provider(provider, device), threads)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or not {"dets", "labels"} <= set(outputs):
            raise ArtifactError(f"{self.path.name}: expected a detector with one image input and outputs 'dets' and "
                                f"'labels' (mmdeploy end2end export), got inputs {[i.name for i in inputs]} and "
                                f"outputs {outputs}")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or _dim(shape[1]) not in (None, 3) or _dim(shape[0]) not in (None, 1):
            raise ArtifactError(f"{self.path.name}: expected an image input (1, 3, H, W), got {inputs[0].name} "
                                f"{shape}; pass an mmdeploy detector export")
        self.declared = (_dim(shape[2]), _dim(shape[3]))
        self.config = config or load_detector_config(self.path, self.declared)
        self._input = inputs[0].name
        if self.config.input_name not in (None, self._input):
            raise ArtifactError(f"{self.config.source} feeds input '{self.config.input_name}', but "
                                f"{self.path.name}'s input is '{self._input}'; use the pipeline.json of this ONNX")

    def image_id(self, path: Path) -> int | None:
        return image_id_from_name(path)

    def detect(self, image_bgr: np.ndarray) -> Boxes:
        """uint8 (H, W, 3) BGR -> person boxes (xywh, clipped to the image) with score >= ``score_thr``."""
        x, (fx, fy) = preprocess(image_bgr, self.config)
        h_in, w_in = self.declared
        if (h_in is not None and h_in != x.shape[2]) or (w_in is not None and w_in != x.shape[3]):
            raise ArtifactError(f"{self.path.name} takes {h_in}x{w_in} inputs but its pre-processing "
                                f"({self.config.source}) made {x.shape[2]}x{x.shape[3]}; put the pipeline.json "
                                f"exported with this ONNX beside it")
        try:
            dets, labels = self._session.run(["dets", "labels"], {self._input: x})
        except Exception as e:  # onnxruntime's own exception types; keep the CLI free of its tracebacks
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ArtifactError(f"{self.path.name} failed on a {x.shape[2]}x{x.shape[3]} input "
                                f"({self.config.source}): {first}") from None
        dets, labels = np.asarray(dets), np.asarray(labels)
        if dets.ndim != 3 or dets.shape[-1] != 5 or labels.shape != dets.shape[:2]:
            raise ArtifactError(f"{self.path.name}: expected dets (1, D, 5) and labels (1, D), got {dets.shape} and "
                                f"{labels.shape}; pass an mmdeploy detector export with NMS inside")
        dets, labels = dets[0], labels[0]
        keep = (labels == self.label) & (dets[:, 4] >= self.score_thr)
        d = dets[keep]
        h, w = image_bgr.shape[:2]
        x1 = np.clip(d[:, 0] / fx, 0, w)
        y1 = np.clip(d[:, 1] / fy, 0, h)
        x2 = np.clip(d[:, 2] / fx, 0, w)
        y2 = np.clip(d[:, 3] / fy, 0, h)
        return Boxes.of(np.stack((x1, y1, x2 - x1, y2 - y1), axis=-1), d[:, 4]).positive()  # boxes clipped away

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        return self.detect(image_bgr)
