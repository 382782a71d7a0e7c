"""The config rules of serve/config.py against what Triton documents and enforces at load time (no server here).

Sources (each rule below names its own):
* model_configuration.md ("Maximum Batch Size", "Instance Groups", "Dynamic Batcher", "Model Warmup") and
  ValidateModelConfig in triton-inference-server/core src/model_config_utils.cc (max_batch_size >= 0, preferred
  sizes within 1..max_batch_size, at least one instance group, dims > 0 or -1);
* tensorrt_backend: plans run on GPU instances only;
* onnxruntime_backend README ("TensorRT Optimization"): gpu_execution_accelerator "tensorrt" with precision_mode
  FP32 / FP16 / INT8;
* openvino_backend README: CPU instances only (KIND_CPU).
"""

from __future__ import annotations

from typing import Callable

import pytest

pytest.importorskip("tritonclient", reason="writing Triton configs needs tritonclient (pip install '.[triton]')")

from gtpt_deploy.metadata import read_onnx_meta  # noqa: E402
from gtpt_deploy.serve import config as cfg  # noqa: E402


@pytest.fixture
def io(fake_dyn) -> cfg.PoseIO:
    return cfg.PoseIO.of(read_onnx_meta(fake_dyn), "images")


def _good(io: cfg.PoseIO, **kw) -> object:
    options = dict(platform="onnxruntime_onnx", max_batch=8, kind="gpu", warmup=True, accelerator="FP16")
    options.update(kw)
    return cfg.pose_config("pose", io, **options)


def _set(attr: str, value: object) -> Callable[[object], None]:
    return lambda c: setattr(c, attr, value)


def _kind(kind: str) -> Callable[[object], None]:
    pb2 = cfg.model_config_pb2()
    return lambda c: setattr(c.instance_group[0], "kind", getattr(pb2.ModelInstanceGroup, kind))


MUTATIONS = [
    # model_config_utils.cc ValidateModelConfig: "'max_batch_size' must be non-negative"
    ("negative max_batch_size", _set("max_batch_size", -1), "max_batch_size must be >= 0"),
    # model_config_utils.cc: "dynamic batching preferred size must be <= max batch size" / "must be positive"
    ("preferred above max", lambda c: c.dynamic_batching.preferred_batch_size.append(16), "preferred_batch_size 16"),
    ("preferred zero", lambda c: c.dynamic_batching.preferred_batch_size.append(0), "preferred_batch_size 0"),
    # model_configuration.md "Maximum Batch Size": 0 = no batching; the dynamic batcher needs a batch dimension
    ("batcher without batching", _set("max_batch_size", 0), "dynamic batching needs max_batch_size > 0"),
    # model_config_utils.cc ValidateModelInput/Output: dims must be > 0 or -1 (variable)
    ("zero dim", lambda c: c.input[0].dims.__setitem__(0, 0), "must be positive or -1"),
    ("dim -2", lambda c: c.output[0].dims.__setitem__(0, -2), "must be positive or -1"),
    ("duplicate tensor", lambda c: setattr(c.output[1], "name", c.output[0].name), "unique"),
    # model_config_utils.cc: "must specify one or more 'instance group's"
    ("no instance group", lambda c: c.ClearField("instance_group"), "at least one instance group"),
    ("zero instances", lambda c: setattr(c.instance_group[0], "count", 0), "count must be at least 1"),
    # onnxruntime_backend README: precision_mode FP32 / FP16 / INT8
    ("bad precision_mode", lambda c: c.optimization.execution_accelerators.gpu_execution_accelerator[0]
     .parameters.__setitem__("precision_mode", "BF16"), "precision_mode must be FP32, FP16 or INT8"),
    # the accelerator is ONNX Runtime's: on KIND_CPU it is never used (silently)
    ("accelerator on cpu", _kind("KIND_CPU"), "only runs on KIND_GPU"),
    # model_configuration.md "Model Warmup": batch_size within the model's max; every input given
    ("warmup batch too large", lambda c: setattr(c.model_warmup[0], "batch_size", 9), "warm-up batch_size 9"),
    ("warmup wrong dims", lambda c: c.model_warmup[0].inputs["images"].dims.__setitem__(0, 1), "warm-up request"),
]


