"""Which tokens a PyTorch GTPT keeps at each pruning stage (the torch side of validate's pruning-aware parity and
of export's tie-aware parity).

Every pruning step of :mod:`.gtpt` goes through ``topk_indices``; while :func:`recording_topk` is active, that name is
wrapped so each call's scores and indices are recorded, in call (= stage) order, the same order as the TopK nodes of
the exported graph.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch

from . import gtpt


@contextlib.contextmanager
def recording_topk() -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """While active, every pruning step's ``(score (B,...,n) float32, indices (B,...,k) int64)`` is appended to the
    yielded list in call (= stage) order. Export's tie-aware parity needs the scores for the top-k boundary gap."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = gtpt.topk_indices

    def recorded(score: torch.Tensor, k: int) -> torch.Tensor:
        idx = original(score, k)
        calls.append((score.detach(), idx.detach()))
        return idx

    gtpt.topk_indices = recorded
    try:
        yield calls
    finally:
        gtpt.topk_indices = original


@torch.inference_mode()
def record_kept_tokens(model: torch.nn.Module, crops: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    """Run ``model`` on float32 (N, 3, H, W) crops -> one int64 array (N, ..., k) of kept token indices per stage."""
    per_stage: list[list[np.ndarray]] = []
    for s in range(0, len(crops), batch):
        with recording_topk() as calls:
            model(torch.from_numpy(np.ascontiguousarray(crops[s:s + batch], np.float32)))
        if not per_stage:
            per_stage = [[] for _ in calls]
        for store, (_, idx) in zip(per_stage, calls):
            store.append(idx.cpu().numpy().astype(np.int64))
    return [np.concatenate(parts) for parts in per_stage]
