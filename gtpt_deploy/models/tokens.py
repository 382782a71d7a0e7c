"""Which tokens a PyTorch GTPT keeps at each pruning stage (the torch side of validate's pruning-aware parity).

Every pruning step of :mod:`.gtpt` goes through ``topk_indices``; while :func:`record_kept_tokens` runs, that name is
wrapped so each call's indices are recorded, in call (= stage) order, the same order as the TopK nodes of the
exported graph.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from . import gtpt


@contextlib.contextmanager
def _recording() -> Iterator[list[torch.Tensor]]:
    calls: list[torch.Tensor] = []
    original = gtpt.topk_indices

    def recorded(score: torch.Tensor, k: int) -> torch.Tensor:
        idx = original(score, k)
        calls.append(idx.detach())
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
        with _recording() as calls:
            model(torch.from_numpy(np.ascontiguousarray(crops[s:s + batch], np.float32)))
        if not per_stage:
            per_stage = [[] for _ in calls]
        for store, idx in zip(per_stage, calls):
            store.append(idx.cpu().numpy().astype(np.int64))
    return [np.concatenate(parts) for parts in per_stage]
