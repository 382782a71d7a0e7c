"""Pre-processing in numpy / cv2, shared by every backend, the calibrator, the trainer and the evaluator.

Official GTPT protocol (spec §5): box -> (center, scale) with aspect 192/256, x1.25 padding and pixel_std 200;
an affine warp to 192x256 (no rotation, no half-pixel correction); RGB; ToTensor + ImageNet normalization.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..models import variants

PIXEL_STD = 200.0
PADDING = 1.25
MEAN_RGB = np.array(variants.MEAN_RGB, dtype=np.float32)   # the models' normalization (one source: models.variants)
STD_RGB = np.array(variants.STD_RGB, dtype=np.float32)


def box_to_center_scale(box_xywh: np.ndarray, input_size: tuple[int, int] = (256, 192),
                        padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(..., 4) boxes x, y, w, h -> center (..., 2) and scale (..., 2) in units of 200 px, aspect-fixed and padded."""
    box = np.asarray(box_xywh, dtype=np.float32)
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    aspect = input_size[1] / input_size[0]
    center = np.stack((x + w * 0.5, y + h * 0.5), axis=-1).astype(np.float32)
    w_fix = np.where(w > aspect * h, w, h * aspect)
    h_fix = np.where(w > aspect * h, w / aspect, h)
    scale = (np.stack((w_fix, h_fix), axis=-1) / PIXEL_STD * padding).astype(np.float32)
    return center, scale


def affine_matrix(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int] = (256, 192),
                  inverse: bool = False) -> np.ndarray:
    """2x3 affine from image to crop pixels (or back): x' = k (x - cx) + W/2, y' = k (y - cy) + H/2, k = W/(200 s_x).

    This is the closed form of the official three-point ``get_affine_transform`` with rotation 0.
    """
    h, w = input_size
    k = w / (float(scale[0]) * PIXEL_STD)
    cx, cy = float(center[0]), float(center[1])
    if inverse:
        return np.array([[1 / k, 0, cx - w / 2 / k], [0, 1 / k, cy - h / 2 / k]], dtype=np.float64)
    return np.array([[k, 0, w / 2 - k * cx], [0, k, h / 2 - k * cy]], dtype=np.float64)


def crop(image_rgb: np.ndarray, center: np.ndarray, scale: np.ndarray,
         input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """Affine crop of an HxWx3 uint8 RGB image -> (H_in, W_in, 3) uint8, bilinear, constant-0 border."""
    m = affine_matrix(center, scale, input_size)
    return cv2.warpAffine(image_rgb, m, (input_size[1], input_size[0]), flags=cv2.INTER_LINEAR)


def normalize(crops_rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> float32 (N, 3, H, W), /255 then ImageNet mean/std."""
    # Channel-first first, then in-place arithmetic: ~6x faster than broadcasting over HWC, same float32 values
    # (the operations and their order are unchanged).
    x = np.ascontiguousarray(crops_rgb.transpose(0, 3, 1, 2), dtype=np.float32)
    x /= 255.0
    x -= MEAN_RGB.reshape(1, 3, 1, 1)
    x /= STD_RGB.reshape(1, 3, 1, 1)
    return x


def crop_and_normalize(image_rgb: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                       input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """All persons of one image -> model input float32 (N, 3, H, W)."""
    if len(centers) == 0:
        return np.zeros((0, 3, *input_size), dtype=np.float32)
    crops = np.stack([crop(image_rgb, c, s, input_size) for c, s in zip(centers, scales)])
    return normalize(crops)


def positive_boxes(box_xywh: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x, y, w, h -> bool (N,): finite and of positive width and height.

    Detections of zero or negative size are dropped (the official code drops ``area <= 0`` boxes): such a box has no
    crop (its scale is 0 or negative, and ``affine_matrix`` would divide by zero or mirror the image).
    """
    b = np.asarray(box_xywh, dtype=np.float64).reshape(-1, 4)
    return np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)


def sanitize_gt_box(box_xywh: np.ndarray | list[float], width: int, height: int) -> np.ndarray | None:
    """Official GT-box clean-up (COCO ``_load_coco_keypoint_annotation_kernal``): clip to the image, None if empty.

    Like the official code it keeps a box of zero width but positive height (or the reverse: the aspect fix gives
    it a crop); unlike it, a box empty in both directions is None too, as no crop can be made of it.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if not all(np.isfinite((x, y, w, h))):
        return None
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1 or (x2 == x1 and y2 == y1):
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)
