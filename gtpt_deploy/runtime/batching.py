"""Static-batch padding: the one place where rows are cut into model calls and a short last call is filled up.

A static-batch artifact (exported ``_b4``, an engine without a profile) accepts exactly B rows per call; everything
that feeds such a model (the predictor, calibration readers, evaluation sets) pads through :func:`pad_batch` and
cuts through :func:`batched_calls`, so padding rows never reach results. No torch import.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

InferFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def pad_batch(rows: np.ndarray, size: int, fill: np.ndarray | None = None) -> np.ndarray:
    """``rows`` (n, ...) with n <= ``size`` -> (size, ...) float32, the first n rows unchanged.

    Args:
        rows: float32 (n, C, H, W) crops.
        size: the static batch B.
        fill: rows to append, taken cyclically from its first row (e.g. the whole crop set, where zero rows would
            change calibration ranges); None appends zero rows (inference: their outputs are dropped).
    """
    n = len(rows)
    if n > size:
        raise ValueError(f"pad_batch: expected at most {size} rows, got {n}")
    if n == size:
        return rows
    extra = np.zeros((size - n, *rows.shape[1:]), np.float32) if fill is None \
        else np.resize(np.asarray(fill, np.float32), (size - n, *rows.shape[1:]))
    return np.concatenate((rows, extra))


def batched_calls(rows: np.ndarray, size: int, static: bool) -> Iterator[tuple[np.ndarray, int]]:
    """Cut float32 (N, ...) ``rows`` into calls of ``size`` rows -> (rows of the call, how many are real).

    ``static``: zero-pad the short last call to ``size`` rows (a static-batch model accepts nothing else); a dynamic
    model gets the short call as it is.
    """
    for start in range(0, len(rows), size):
        piece = rows[start:start + size]
        yield (pad_batch(piece, size) if static else piece), len(piece)


def infer_batched(infer: InferFn, rows: np.ndarray, size: int, static: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``infer`` over ``rows`` in calls of ``size`` -> (x (N, K, Wx), y (N, K, Wy), padded rows added).

    The outputs of padding rows are dropped: each row is computed independently of its batch neighbours by every
    backend we ship, so the padding changes speed, never results.
    """
    xs, ys, padded = [], [], 0
    for piece, m in batched_calls(rows, size, static):
        x, y = infer(np.ascontiguousarray(piece, np.float32))
        xs.append(x[:m])
        ys.append(y[:m])
        padded += len(piece) - m
    return np.concatenate(xs), np.concatenate(ys), padded
