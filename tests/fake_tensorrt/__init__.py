"""Fake TensorRT (10.x and 11.x API flavours) and fake CUDA memory for CPU tests; see ``impl.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLAVOURS = ("v10", "v11")


def install(monkeypatch: Any, flavour: str, devices: list[tuple[str, tuple[int, int]]] | None = None,
            reset: bool = True) -> Any:
    """Make ``import tensorrt`` give the ``flavour`` fake and fill the device-memory seam with fake CUDA memory.

    ``reset``: start a fresh fake CUDA (``devices``, default one "Fake L4" of compute capability 8.9). Switching
    flavour inside a test (version mismatch) keeps the files on disk but imports the other ``tensorrt``.
    """
    from gtpt_deploy.tensorrt import cuda_mem

    from . import impl

    if reset:
        impl.reset_state(devices)
    monkeypatch.syspath_prepend(str(HERE / flavour))
    sys.modules.pop("tensorrt", None)
    monkeypatch.setattr(cuda_mem, "memory_factory", impl.FakeDeviceMemory)
    import tensorrt

    assert Path(tensorrt.__file__).parent.parent.name == flavour, "fake tensorrt not first on sys.path"
    return tensorrt
