"""SimCC decoding with the official flip test, in numpy (no torch), shared by every backend and the evaluator.

Official GTPT protocol (spec §5 steps 8-10, ``validate_sa_simdr`` with FLIP_TEST and SHIFT_HEATMAP):

1. the model also runs on the horizontally flipped crop; its x logits are reversed along the bins, left/right
   joints are swapped (y logits: swap only), and the x logits are shifted one bin toward lower indices;
2. the two logit sets are averaged (on **logits**, before the softmax), then softmaxed over the bins;
3. coordinates are the argmax bins divided by the split ratio (no sub-bin refinement), the confidence is the
   **minimum** of the two maximum probabilities;
4. crop coordinates go back to the image with the inverse of the crop affine.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from ..errors import ArtifactError
from .transforms import affine_matrix

SPLIT_RATIO = 2.0


def _check_logits(simcc_x: np.ndarray, simcc_y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(simcc_x)
    y = np.asarray(simcc_y)
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
        raise ArtifactError(
            f"{what}: expected SimCC logits x (N, K, Wx) and y (N, K, Wy) with the same N and K, "
            f"got {x.shape} and {y.shape}; check that the model outputs are (simcc_x, simcc_y) in that order")
    return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)


def flip_back(simcc_x: np.ndarray, simcc_y: np.ndarray, flip_index: np.ndarray,
              shift: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Map the logits of a horizontally flipped crop back to the original orientation.

    Args:
        simcc_x: float32 (N, K, Wx) x logits of the flipped input.
        simcc_y: float32 (N, K, Wy) y logits of the flipped input.
        flip_index: int (K,) permutation swapping every left/right pair (``DatasetInfo.flip_index()``).
        shift: apply the official SHIFT_HEATMAP one-bin shift of x toward lower indices (last bin kept).

    Returns:
        (x, y): float32 (N, K, Wx) and (N, K, Wy), new arrays.
    """
    x, y = _check_logits(simcc_x, simcc_y, "flip_back")
    perm = np.asarray(flip_index, dtype=np.int64)
    if perm.shape != (x.shape[1],):
        raise ArtifactError(f"flip_back: expected a flip index of {x.shape[1]} entries (one per keypoint), "
                            f"got shape {perm.shape}; use the DatasetInfo of the model's keypoint layout")
    # Swapping pairs "sequentially" as the official loop does equals one gather, since each index is in one pair.
    fx = x[:, perm, ::-1].copy()
    fy = y[:, perm, :].copy()
    if shift:
        fx[..., :-1] = fx[..., 1:]
    return fx, fy


def _softmax(logits: np.ndarray) -> np.ndarray:
    """float32 softmax over the last axis (max-subtracted, as torch does)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decode(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SPLIT_RATIO,
           flipped: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SimCC logits -> keypoints in crop pixels and their confidence.

    Args:
        simcc_x: float32 (N, K, Wx) x logits (Wx = input width * split_ratio).
        simcc_y: float32 (N, K, Wy) y logits.
        split_ratio: bins per pixel (2.0 for GTPT).
        flipped: optional already flipped-back logits ``flip_back(...)`` of the flipped crop, same shapes;
            averaged with the plain logits **before** the softmax (official flip test).

    Returns:
        coords: float32 (N, K, 2) (x, y) in crop pixels (argmax bin / split_ratio).
        conf: float32 (N, K) min(max prob x, max prob y).
    """
    x, y = _check_logits(simcc_x, simcc_y, "decode")
    if flipped is not None:
        fx, fy = _check_logits(flipped[0], flipped[1], "decode (flipped)")
        if fx.shape != x.shape or fy.shape != y.shape:
            raise ArtifactError(f"decode: expected flipped logits of shapes {x.shape} and {y.shape}, got "
                                f"{fx.shape} and {fy.shape}; pass the same model's outputs on the flipped batch")
        x = (x + fx) / np.float32(2.0)
        y = (y + fy) / np.float32(2.0)
    prob_x = _softmax(x)
    prob_y = _softmax(y)
    # argmax on the probabilities (not the logits) as the official code: identical except on rounding ties.
    ix = prob_x.argmax(axis=-1)
    iy = prob_y.argmax(axis=-1)
    max_x = np.take_along_axis(prob_x, ix[..., None], axis=-1)[..., 0]
    max_y = np.take_along_axis(prob_y, iy[..., None], axis=-1)[..., 0]
    coords = np.stack((ix, iy), axis=-1).astype(np.float32) / np.float32(split_ratio)
    conf = np.minimum(max_x, max_y).astype(np.float32)
    return coords, conf


