"""GTPT models: the variant registry (pure data, :mod:`.variants`), ``create_model`` and checkpoint I/O (torch).

Importing this package imports no torch: ``VARIANTS``, ``GTPTConfig`` and ``get_config`` come from the torch-free
registry, so metadata and ``gtpt-deploy models`` work on a runtime-only install. The torch names below are loaded on
first use, through the gate in :mod:`._torch` (MissingDependencyError naming the ``[export]`` extra).
"""

from __future__ import annotations

import importlib
from typing import Any

from .variants import VARIANTS, GTPTConfig, get_config

# torch-bound public name -> module that defines it
_TORCH_API = {
    "GTPT": ".gtpt",
    "create_model": ".factory",
    "save_checkpoint": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "detect_variant": ".checkpoint",
}

__all__ = ["GTPTConfig", "VARIANTS", "get_config", *_TORCH_API]


def __getattr__(name: str) -> Any:
    if name in _TORCH_API:
        return getattr(importlib.import_module(_TORCH_API[name], __name__), name)
    raise AttributeError(f"module 'gtpt_deploy.models' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
