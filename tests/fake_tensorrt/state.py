"""The fake CUDA world shared by every fake TensorRT flavour: devices, allocations, streams, counters the tests read."""

from __future__ import annotations

from collections import Counter
from typing import Any

#: fake CUDA world shared by every flavour: devices, allocations, streams; counters the tests read
STATE: dict[str, Any] = {}


def reset_state(devices: list[tuple[str, tuple[int, int]]] | None = None) -> None:
    """Fresh fake CUDA: ``devices`` is a list of (name, compute capability); default one "Fake L4" 8.9."""
    STATE.clear()
    STATE.update(devices=list(devices if devices is not None else [("Fake L4", (8, 9))]), current=0, memory={},
                 next_ptr=1 << 20, streams=set(), stats=Counter())


reset_state()
