"""Agreement between two runners on identical crops: numeric (logits, :func:`compare_runners`) and task-level
(argmax bins, pixels, :func:`compare_keypoints`).

The one comparison used by export's parity check, FP16 / INT8 checks and validate. No torch import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import GtptError


@dataclass(frozen=True)
class Agreement:
    """Task-level agreement of a candidate with a baseline over the same instances.

    Attributes:
        keypoints: number of (instance, keypoint) pairs compared.
        argmax_agreement: fraction whose SimCC argmax bins are identical in both x and y (1.0 = same decisions).
        mean_disp_px, max_disp_px: Euclidean keypoint displacement in image pixels (0.0 when nothing compared).
    """

    keypoints: int
    argmax_agreement: float
    mean_disp_px: float
    max_disp_px: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compare_keypoints(base_kpts: np.ndarray, base_bins: np.ndarray, cand_kpts: np.ndarray,
                      cand_bins: np.ndarray) -> Agreement:
    """Compare decoded poses of two runners.

    Args:
        base_kpts, cand_kpts: (N, K, 3) x, y in image pixels (+ confidence), instance order identical.
        base_bins, cand_bins: int (N, K, 2) argmax bins (x, y) in the crop.

    Returns:
        :class:`Agreement`.
    """
    bk, ck = np.asarray(base_kpts, np.float64), np.asarray(cand_kpts, np.float64)
    bb, cb = np.asarray(base_bins), np.asarray(cand_bins)
    if bk.shape != ck.shape or bb.shape != cb.shape or bk.shape[:2] != bb.shape[:2]:
        raise GtptError(f"compare: expected the same instances from both runners, got keypoints {bk.shape} vs "
                        f"{ck.shape} and bins {bb.shape} vs {cb.shape}; run both on the same boxes")
    n = int(np.prod(bk.shape[:2]))
    if n == 0:
        return Agreement(0, 1.0, 0.0, 0.0)
    same = (bb == cb).all(axis=-1)
    disp = np.linalg.norm(bk[..., :2] - ck[..., :2], axis=-1)
    return Agreement(n, float(same.mean()), float(disp.mean()), float(disp.max()))


def compare_logits(base: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """Numeric difference of raw logits of the same crops: ``{"max_abs": ..., "mean_abs": ...}``."""
    a, b = np.asarray(base, np.float64), np.asarray(cand, np.float64)
    if a.shape != b.shape:
        raise GtptError(f"compare: expected logits of the same shape, got {a.shape} and {b.shape}")
    d = np.abs(a - b)
    return {"max_abs": float(d.max()) if d.size else 0.0, "mean_abs": float(d.mean()) if d.size else 0.0}


@dataclass(frozen=True)
class LogitAgreement:
    """Numeric agreement of two runners on the same crops.

    Attributes:
        samples: crops compared; batch: crops per call.
        max_abs_diff, mean_abs_diff: over all logits of both outputs (simcc_x and simcc_y).
        argmax_agreement: fraction of (crop, keypoint, axis) whose SimCC argmax bin is the same (1.0 = same decisions).
    """

    samples: int
    batch: int
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def batches_of(crops: np.ndarray, batch: int) -> list[np.ndarray]:
    """Split (N, ...) into batches of exactly ``batch``, wrapping around to fill the last one (static batches)."""
    n = max(len(crops), batch)
    idx = np.arange(-(-n // batch) * batch) % len(crops)
    return [crops[idx[i:i + batch]] for i in range(0, len(idx), batch)]


def compare_runners(base: Any, cand: Any, crops: np.ndarray, batch: int | None = None) -> LogitAgreement:
    """Run two **active** runners on the same float32 (N, 3, H, W) crops and compare their logits.

    ``batch``: crops per call (default: the runners' static batch, else all crops at once). A static-batch
    runner gets exactly its batch (the last one filled by wrapping around).
    """
    statics = {s for s in (base.static_batch, cand.static_batch) if s is not None}
    if len(statics) > 1:
        raise GtptError(f"compare: the runners have different static batches {sorted(statics)}; compare artifacts "
                        f"exported with the same --batch")
    if not len(crops):
        raise GtptError("compare: expected at least one crop, got none")
    b = statics.pop() if statics else (batch or len(crops))
    total, agree, count, max_d, sum_d, n_logits = 0, 0, 0, 0.0, 0.0, 0
    for chunk in batches_of(np.ascontiguousarray(crops, dtype=np.float32), b):
        for r, c in zip(base.infer(chunk), cand.infer(chunk)):
            d = np.abs(r.astype(np.float64) - c)
            max_d = max(max_d, float(d.max()))
            sum_d += float(d.sum())
            n_logits += d.size
            agree += int((r.argmax(-1) == c.argmax(-1)).sum())
            total += r.shape[0] * r.shape[1]
        count += len(chunk)
    return LogitAgreement(count, b, max_d, sum_d / n_logits, agree / total)
