"""PyTorch backend: a ``.pth`` checkpoint (any official format, variant detected) on CPU or CUDA."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..metadata import ModelMeta
from ..threads import apply_thread_policy
from .base import Runner, parse_device


@contextlib.contextmanager
def exact_fp32(torch: Any, device: str) -> Iterator[None]:
    """TF32 off for the calls inside (CUDA devices only), the previous switches restored after.

    TF32 keeps 10 mantissa bits in convolutions (cuDNN allows it by default) and, when a user turns it on, in matmuls;
    the torch runner is the FP32 reference, so its own calls must not use it. The switches are process-wide, so
    they are set around each call instead of once for the whole process (which changed every later torch caller's
    numbers, including code that has nothing to do with this runner).
    """
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class TorchRunner(Runner):
    """Eager PyTorch inference of the EMA branch; any batch size (dynamic).

    Args:
        checkpoint: a ``.pth`` file readable by ``gtpt_deploy.models.read_checkpoint``, or a GTPT
            ``torch.nn.Module`` in memory (moved to ``device``; ``meta`` describes it, default from ``model.cfg``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. TF32 is off on CUDA during the runner's own calls so that
            FP32 numbers are comparable with the other backends (validate reports differences that must come from
            the backend); the process's settings are restored after each call (:func:`exact_fp32`).
        threads: CPU threads for torch while the runner is active (``torch.set_num_threads`` is process-wide; the
            previous value is restored on exit); None leaves torch's default.
    """

    backend = "torch"

    def __init__(self, checkpoint: str | Path | Any, device: str = "cpu", threads: int | None = None,
                 meta: ModelMeta | None = None) -> None:
        in_memory = not isinstance(checkpoint, (str, Path))
        super().__init__("in-memory torch model" if in_memory else str(checkpoint))
        parse_device(device)  # cpu / cuda / cuda:N, else a one-line error
        self.device = device
        self.threads = threads
        self._module = checkpoint if in_memory else None
        self._given_meta = meta
        self._model = None

    @classmethod
    def peek_meta(cls, source: str) -> ModelMeta:
        """The checkpoint's variant (from its tensor shapes; CheckpointError for a bad file) as metadata."""
        from ..models import VARIANTS, detect_variant, read_checkpoint

        state, _ = read_checkpoint(source)
        return ModelMeta.for_config(VARIANTS[detect_variant(state)], batch=None)

    def _activate(self) -> tuple[ModelMeta, int | None]:
        apply_thread_policy()  # before torch starts OpenMP (see threads.py)
        from ..models import create_model  # first: names the [export] extra when torch is missing

        import torch

        if self._module is not None:
            model = self._module.to(self.device).eval()
        else:
            model = create_model(checkpoint=self.source, device=self.device)
        self._saved_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self._model = model
        self._torch = torch
        versions = {"torch": torch.__version__}
        meta = self._given_meta or ModelMeta.for_config(model.cfg, batch=None, versions=versions)
        return meta, None

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with self._grad_off(), exact_fp32(torch, self.device):
            x = torch.from_numpy(batch).to(self.device)
            sx, sy = self._model(x)  # type: ignore[misc]
        return sx.float().cpu().numpy(), sy.float().cpu().numpy()

    def _grad_off(self) -> Any:
        return self._torch.inference_mode()

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

    def _grad_off(self) -> Any:
        return self._torch.no_grad()  # inductor's freezing applies to graphs traced under no_grad

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
