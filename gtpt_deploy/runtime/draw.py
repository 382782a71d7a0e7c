"""Skeleton rendering with cv2 (BGR images, drawn on a copy). No torch import.

Colours follow mmpose's COCO / COCO-WholeBody palette (its dataset configs give RGB): the person's left side green,
right side orange, head and torso blue, face white, fingers one colour each. Sizes scale with the image (line
thickness, label font) and with the person (whole-body face and hand points, which would merge into blobs on a small
person at body-point size). A keypoint's radius grows with its confidence; points at or below ``kpt_thr`` and limbs
touching them are not drawn. Each box is labelled with its detection score.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..keypoints import DatasetInfo

# GTPT's confidence is min(max prob x, max prob y) of SimCC distributions trained against Gaussian targets of
# sigma 4 bins, whose peak is 1/(4*sqrt(2*pi)) ~= 0.1: well-localized keypoints score ~0.05-0.1, never near 1.
DEFAULT_KPT_THR = 0.03
FULL_CONFIDENCE = 0.1   # a keypoint this confident gets the full radius (see above)


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


# mmpose palette (configs/_base_/datasets/coco*.py), RGB -> BGR for cv2
LEFT, RIGHT, CENTER = _bgr((0, 255, 0)), _bgr((255, 128, 0)), _bgr((51, 153, 255))
FACE = _bgr((255, 255, 255))
FINGERS = {"thumb": _bgr((255, 128, 0)), "forefinger": _bgr((255, 153, 255)),
           "middle_finger": _bgr((102, 178, 255)), "ring_finger": _bgr((255, 51, 51)),
           "pinky_finger": _bgr((0, 255, 0))}
BOX = _bgr((0, 200, 255))
BODY_KEYPOINTS = 23  # COCO body + feet; beyond: face and hands (drawn at the person's scale)


def keypoint_colors(dataset: DatasetInfo) -> list[tuple[int, int, int]]:
    """One BGR colour per keypoint, from its name (mmpose's convention)."""
    out = []
    for name in dataset.keypoint_names:
        finger = next((c for f, c in FINGERS.items() if f in name), None)
        if finger is not None:
            out.append(finger)
        elif name.startswith("face") or name.endswith("hand_root"):
            out.append(FACE)
        elif name == "nose" or name.endswith(("_eye", "_ear")):  # the head is centre-coloured in mmpose
            out.append(CENTER)
        elif name.startswith("left"):
            out.append(LEFT)
        elif name.startswith("right"):
            out.append(RIGHT)
        else:
            out.append(CENTER)
    return out


def _torso(a: str, b: str) -> bool:
    """A shoulder-hip link: part of the torso, which mmpose draws in the centre colour."""
    return {a.split("_")[-1], b.split("_")[-1]} == {"shoulder", "hip"}


def limb_colors(dataset: DatasetInfo) -> list[tuple[int, int, int]]:
    """One BGR colour per skeleton link: a side's colour when both ends are on that side, a finger's colour along
    that finger, the centre colour for links across the body (shoulders, hips, head)."""
    kc = keypoint_colors(dataset)
    out = []
    for a, b in dataset.skeleton:
        if any(f in dataset.keypoint_names[b] for f in FINGERS):  # along a finger: the finger's colour
            out.append(kc[b])
        elif kc[a] == kc[b] and kc[a] in (LEFT, RIGHT) and not _torso(dataset.keypoint_names[a],
                                                                      dataset.keypoint_names[b]):
            out.append(kc[a])
        else:
            out.append(CENTER)
    return out


def image_unit(height: int, width: int) -> int:
    """Base line thickness for an image: 1 px up to ~500 px images, +1 per ~500 px of the geometric mean side."""
    return max(1, int(round(math.sqrt(height * width) / 500)))


def person_size(keypoints: np.ndarray, box_xywh: np.ndarray | None, ok: np.ndarray) -> float:
    """A person's size in pixels: sqrt of the box area, else of the visible keypoints' extent."""
    if box_xywh is not None and box_xywh[2] > 0 and box_xywh[3] > 0:
        return float(math.sqrt(box_xywh[2] * box_xywh[3]))
    pts = keypoints[ok, :2]
    if len(pts) < 2:
        return 0.0
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(math.sqrt(max(w, 1.0) * max(h, 1.0)))


def _label(out: np.ndarray, text: str, x: int, y: int, unit: int) -> None:
    scale = 0.4 * unit
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, unit)
    y_top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    cv2.rectangle(out, (x, y_top), (x + tw + 4, y_top + th + base + 2), BOX, -1)
    cv2.putText(out, text, (x + 2, y_top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), unit, cv2.LINE_AA)


