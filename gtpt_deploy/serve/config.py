"""``config.pbtxt`` as a protobuf message: built from the artifact's metadata, rendered, parsed back, compared.

Triton reads ``config.pbtxt`` as the text form of its ``inference.ModelConfig`` message (model_config.proto).
tritonclient ships the generated ``model_config_pb2``; building the message (instead of a string template) means a
misspelled field or a wrong enum is an error here, not a model that silently fails to load on a GPU machine.

tritonclient is needed to *write* a repository (``pip install 'gtpt-deploy[triton]'``); no torch import.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Mapping

from ..errors import GtptError, MissingDependencyError
from ..metadata import ModelMeta

# Dynamic batching: wait at most this long for more requests before running a partial batch. A GTPT-T batch takes
# 5-40 ms on CPU, so 2 ms of queueing costs little latency and lets concurrent clients share a batch.
MAX_QUEUE_DELAY_US = 2000
PIPELINE_NAME = "gtpt_pipeline"
# Names become folder names and URL path segments (/v2/models/<name>/infer): keep to a portable set.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

_PB2: ModuleType | None = None


def model_config_pb2() -> ModuleType:
    """tritonclient's generated ``model_config_pb2`` module.

    ``tritonclient[http]`` installs the file but its ``tritonclient.grpc`` package refuses to import without grpcio,
    so the file is loaded by path then (it needs protobuf only).
    """
    global _PB2
    if _PB2 is not None:
        return _PB2
    try:
        import tritonclient
    except ImportError:
        raise MissingDependencyError("tritonclient", "triton", "Writing a Triton model repository") from None
    try:
        from tritonclient.grpc import model_config_pb2 as pb2
    except (ImportError, RuntimeError):  # RuntimeError: "does not include grpc support"
        path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
        spec = importlib.util.spec_from_file_location("tritonclient.grpc.model_config_pb2", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise MissingDependencyError("tritonclient", "triton", "Writing a Triton model repository") from None
        pb2 = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pb2)
        sys.modules[spec.name] = pb2
    _PB2 = pb2
    return pb2


def check_name(name: str) -> str:
    """A model name Triton accepts as a repository folder and in its URLs; GtptError otherwise."""
    if not _NAME.match(name) or name in (".", ".."):
        raise GtptError(f"model name '{name}' would be rejected by Triton or its URLs: expected letters, digits, "
                        f"'_', '.' or '-' (not starting with '.' or '-', at most 128 characters); choose another "
                        f"--name")
    return name


@dataclass(frozen=True)
class PoseIO:
    """Tensor names and per-request dims (without the batch dim) of a pose model.

    ``input``: (3, H, W) float32 normalized RGB crops; outputs ``simcc_x`` (K, W*split) and ``simcc_y``
    (K, H*split) float32 logits, all from the artifact's :class:`ModelMeta`.
    """

    input_name: str
    input_dims: tuple[int, int, int]
    output_names: tuple[str, str]
    output_dims: tuple[tuple[int, int], tuple[int, int]]

    @classmethod
    def of(cls, meta: ModelMeta, input_name: str = "input",
           output_names: tuple[str, str] = ("simcc_x", "simcc_y")) -> "PoseIO":
        h, w = (int(v) for v in meta.input_size)
        k, s = int(meta.num_keypoints), float(meta.split_ratio)
        return cls(input_name, (3, h, w), output_names, ((k, int(w * s)), (k, int(h * s))))


def pose_config(name: str, io: PoseIO, *, platform: str = "", backend: str = "", max_batch: int = 8,
                instances: int = 1, kind: str = "cpu", model_file: str = "", static_batch: int | None = None,
                accelerator: str | None = None, warmup: bool = False,
                parameters: Mapping[str, str] | None = None) -> object:
    """The ``ModelConfig`` of a pose model: batched FP32 crops in, SimCC logits out, dynamic batching.

    ``platform``: ``onnxruntime_onnx`` / ``tensorrt_plan`` / ``openvino``; or ``backend="python"`` for the
    Python-backend model. ``kind``: ``cpu`` / ``gpu`` instance group. ``static_batch``: a model that only takes
    exactly this batch (a static TensorRT profile): ``max_batch_size: 0``, no batcher, the batch in the dims.
    ``accelerator``: ONNX Runtime's TensorRT execution accelerator with this ``precision_mode`` (FP32 / FP16 /
    INT8). ``warmup``: one random batch of ``max_batch`` at load (the first request then pays no setup).
    No ``preferred_batch_size``: Triton's batcher guide says most models should not set it (the batcher then forms
    the largest batch available within the queue delay). ``parameters``: string parameters shown to the model.
    """
    pb2 = model_config_pb2()
    batch_prefix: list[int] = []
    if static_batch is not None:
        max_batch, batch_prefix = 0, [int(static_batch)]
    c = pb2.ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=int(max_batch))
    if model_file:
        c.default_model_filename = model_file
    c.input.add(name=io.input_name, data_type=pb2.TYPE_FP32, dims=batch_prefix + list(io.input_dims))
    for out_name, dims in zip(io.output_names, io.output_dims):
        c.output.add(name=out_name, data_type=pb2.TYPE_FP32, dims=batch_prefix + list(dims))
    if max_batch > 0:
        c.dynamic_batching.max_queue_delay_microseconds = MAX_QUEUE_DELAY_US
    _instances(c, pb2, instances, kind)
    if accelerator is not None:
        trt = c.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = accelerator
        trt.parameters["max_workspace_size_bytes"] = str(1 << 30)
    if warmup:
        w = c.model_warmup.add(name="random_batch", batch_size=max(1, int(max_batch)), count=1)
        w.inputs[io.input_name].data_type = pb2.TYPE_FP32
        w.inputs[io.input_name].dims.extend(batch_prefix + list(io.input_dims))
        w.inputs[io.input_name].random_data = True
    for key, value in (parameters or {}).items():
        c.parameters[key].string_value = str(value)
    check(c)
    return c


def pipeline_config(name: str, meta: ModelMeta, *, max_batch: int = 8, instances: int = 1,
                    parameters: Mapping[str, str] | None = None) -> object:
    """The ``ModelConfig`` of the Python-backend pipeline: one encoded image per request, its persons out.

    Input ``image``: TYPE_STRING (1,) - the file's bytes (JPEG, PNG, ...), batch dim first: a request is (1, 1).
    Outputs for N persons, per request: ``keypoints`` float32 (1, N, K, 3) x, y in image pixels and score;
    ``boxes`` float32 (1, N, 4) xywh; ``box_scores`` float32 (1, N). Dynamic batching hands the model up to
    ``max_batch`` queued requests per ``execute`` (one detector + pose pass over all their images); each request
    keeps its own response, so the ragged N never has to be padded. ``instances`` CPU instances run in parallel.
    """
    pb2 = model_config_pb2()
    k = int(meta.num_keypoints)
    c = pb2.ModelConfig(name=name, backend="python", max_batch_size=int(max_batch))
    c.input.add(name="image", data_type=pb2.TYPE_STRING, dims=[1])
    c.output.add(name="keypoints", data_type=pb2.TYPE_FP32, dims=[-1, k, 3])
    c.output.add(name="boxes", data_type=pb2.TYPE_FP32, dims=[-1, 4])
    c.output.add(name="box_scores", data_type=pb2.TYPE_FP32, dims=[-1])
    c.dynamic_batching.max_queue_delay_microseconds = MAX_QUEUE_DELAY_US
    _instances(c, pb2, instances, "cpu")  # detector + pre/post-processing are CPU code; the pose model has `kind`
    for key, value in (parameters or {}).items():
        c.parameters[key].string_value = str(value)
    check(c)
    return c


def _instances(c: object, pb2: ModuleType, count: int, kind: str) -> None:
    if kind not in ("cpu", "gpu"):
        raise GtptError(f"--kind must be cpu or gpu, got '{kind}'")
    if count < 1:
        raise GtptError(f"--instances must be at least 1, got {count}")
    g = c.instance_group.add()  # type: ignore[attr-defined]
    g.count = int(count)
    g.kind = pb2.ModelInstanceGroup.KIND_GPU if kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU


# openvino_backend README, "Loading non default model format": model.xml (IR, the default) or these
OPENVINO_FILES = ("model.xml", "model.onnx", "model.pdmodel", "model.saved_model")


class ConfigError(GtptError):
    """A config.pbtxt that Triton or its backend would reject at load time."""


def check(c: object) -> None:
    """Refuse a ``ModelConfig`` that Triton or the backend named in it would reject when loading it.

    Each rule is one that Triton documents or enforces (model_configuration.md; ValidateModelConfig in the core's
    model_config_utils.cc; the backends' READMEs), checked here so that it fails on the machine that writes the
    repository, not on the GPU server that loads it:

    * ``max_batch_size`` >= 0; every ``preferred_batch_size`` in 1..max_batch_size; dynamic batching needs
      ``max_batch_size`` > 0 (a non-batching model has no batch dimension to batch along);
    * dims are positive or -1; at least one input and one output; names unique;
    * at least one instance group, with count >= 1; ``tensorrt_plan`` takes ``KIND_GPU`` instances only
      (tensorrt_backend); the ``openvino`` backend ``KIND_CPU`` only, a model file it reads (model.xml / model.onnx /
      ...), and its documented PERFORMANCE_HINT / NUM_STREAMS values (openvino_backend README);
    * the ``tensorrt`` GPU execution accelerator exists for ``onnxruntime_onnx`` only among our platforms, with
      ``precision_mode`` FP32 / FP16 / INT8 (onnxruntime_backend README), and on ``KIND_GPU`` instances (on CPU
      instances ONNX Runtime would never use it: a silent no-op);
    * a warm-up batch is in 1..max_batch_size (1 for a non-batching model) and gives every input its type and dims.
    """
    pb2 = model_config_pb2()
    name = getattr(c, "name", "?")

    def bad(rule: str) -> ConfigError:
        return ConfigError(f"model '{name}': {rule}; Triton would refuse to load this config.pbtxt")

    mb = int(c.max_batch_size)  # type: ignore[attr-defined]
    platform = c.platform or c.backend  # type: ignore[attr-defined]
    if mb < 0:
        raise bad(f"max_batch_size must be >= 0, got {mb}")
    if c.HasField("dynamic_batching"):  # type: ignore[attr-defined]
        if mb == 0:
            raise bad("dynamic batching needs max_batch_size > 0 (got 0: the model has no batch dimension)")
        for size in c.dynamic_batching.preferred_batch_size:  # type: ignore[attr-defined]
            if not 1 <= size <= mb:
                raise bad(f"preferred_batch_size {size} must be within 1..max_batch_size {mb}")
    if not c.input or not c.output:  # type: ignore[attr-defined]
        raise bad("expected at least one input and one output")
    names = [t.name for t in list(c.input) + list(c.output)]  # type: ignore[attr-defined]
    if len(set(names)) != len(names) or not all(names):
        raise bad(f"tensor names must be unique and non-empty, got {names}")
    for t in list(c.input) + list(c.output):  # type: ignore[attr-defined]
        if not t.dims or any(d == 0 or d < -1 for d in t.dims):
            raise bad(f"dims of '{t.name}' must be positive or -1, got {list(t.dims)}")
    if not c.instance_group:  # type: ignore[attr-defined]
        raise bad("expected at least one instance group")
    kinds = {g.kind for g in c.instance_group}  # type: ignore[attr-defined]
    if any(g.count < 1 for g in c.instance_group):  # type: ignore[attr-defined]
        raise bad("instance group count must be at least 1")
    gpu, cpu = pb2.ModelInstanceGroup.KIND_GPU, pb2.ModelInstanceGroup.KIND_CPU
    if platform == "tensorrt_plan" and kinds != {gpu}:
        raise bad("the TensorRT backend runs GPU instances only (KIND_GPU); pass --kind gpu")
    if platform == "openvino":
        if kinds != {cpu}:
            raise bad("the OpenVINO backend runs CPU instances only (KIND_CPU); pass --kind cpu")
        if c.default_model_filename not in OPENVINO_FILES:  # type: ignore[attr-defined]
            raise bad(f"the OpenVINO backend reads {', '.join(OPENVINO_FILES)}, got "
                      f"'{c.default_model_filename}'")  # type: ignore[attr-defined]
        hint = c.parameters["PERFORMANCE_HINT"].string_value if "PERFORMANCE_HINT" in c.parameters else "LATENCY"  # type: ignore[attr-defined]
        streams = c.parameters["NUM_STREAMS"].string_value if "NUM_STREAMS" in c.parameters else "1"  # type: ignore[attr-defined]
        if hint not in ("LATENCY", "THROUGHPUT") or not (streams.isdigit() or streams in ("AUTO", "NUMA")):
            raise bad(f"OpenVINO PERFORMANCE_HINT must be LATENCY or THROUGHPUT and NUM_STREAMS a number, AUTO or "
                      f"NUMA, got {hint!r} / {streams!r}")
    for acc in c.optimization.execution_accelerators.gpu_execution_accelerator:  # type: ignore[attr-defined]
        if acc.name != "tensorrt" or platform != "onnxruntime_onnx":
            raise bad(f"GPU execution accelerator '{acc.name}' is not offered for platform '{platform}' (only "
                      f"'tensorrt' on onnxruntime_onnx)")
        if acc.parameters.get("precision_mode", "FP32") not in ("FP32", "FP16", "INT8"):
            raise bad(f"precision_mode must be FP32, FP16 or INT8, got '{acc.parameters['precision_mode']}'")
        if kinds != {gpu}:
            raise bad("the TensorRT execution accelerator only runs on KIND_GPU instances; pass --kind gpu")
    inputs = {t.name: t for t in c.input}  # type: ignore[attr-defined]
    for w in c.model_warmup:  # type: ignore[attr-defined]
        if not 1 <= w.batch_size <= max(mb, 1):
            raise bad(f"warm-up batch_size {w.batch_size} must be within 1..{max(mb, 1)}")
        if set(w.inputs) != set(inputs) or any(list(w.inputs[k].dims) != list(inputs[k].dims) or
                                               w.inputs[k].data_type != inputs[k].data_type for k in inputs):
            raise bad("the warm-up request must give every input with its config dims and data type")


def render(config: object) -> str:
    """The ``config.pbtxt`` text of ``config``, verified by parsing it back into an equal message."""
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    back = parse(text)
    if back != config:  # a bug in the builder, not a user error
        raise RuntimeError(f"config.pbtxt of {getattr(config, 'name', '?')} does not parse back to the same message")
    return text


def parse(text: str) -> object:
    """``config.pbtxt`` text -> ``inference.ModelConfig``; GtptError (with protobuf's line:column) when invalid."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise GtptError(f"not a valid Triton config.pbtxt ({e}); rewrite it with 'gtpt-deploy triton'") from None
