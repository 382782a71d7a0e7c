"""ONNX Runtime backend: a gtpt-deploy ``.onnx`` file, configured from its own metadata. No torch import.

Execution providers: ``cpu`` everywhere; ``cuda`` and ``tensorrt`` with the ``onnxruntime-gpu`` package. That
package lists the GPU providers even where they cannot run and then silently falls back to the CPU, so the providers
the session *actually* uses are checked after creating it and a fallback is refused, not hidden.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, GtptError, MissingDependencyError
from ..metadata import ModelMeta
from ..threads import ort_allows_spinning
from .base import Runner, parse_device

log = logging.getLogger(__name__)

# provider name -> ONNX Runtime providers in priority order (the first one is the one that must really be used)
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        # a base dependency (the [gpu] extra would add onnxruntime-gpu, which clashes with it: _gpu_install_hint)
        raise MissingDependencyError("onnxruntime", None, "Running ONNX models") from None
    return onnxruntime


def _gpu_install_hint() -> str:
    """How to get the GPU providers; names the clash when the CPU and GPU packages are both installed."""
    from importlib import metadata

    def installed(dist: str) -> bool:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            return False
        return True

    fix = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
    if installed("onnxruntime") and installed("onnxruntime-gpu"):
        return (f"onnxruntime and onnxruntime-gpu are both installed and share the import name, so the CPU one may "
                f"win: {fix} (or use --provider cpu)")
    return f"install the GPU package without the CPU one: {fix} (README: ONNX Runtime on GPU), or use --provider cpu"


def resolve_provider(provider: str | None, device: str = "cpu") -> tuple[str, int]:
    """(provider name, GPU index) from the user's ``provider`` and ``device`` (``cuda:N`` picks the GPU).

    No provider: ``cpu`` on a CPU device, ``cuda`` on a CUDA device. GtptError for an unknown name or the CPU
    provider on a CUDA device.
    """
    kind, index = parse_device(device)
    name = provider or ("cpu" if kind == "cpu" else "cuda")
    if name not in PROVIDERS:
        raise GtptError(f"ONNX Runtime providers are {', '.join(PROVIDERS)}, got '{name}'")
    if name == "cpu" and kind == "cuda":
        raise GtptError(f"device '{device}' needs a GPU provider for ONNX artifacts; pass --provider cuda or tensorrt")
    return name, index or 0


def make_session(model: str | Path | bytes, provider: str = "cpu", device_id: int = 0,
                 threads: int | None = None, name: str | None = None, spinning: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with ``provider`` (cpu / cuda / tensorrt), refusing silent CPU fallbacks.

    ``model``: an ONNX file or serialized ONNX bytes (``name`` labels it in messages). ``spinning``: whether idle
    intra-op threads may spin-wait (``session.intra_op.allow_spinning``); None follows the process's idle-thread
    policy (:func:`~gtpt_deploy.threads.ort_allows_spinning`, passive unless ``OMP_WAIT_POLICY=ACTIVE``).

    Raises:
        GtptError: unknown provider, provider not installed, or provider installed but not usable here.
        ArtifactError: the file is missing or is not a loadable ONNX model.
    """
    ort = import_onnxruntime()
    if provider not in PROVIDERS:
        raise GtptError(f"ONNX Runtime providers are {', '.join(PROVIDERS)}, got '{provider}'")
    wanted = PROVIDERS[provider]
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise GtptError(f"provider '{provider}' needs ONNX Runtime's {wanted[0]}, but this onnxruntime "
                        f"{ort.__version__} only has {', '.join(available)}; {_gpu_install_hint()}")
    in_memory = isinstance(model, (bytes, bytearray))
    label = name or ("in-memory ONNX model" if in_memory else str(model))
    if not in_memory:
        path = Path(model)
        if not path.is_file():
            raise ArtifactError(f"ONNX model {path} does not exist; pass the path of an exported .onnx file")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # keep ORT's own warnings (e.g. unused initializers) out of the CLI output
    if threads:
        opts.intra_op_num_threads = int(threads)
    # Spinning idle threads win a little on an idle machine and lose ~2x on shared cores (benchmarks/README.md).
    allow = ort_allows_spinning() if spinning is None else spinning
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow else "0")
    providers: list[Any] = [(p, {"device_id": device_id}) if p != "CPUExecutionProvider" else p for p in wanted]
    try:
        session = ort.InferenceSession(bytes(model) if in_memory else str(model), sess_options=opts,
                                       providers=providers)
    except Exception as e:  # onnxruntime raises its own (non-exported) exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{label} is not a loadable ONNX model ({first}); re-export it") from None
    used = session.get_providers()
    if not used or used[0] != wanted[0]:
        raise GtptError(f"provider '{provider}' requested but ONNX Runtime fell back to {', '.join(used)} for "
                        f"{Path(label).name} ({wanted[0]} is installed but could not start: no GPU, or "
                        f"CUDA/cuDNN/TensorRT libraries missing); fix the GPU setup or use --provider cpu")
    log.debug("%s: ONNX Runtime providers %s", label, used)
    return session


