"""A faithful fake of the TensorRT Python API (10.x and 11.x surfaces) and of CUDA device memory, for CPU tests.

``make_api(major, version)`` returns the names of one flavour's ``tensorrt`` module; ``v10/tensorrt`` and
``v11/tensorrt`` are thin packages that publish them. Strict where our code could go wrong:

* the 11.x flavour has none of the names 11.x removed (precision builder flags, ``int8_calibrator``, calibration
  profiles, quantization flags, ``IInt8*Calibrator``, ``EXPLICIT_BATCH``, ``platform_has_fast_*``,
  ``device_memory_size``); objects refuse attributes their documented API does not have, so setting a removed
  property fails too;
* a 10.x network is strongly typed only with ``1 << STRONGLY_TYPED``; the plan records it;
* dynamic inputs need an optimization profile; ``set_input_shape`` outside it returns False (and logs an error);
* the plan is ``MAGIC | header json | onnx bytes | length``: another TensorRT version, another compute capability
  or a truncated file make ``deserialize_cuda_engine`` log an error and return None, as TensorRT does;
* execution reads the input from, and writes outputs to, the fake device memory behind the bound addresses, and
  runs the plan's ONNX with ONNX Runtime - so results are real numbers;
* what real TensorRT refuses or reports (issue 18; each checked against NVIDIA's sources, listed in the docstrings):
  one logger per process (``rules.adopt_logger``), a logger subclass that skipped ``ILogger.__init__``, float pool
  sizes and float int properties (pybind11 TypeErrors), timing caches of another version (``create_timing_cache`` ->
  None) or device (``set_timing_cache`` -> False), -1 for dynamic input dimensions in ``engine.get_tensor_shape``
  even for a min == max profile, asymmetric Q/DQ in the parser (``rules.qdq_errors``), the 10.x / 11.x inspector
  JSON keys; ``trtexec.check_command`` applies trtexec's shape rules to a recorded command line.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import numpy as np

from .rules import ONE_LOGGER_WARNING, FakeDeviceMemory, adopt_logger, qdq_errors  # noqa: F401 - re-exported
from .state import STATE, reset_state  # noqa: F401 - re-exported: tests read impl.STATE

MAGIC = b"FAKE-TRT-PLAN\0"
TC_MAGIC = b"FAKE-TRT-TIMING\0"


class _Strict:
    """Objects with a fixed attribute set: assigning an undocumented (or removed) property raises."""

    _attrs: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._attrs:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def _onnx_types() -> dict[int, str]:
    from onnx import TensorProto as T

    return {T.FLOAT: "FLOAT", T.FLOAT16: "HALF", T.INT8: "INT8", T.INT32: "INT32", T.INT64: "INT64",
            T.BOOL: "BOOL", T.UINT8: "UINT8", T.BFLOAT16: "BF16"}


def make_api(major: int, version: str) -> dict[str, Any]:  # noqa: C901 - one namespace per flavour
    """The public names of a fake ``tensorrt`` module of ``version`` (major 10 or 11)."""
    import onnx

    v10 = major < 11

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class _PybindInit(type):
        """pybind11 refuses a Python subclass instance whose ``__init__`` skipped the bound base's (pyCore.cpp binds
        ``ILogger`` with ``py::init<>()``): TypeError "...ILogger.__init__() must be called when overriding
        __init__", raised when the instance is made."""

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            obj = super().__call__(*args, **kwargs)
            if not obj.__dict__.get("_pybind_init"):
                raise TypeError(f"tensorrt.tensorrt.ILogger.__init__() must be called when overriding __init__")
            return obj

    class ILogger(metaclass=_PybindInit):
        def __init__(self) -> None:
            self._pybind_init = True

        def log(self, severity: Any, msg: str) -> None:
            raise RuntimeError("Tried to call pure virtual function \"ILogger::log\"")

    ILogger.Severity = Severity  # type: ignore[attr-defined]

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = list(Severity)

        def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
            ILogger.__init__(self)
            self.min_severity = min_severity

        def log(self, severity: Severity, msg: str) -> None:
            pass

    flags = {"STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 2, "PREFER_JIT_PYTHON_PLUGINS": 3}
    NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag",
        {"EXPLICIT_BATCH": 0, **flags} if v10 else {k: v - 1 for k, v in flags.items()})
    common_flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE",
                    "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "STRIP_PLAN", "REFIT_IDENTICAL"]
    precision_flags = ["FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                       "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"]
    BuilderFlag = enum.IntEnum("BuilderFlag", common_flags + (precision_flags if v10 else []), start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                                     "DLA_GLOBAL_DRAM", "TACTIC_DRAM", "TACTIC_SHARED_MEMORY"], start=0)
    ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0)
    LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"], start=0)
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64",
                                         "INT4"], start=0)
    ErrorCode = enum.IntEnum("ErrorCode", ["SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED",
                                           "INVALID_VALUE", "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH",
                                           "UNSUPPORTED_NODE"], start=0)
    np_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}

    def nptype(dtype: Any) -> Any:
        return np_of[dtype]

    def volume(shape: Any) -> int:
        return int(np.prod(list(shape)))

    class IHostMemory(bytes):
        @property
        def nbytes(self) -> int:
            return len(self)

    class ITensor(_Strict):
        _attrs = frozenset({"name", "shape", "dtype"})

        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition(_Strict):
        def __init__(self, strongly_typed: bool) -> None:
            self._strongly_typed, self._inputs, self._outputs, self._model = strongly_typed, [], [], None

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        @property
        def num_layers(self) -> int:
            return len(self._model.graph.node) if self._model is not None else 0

        def get_input(self, i: int) -> ITensor:
            return self._inputs[i]

        def get_output(self, i: int) -> ITensor:
            return self._outputs[i]

    class ParserError:
        def __init__(self, code: Any, desc: str, node: int) -> None:
            self._code, self._desc, self._node = code, desc, node

        def code(self) -> Any:
            return self._code

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

    types = _onnx_types()

    def _dims(vi: Any) -> tuple[int, ...]:
        return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)

    class OnnxParser(_Strict):
        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            self._network, self._logger, self._errors = network, logger, []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def clear_errors(self) -> None:
            self._errors = []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            try:
                m = onnx.load_from_string(bytes(model))
            except Exception as e:
                self._errors.append(ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to parse ONNX: {e}", -1))
                return False
            for i, node in enumerate(m.graph.node):
                if node.domain not in ("", "ai.onnx"):
                    self._errors.append(ParserError(ErrorCode.UNSUPPORTED_NODE,
                                                    f"No importer registered for op: {node.op_type}", i))
            self._errors += [ParserError(ErrorCode.INVALID_NODE, desc, i)
                             for i, desc in qdq_errors(m, lambda msg: self._logger.log(Severity.WARNING, msg))]
            if self._errors:
                return False
            inits = {t.name for t in m.graph.initializer}
            net = self._network
            net._inputs = [ITensor(v.name, _dims(v), DataType[types[v.type.tensor_type.elem_type]])
                           for v in m.graph.input if v.name not in inits]
            net._outputs = [ITensor(v.name, _dims(v), DataType[types[v.type.tensor_type.elem_type]])
                            for v in m.graph.output]
            net._model = m
            return True

    class IOptimizationProfile(_Strict):
        def __init__(self) -> None:
            self._shapes: dict[str, list[tuple[int, ...]]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
            self._shapes[input] = [tuple(int(d) for d in s) for s in (min, opt, max)]

        def get_shape(self, input: str) -> list[tuple[int, ...]]:  # noqa: A002
            return self._shapes[input]

    class ITimingCache(_Strict):
        """Entries plus the verification header TensorRT keeps: the TensorRT version and the CUDA device."""

        def __init__(self, entries: dict[str, float], device: list[Any] | None = None) -> None:
            self._entries = dict(entries)
            self._device = device if device is not None else _current_device()

        def serialize(self) -> IHostMemory:
            body = json.dumps({"version": version, "device": self._device, "entries": self._entries},
                              sort_keys=True).encode()
            return IHostMemory(TC_MAGIC + body)

        def combine(self, input_cache: "ITimingCache", ignore_mismatch: bool) -> bool:
            self._entries.update(input_cache._entries)
            return True

        def reset(self) -> bool:
            self._entries.clear()
            return True

    INT_PROPERTIES = {"avg_timing_iterations", "DLA_core", "builder_optimization_level", "max_aux_streams",
                      "max_num_tactics", "tiling_optimization_level", "l2_limit_for_tiling"}

    def _current_device() -> list[Any]:
        name, cc = STATE["devices"][STATE["current"]]
        return [name, list(cc)]

    def _log(severity: Any, msg: str) -> None:
        logger = STATE.get("trt_logger")
        if logger is not None:
            logger.log(severity, msg)

    config_attrs = {"avg_timing_iterations", "flags", "profile_stream", "default_device_type", "DLA_core",
                    "profiling_verbosity", "engine_capability", "builder_optimization_level", "max_aux_streams",
                    "hardware_compatibility_level", "progress_monitor", "max_num_tactics", "runtime_platform",
                    "tiling_optimization_level", "l2_limit_for_tiling"}

    class IBuilderConfig(_Strict):
        _attrs = frozenset(config_attrs | ({"int8_calibrator"} if v10 else set()))

        def __init__(self) -> None:
            self._pools: dict[Any, int] = {}
            self._profiles: list[IOptimizationProfile] = []
            self._cache: ITimingCache | None = None
            self.flags = 0
            self.builder_optimization_level = 3
            self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
            self.progress_monitor = None

        @property
        def num_optimization_profiles(self) -> int:
            return len(self._profiles)

        def __setattr__(self, name: str, value: Any) -> None:
            # pybind11's int caster takes no float (no implicit narrowing): config.builder_optimization_level = 3.0
            # raises TypeError in the real bindings
            if name in INT_PROPERTIES and (isinstance(value, bool) or not isinstance(value, (int, enum.IntEnum))):
                raise TypeError(f"(): incompatible function arguments. The following argument types are supported:"
                                f" 1. (self: tensorrt.tensorrt.IBuilderConfig, arg0: int) -> None; invoked with "
                                f"{type(value).__name__} {value!r} for {name}")
            super().__setattr__(name, value)

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            if not isinstance(pool, MemoryPoolType) or isinstance(pool_size, bool) or not isinstance(pool_size, int):
                raise TypeError(f"set_memory_pool_limit(): incompatible function arguments. The following argument "
                                f"types are supported: 1. (self: tensorrt.tensorrt.IBuilderConfig, pool: "
                                f"tensorrt.tensorrt.MemoryPoolType, pool_size: int) -> None; invoked with "
                                f"{type(pool).__name__}, {type(pool_size).__name__} {pool_size!r}")
            assert pool_size > 0
            self._pools[pool] = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(pool, 1 << 40)

        def set_flag(self, flag: Any) -> None:
            self.flags |= 1 << int(BuilderFlag(flag))

        def get_flag(self, flag: Any) -> bool:
            return bool(self.flags & (1 << int(flag)))

        def clear_flag(self, flag: Any) -> None:
            self.flags &= ~(1 << int(flag))

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            for lo, opt, hi in profile._shapes.values():
                if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                    return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
            """Size 0: a new cache (NvInfer.h createTimingCache). Unreadable data or another TensorRT version: an
            error through the logger and None (the binding returns the null pointer as None)."""
            blob = bytes(serialized_timing_cache)
            STATE["stats"]["timing_cache_creates"] += 1
            if STATE.get("timing_cache_unavailable"):   # TensorRT out of host memory, or a disabled cache
                return None
            if not blob:
                return ITimingCache({})
            try:
                assert blob.startswith(TC_MAGIC)
                data = json.loads(blob[len(TC_MAGIC):])
            except (AssertionError, ValueError):
                _log(Severity.ERROR, "Error Code 1: Serialization (Cannot deserialize timing cache: magic tag does "
                                     "not match)")
                return None
            if data["version"] != version:
                _log(Severity.ERROR, f"Error Code 1: Serialization (timing cache version mismatch: expected "
                                     f"{version}, got {data['version']})")
                return None
            return ITimingCache(data["entries"], data["device"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            """False (and an error) for a cache of another CUDA device unless ``ignore_mismatch`` (NvInfer.h
            setTimingCache: "A failure will be reported if the CUDA device property ... is different")."""
            if not isinstance(ignore_mismatch, bool) or not isinstance(cache, ITimingCache):
                raise TypeError("set_timing_cache(): incompatible function arguments")
            if cache._device != _current_device() and not ignore_mismatch:
                _log(Severity.ERROR, f"Error Code 3: API Usage Error (timing cache was created on {cache._device}, "
                                     f"current device is {_current_device()})")
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    if v10:
        class IBuilderConfig10(IBuilderConfig):
            int8_calibrator = None

            def set_calibration_profile(self, profile: Any) -> bool:
                return True

            def get_calibration_profile(self) -> Any:
                return None

            def set_quantization_flag(self, flag: Any) -> None:
                pass

        config_cls: type = IBuilderConfig10
    else:
        config_cls = IBuilderConfig

    from .impl_engine import make_engine_api

    api = dict(
        __version__=version, ILogger=ILogger, Logger=Logger,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        BuilderFlag=BuilderFlag, MemoryPoolType=MemoryPoolType, ProfilingVerbosity=ProfilingVerbosity,
        LayerInformationFormat=LayerInformationFormat, TensorIOMode=TensorIOMode, DataType=DataType,
        ErrorCode=ErrorCode, nptype=nptype, volume=volume, IHostMemory=IHostMemory, ITensor=ITensor,
        INetworkDefinition=INetworkDefinition, ParserError=ParserError, OnnxParser=OnnxParser,
        IOptimizationProfile=IOptimizationProfile, ITimingCache=ITimingCache, IBuilderConfig=config_cls,
        float32=DataType.FLOAT, float16=DataType.HALF, int8=DataType.INT8, int32=DataType.INT32)
    api.update(make_engine_api(v10, version, api))
    return api
