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
from .base import Runner

log = logging.getLogger(__name__)

# device name -> provider list in priority order (the first one is the one that must really be used)
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "gpu", "Running ONNX models") from None
    return onnxruntime


def make_session(path: str | Path, device: str = "cpu", threads: int | None = None,
                 spinning: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``device`` (cpu / cuda / tensorrt), refusing silent CPU fallbacks.

    ``spinning``: whether idle intra-op threads may spin-wait (``session.intra_op.allow_spinning``); None follows
    the process's idle-thread policy (:func:`~gtpt_deploy.threads.ort_allows_spinning`, passive by default).

    Raises:
        GtptError: unknown device, provider not installed, or provider installed but not usable here.
        ArtifactError: the file is missing or is not a loadable ONNX model.
    """
    ort = import_onnxruntime()
    if device not in PROVIDERS:
        raise GtptError(f"ONNX Runtime devices are {', '.join(PROVIDERS)}, got '{device}'")
    wanted = PROVIDERS[device]
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise GtptError(f"device '{device}' needs ONNX Runtime's {wanted[0]}, but this onnxruntime "
                        f"{ort.__version__} only has {', '.join(available)}; install onnxruntime-gpu in an "
                        f"environment without the CPU onnxruntime (pip install 'gtpt-deploy[gpu]') or use --device cpu")
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX model {path} does not exist; pass the path of an exported .onnx file")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # keep ORT's own warnings (e.g. unused initializers) out of the CLI output
    if threads:
        opts.intra_op_num_threads = int(threads)
    # Spinning idle threads win a little on an idle machine and lose ~2x on shared cores (benchmarks/README.md).
    allow = ort_allows_spinning() if spinning is None else spinning
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow else "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=list(wanted))
    except Exception as e:  # onnxruntime raises its own (non-exported) exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{path} is not a loadable ONNX model ({first}); re-export it") from None
    used = session.get_providers()
    if not used or used[0] != wanted[0]:
        raise GtptError(f"device '{device}' requested but ONNX Runtime fell back to {', '.join(used)} for {path.name} "
                        f"({wanted[0]} is installed but could not start: no GPU, or CUDA/cuDNN/TensorRT libraries "
                        f"missing); fix the GPU setup or use --device cpu")
    log.debug("%s: ONNX Runtime providers %s", path.name, used)
    return session


class OrtRunner(Runner):
    """ONNX Runtime inference of an exported GTPT model (static or dynamic batch, as the file says).

    Args:
        path: ``.onnx`` written by ``export_onnx`` (its ``gtpt.*`` metadata configures the runner).
        device: ``cpu``, ``cuda`` or ``tensorrt`` (ONNX Runtime execution providers).
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        spinning: let idle intra-op threads spin (None: the process's policy, see ``gtpt_deploy.threads``).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 spinning: bool | None = None) -> None:
        super().__init__(str(path))
        if device not in PROVIDERS:
            raise GtptError(f"ONNX Runtime devices are {', '.join(PROVIDERS)}, got '{device}'")
        self.device = device
        self.threads = threads
        self.spinning = spinning
        self._session: Any = None

    def _activate(self) -> tuple[ModelMeta, int | None]:
        session = make_session(self.source, self.device, self.threads, self.spinning)
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
