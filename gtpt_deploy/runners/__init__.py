"""Runners: one contract (:class:`Runner`) for every backend; :func:`create_runner` picks it from the artifact.

Only this package knows which backends exist; nothing outside it branches on the backend.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ArtifactError
from .base import Runner, RunnerInputError, RunnerStateError

__all__ = ["Runner", "RunnerInputError", "RunnerStateError", "create_runner", "BACKENDS"]

# file suffix -> (module, class). Modules are imported only when their artifact is opened (torch, tensorrt).
BACKENDS = {
    ".pth": (".torch", "TorchRunner"),
    ".pt": (".torch", "TorchRunner"),
    ".onnx": (".ort", "OrtRunner"),
    ".engine": (".trt", "TrtRunner"),
    ".plan": (".trt", "TrtRunner"),
}


def create_runner(path: str | Path, device: str = "cpu", **options: object) -> Runner:
    """The runner for an artifact, chosen by its suffix; use it as a context manager.

    ``.pth``/``.pt`` -> PyTorch (variant detected from the weights), ``.onnx`` -> ONNX Runtime (configured from the
    file's metadata), ``.engine``/``.plan`` -> TensorRT (a later release). ``device``: ``cpu``, ``cuda``, or for
    ONNX also ``tensorrt`` (the ONNX Runtime execution provider). Extra ``options`` go to the backend
    (``threads`` for ONNX Runtime).

    Example::

        with create_runner("export/gtpt_t_coco_b1.onnx") as runner:
            simcc_x, simcc_y = runner.infer(crops)   # float32 (B,3,256,192) -> (B,K,384), (B,K,512)
    """
    if str(path).startswith("triton://"):  # a served model, not a file (Path() would fold the '//')
        from .triton import TritonRunner

        return TritonRunner(str(path), device=device, **options)  # type: ignore[arg-type]
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(f"cannot tell the backend of {path.name}: expected one of "
                            f"{', '.join(BACKENDS)}, got '{suffix or 'no suffix'}'")
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist; pass a .pth checkpoint, an .onnx or an .engine file")
    module_name, cls_name = BACKENDS[suffix]
    cls = getattr(importlib.import_module(module_name, __name__), cls_name)
    return cls(path, device=device, **options)
