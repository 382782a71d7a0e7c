"""TensorRT engines: ``build_engine`` (ONNX -> strongly typed plan + JSON sidecar) and ``build_from_checkpoint``.

Imports ``tensorrt`` only inside the build, through ``gtpt_deploy/tensorrt/api.py``.
"""

from .build import BuildError, build_engine
from .chain import build_from_checkpoint
from .report import EngineProfile, EngineResult

__all__ = ["BuildError", "EngineProfile", "EngineResult", "build_engine", "build_from_checkpoint"]