def to_image(coords: np.ndarray, centers: np.ndarray, scales: np.ndarray,
             input_size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """Crop pixels -> image pixels with the inverse crop affine (official ``transform_preds``).

    Args:
        coords: (N, K, 2) (x, y) in crop pixels.
        centers: (N, 2) box centers in image pixels.
        scales: (N, 2) box scales in units of 200 px.
        input_size: model input (H, W).

    Returns:
        float32 (N, K, 2) (x, y) in image pixels.
    """
    c = np.asarray(coords, dtype=np.float64)
    centers = np.asarray(centers)
    scales = np.asarray(scales)
    if c.ndim != 3 or c.shape[-1] != 2 or centers.shape != (c.shape[0], 2) or scales.shape != (c.shape[0], 2):
        raise ArtifactError(f"to_image: expected coords (N, K, 2), centers (N, 2), scales (N, 2), got {c.shape}, "
                            f"{centers.shape}, {scales.shape}; pass one center/scale per decoded instance")
    out = np.empty_like(c)
    for n in range(c.shape[0]):
        m = affine_matrix(centers[n], scales[n], input_size, inverse=True)  # (2, 3)
        out[n] = c[n] @ m[:, :2].T + m[:, 2]
    return out.astype(np.float32)


@overload
def decode_to_image(simcc_x: np.ndarray, simcc_y: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                    flip_index: np.ndarray | None = ..., flipped_input: tuple[np.ndarray, np.ndarray] | None = ...,
                    split_ratio: float = ..., input_size: tuple[int, int] = ...,
                    with_bins: Literal[False] = ...) -> np.ndarray: ...


@overload
def decode_to_image(simcc_x: np.ndarray, simcc_y: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                    flip_index: np.ndarray | None = ..., flipped_input: tuple[np.ndarray, np.ndarray] | None = ...,
                    split_ratio: float = ..., input_size: tuple[int, int] = ...,
                    with_bins: Literal[True] = ...) -> tuple[np.ndarray, np.ndarray]: ...


def decode_to_image(simcc_x: np.ndarray, simcc_y: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                    flip_index: np.ndarray | None = None,
                    flipped_input: tuple[np.ndarray, np.ndarray] | None = None,
                    split_ratio: float = SPLIT_RATIO, input_size: tuple[int, int] = (256, 192),
                    with_bins: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The whole official post-processing: raw logits (and those of the flipped crop) -> (N, K, 3) x, y, conf.

    Args:
        simcc_x, simcc_y: float32 (N, K, Wx), (N, K, Wy) logits of the crops.
        centers, scales: (N, 2) each, the crops' boxes (``transforms.box_to_center_scale``).
        flip_index: (K,) left/right permutation; required with ``flipped_input``.
        flipped_input: raw logits of the horizontally flipped crops (not yet flipped back), or None (no flip test).
        with_bins: also return the argmax bins int32 (N, K, 2) (x, y) in the crop, which runners are compared on.

    Returns:
        float32 (N, K, 3): x, y in image pixels and the confidence; with ``with_bins`` (keypoints, bins).
    """
    flipped = None
    if flipped_input is not None:
        if flip_index is None:
            raise ArtifactError("decode_to_image: expected a flip_index with flipped_input, got None; "
                                "pass DatasetInfo.flip_index() of the model's keypoint layout")
        flipped = flip_back(flipped_input[0], flipped_input[1], flip_index)
    coords, conf = decode(simcc_x, simcc_y, split_ratio, flipped)
    xy = to_image(coords, centers, scales, input_size)
    keypoints = np.concatenate((xy, conf[..., None]), axis=-1)
    if not with_bins:
        return keypoints
    return keypoints, np.rint(coords * split_ratio).astype(np.int32)
