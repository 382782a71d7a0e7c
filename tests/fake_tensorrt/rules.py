"""Fake TensorRT, the rules real TensorRT and CUDA enforce that the fake checks (see ``impl.py``): fake CUDA memory,
one logger per process, the ONNX parser's Q/DQ rules."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .state import STATE


class FakeDeviceMemory:
    """``gtpt_deploy.tensorrt.cuda_mem.DeviceMemory`` on host buffers keyed by integer "device pointers"."""

    def device_count(self) -> int:
        return len(STATE["devices"])

    def device_info(self, index: int) -> Any:
        from gtpt_deploy.tensorrt.cuda_mem import GpuInfo

        name, cc = STATE["devices"][index]
        return GpuInfo(index, name, cc)

    def set_device(self, index: int) -> None:
        assert 0 <= index < len(STATE["devices"]), "cudaErrorInvalidDevice"
        STATE["current"] = index

    def alloc(self, nbytes: int) -> int:
        ptr = STATE["next_ptr"]
        STATE["next_ptr"] += (int(nbytes) + 255) // 256 * 256 + 256
        STATE["memory"][ptr] = np.zeros(int(nbytes), np.uint8)
        STATE["stats"]["alloc"] += 1
        return ptr

    def free(self, ptr: int) -> None:
        del STATE["memory"][ptr]  # KeyError = double free / wild pointer
        STATE["stats"]["free"] += 1

    def create_stream(self) -> int:
        handle = 0x5000 + len(STATE["streams"]) + STATE["stats"]["streams"]
        STATE["streams"].add(handle)
        STATE["stats"]["streams"] += 1
        return handle

    def destroy_stream(self, stream: int) -> None:
        STATE["streams"].remove(stream)

    def h2d(self, ptr: int, host: np.ndarray, stream: int) -> None:
        assert stream in STATE["streams"], "copy on an unknown stream"
        block = STATE["memory"][ptr]
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        assert raw.size <= block.size, f"h2d of {raw.size} bytes into a {block.size}-byte buffer"
        block[:raw.size] = raw

    def d2h(self, host: np.ndarray, ptr: int, stream: int) -> None:
        assert stream in STATE["streams"], "copy on an unknown stream"
        assert host.flags.c_contiguous
        block = STATE["memory"][ptr]
        assert host.nbytes <= block.size, f"d2h of {host.nbytes} bytes from a {block.size}-byte buffer"
        host.view(np.uint8).reshape(-1)[:] = block[:host.nbytes]

    def sync(self, stream: int) -> None:
        assert stream in STATE["streams"]


ONE_LOGGER_WARNING = ("The logger passed into {what} differs from one already provided for an existing builder, "
                      "runtime, or refitter. TensorRT maintains only a single logger pointer at any given time, so "
                      "the existing value, which can be retrieved with getLogger(), will be used instead. In order "
                      "to use a new logger, first destroy all existing builder, runner or refitter objects.")


def adopt_logger(owner: Any, logger: Any, what: str, warning: Any) -> Any:
    """TensorRT's one logger per process: while any builder / runtime lives, a different logger is not taken; a
    warning goes to the existing one (the message of NVIDIA/TensorRT issues #1475, #1539) and it is used instead.
    -> the logger ``owner`` reports to. Counted in ``STATE["stats"]["logger_conflicts"]``."""
    import weakref

    owners = STATE.setdefault("trt_owners", weakref.WeakSet())
    current = STATE.get("trt_logger")
    if len(owners) and current is not None and current is not logger:
        STATE["stats"]["logger_conflicts"] += 1
        current.log(warning, ONE_LOGGER_WARNING.format(what=what))
        logger = current
    STATE["trt_logger"] = logger
    owners.add(owner)
    return logger


def qdq_errors(m: Any, warn: Callable[[str], None]) -> list[tuple[int, str]]:
    """What onnx-tensorrt's QuantizeLinear/DequantizeLinear importer refuses (onnxOpImporters.cpp,
    importerUtils.cpp ``shiftIsAllZeros``) -> (node index, message) per error. A uint8 zero point is taken as int8
    after a warning, and then any non-zero zero-point byte (uint8 128 included) is an error: "TensorRT only
    supports symmetric quantization"; scales must be positive."""
    from onnx import numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    errors: list[tuple[int, str]] = []
    for i, node in enumerate(m.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        if scale is not None and not (numpy_helper.to_array(scale) > 0).all():
            errors.append((i, "Scale coefficients must all be positive"))
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            continue
        values = numpy_helper.to_array(zp)
        if values.dtype == np.uint8:
            warn("TensorRT doesn't support QuantizeLinear/DequantizeLinear with UINT8 zero_point. TensorRT will use "
                 "INT8 instead.")
        if np.any(np.ascontiguousarray(values).view(np.uint8) != 0):
            errors.append((i, "TensorRT only supports symmetric quantization. The zero point for the "
                              "QuantizeLinear/DequantizeLinear operator must be all zeros."))
    return errors
