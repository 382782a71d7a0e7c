"""``gtpt_deploy.predict``: the library call for poses on images or arrays, with typed per-person results.

    import gtpt_deploy as gd
    for image in gd.predict("export/gtpt_t_coco_b1.onnx", ["a.jpg", frame_bgr], detector="end2end.onnx"):
        for pose in image.poses:
            print(image.name, pose.score, pose["left_wrist"])   # (x, y, confidence) in image pixels

No torch import (a ``.pth`` artifact imports it through its runner).
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import cv2
import numpy as np

from ..coco import rescore
from ..errors import GtptError, InputImageError
from .boxes import Boxes
from .core import WHOLE_IMAGE_NOTE, open_boxes, open_predictor
from .options import BoxSpec, RunnerSpec
from .predictor import ImageFailure, build_frames
from .sources import SourceFrame, open_sources

log = logging.getLogger(__name__)

ImageLike = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class Pose:
    """One person. ``keypoints`` float32 (K, 3): x, y in image pixels and confidence (GTPT's peak near 0.1);
    ``box`` float32 (4,) x, y, w, h; ``score`` the official instance score (mean confident-keypoint confidence
    times ``box_score``)."""

    keypoints: np.ndarray
    box: np.ndarray
    box_score: float
    score: float
    keypoint_names: tuple[str, ...]

    def __getitem__(self, name: str) -> tuple[float, float, float]:
        """``pose["left_wrist"]`` -> (x, y, confidence)."""
        try:
            x, y, c = self.keypoints[self.keypoint_names.index(name)]
        except ValueError:
            raise KeyError(f"no keypoint '{name}'; this model has {', '.join(self.keypoint_names[:5])}, ...") from None
        return float(x), float(y), float(c)

    def to_dict(self) -> dict:
        return {"box": self.box.tolist(), "box_score": self.box_score, "score": self.score,
                "keypoints": {n: [float(v) for v in k] for n, k in zip(self.keypoint_names, self.keypoints)}}


@dataclass(frozen=True)
class ImagePrediction:
    """The poses of one input image (or video frame): ``name`` is the file name, ``video#000012`` for a frame, or
    ``array<i>`` for the i-th array; ``size`` (H, W); ``timestamp`` seconds into a video (None otherwise)."""

    name: str
    size: tuple[int, int]
    poses: list[Pose]
    timestamp: float | None = None


def _as_bgr(array: np.ndarray, rgb: bool, where: str) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise InputImageError(f"{where}: expected a uint8 (H, W, 3) image array, got {a.dtype} {a.shape}; pass "
                              f"cv2.imread output or convert with .astype(np.uint8)")
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    a = a[..., :3]
    return np.ascontiguousarray(a[..., ::-1] if rgb else a)


def _source_frames(items: list[ImageLike], rgb: bool, one_each: bool) -> Iterator[SourceFrame]:
    """Inputs -> decoded source frames: files / folders / globs / videos expand to their images and frames, an
    array is one frame ``array<i>``. ``one_each``: every input must hold exactly one image (boxes per input)."""
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            decoded = [SourceFrame(f"array{i}", 0, None, _as_bgr(item, rgb, f"array {i}"), Path(f"array{i}"))]
        else:
            decoded = [f for src in open_sources([item]) for f in src]
            bad = next((f for f in decoded if f.image is None), None)
            if bad is not None:   # an unreadable input raises here, before any boxes are handed out for it
                raise InputImageError(bad.error or f"{item}: cannot read it")
        if one_each and len(decoded) != 1:
            raise GtptError(f"boxes were given per input, but input {i} holds {len(decoded)} images; pass one image "
                            f"per input with boxes")
        yield from decoded


class _GivenBoxes:
    """Boxes passed per input, handed out in input order (the frame builder asks once per frame, in order)."""

    def __init__(self, boxes: Sequence[np.ndarray]) -> None:
        self._next = iter(boxes)

    def __call__(self, path: Path, image: np.ndarray) -> Boxes:
        b = np.asarray(next(self._next), np.float32).reshape(-1, 4)
        return Boxes.of(b, np.ones(len(b)))

    def image_id(self, path: Path) -> int | None:
        return None


def predict(artifact: str | os.PathLike, inputs: ImageLike | Sequence[ImageLike],
            detector: str | os.PathLike | None = None, boxes: Sequence[np.ndarray] | None = None,
            box_thr: float | None = None, flip: bool = True, device: str = "cpu", threads: int | None = None,
            batch: int | None = None, rgb: bool = False, provider: str | None = None,
            detector_device: str = "cpu") -> list[ImagePrediction]:
    """Poses of every person in ``inputs`` with the pose model ``artifact`` (.onnx, .pth).

    Args:
        inputs: one or a list of: image files, folders, glob patterns, video files (one result per frame), or
            uint8 (H, W, 3) arrays (BGR as ``cv2.imread`` gives; ``rgb=True`` for RGB arrays).
        detector: a person detector ONNX (mmdeploy export; see ``runtime.detect``). Without it and without
            ``boxes`` each whole image is one person (logged as a warning).
        boxes: per input, float (N, 4) x, y, w, h person boxes in its pixels (instead of a detector).
        box_thr: minimum detector score (default 0.3). flip: the flip test (official; about 2x the model time).
        device / threads / batch / provider: the pose runner's (see ``create_runner`` and ``Predictor``), e.g.
            ``provider="openvino"`` for an .onnx on an Intel/AMD CPU. A static-batch artifact keeps its batch.
        detector_device: where the detector runs (``cpu`` unless asked, whatever the pose model's ``device``), as
            ``run --detector-device``.

    Returns:
        one :class:`ImagePrediction` per image or video frame, in input order. Unreadable inputs raise
        ``InputImageError``.
    """
    items: list[ImageLike] = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    if boxes is not None and (detector is not None or len(boxes) != len(items)):
        raise GtptError(f"pass either a detector or one (N, 4) box array per input ({len(items)} inputs, "
                        f"{len(boxes)} box arrays{', and a detector' if detector is not None else ''})")
    runner = RunnerSpec(device=device, provider=provider, threads=threads, batch=batch, flip=flip)
    return predict_with(artifact, items, runner, BoxSpec(detector=detector, box_thr=box_thr,
                                                         detector_device=detector_device), boxes, rgb)


def predict_with(artifact: str | os.PathLike, items: list[ImageLike], runner: RunnerSpec, boxes: BoxSpec,
                 given: Sequence[np.ndarray] | None = None, rgb: bool = False) -> list[ImagePrediction]:
    """:func:`predict` on typed options: ``given`` boxes per input replace ``boxes``' source."""
    from ..keypoints import dataset_for

    source = _GivenBoxes(given) if given is not None else open_boxes(
        boxes, WHOLE_IMAGE_NOTE.replace("--detector or --boxes", "detector or boxes"))
    out: list[ImagePrediction] = []
    timestamps: dict[int, float | None] = {}
    counter = itertools.count()
    frames = build_frames(_source_frames(items, rgb, given is not None), source, lambda f: next(counter), timestamps)
    with open_predictor(artifact, runner) as predictor:
        names = dataset_for(predictor.runner.meta.num_keypoints).keypoint_names
        for r in predictor.predict_frames(frames):
            if isinstance(r, ImageFailure):
                raise InputImageError(r.error)
            scores = rescore(r.keypoints, r.box_scores) if len(r.keypoints) else []
            poses = [Pose(k, b, float(s), float(sc), names)
                     for k, b, s, sc in zip(r.keypoints, r.boxes, r.box_scores, scores)]
            out.append(ImagePrediction(Path(r.path).name, r.size, poses, timestamps.pop(r.image_id)))
    return out
