"""The one place that imports ``tensorrt`` and decides what differs between TensorRT 10.x and 11.x.

Both the engine builder (``engines/build.py``) and the runner (``runners/trt.py``) go through :func:`load_tensorrt`;
it lives here, below both, because imports only go downwards. Everything version-dependent is a property of
:class:`TensorRT`, so no other module compares version numbers.

What differs (checked against NVIDIA's "Migrating from TensorRT 10.x to 11.x" Python API reference and the
10.x / 11.0 ``Builder`` pages): 11.x removed weak typing - ``BuilderFlag.FP16/INT8/...``, precision constraints,
``IBuilderConfig.int8_calibrator`` and calibration profiles, the ``IInt8*Calibrator`` classes,
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``, ``Builder.platform_has_fast_*`` and
``ICudaEngine.device_memory_size`` - and every network is strongly typed; its ``STRONGLY_TYPED`` flag is kept but
deprecated and ignored. On 10.x a network is strongly typed only when created with that flag. This package never
uses any of the removed names on either version: precision comes from the ONNX file (FP32, FP16-typed, or Q/DQ).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import GtptError

log = logging.getLogger(__name__)

SUPPORTED_MAJORS = (10, 11)
INSTALL_HINT = ("TensorRT engines are built and run on a machine with an NVIDIA GPU: there, "
                "pip install 'gtpt-deploy[tensorrt]' (CUDA 13, NVIDIA driver r580+) or "
                "'gtpt-deploy[tensorrt-cu12]' (CUDA 12, driver r535+); "
                "elsewhere run the .onnx with ONNX Runtime")


class TensorRTMissingError(GtptError):
    """``tensorrt`` cannot be imported (not installed, or its CUDA libraries are missing)."""


@dataclass(frozen=True)
class TensorRT:
    """The imported ``tensorrt`` module and the facts that depend on its version.

    Attributes:
        trt: the ``tensorrt`` module.
        version: ``tensorrt.__version__``, e.g. ``"10.13.3.9"``; engines only load with exactly this version.
        major: 10 or 11.
    """

    trt: Any
    version: str
    major: int

    @property
    def network_flags(self) -> int:
        """``create_network`` flags for a strongly typed network.

        10.x: ``1 << STRONGLY_TYPED`` (without it TensorRT 10 may pick layer precisions itself).
        11.x: ``0`` - strong typing is the only mode; the deprecated flag is not touched so that its removal in a
        later 11.x release cannot break the build.
        """
        if self.major >= 11:
            return 0
        return 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    @property
    def trtexec_typing_flag(self) -> str:
        """The trtexec option that builds the same network type (``--stronglyTyped`` on 10.x; default on 11.x)."""
        return "" if self.major >= 11 else "--stronglyTyped"

    def logger(self) -> "TrtLogger":
        """The process's one TensorRT logger (created on first use, then shared by every builder, parser and runtime).

        TensorRT keeps a single logger pointer per process: a builder or runtime created with another logger while
        one exists gets a warning and the first logger is used anyway (NVIDIA/TensorRT issue #1475; Polygraphy's
        ``get_trt_logger`` and NVIDIA's samples hold one global logger for this reason).
        """
        global _LOGGER
        with _LOGGER_LOCK:
            if _LOGGER is None or _LOGGER[0] is not self.trt:   # another tensorrt module only in tests
                _LOGGER = (self.trt, _make_logger(self.trt))
            return _LOGGER[1]


class TrtLogger(Protocol):
    """What callers read from the shared logger: ``mark()`` -> position, ``errors_since(mark)`` -> messages."""

    def mark(self) -> int: ...
    def errors_since(self, mark: int) -> list[str]: ...


_LOGGER: tuple[Any, Any] | None = None
_LOGGER_LOCK = threading.Lock()
MAX_KEPT_ERRORS = 64


def _make_logger(trt: Any) -> Any:
    """An ``ILogger`` subclass (it must call ``ILogger.__init__``: pybind11 refuses an instance that did not) that
    forwards warnings to :mod:`logging` and keeps the last ERROR / INTERNAL_ERROR messages, numbered, so that a
    caller reads only the errors of its own call even while other threads use the same logger."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._lock = threading.Lock()
            self._errors: deque[tuple[int, str]] = deque(maxlen=MAX_KEPT_ERRORS)
            self._count = 0

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                with self._lock:
                    self._errors.append((self._count, str(msg).strip()))
                    self._count += 1
                log.debug("TensorRT error: %s", msg)
            elif level == int(trt.ILogger.Severity.WARNING):
                log.debug("TensorRT warning: %s", msg)

        def mark(self) -> int:
            with self._lock:
                return self._count

        def errors_since(self, mark: int) -> list[str]:
            with self._lock:
                return [m for i, m in self._errors if i >= mark]

    return _Logger()


def load_tensorrt(purpose: str = "Building TensorRT engines") -> TensorRT:
    """Import ``tensorrt`` (only ever here, inside a function) -> :class:`TensorRT`.

    Raises:
        TensorRTMissingError: not installed or not importable - one line naming the ``[tensorrt]`` extra and that
            engines need an NVIDIA GPU machine.
        GtptError: a TensorRT major version other than 10 or 11.
    """
    try:
        import tensorrt as trt
    except ImportError as e:  # also raised when libnvinfer / CUDA libraries are missing
        detail = "" if getattr(e, "name", None) == "tensorrt" else f" ({str(e).splitlines()[0] if str(e) else e})"
        raise TensorRTMissingError(f"{purpose} needs the 'tensorrt' package, which is not installed or cannot be "
                                   f"imported{detail}; {INSTALL_HINT}") from None
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major not in SUPPORTED_MAJORS:
        raise GtptError(f"expected TensorRT 10.x or 11.x, got tensorrt {version}; install a supported version with "
                        f"pip install 'gtpt-deploy[tensorrt]'")
    return TensorRT(trt=trt, version=version, major=major)