class OrtRunner(Runner):
    """ONNX Runtime inference of an exported GTPT model (static or dynamic batch, as the file says).

    Args:
        model: ``.onnx`` written by ``export_onnx`` (its ``gtpt.*`` metadata configures the runner), or the same
            model in memory (``onnx.ModelProto`` or serialized bytes).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (the GPU for a GPU provider).
        provider: ``cpu``, ``cuda`` or ``tensorrt`` (ONNX Runtime execution providers); default from ``device``.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        spinning: let idle intra-op threads spin (None: the process's policy, see ``gtpt_deploy.threads``).
    """

    backend = "onnxruntime"

    def __init__(self, model: str | Path | bytes | Any, device: str = "cpu", provider: str | None = None,
                 threads: int | None = None, spinning: bool | None = None) -> None:
        in_memory = not isinstance(model, (str, Path))
        super().__init__("in-memory ONNX model" if in_memory else str(model))
        self.provider, self.device_id = resolve_provider(provider, device)
        self.device = device
        self.threads = threads
        self.spinning = spinning
        self._model = (model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()) \
            if in_memory else Path(model)
        self._session: Any = None

    @classmethod
    def peek_meta(cls, source: str) -> ModelMeta:
        """The file's ``gtpt.*`` metadata (ArtifactError for a file that is no ONNX model)."""
        from ..metadata import read_onnx_meta

        try:
            return read_onnx_meta(source)
        except GtptError:
            raise
        except Exception as e:  # protobuf's DecodeError and friends: not a model file
            raise ArtifactError(f"{source} is not a loadable ONNX model ({type(e).__name__}); re-export it") from None

    def _activate(self) -> tuple[ModelMeta, int | None]:
        session = make_session(self._model, self.provider, self.device_id, self.threads, name=self.source,
                               spinning=self.spinning)
        props = session.get_modelmeta().custom_metadata_map
        meta = ModelMeta.from_props(props, source=self.source)
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ArtifactError(f"{self.source}: expected one NCHW input, got "
                                f"{[(i.name, i.shape) for i in inputs]}; is this a GTPT pose model?")
        shape = inputs[0].shape
        if list(shape[2:]) != list(meta.input_size):
            raise ArtifactError(f"{self.source}: input is {shape} but the metadata says {tuple(meta.input_size)}; "
                                f"re-export the model")
        static_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        names = [o.name for o in session.get_outputs()]
        if len(names) < 2:
            raise ArtifactError(f"{self.source}: expected outputs simcc_x and simcc_y, got {names}")
        self._outputs = ["simcc_x", "simcc_y"] if {"simcc_x", "simcc_y"} <= set(names) else names[:2]
        self._input = inputs[0].name
        self._session = session
        return meta, static_batch

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            x, y = self._session.run(self._outputs, {self._input: batch})
        except Exception as e:  # onnxruntime's Fail / RuntimeException are not importable types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"{self.source}: ONNX Runtime failed on a batch of shape {batch.shape} ({first}); "
                                f"the graph does not accept this batch (a batch-size constant baked in at export?) "
                                f"- re-export it, or use its static batch") from e
        return x, y

    def _deactivate(self) -> None:
        self._session = None

    @property
    def providers(self) -> list[str]:
        """Execution providers the active session really uses, in priority order."""
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def description(self) -> str:
        return f"onnxruntime [{self.providers[0]}]" if self._session is not None else self.backend