def draw_poses(image_bgr: np.ndarray, keypoints: np.ndarray, dataset: DatasetInfo,
               boxes_xywh: np.ndarray | None = None, kpt_thr: float = DEFAULT_KPT_THR,
               box_scores: np.ndarray | None = None) -> np.ndarray:
    """Draw person boxes (with score labels), limbs and keypoints whose confidence is above ``kpt_thr``.

    Args:
        image_bgr: uint8 (H, W, 3) BGR; not modified.
        keypoints: (N, K, 3) x, y in image pixels and confidence.
        dataset: keypoint layout (names give the colours, ``skeleton`` the limbs).
        boxes_xywh: optional (N, 4) person boxes.
        kpt_thr: keypoints (and limbs touching them) at or below this confidence are not drawn.
        box_scores: optional (N,) scores written on the boxes.

    Returns:
        a new uint8 (H, W, 3) BGR image.
    """
    out = image_bgr.copy()
    h, w = out.shape[:2]
    unit = image_unit(h, w)
    k = dataset.num_keypoints
    kpts = np.asarray(keypoints, dtype=np.float32).reshape(-1, k, 3)
    boxes = None if boxes_xywh is None else np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    kcolors, lcolors = keypoint_colors(dataset), limb_colors(dataset)
    if boxes is not None:
        for i, (x, y, bw, bh) in enumerate(boxes):
            cv2.rectangle(out, (int(x), int(y)), (int(x + bw), int(y + bh)), BOX, unit, cv2.LINE_AA)
            if box_scores is not None and i < len(box_scores):
                _label(out, f"{float(box_scores[i]):.2f}", int(x), int(y), unit)
    for i, person in enumerate(kpts):
        ok = np.isfinite(person).all(axis=-1) & (person[:, 2] > kpt_thr)
        size = person_size(person, boxes[i] if boxes is not None and i < len(boxes) else None, ok)
        # Body points: ~1/40 of the person, capped by the image unit; face and hand points: ~1/150, so 68 face
        # points on a 100-px person stay apart (they are a few pixels from each other).
        body_r = max(1.0, min(3.0 * unit, size / 40))
        fine_r = max(1.0, min(1.0 * unit, size / 150))
        body_t = max(1, min(2 * unit, int(round(size / 60))))
        fine_t = max(1, min(unit, int(round(size / 200))))
        for (a, b), color in zip(dataset.skeleton, lcolors):
            if ok[a] and ok[b]:
                pa = (int(round(person[a, 0])), int(round(person[a, 1])))
                pb = (int(round(person[b, 0])), int(round(person[b, 1])))
                cv2.line(out, pa, pb, color, body_t if max(a, b) < BODY_KEYPOINTS else fine_t, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            x, y, c = person[j]
            base = body_r if j < BODY_KEYPOINTS else fine_r
            radius = max(1, int(round(base * (0.5 + 0.5 * min(1.0, float(c) / FULL_CONFIDENCE)))))
            cv2.circle(out, (int(round(x)), int(round(y))), radius, kcolors[j], -1, cv2.LINE_AA)
    return out


def encode_image(image_bgr: np.ndarray, name: str) -> bytes:
    """uint8 (H, W, 3) BGR -> the bytes of an image file in the format of ``name``'s suffix (``.jpg``, ``.png``, ...)."""
    ok, buf = cv2.imencode(Path(name).suffix or ".png", image_bgr)
    if not ok:  # the suffixes offered by the run stage are all encodable: a failure here is a bug
        raise RuntimeError(f"OpenCV could not encode {name}")
    return buf.tobytes()
