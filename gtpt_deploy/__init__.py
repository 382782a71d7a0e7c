"""gtpt-deploy: GTPT pose transformers from a PyTorch checkpoint to ONNX / TensorRT, with COCO AP validation.

The public API is loaded lazily so that ``import gtpt_deploy`` imports neither torch nor any optional backend:
a runtime-only install (no ``[export]`` extra, so no torch) can use ``predict``, the runners, ``evaluate`` and
``validate`` on ONNX / engine artifacts.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "create_model": ".models",
    "save_checkpoint": ".models",
    "VARIANTS": ".models.variants",
    "GTPTConfig": ".models.variants",
    "GtptError": ".errors",
    "export_onnx": ".export",
    "convert_fp16": ".export.fp16",
    "calibrate_int8": ".calib",
    "build_engine": ".engines",            # TensorRT (the engines stage)
    "create_runner": ".runners",
    "bench": ".eval.bench",
    "bench_pipeline": ".eval.pipeline_bench",
    "RunnerSpec": ".runtime.options",      # typed options of bench_pipeline / run_inputs (the CLI builds the same)
    "BoxSpec": ".runtime.options",
    "predict": ".runtime.predict",
    "Pose": ".runtime.predict",
    "ImagePrediction": ".runtime.predict",
    "evaluate": ".eval.metrics",
    "validate": ".eval.validate",
    "EngineResult": ".engines",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'gtpt_deploy' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
