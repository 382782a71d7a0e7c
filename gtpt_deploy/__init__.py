"""gtpt-deploy: GTPT pose transformers from a PyTorch checkpoint to ONNX / TensorRT, with COCO AP validation.

The public API is loaded lazily so that ``import gtpt_deploy`` imports neither torch nor any optional backend:
an ONNX-Runtime-only install can use the runners, codec and evaluator.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "create_model": ".models",
    "save_checkpoint": ".models",
    "VARIANTS": ".models.gtpt",
    "GTPTConfig": ".models.gtpt",
    "GtptError": ".errors",
    "export_onnx": ".export",
    "create_runner": ".runners",
    "bench": ".eval.bench",
    "bench_pipeline": ".eval.pipeline_bench",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'gtpt_deploy' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
