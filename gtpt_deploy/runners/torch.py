"""PyTorch backend: a ``.pth`` checkpoint (any official format, variant detected) on CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GtptError
from ..metadata import ModelMeta
from ..threads import apply_thread_policy
from .base import Runner

DEVICES = ("cpu", "cuda")


class TorchRunner(Runner):
    """Eager PyTorch inference of the EMA branch; any batch size (dynamic).

    Args:
        checkpoint: a ``.pth`` file readable by ``gtpt_deploy.models.read_checkpoint``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. TF32 is switched off on CUDA so that FP32 numbers are
            comparable with the other backends (validate reports differences that must come from the backend).
        threads: CPU threads for torch while the runner is active (``torch.set_num_threads`` is process-wide; the
            previous value is restored on exit); None leaves torch's default.
    """

    backend = "torch"

    def __init__(self, checkpoint: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(str(checkpoint))
        if device.split(":")[0] not in DEVICES:
            raise GtptError(f"the PyTorch runner runs on {' or '.join(DEVICES)}, got device '{device}'; "
                            f"'{device}' needs an ONNX artifact (onnxruntime) instead")
        self.device = device
        self.threads = threads
        self._model = None

    def _activate(self) -> tuple[ModelMeta, int | None]:
        apply_thread_policy()  # before torch starts OpenMP (see threads.py)
        import torch

        from ..models import create_model

        model = create_model(checkpoint=self.source, device=self.device)
        self._saved_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        if torch.device(self.device).type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._model = model
        self._torch = torch
        versions = {"torch": torch.__version__}
        return ModelMeta.for_config(model.cfg, batch=None, versions=versions), None

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.no_grad():  # no_grad, not inference_mode: inductor's freezing (compiled subclass) needs it
            x = torch.from_numpy(batch).to(self.device)
            sx, sy = self._model(x)  # type: ignore[misc]
        return sx.float().cpu().numpy(), sy.float().cpu().numpy()

    def _deactivate(self) -> None:
        self._model = None
        if self.threads:
            self._torch.set_num_threads(self._saved_threads)

    @property
    def description(self) -> str:
        return f"torch {self._torch.__version__} [{self.device}]" if self._model is not None else self.backend


class CompiledTorchRunner(TorchRunner):
    """``torch.compile`` (inductor, weights frozen into the graph) of the same model; any batch size.

    Compilation happens on the first call at each new batch size, so that call takes seconds to minutes (bench
    reports it separately as the first-call time). Outputs match eager to float rounding, not bit for bit.
    """

    backend = "torch.compile"

    def _activate(self) -> tuple[ModelMeta, int | None]:
        meta, static = super()._activate()
        import torch._inductor.config as inductor_config

        # Freezing folds the weights into the compiled graph as constants (faster CPU kernels, no parameter
        # reads); it is a process-wide inductor switch and only affects graphs compiled under no_grad.
        inductor_config.freezing = True
        # One eager call first: the model fills small constant caches (attention key indices) on its first
        # forward; mutating them inside the traced call would fail dynamo's guards and compile everything twice.
        h, w = meta.input_size
        with self._torch.no_grad():
            self._model(self._torch.zeros(1, 3, int(h), int(w), device=self.device))  # type: ignore[misc]
        self._model = self._torch.compile(self._model)
        return meta, static

    @property
    def description(self) -> str:
        return f"torch.compile {self._torch.__version__} [{self.device}, inductor, freezing]" \
            if self._model is not None else self.backend
