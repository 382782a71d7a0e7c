"""TensorRT backend: the slot for ``.engine`` files. Engines are built and run in a later release.

This module must stay the only runner that imports ``tensorrt`` (inside functions, never at import time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError, GtptError
from ..metadata import ModelMeta
from .base import Runner


class TrtRunner(Runner):
    """Placeholder: refuses with a clear message instead of pretending to run an engine."""

    backend = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", threads: int | None = None) -> None:
        super().__init__(str(path))
        if not Path(path).is_file():
            raise ArtifactError(f"TensorRT engine {path} does not exist; pass the path of a .engine file")
        raise GtptError(f"cannot run {Path(path).name}: TensorRT engines come in a later release of gtpt-deploy; "
                        f"run the .onnx it was built from instead (ONNX Runtime, optionally --device tensorrt)")

    def _activate(self) -> tuple[ModelMeta, int | None]:  # pragma: no cover - unreachable until implemented
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError
