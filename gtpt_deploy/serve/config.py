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


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Batch sizes the scheduler should aim for: half and the whole of ``max_batch`` (>= 2)."""
    return sorted({b for b in (max_batch // 2, max_batch) if b >= 2})


def pose_config(name: str, io: PoseIO, *, platform: str = "", backend: str = "", max_batch: int = 8,
                instances: int = 1, kind: str = "cpu", model_file: str = "",
                parameters: Mapping[str, str] | None = None) -> object:
    """The ``ModelConfig`` of a pose model: batched FP32 crops in, SimCC logits out, dynamic batching.

    ``platform``: ``onnxruntime_onnx`` / ``tensorrt_plan``; or ``backend="python"`` for the Python-backend model.
    ``kind``: ``cpu`` / ``gpu`` instance group. ``parameters``: string parameters shown to the model.
    """
    pb2 = model_config_pb2()
    c = pb2.ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=int(max_batch))
    if model_file:
        c.default_model_filename = model_file
    c.input.add(name=io.input_name, data_type=pb2.TYPE_FP32, dims=list(io.input_dims))
    for out_name, dims in zip(io.output_names, io.output_dims):
        c.output.add(name=out_name, data_type=pb2.TYPE_FP32, dims=list(dims))
    c.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes(max_batch))
    c.dynamic_batching.max_queue_delay_microseconds = MAX_QUEUE_DELAY_US
    _instances(c, pb2, instances, kind)
    for key, value in (parameters or {}).items():
        c.parameters[key].string_value = str(value)
    return c


def pipeline_config(name: str, meta: ModelMeta, *, instances: int = 1, kind: str = "cpu",
                    parameters: Mapping[str, str] | None = None) -> object:
    """The ``ModelConfig`` of the Python-backend pipeline: one encoded image in, its persons out.

    Input ``image``: TYPE_STRING (1,) - the file's bytes (JPEG, PNG, ...). Outputs for N persons: ``keypoints``
    float32 (N, K, 3) x, y in image pixels and score; ``boxes`` float32 (N, 4) xywh; ``box_scores`` float32 (N,).
    No server-side batching (each image has its own N); the pose model it calls batches across clients.
    """
    pb2 = model_config_pb2()
    k = int(meta.num_keypoints)
    c = pb2.ModelConfig(name=name, backend="python", max_batch_size=0)
    c.input.add(name="image", data_type=pb2.TYPE_STRING, dims=[1])
    c.output.add(name="keypoints", data_type=pb2.TYPE_FP32, dims=[-1, k, 3])
    c.output.add(name="boxes", data_type=pb2.TYPE_FP32, dims=[-1, 4])
    c.output.add(name="box_scores", data_type=pb2.TYPE_FP32, dims=[-1])
    _instances(c, pb2, instances, "cpu")  # detector + pre/post-processing are CPU code; the pose model has `kind`
    for key, value in (parameters or {}).items():
        c.parameters[key].string_value = str(value)
    return c


def _instances(c: object, pb2: ModuleType, count: int, kind: str) -> None:
    if kind not in ("cpu", "gpu"):
        raise GtptError(f"--kind must be cpu or gpu, got '{kind}'")
    if count < 1:
        raise GtptError(f"--instances must be at least 1, got {count}")
    g = c.instance_group.add()  # type: ignore[attr-defined]
    g.count = int(count)
    g.kind = pb2.ModelInstanceGroup.KIND_GPU if kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU


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
