"""Runners: one contract (:class:`Runner`) for every backend; :func:`create_runner` picks it from the artifact.

Only this package knows which backends exist; nothing outside it branches on the backend.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ArtifactError
from .base import Runner, RunnerInputError, RunnerStateError

__all__ = ["Runner", "RunnerInputError", "RunnerStateError", "create_runner", "BACKENDS", "NAMED_BACKENDS",
           "backends_for"]

# file suffix -> (module, class). Modules are imported only when their artifact is opened (torch, tensorrt).
BACKENDS = {
    ".pth": (".torch", "TorchRunner"),
    ".pt": (".torch", "TorchRunner"),
    ".onnx": (".ort", "OrtRunner"),
    ".engine": (".trt", "TrtRunner"),
    ".plan": (".trt", "TrtRunner"),
}

# backend name -> (module, class, suffixes it opens). The default for a suffix is BACKENDS; a named backend is an
# alternative way to run the same file (torch.compile of a checkpoint), chosen with create_runner(backend=...).
NAMED_BACKENDS = {
    "torch": (".torch", "TorchRunner", (".pth", ".pt")),
    "torch.compile": (".torch", "CompiledTorchRunner", (".pth", ".pt")),
    "onnxruntime": (".ort", "OrtRunner", (".onnx",)),
    "tensorrt": (".trt", "TrtRunner", (".engine", ".plan")),
}


def backends_for(path: str | Path) -> list[str]:
    """Names of the backends that can run ``path`` (by its suffix), the default one first."""
    suffix = Path(path).suffix.lower()
    names = [n for n, (_, _, suffixes) in NAMED_BACKENDS.items() if suffix in suffixes]
    default = BACKENDS.get(suffix, (None, None))[1]
    return sorted(names, key=lambda n: NAMED_BACKENDS[n][1] != default)


def create_runner(path: str | Path, device: str = "cpu", backend: str | None = None, **options: object) -> Runner:
    """The runner for an artifact, chosen by its suffix; use it as a context manager.

    ``.pth``/``.pt`` -> PyTorch (variant detected from the weights), ``.onnx`` -> ONNX Runtime (configured from the
    file's metadata), ``.engine``/``.plan`` -> TensorRT (a later release). ``device``: ``cpu``, ``cuda``, or for
    ONNX also ``tensorrt`` (the ONNX Runtime execution provider). ``backend``: another backend for the same file
    (``backends_for(path)``, e.g. ``"torch.compile"`` for a checkpoint); None = the suffix's default. Extra
    ``options`` go to the backend (``threads``; ``spinning`` for ONNX Runtime).

    Example::

        with create_runner("export/gtpt_t_coco_b1.onnx") as runner:
            simcc_x, simcc_y = runner.infer(crops)   # float32 (B,3,256,192) -> (B,K,384), (B,K,512)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(f"cannot tell the backend of {path.name}: expected one of "
                            f"{', '.join(BACKENDS)}, got '{suffix or 'no suffix'}'")
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist; pass a .pth checkpoint, an .onnx or an .engine file")
    module_name, cls_name = BACKENDS[suffix]
    if backend is not None:
        if backend not in backends_for(path):
            raise ArtifactError(f"backend '{backend}' cannot run {path.name}; for '{suffix}' files use one of "
                                f"{', '.join(backends_for(path))}")
        module_name, cls_name, _ = NAMED_BACKENDS[backend]
    cls = getattr(importlib.import_module(module_name, __name__), cls_name)
    return cls(path, device=device, **options)
