"""The small device-memory seam of the TensorRT backend: devices, buffers, copies, one stream.

TensorRT reads and writes raw device addresses; someone has to allocate them and copy numpy arrays in and out.
That someone is a :class:`DeviceMemory`. The real one, :class:`CudaRuntimeMemory`, calls the CUDA runtime through
cuda-python (``cuda.bindings.runtime``, what NVIDIA's own TensorRT samples use since 10.14), so running an engine
needs neither torch nor pycuda. Tests put a host-memory implementation behind the same methods by replacing
:data:`memory_factory`; nothing in the library or CLI knows about it.

cuda-python convention (checked against NVIDIA's ``samples/python/common_runtime.py`` and cuda-python's runtime
API): every call returns a tuple whose first item is a ``cudaError_t``; the results follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import GtptError, MissingDependencyError

NO_DEVICE_HINT = ("TensorRT engines run only on a machine with an NVIDIA GPU and its driver; "
                  "run the .onnx with ONNX Runtime here")
#: Minimum Linux driver per CUDA major of the TensorRT wheels and cuda-python (NVIDIA TensorRT 11.4/11.5 install
#: prerequisites: r580+ for the CUDA 13.x packages, r535+ for the CUDA 12.x wheels).
DRIVER_FOR_CUDA = {12: "r535", 13: "r580"}


def driver_hint(cuda_major: int | None) -> str:
    """One clause naming the driver the installed CUDA packages need and the pairing for an older driver."""
    need = DRIVER_FOR_CUDA.get(cuda_major or 0)
    which = (f"the installed cuda-python {cuda_major}.x (CUDA {cuda_major}) needs NVIDIA driver {need} or newer"
             if need else "CUDA 12 packages need NVIDIA driver r535+, CUDA 13 packages r580+")
    return (f"{which}; check it with nvidia-smi, and on an older driver install the CUDA 12 pairing: "
            f"pip install 'gtpt-deploy[tensorrt-cu12]'")


def _cuda_python_major() -> int | None:
    """Major version of the installed cuda-python bindings (12 or 13), None when unknown."""
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return int(metadata.version(dist).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


class NoCudaDeviceError(GtptError):
    """No usable CUDA device (no GPU, no driver, or the requested index does not exist)."""


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device: ``index``, ``name`` (e.g. "NVIDIA L4") and compute capability (major, minor)."""

    index: int
    name: str
    compute_capability: tuple[int, int]

    @property
    def cc(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "compute_capability": self.cc}


class DeviceMemory(Protocol):
    """What the TensorRT runner and builder need from CUDA. Pointers and streams are plain ints."""

    def device_count(self) -> int: ...
    def device_info(self, index: int) -> GpuInfo: ...
    def set_device(self, index: int) -> None: ...
    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def create_stream(self) -> int: ...
    def destroy_stream(self, stream: int) -> None: ...
    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None: ...
    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None: ...
    def sync(self, stream: int) -> None: ...


class CudaRuntimeMemory:
    """:class:`DeviceMemory` on the CUDA runtime API of cuda-python (``cuda.bindings.runtime``)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            raise MissingDependencyError("cuda-python", "tensorrt", "Running TensorRT engines") from None
        self.rt = cudart

    def _call(self, what: str, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, name = self.rt.cudaGetErrorName(err)
            name = name.decode() if isinstance(name, bytes) else str(name)
            if what == "cudaGetDeviceCount":   # cudaErrorNoDevice, cudaErrorInsufficientDriver, ...
                raise NoCudaDeviceError(f"no CUDA device found ({what}: {name}); {driver_hint(_cuda_python_major())};"
                                        f" {NO_DEVICE_HINT}")
            raise GtptError(f"CUDA call {what} failed with {name}; check the GPU driver (nvidia-smi) and that the "
                            f"installed cuda-python matches its CUDA version")
        return values[0] if len(values) == 1 else tuple(values)

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount", self.rt.cudaGetDeviceCount()))

    def device_info(self, index: int) -> GpuInfo:
        props = self._call("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(index))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(index, name.rstrip("\x00").strip(), (int(props.major), int(props.minor)))

    def set_device(self, index: int) -> None:
        self._call("cudaSetDevice", self.rt.cudaSetDevice(index))

    def alloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self.rt.cudaFree(ptr))

    def create_stream(self) -> int:
        return int(self._call("cudaStreamCreate", self.rt.cudaStreamCreate()))

    def destroy_stream(self, stream: int) -> None:
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream))

    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream))

    def sync(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))


#: Makes the :class:`DeviceMemory` used by the TensorRT backend. The seam that tests fill (with host memory).
memory_factory: Callable[[], DeviceMemory] = CudaRuntimeMemory


def open_gpu(index: int = 0) -> tuple[DeviceMemory, GpuInfo]:
    """The device memory layer with GPU ``index`` made current, and that GPU's description.

    Raises:
        MissingDependencyError: cuda-python is not installed.
        NoCudaDeviceError: no CUDA device, or ``index`` is not one of them.
    """
    if index < 0:
        raise NoCudaDeviceError(f"GPU index must be >= 0, got {index}; pass --gpu 0 for the first GPU")
    mem = memory_factory()
    count = mem.device_count()
    if count == 0:
        raise NoCudaDeviceError(f"no CUDA device found; {driver_hint(_cuda_python_major())}; {NO_DEVICE_HINT}")
    if index >= count:
        raise NoCudaDeviceError(f"GPU {index} requested but this machine has {count} CUDA device(s) "
                                f"(0..{count - 1}); pass --gpu with one of them")
    mem.set_device(index)
    return mem, mem.device_info(index)
