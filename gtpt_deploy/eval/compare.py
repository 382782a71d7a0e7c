"""Agreement between two runners on identical crops: numeric (logits) and task-level (argmax bins, pixels).

No torch import; inputs are the arrays the predictor produces for the same boxes in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
