"""Skeleton rendering with cv2 (BGR images, in place on a copy). No torch import."""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np

from ..keypoints import DatasetInfo

# GTPT's confidence is min(max prob x, max prob y) of SimCC distributions trained against Gaussian targets of
# sigma 4 bins, whose peak is 1/(4*sqrt(2*pi)) ~= 0.1: well-localized keypoints score ~0.05-0.1, never near 1.
DEFAULT_KPT_THR = 0.03


def _palette(n: int) -> list[tuple[int, int, int]]:
    """n distinct BGR colors (evenly spaced hues)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def draw_poses(image_bgr: np.ndarray, keypoints: np.ndarray, dataset: DatasetInfo,
               boxes_xywh: np.ndarray | None = None, kpt_thr: float = DEFAULT_KPT_THR) -> np.ndarray:
    """Draw person boxes, limbs and keypoints whose confidence is above ``kpt_thr``.

    Args:
        image_bgr: uint8 (H, W, 3) BGR; not modified.
        keypoints: (N, K, 3) x, y in image pixels and confidence.
        dataset: keypoint layout (its ``skeleton`` gives the limbs).
        boxes_xywh: optional (N, 4) person boxes.
        kpt_thr: keypoints (and limbs touching them) at or below this confidence are not drawn.

    Returns:
        a new uint8 (H, W, 3) BGR image.
    """
    out = image_bgr.copy()
    h, w = out.shape[:2]
    unit = max(1, int(round(max(h, w) / 400)))
    small = dataset.num_keypoints > 17  # whole-body: many close points, draw them smaller
    radius = max(1, unit * (1 if small else 2))
    colors = _palette(len(dataset.skeleton))
    kpts = np.asarray(keypoints, dtype=np.float32).reshape(-1, dataset.num_keypoints, 3)
    if boxes_xywh is not None:
        for x, y, bw, bh in np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4):
            cv2.rectangle(out, (int(x), int(y)), (int(x + bw), int(y + bh)), (0, 255, 0), unit, cv2.LINE_AA)
    for person in kpts:
        ok = np.isfinite(person).all(axis=-1) & (person[:, 2] > kpt_thr)
        for (a, b), color in zip(dataset.skeleton, colors):
            if ok[a] and ok[b]:
                pa = (int(round(person[a, 0])), int(round(person[a, 1])))
                pb = (int(round(person[b, 0])), int(round(person[b, 1])))
                cv2.line(out, pa, pb, color, unit + (0 if small else 1), cv2.LINE_AA)
        for x, y, _ in person[ok]:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, (int(round(x)), int(round(y))), radius, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def encode_image(image_bgr: np.ndarray, name: str) -> bytes:
    """uint8 (H, W, 3) BGR -> the bytes of an image file in the format of ``name``'s suffix (``.jpg``, ``.png``, ...)."""
    ok, buf = cv2.imencode(Path(name).suffix or ".png", image_bgr)
    if not ok:  # the suffixes offered by the run stage are all encodable: a failure here is a bug
        raise RuntimeError(f"OpenCV could not encode {name}")
    return buf.tobytes()
