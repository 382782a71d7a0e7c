"""TensorRT engines: ``build_engine`` (ONNX -> strongly typed plan + JSON sidecar) and ``build_from_checkpoint``
(``export_chain``, the export -> FP16 / INT8 chain that ``export --precision`` and the demo also run, then the build).

Imports ``tensorrt`` only inside the build, through ``gtpt_deploy/tensorrt/api.py``.
"""

from .build import BuildError, build_engine
from .chain import CheckpointBuild, build_from_checkpoint, export_chain
from .report import EngineProfile, EngineResult

__all__ = ["BuildError", "CheckpointBuild", "EngineProfile", "EngineResult", "build_engine", "build_from_checkpoint",
           "export_chain"]
