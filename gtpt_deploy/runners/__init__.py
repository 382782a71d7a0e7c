"""Runners: one contract (:class:`Runner`) for every backend; :func:`create_runner` picks it from the artifact.

Only this package knows which backends exist; nothing outside it branches on the backend. An artifact is a file
(chosen by suffix) or an in-memory model (an ``onnx.ModelProto`` / serialized ONNX bytes, or a ``torch.nn.Module``
with its :class:`~gtpt_deploy.metadata.ModelMeta`), so export, FP16 conversion and calibration check their results
through the same contract as ``run`` and ``validate``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..metadata import ModelMeta
from .base import Runner, RunnerInputError, RunnerStateError

__all__ = ["Runner", "RunnerInputError", "RunnerStateError", "create_runner", "artifact_meta", "BACKENDS",
           "NAMED_BACKENDS", "backends_for", "Artifact", "provider_for"]

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
    "openvino": (".openvino", "OpenVinoRunner", (".onnx",)),
    "tensorrt": (".trt", "TrtRunner", (".engine", ".plan")),
}


def backends_for(path: str | Path) -> list[str]:
    """Names of the backends that can run the file ``path`` (by its suffix), the default one first."""
    suffix = Path(path).suffix.lower()
    names = [n for n, (_, _, suffixes) in NAMED_BACKENDS.items() if suffix in suffixes]
    default = BACKENDS.get(suffix, (None, None))[1]
    return sorted(names, key=lambda n: NAMED_BACKENDS[n][1] != default)


#: what create_runner accepts: a path, an onnx.ModelProto, serialized ONNX bytes, or a torch.nn.Module
Artifact = Any


def _backend_of_file(path: Path) -> type[Runner]:
    """The default backend class of an artifact file (by suffix); ArtifactError for an unknown suffix, a folder or
    a missing file."""
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(f"cannot tell the backend of {path.name}: expected one of "
                            f"{', '.join(BACKENDS)}, got '{suffix or 'no suffix'}'")
    if path.is_dir():
        raise ArtifactError(f"artifact {path} is a directory; pass a .pth checkpoint, an .onnx or an .engine file")
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist; pass a .pth checkpoint, an .onnx or an .engine file")
    return _backend(*BACKENDS[suffix])


def artifact_meta(path: str | Path) -> ModelMeta | None:
    """An artifact file's metadata without running it (None where the backend cannot tell cheaply): check keypoint
    layouts and similar facts before inference starts. GtptError for a missing or unreadable file."""
    if str(path).startswith("triton://"):  # a served model: its metadata arrives when the runner activates
        return None
    return _backend_of_file(Path(path)).peek_meta(str(path))


def provider_for(artifact: Artifact, provider: str | None) -> str | None:
    """The ``--provider`` that ``artifact`` runs with when one option serves a mixed list (validate, bench): the
    provider for ONNX artifacts (files and in-memory models), None for the others (a ``.pth`` baseline or an engine
    beside ONNX candidates), which would refuse it."""
    if isinstance(artifact, (str, Path)):
        return provider if not str(artifact).startswith("triton://") and Path(artifact).suffix.lower() == ".onnx" \
            else None
    return provider if isinstance(artifact, (bytes, bytearray)) or type(artifact).__name__ == "ModelProto" else None


def _backend(module_name: str, cls_name: str) -> type[Runner]:
    return getattr(importlib.import_module(module_name, __name__), cls_name)


def create_runner(artifact: Artifact, device: str | None = None, *, provider: str | None = None,
                  threads: int | None = None, meta: ModelMeta | None = None, backend: str | None = None,
                  **options: Any) -> Runner:
    """The runner for an artifact; use it as a context manager.

    Args:
        artifact: ``.pth``/``.pt`` (PyTorch, variant detected from the weights), ``.onnx`` (ONNX Runtime, configured
            from the file's metadata), ``.engine``/``.plan`` (TensorRT); or in memory: an ``onnx.ModelProto`` or its
            serialized bytes (ONNX Runtime), a ``torch.nn.Module`` (PyTorch; ``meta`` describes it, default from
            the module's GTPT config); or ``triton://HOST:PORT/NAME``, a model served by Triton (runners/triton.py).
        device: where this artifact runs: ``cpu``, ``cuda`` or ``cuda:N`` (default ``cpu``; TensorRT: ``cuda``).
        provider: how ONNX artifacts run: ONNX Runtime's ``cpu``, ``cuda`` or ``tensorrt`` execution provider
            (default: ``cpu`` on a CPU device, ``cuda`` on a CUDA device; checked against the session's real
            providers), or OpenVINO on the CPU: ``openvino`` (bf16 where the CPU has it natively, else f32),
            ``openvino:f32`` or ``openvino:bf16`` (``[openvino]`` extra; runners/openvino.py).
        threads: CPU threads of the backend (None: its default).
        backend: another backend for the same file (``backends_for(path)``, e.g. ``"torch.compile"`` for a
            checkpoint); None: the suffix's default.
        options: further backend options: ``kept_tokens=True`` (every backend) makes :meth:`Runner.infer_kept`
            return the TopK indices too where the backend can expose them; ``spinning`` for ONNX Runtime.

    Example::

        with create_runner("export/gtpt_t_coco_b1.onnx") as runner:
            simcc_x, simcc_y = runner.infer(crops)   # float32 (B,3,256,192) -> (B,K,384), (B,K,512)
    """
    kwargs: dict[str, Any] = {"threads": threads, **options}
    if device is not None:
        kwargs["device"] = device
    if isinstance(artifact, (bytes, bytearray)) or type(artifact).__name__ == "ModelProto":
        return _backend(".ort", "OrtRunner")(artifact, provider=provider, **kwargs)
    if not isinstance(artifact, (str, Path)):
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and isinstance(artifact, torch.nn.Module):
            return _backend(".torch", "TorchRunner")(artifact, meta=meta, **kwargs)
        raise ArtifactError(f"expected an artifact path, an onnx.ModelProto, ONNX bytes or a torch.nn.Module, got "
                            f"{type(artifact).__name__}")
    if str(artifact).startswith("triton://"):  # a served model, not a file (Path() would fold the '//')
        return _backend(".triton", "TritonRunner")(str(artifact), **kwargs)
    path = Path(artifact)
    suffix = path.suffix.lower()
    cls = _backend_of_file(path)
    if backend is not None:
        if backend not in backends_for(path):
            raise ArtifactError(f"backend '{backend}' cannot run {path.name}; for '{suffix}' files use one of "
                                f"{', '.join(backends_for(path))}")
        cls = _backend(*NAMED_BACKENDS[backend][:2])
    if suffix == ".onnx" and provider is not None and provider.startswith("openvino"):
        if backend not in (None, "openvino"):
            raise ArtifactError(f"--provider {provider} runs {path.name} with OpenVINO, not with backend '{backend}'")
        cls = _backend(*NAMED_BACKENDS["openvino"][:2])
        kwargs["provider"] = provider
    elif suffix == ".onnx":
        kwargs["provider"] = provider
    elif provider is not None:
        raise ArtifactError(f"--provider {provider} applies to ONNX artifacts (ONNX Runtime), not to {path.name}; "
                            f"use --device for it")
    return cls(path, **kwargs)
