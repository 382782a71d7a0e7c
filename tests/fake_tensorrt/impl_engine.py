"""Fake TensorRT, second half: Builder (-> plan bytes), Runtime, ICudaEngine, IExecutionContext, EngineInspector.

The plan is ``MAGIC | u32 header length | header JSON | u64 ONNX length | ONNX bytes``; the header holds the TensorRT
version, the GPU it was built for, whether the network was strongly typed, the profile and the profiling
verbosity. Execution runs the ONNX with ONNX Runtime on the fake device memory (``impl.STATE``).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from .impl import MAGIC, STATE, _Strict, adopt_logger


def make_engine_api(v10: bool, version: str, ns: dict[str, Any]) -> dict[str, Any]:  # noqa: C901
    Severity = ns["ILogger"].Severity
    DataType, TensorIOMode, IHostMemory = ns["DataType"], ns["TensorIOMode"], ns["IHostMemory"]
    ProfilingVerbosity, LayerInformationFormat = ns["ProfilingVerbosity"], ns["LayerInformationFormat"]
    Flag = ns["NetworkDefinitionCreationFlag"]

    class IProgressMonitor:
        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None: ...
        def step_complete(self, phase_name: str, step: int) -> bool: return True
        def phase_finish(self, phase_name: str) -> None: ...

    class Builder(_Strict):
        _attrs = frozenset({"max_threads", "error_recorder", "gpu_allocator"})

        def __init__(self, logger: Any) -> None:
            if not isinstance(logger, ns["ILogger"]):
                raise TypeError("__init__(): incompatible constructor arguments: logger must be a tensorrt.ILogger")
            self._logger = adopt_logger(self, logger, "createInferBuilder", Severity.WARNING)

        def create_network(self, flags: int = 0) -> Any:
            known = sum(1 << int(f) for f in Flag)
            assert int(flags) & ~known == 0, f"unknown network creation flags {flags:#x}"
            strongly = (not v10) or bool(int(flags) & (1 << int(Flag.STRONGLY_TYPED)))
            return ns["INetworkDefinition"](strongly)

        def create_builder_config(self) -> Any:
            return ns["IBuilderConfig"]()

        def create_optimization_profile(self) -> Any:
            return ns["IOptimizationProfile"]()

        def build_serialized_network(self, network: Any, config: Any) -> Any:
            STATE["stats"]["builds"] += 1
            if network._model is None:
                self._logger.log(Severity.ERROR, "Network must have at least one output")
                return None
            profile = config._profiles[0]._shapes if config._profiles else {}
            for t in network._inputs:
                if -1 in t.shape and t.name not in profile:
                    self._logger.log(Severity.ERROR, f"Network has dynamic or shape inputs, but no optimization "
                                                     f"profile has been defined ({t.name})")
                    return None
            cache = config.get_timing_cache()
            for node in network._model.graph.node:  # "tactic timing": one entry per layer kind and shape profile
                key = f"{node.op_type}|{node.name}|{json.dumps(profile, sort_keys=True)}"
                if cache is not None and key in cache._entries:
                    STATE["stats"]["timing_cache_hits"] += 1
                else:
                    STATE["stats"]["timing_cache_misses"] += 1
                    if cache is not None:
                        cache._entries[key] = 0.01
            name, cc = STATE["devices"][STATE["current"]]
            header = {"version": version, "gpu": name, "cc": list(cc), "strongly_typed": network._strongly_typed,
                      "profile": profile, "verbosity": int(config.profiling_verbosity),
                      "workspace": config.get_memory_pool_limit(ns["MemoryPoolType"].WORKSPACE),
                      "opt_level": config.builder_optimization_level}
            head = json.dumps(header).encode()
            onnx_bytes = network._model.SerializeToString()
            return IHostMemory(MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<Q", len(onnx_bytes))
                               + onnx_bytes)

    if v10:
        def _fast(self: Any) -> bool:
            return True
        Builder.platform_has_fast_fp16 = property(_fast)  # type: ignore[attr-defined]
        Builder.platform_has_fast_int8 = property(_fast)  # type: ignore[attr-defined]
        Builder.platform_has_tf32 = property(_fast)  # type: ignore[attr-defined]

    def parse_plan(data: bytes) -> tuple[dict[str, Any], bytes] | str:
        if not data.startswith(MAGIC):
            return "Magic tag does not match"
        try:
            at = len(MAGIC)
            (n,) = struct.unpack_from("<I", data, at)
            header = json.loads(data[at + 4: at + 4 + n])
            at += 4 + n
            (m,) = struct.unpack_from("<Q", data, at)
            onnx_bytes = data[at + 8: at + 8 + m]
        except (struct.error, ValueError):
            return "Truncated engine file"
        if len(onnx_bytes) != m or len(data) != at + 8 + m:
            return "Truncated engine file: size mismatch"
        return header, onnx_bytes

    class Runtime(_Strict):
        _attrs = frozenset({"max_threads", "error_recorder", "gpu_allocator", "engine_host_code_allowed"})

        def __init__(self, logger: Any) -> None:
            if not isinstance(logger, ns["ILogger"]):
                raise TypeError("__init__(): incompatible constructor arguments: logger must be a tensorrt.ILogger")
            self._logger = adopt_logger(self, logger, "createInferRuntime", Severity.WARNING)

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> Any:
            parsed = parse_plan(bytes(serialized_engine))
            if isinstance(parsed, str):
                self._logger.log(Severity.ERROR, f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                 f"({parsed})")
                return None
            header, onnx_bytes = parsed
            if header["version"] != version:
                self._logger.log(Severity.ERROR, f"The engine plan file is not compatible with this version of "
                                                 f"TensorRT, expecting library version {version} got "
                                                 f"{header['version']}, please rebuild.")
                return None
            cc = list(STATE["devices"][STATE["current"]][1])
            if header["cc"] != cc:
                self._logger.log(Severity.ERROR, f"The engine plan file is generated on an incompatible device, "
                                                 f"expecting compute {cc} got compute {header['cc']}, please rebuild.")
                return None
            return ICudaEngine(header, onnx_bytes, self._logger)

    dtype_of = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 7: DataType.INT64}

    class ICudaEngine(_Strict):
        _attrs = frozenset({"name", "error_recorder", "weight_streaming_budget_v2"})

        def __init__(self, header: dict[str, Any], onnx_bytes: bytes, logger: Any) -> None:
            import onnx

            self._header, self._onnx, self._logger = header, onnx_bytes, logger
            self._model = onnx.load_from_string(onnx_bytes)
            inits = {t.name for t in self._model.graph.initializer}
            self._io = [(v, TensorIOMode.INPUT) for v in self._model.graph.input if v.name not in inits]
            self._io += [(v, TensorIOMode.OUTPUT) for v in self._model.graph.output]
            self._session: Any = None

        def _vi(self, name: str) -> Any:
            for v, _mode in self._io:
                if v.name == name:
                    return v
            raise KeyError(f"no IO tensor named {name}")

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        @property
        def num_layers(self) -> int:
            return len(self._model.graph.node)

        @property
        def num_optimization_profiles(self) -> int:
            return max(1, len(self._header["profile"]))

        @property
        def device_memory_size_v2(self) -> int:
            return 1 << 20

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0].name

        def get_tensor_mode(self, name: str) -> Any:
            for v, mode in self._io:
                if v.name == name:
                    return mode
            return TensorIOMode.NONE

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            """The network's dims, as ICudaEngine::getTensorShape reports them: -1 for every dynamic dimension of
            an input, even when its profile has min == max (the profile does not make the network static; the
            shape is set per context with set_input_shape). Outputs: inferred from the network at the profile's
            smallest input, batch -1 when the input is dynamic."""
            (inp, _m), = [io for io in self._io if io[1] == TensorIOMode.INPUT]
            dims = self._vi(inp.name).type.tensor_type.shape.dim
            in_shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
            if self.get_tensor_mode(name) == TensorIOMode.INPUT:
                return in_shape
            lo = self._header["profile"].get(inp.name, [in_shape])[0]
            shape = self._output_shapes(tuple(lo))[name]
            return shape if -1 not in in_shape else (-1, *shape[1:])

        def _output_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
            """Output shapes for one input shape (TensorRT's shape inference; here: a run of the ONNX on zeros)."""
            cache = self.__dict__.setdefault("_shape_cache", {})
            if input_shape not in cache:
                (inp, _m), = [io for io in self._io if io[1] == TensorIOMode.INPUT]
                outs = [v.name for v, m in self._io if m == TensorIOMode.OUTPUT]
                dtype = ns["nptype"](self.get_tensor_dtype(inp.name))
                values = self._run(outs, {inp.name: np.zeros(input_shape, dtype)})
                cache[input_shape] = {n: tuple(v.shape) for n, v in zip(outs, values)}
            return cache[input_shape]

        def _run(self, outs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                self._session = ort.InferenceSession(self._onnx, opts, providers=["CPUExecutionProvider"])
            return self._session.run(outs, feeds)

        def get_tensor_dtype(self, name: str) -> Any:
            return dtype_of[self._vi(name).type.tensor_type.elem_type]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            assert profile_index == 0 and self.get_tensor_mode(name) == TensorIOMode.INPUT
            return [tuple(s) for s in self._header["profile"][name]]

        def create_execution_context(self) -> "IExecutionContext":
            return IExecutionContext(self)

        def create_engine_inspector(self) -> "EngineInspector":
            return EngineInspector(self)

    if v10:
        ICudaEngine.device_memory_size = property(lambda self: 1 << 20)  # type: ignore[attr-defined]

    class IExecutionContext(_Strict):
        _attrs = frozenset({"name", "debug_sync", "profiler", "error_recorder"})

        def __init__(self, engine: ICudaEngine) -> None:
            self._engine, self._shapes, self._addresses = engine, {}, {}

        @property
        def engine(self) -> ICudaEngine:
            return self._engine

        def set_input_shape(self, name: str, shape: Any) -> bool:
            e = self._engine
            shape = tuple(int(d) for d in shape)
            assert e.get_tensor_mode(name) == TensorIOMode.INPUT, f"{name} is not an input"
            lo, _opt, hi = e._header["profile"].get(name, [e.get_tensor_shape(name)] * 3)
            if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                e._logger.log(Severity.ERROR, f"IExecutionContext::setInputShape: Error Code 3: API Usage Error "
                                              f"(shape {shape} is outside the profile {lo}..{hi} of {name})")
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            e = self._engine
            if e.get_tensor_mode(name) == TensorIOMode.INPUT:
                # NvInferRuntime.h IExecutionContext::getTensorShape: a dimension the profile pins (min == max)
                # is reported with that value before setInputShape; the engine keeps -1 for it
                prof = e._header["profile"].get(name)
                pinned = tuple(prof[0]) if prof is not None and prof[0] == prof[2] else e.get_tensor_shape(name)
                return self._shapes.get(name, pinned)
            (inp, _m), = [io for io in e._io if io[1] == TensorIOMode.INPUT]
            shape = self.get_tensor_shape(inp.name)
            return e.get_tensor_shape(name) if -1 in shape else e._output_shapes(shape)[name]

        def set_tensor_address(self, name: str, memory: int) -> bool:
            assert isinstance(memory, int) and memory in STATE["memory"], "not a device pointer"
            self._addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            e = self._engine
            assert stream_handle in STATE["streams"], "execute_async_v3 on an unknown stream"
            names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
            missing = [n for n in names if n not in self._addresses]
            assert not missing, f"no address bound for {missing}"
            feeds = {}
            for n in names:
                if e.get_tensor_mode(n) == TensorIOMode.INPUT:
                    shape = self.get_tensor_shape(n)
                    assert -1 not in shape, f"input shape of {n} not set"
                    dtype = ns["nptype"](e.get_tensor_dtype(n))
                    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
                    feeds[n] = STATE["memory"][self._addresses[n]][:nbytes].view(dtype).reshape(shape).copy()
            outs = [n for n in names if e.get_tensor_mode(n) == TensorIOMode.OUTPUT]
            for n, value in zip(outs, e._run(outs, feeds)):
                raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
                block = STATE["memory"][self._addresses[n]]
                if raw.size > block.size:
                    e._logger.log(Severity.ERROR, f"output {n} does not fit its buffer")
                    return False
                block[:raw.size] = raw
            STATE["stats"]["executions"] += 1
            return True

    def tensor(name: str, dtype: str) -> dict[str, Any]:
        if v10:
            return {"Name": name, "Format/Datatype": f"Row major linear {dtype} format"}
        return {"Name": name, "Format": "Row major linear", "Datatype": dtype}

    class EngineInspector(_Strict):
        _attrs = frozenset({"execution_context", "error_recorder"} | ({"engine", "context"} if v10 else set()))

        def __init__(self, engine: ICudaEngine) -> None:
            self._engine = engine

        def get_engine_information(self, format: Any) -> str:  # noqa: A002 - TensorRT's name
            import onnx

            assert isinstance(format, LayerInformationFormat)
            model = onnx.shape_inference.infer_shapes(self._engine._model)
            elem = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
            names = {1: "FP32", 10: "FP16", 3: "Int8", 2: "UInt8", 6: "Int32", 7: "Int64", 9: "Bool"}
            detailed = self._engine._header["verbosity"] == int(ProfilingVerbosity.DETAILED)
            layers: list[Any] = []
            for node in model.graph.node:
                if not detailed:
                    layers.append(node.name or node.op_type)
                    continue
                outs = [tensor(o, names.get(elem.get(o, 1), "FP32")) for o in node.output]
                layers.append({"Name": node.name or node.op_type, "LayerType": node.op_type, "Outputs": outs})
            io = [v.name for v, _m in self._engine._io]
            # 10.x: one "Format/Datatype" string and "Bindings"; 11.x: "Format" and "Datatype" apart, "I/O Tensors"
            # (TensorRT's own trt-perf-analysis schema reads both tensor forms)
            return json.dumps({"Layers": layers, "Bindings" if v10 else "I/O Tensors": io})

    api: dict[str, Any] = dict(Builder=Builder, Runtime=Runtime, ICudaEngine=ICudaEngine,
                               IExecutionContext=IExecutionContext, EngineInspector=EngineInspector,
                               IProgressMonitor=IProgressMonitor)
    if v10:
        class IInt8Calibrator:
            def get_batch_size(self) -> int: return 1

        class IInt8EntropyCalibrator2(IInt8Calibrator): pass
        class IInt8MinMaxCalibrator(IInt8Calibrator): pass
        class IInt8LegacyCalibrator(IInt8Calibrator): pass

        api.update(IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2,
                   IInt8MinMaxCalibrator=IInt8MinMaxCalibrator, IInt8LegacyCalibrator=IInt8LegacyCalibrator)
    return api