@pytest.mark.parametrize("what, mutate, words", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_rule_refuses_what_triton_would_reject(io, what, mutate, words):
    c = _good(io)
    cfg.check(c)  # the unmutated config passes
    mutate(c)
    with pytest.raises(cfg.ConfigError, match=words) as e:
        cfg.check(c)
    assert "'pose'" in str(e.value) and "\n" not in str(e.value)


def test_platform_rules(io):
    # tensorrt_backend: GPU instances only
    with pytest.raises(cfg.ConfigError, match="GPU instances only"):
        cfg.pose_config("pose", io, platform="tensorrt_plan", kind="cpu")
    # the accelerator belongs to onnxruntime_onnx, not to TensorRT plans
    with pytest.raises(cfg.ConfigError, match="not offered for platform 'tensorrt_plan'"):
        cfg.pose_config("pose", io, platform="tensorrt_plan", kind="gpu", accelerator="FP16")
    # openvino_backend README: CPU only
    with pytest.raises(cfg.ConfigError, match="CPU instances only"):
        cfg.pose_config("pose", io, backend="openvino", kind="gpu")
    # a static batch: no batcher, the batch in the dims, a warm-up of batch 1
    c = cfg.pose_config("pose", io, platform="tensorrt_plan", kind="gpu", static_batch=1, warmup=True)
    assert c.max_batch_size == 0 and not c.HasField("dynamic_batching") and c.model_warmup[0].batch_size == 1
    assert list(c.input[0].dims) == [1, *io.input_dims]


def test_rendered_configs_parse_back_and_pass(io, fake_dyn):
    for c in (_good(io), cfg.pose_config("p", io, backend="python"), cfg.pose_config("o", io, backend="openvino", model_file="model.onnx"),
              cfg.pipeline_config("gtpt_pipeline", read_onnx_meta(fake_dyn), max_batch=4, instances=2)):
        back = cfg.parse(cfg.render(c))
        cfg.check(back)
        assert back == c


def test_openvino_repository_follows_the_backends_documented_config(fake_dyn, tmp_path):
    """openvino_backend README: backend "openvino", CPU devices only, an ONNX file named model.onnx through
    default_model_filename, parameters NUM_STREAMS / PERFORMANCE_HINT. Triton's OpenVINO backend is not in the CPU
    server here (only the Python backend), so this repository is checked against the documentation only."""
    from click.testing import CliRunner

    from gtpt_deploy.cli import main

    r = CliRunner().invoke(main, ["triton", str(fake_dyn), "--repo", str(tmp_path / "ov"), "--backend", "openvino"])
    assert r.exit_code == 0, r.output
    c = cfg.parse((tmp_path / "ov" / "fake_dyn" / "config.pbtxt").read_text())
    pb2 = cfg.model_config_pb2()
    assert c.backend == "openvino" and not c.platform and c.default_model_filename == "model.onnx"
    assert (tmp_path / "ov" / "fake_dyn" / "1" / "model.onnx").read_bytes() == fake_dyn.read_bytes()
    assert [g.kind for g in c.instance_group] == [pb2.ModelInstanceGroup.KIND_CPU] and c.max_batch_size == 8
    assert c.parameters["PERFORMANCE_HINT"].string_value == "LATENCY" and c.parameters["NUM_STREAMS"].string_value == "1"
    r = CliRunner().invoke(main, ["triton", str(fake_dyn), "--repo", str(tmp_path / "g"), "--backend", "openvino",
                                  "--kind", "gpu"])
    assert r.exit_code == 2 and "CPU instances only" in r.output and not (tmp_path / "g").exists()
    c.default_model_filename = "model.engine"
    with pytest.raises(cfg.ConfigError, match="reads model.xml, model.onnx"):
        cfg.check(c)
