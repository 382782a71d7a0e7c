"""The one Runner contract shared by every backend (as Polygraphy's runners).

``with create_runner(artifact) as r: simcc_x, simcc_y = r.infer(batch)``. The base class owns everything that is
the same for all backends: activation state, input validation (float32, NCHW, the artifact's (3, H, W) and static
batch), output validation ((B, K, W*split) and (B, K, H*split) float32) and timing. Backends implement only the
hooks ``_activate`` (-> the artifact's :class:`ModelMeta`), ``_infer`` and ``_deactivate``; those that can show
which tokens each top-k pruning stage kept also implement ``_infer_kept`` (the ``kept_tokens`` option).

No torch import here: an ONNX-Runtime-only install uses this module.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType

import numpy as np

from ..errors import ArtifactError, GtptError, RunnerInputError, RunnerStateError
from ..metadata import ModelMeta

#: Most crops per model call that a benchmark or export asks for. One 256x192 float32 crop is 0.59 MB of input;
#: a batch's activations are far larger (the attention of every block). 1024 crops is 0.6 GB of input alone, more
#: than any deployment batch; beyond it the allocation fails late (MemoryError) or the kernel kills the process.
MAX_BATCH = 1024
CROP_MB = 3 * 256 * 192 * 4 / 1e6


def check_batch_size(batch: int, option: str = "--batch") -> None:
    """Refuse, before any work, a batch outside 1..:data:`MAX_BATCH` (GtptError, one line, with the input memory
    it would take)."""
    if batch < 1:
        raise GtptError(f"{option} must be >= 1, got {batch}")
    if batch > MAX_BATCH:
        raise GtptError(f"{option} must be <= {MAX_BATCH}, got {batch}: one call of {batch} crops needs "
                        f"{batch * CROP_MB / 1e3:.1f} GB of input (256x192) before activations; pass a smaller "
                        f"{option}")


def parse_device(device: str) -> tuple[str, int | None]:
    """``cpu`` -> ("cpu", None); ``cuda`` -> ("cuda", 0); ``cuda:N`` -> ("cuda", N). GtptError otherwise."""
    kind, _, index = str(device).strip().lower().partition(":")
    if kind == "cpu" and not index:
        return "cpu", None
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise GtptError(f"expected a device cpu, cuda or cuda:N, got '{device}'; ONNX Runtime execution providers "
                    f"(cuda, tensorrt) are chosen with --provider")


class Runner(abc.ABC):
    """Base class of every backend. Not thread-safe; one runner per thread.

    Attributes:
        source: the artifact path (for messages).
        times: seconds spent in each ``infer`` call of the current activation (backend call only, no checks).
        kept_tokens: the runner was created to record the kept tokens too (:meth:`infer_kept`).
    """

    #: short backend name shown in tables ("torch", "onnxruntime", ...)
    backend: str = "runner"

    def __init__(self, source: str, kept_tokens: bool = False) -> None:
        self.source = str(source)
        # an option of the runner, not of a call: ONNX Runtime needs the TopK indices as outputs of its session
        self.kept_tokens = bool(kept_tokens)
        self.times: list[float] = []
        self._meta: ModelMeta | None = None
        self._static_batch: int | None = None

    # ------------------------------------------------------------------ hooks (backends implement these)
    @classmethod
    def peek_meta(cls, source: str) -> ModelMeta | None:
        """The artifact's metadata without activating it (no session, no model), so callers can check keypoint
        layouts before any inference; None when the backend cannot tell cheaply (then activation checks)."""
        return None

    @abc.abstractmethod
    def _activate(self) -> tuple[ModelMeta, int | None]:
        """Load the artifact -> (its metadata, its static batch size or None when the batch is dynamic)."""

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (B, 3, H, W) C-contiguous, already validated -> raw (simcc_x, simcc_y) as numpy arrays."""

    def _infer_kept(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
        """``_infer`` plus the kept token indices per pruning stage; default None: the backend cannot expose them
        (an engine or a compiled graph keeps its TopK indices inside)."""
        return (*self._infer(batch), None)

    def _deactivate(self) -> None:
        """Release the session / model. Default: nothing."""

    @property
    def run_precision(self) -> str:
        """The precision the numbers are computed in (``validate``'s row precision and budget): the artifact's
        ``gtpt.precision`` unless the backend computes in another one (OpenVINO bf16 of an FP32 file: ``bf16``)."""
        return self.meta.precision

    @property
    def description(self) -> str:
        """Backend and device actually used, e.g. ``onnxruntime [CPUExecutionProvider]``; valid while active."""
        return self.backend

    # ------------------------------------------------------------------ the contract
    @property
    def is_active(self) -> bool:
        return self._meta is not None

    @property
    def meta(self) -> ModelMeta:
        """The artifact's self-description (keypoints, flip pairs, input size, split ratio, ...)."""
        if self._meta is None:
            raise RunnerStateError(f"runner for {self.source} is not active; use it inside "
                                   f"'with create_runner(...) as runner:'")
        return self._meta

    @property
    def static_batch(self) -> int | None:
        """The batch size the artifact was built for, or None when any batch size is accepted."""
        self.meta  # noqa: B018 - raises when not active
        return self._static_batch

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        """(B or None, 3, H, W) the artifact accepts."""
        h, w = self.meta.input_size
        return self._static_batch, 3, int(h), int(w)

    def output_shapes(self, batch: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Expected ((B, K, W*split), (B, K, H*split)) for a batch of ``batch`` crops."""
        m = self.meta
        h, w = m.input_size
        return ((batch, m.num_keypoints, int(w * m.split_ratio)), (batch, m.num_keypoints, int(h * m.split_ratio)))

    def activate(self) -> "Runner":
        if self._meta is not None:
            raise RunnerStateError(f"runner for {self.source} is already active")
        meta, static_batch = self._activate()
        self._meta, self._static_batch = meta, static_batch
        self.times = []
        return self

    def deactivate(self) -> None:
        if self._meta is None:
            return
        try:
            self._deactivate()
        finally:
            self._meta = None

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.deactivate()

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on normalized crops.

        Args:
            batch: float32 (B, 3, H, W) normalized RGB crops (``transforms.crop_and_normalize``); B must equal the
                artifact's static batch when it has one (padding is the predictor's job).

        Returns:
            (simcc_x, simcc_y): float32 (B, K, W*split) and (B, K, H*split) raw logits.
        """
        self._check_input(batch)
        t0 = time.perf_counter()
        out = self._infer(np.ascontiguousarray(batch))
        self.times.append(time.perf_counter() - t0)
        return self._check_outputs(out, batch.shape[0])

    def infer_kept(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
        """:meth:`infer` plus which tokens each top-k pruning stage kept (runner created with ``kept_tokens=True``).

        Returns:
            (simcc_x, simcc_y, kept): the logits as :meth:`infer`; ``kept`` one int64 (B, ..., k) array per pruning
            stage in graph (= stage) order, each index pointing into the token sequence its stage was given
            (``eval.tokens.token_ids`` maps them to image tokens), or None where the backend cannot expose them
            (engines, ``torch.compile``, served models, graphs without TopK).
        """
        if not self.kept_tokens:
            raise RunnerStateError(f"runner for {self.source} does not record kept tokens; create it with "
                                   f"create_runner(..., kept_tokens=True)")
        self._check_input(batch)
        t0 = time.perf_counter()
        x, y, kept = self._infer_kept(np.ascontiguousarray(batch))
        self.times.append(time.perf_counter() - t0)
        x, y = self._check_outputs((x, y), batch.shape[0])
        if kept is None:
            return x, y, None
        kept = [np.asarray(k).astype(np.int64, copy=False) for k in kept]
        if any(k.ndim < 2 or k.shape[0] != batch.shape[0] for k in kept):
            raise ArtifactError(f"{self.source}: expected kept token indices (B={batch.shape[0]}, ..., k) per stage, "
                                f"got shapes {[k.shape for k in kept]}; re-export the model")
        return x, y, kept

    # ------------------------------------------------------------------ validation
    def _check_input(self, batch: object) -> None:
        expected = self.input_shape
        shown = "(B, 3, {}, {})".format(*expected[2:]) if expected[0] is None else str(expected)
        if not isinstance(batch, np.ndarray):
            raise RunnerInputError(f"{self.source}: expected a numpy float32 array {shown}, got "
                                   f"{type(batch).__name__}; convert it with np.asarray(..., dtype=np.float32)")
        if batch.dtype != np.float32:
            raise RunnerInputError(f"{self.source}: expected float32 input {shown}, got {batch.dtype}; "
                                   f"use transforms.crop_and_normalize or .astype(np.float32)")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected[1:]:
            raise RunnerInputError(f"{self.source}: expected NCHW input {shown}, got {tuple(batch.shape)}; "
                                   f"crops must be channel-first at the artifact's input size")
        if expected[0] is not None and batch.shape[0] != expected[0]:
            raise RunnerInputError(f"{self.source}: expected a batch of exactly {expected[0]} (static batch), "
                                   f"got {batch.shape[0]}; pad the batch (the Predictor does) or export with "
                                   f"another --batch")
        if batch.shape[0] == 0:
            raise RunnerInputError(f"{self.source}: expected at least one crop, got an empty batch")

    def _check_outputs(self, out: object, batch: int) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(out, tuple) or len(out) != 2:
            raise ArtifactError(f"{self.source}: expected two outputs (simcc_x, simcc_y), got "
                                f"{len(out) if isinstance(out, (tuple, list)) else type(out).__name__}")
        ex, ey = self.output_shapes(batch)
        x, y = (np.asarray(o) for o in out)
        if tuple(x.shape) != ex or tuple(y.shape) != ey:
            raise ArtifactError(f"{self.source}: expected outputs simcc_x {ex} and simcc_y {ey}, got "
                                f"{tuple(x.shape)} and {tuple(y.shape)}; the artifact does not match its metadata, "
                                f"re-export it")
        if x.dtype != np.float32 or y.dtype != np.float32:
            raise ArtifactError(f"{self.source}: expected float32 outputs, got {x.dtype} and {y.dtype}; "
                                f"keep the graph outputs float32 (FP16 models keep float32 I/O)")
        return x, y

    def __repr__(self) -> str:
        state = self.description if self.is_active else "inactive"
        return f"{type(self).__name__}({self.source!r}, {state})"
