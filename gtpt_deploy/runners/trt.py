"""TensorRT backend: a plain serialized plan (``.engine`` / ``.plan``) plus the JSON sidecar written beside it.

The sidecar (``foo.engine.json``, see ``engines/build.py``) carries the model metadata, the optimization profile and
what the plan was built with (TensorRT version, GPU compute capability). Plans only load with the TensorRT version
that built them and are tuned for one GPU architecture, so both are compared *before* deserializing and a mismatch
is refused with one line that says which and gives the ``gtpt-deploy build`` command that rebuilds it.

Device memory goes through :mod:`gtpt_deploy.tensorrt.cuda_mem` (cuda-python, no torch, no pycuda): buffers for the
profile's largest batch are allocated once per activation, addresses are bound once, and each call is
``set_input_shape`` (dynamic profiles) -> copy in -> ``execute_async_v3`` -> copy out -> synchronize, all on one stream.
This module and ``engines/`` are the only ones that touch ``tensorrt`` (through :mod:`gtpt_deploy.tensorrt.api`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import engine_sidecar_path
from ..errors import ArtifactError, GtptError, RunnerInputError
from ..metadata import ModelMeta
from ..tensorrt import cuda_mem
from ..tensorrt.api import load_tensorrt
from ..tensorrt.sidecar import read_engine_sidecar
from .base import Runner, parse_device

log = logging.getLogger(__name__)

OUTPUTS = ("simcc_x", "simcc_y")


def _gpu_index(device: str) -> int:
    """``cuda`` -> 0, ``cuda:N`` -> N; ``cpu`` is refused: an engine runs nowhere but on an NVIDIA GPU."""
    kind, index = parse_device(device)
    if kind != "cuda":
        raise GtptError(f"TensorRT engines run on a CUDA GPU, got --device {device}; pass --device cuda (or cuda:N) "
                        f"for the engine, and --baseline-device cpu in validate to keep a CPU baseline")
    return int(index or 0)


class TrtRunner(Runner):
    """TensorRT inference of an engine built by ``gtpt-deploy build``.

    Args:
        path: ``.engine`` / ``.plan`` file with its ``.engine.json`` sidecar beside it.
        device: ``cuda`` (GPU 0) or ``cuda:N``; ``cpu`` is refused.
        threads: ignored (accepted so that every backend takes the same options).
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", threads: int | None = None) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.gpu = _gpu_index(device)
        self._mem: Any = None
        self._buffers: dict[str, int] = {}
        self._gpu_name = ""
        self._stream: int | None = None
        self._context = self._engine = self._runtime = self._trt = self._logger = None

    # ------------------------------------------------------------------ activation
    def _activate(self) -> tuple[ModelMeta, int | None]:
        side = read_engine_sidecar(self.path)
        meta = ModelMeta.from_dict(side["model"], source=str(engine_sidecar_path(self.path)))
        api = load_tensorrt("Running TensorRT engines")
        mem, gpu = cuda_mem.open_gpu(self.gpu)
        self._check_built_here(side, api.version, gpu)
        plan = self.path.read_bytes()
        digest = hashlib.sha256(plan).hexdigest()
        if len(plan) != side.get("engine_bytes", len(plan)) or digest != side["engine_sha256"]:
            raise ArtifactError(f"{self.path.name} is {len(plan)} bytes and does not match the sha256 its sidecar "
                                f"recorded ({side.get('engine_bytes', '?')} bytes): truncated or replaced; "
                                f"rebuild it: {self._rebuild(side)}")
        trt = api.trt
        # TensorRT requires the logger and the runtime to outlive every engine and context made from them
        self._logger = logger = api.logger()   # the process's one TensorRT logger
        mark = logger.mark()
        self._runtime = trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            errors = logger.errors_since(mark)
            why = errors[-1] if errors else "no reason given"
            self._release()
            raise ArtifactError(f"TensorRT {api.version} could not deserialize {self.path.name} ({why}); "
                                f"rebuild it: {self._rebuild(side)}")
        self._engine, self._trt, self._mem, self._gpu_name = engine, trt, mem, gpu.name
        try:
            return meta, self._setup(meta, side)
        except BaseException:
            self._release()
            raise

    def _check_built_here(self, side: dict[str, Any], version: str, gpu: cuda_mem.GpuInfo) -> None:
        built_cc = str(side["gpu"].get("compute_capability", "?"))
        if side["tensorrt_version"] != version:
            raise ArtifactError(f"{self.path.name} was built with TensorRT {side['tensorrt_version']} but TensorRT "
                                f"{version} is installed (a plan only loads with the version that built it); "
                                f"rebuild it here: {self._rebuild(side)}")
        if built_cc != gpu.cc:
            raise ArtifactError(f"{self.path.name} was built for a GPU of compute capability {built_cc} "
                                f"({side['gpu'].get('name', '?')}) but GPU {gpu.index} is {gpu.name} (compute "
                                f"capability {gpu.cc}); rebuild it on this GPU: {self._rebuild(side)}")
        if side["gpu"].get("name") != gpu.name:
            log.info("%s was built on %s, running on %s (same compute capability %s)", self.path.name,
                     side["gpu"].get("name"), gpu.name, gpu.cc)

    def _rebuild(self, side: dict[str, Any]) -> str:
        return str(side.get("rebuild_command") or f"gtpt-deploy build MODEL.onnx -o {self.path} --force")

    def _setup(self, meta: ModelMeta, side: dict[str, Any]) -> int | None:
        """IO tensors, execution context, stream and device buffers for the largest batch -> the static batch."""
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not set(OUTPUTS) <= set(outputs):
            raise ArtifactError(f"{self.path.name}: expected one input and outputs {list(OUTPUTS)}, got inputs "
                                f"{inputs} and outputs {outputs}; is this a GTPT pose engine?")
        for n in (inputs[0], *OUTPUTS):
            if engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise ArtifactError(f"{self.path.name}: tensor {n} is {engine.get_tensor_dtype(n)}, expected float32 "
                                    f"I/O (FP16/INT8 models keep float32 inputs and outputs); rebuild from the ONNX")
        self._input = inputs[0]
        shape = tuple(int(d) for d in engine.get_tensor_shape(self._input))
        h, w = (int(v) for v in meta.input_size)
        if len(shape) != 4 or shape[1:] != (3, h, w):
            raise ArtifactError(f"{self.path.name}: input {self._input} is {shape}, expected (B, 3, {h}, {w}) "
                                f"from the sidecar's model metadata; rebuild the engine")
        self._shape: tuple[int, ...] | None = None
        if shape[0] > 0:  # static input: its shape is fixed, set_input_shape is not needed
            self._min_batch = self._max_batch = shape[0]
            self._shape = shape
        else:
            lo, _opt, hi = engine.get_tensor_profile_shape(self._input, 0)
            self._min_batch, self._max_batch = int(lo[0]), int(hi[0])
        self._context = engine.create_execution_context()
        self._stream = self._mem.create_stream()
        self._set_batch(self._max_batch)  # output shapes at the largest batch size the buffers must hold
        for name in (self._input, *OUTPUTS):
            full = tuple(int(d) for d in self._context.get_tensor_shape(name))
            self._buffers[name] = self._mem.alloc(int(np.prod(full)) * 4)
            if not self._context.set_tensor_address(name, self._buffers[name]):
                raise ArtifactError(f"{self.path.name}: TensorRT refused the address of tensor {name}")
        return self._max_batch if self._min_batch == self._max_batch else None

    def _set_batch(self, batch: int) -> None:
        shape = (batch, *[int(d) for d in self._engine.get_tensor_shape(self._input)][1:])
        if shape == self._shape:
            return
        if not (self._min_batch <= batch <= self._max_batch):
            raise RunnerInputError(f"{self.path.name}: a batch of {batch} is outside the engine's profile "
                                   f"{self._min_batch}..{self._max_batch}; pass --batch {self._max_batch} or rebuild "
                                   f"with --dynamic-batch {self._min_batch},{batch},{max(batch, self._max_batch)}")
        if not self._context.set_input_shape(self._input, shape):
            raise RunnerInputError(f"{self.path.name}: TensorRT rejected input shape {shape} (profile batch "
                                   f"{self._min_batch}..{self._max_batch})")
        self._shape = shape

    # ------------------------------------------------------------------ inference
    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._set_batch(batch.shape[0])
        mem, stream = self._mem, self._stream
        mem.h2d(self._buffers[self._input], batch, stream)
        if not self._context.execute_async_v3(stream):
            raise ArtifactError(f"{self.path.name}: TensorRT execution failed on a batch of {batch.shape[0]}")
        outs = []
        for name in OUTPUTS:
            host = np.empty(tuple(int(d) for d in self._context.get_tensor_shape(name)), np.float32)
            mem.d2h(host, self._buffers[name], stream)
            outs.append(host)
        mem.sync(stream)  # the host arrays are complete only after the stream is done
        return outs[0], outs[1]

    def _release(self) -> None:
        mem = self._mem
        if mem is not None:
            for ptr in self._buffers.values():
                mem.free(ptr)
            if self._stream is not None:
                mem.destroy_stream(self._stream)
        self._buffers, self._stream, self._mem = {}, None, None
        # the context must go before the engine, the engine before the runtime
        self._context = self._engine = self._runtime = self._logger = None

    def _deactivate(self) -> None:
        self._release()

    @property
    def description(self) -> str:
        if self._mem is None:
            return self.backend
        return f"tensorrt {self._trt.__version__} [{self._gpu_name}]"
