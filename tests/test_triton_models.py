"""The Python-backend models (serve/python_model.py, serve/pipeline_model.py) against a fake ``pb_utils``.

The fake is honest to python_backend's own code where it matters here:
* ``Tensor.as_numpy()`` refuses a tensor in GPU memory with the message of ``PbTensor::AsNumpy`` in
  python_backend src/pb_tensor.cc ("Tensor is stored in GPU and cannot be converted to NumPy."); ``is_cpu()`` and
  ``to_dlpack()`` are the README's interoperability API;
* ``InferenceRequest(..., preferred_memory=PreferredMemory(TRITONSERVER_MEMORY_CPU, 0))`` is how BLS asks for CPU
  outputs (python_backend README, "Business Logic Scripting"); a pose model on a GPU instance otherwise answers in
  GPU memory. "GPU memory" is simulated (this machine has none): the data sits in host memory behind a tensor that
  behaves like a GPU one.
The real server route is tests/test_triton_server.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gtpt_deploy.metadata import read_onnx_meta
from gtpt_deploy.runners import create_runner

SERVE = Path(__file__).resolve().parents[1] / "gtpt_deploy" / "serve"
GPU_REFUSAL = "Tensor is stored in GPU and cannot be converted to NumPy."


class TritonModelException(Exception):
    pass


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray, gpu: bool = False) -> None:
        self._name, self._array, self._gpu = name, np.ascontiguousarray(array), gpu
        self.as_numpy_calls = 0

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return not self._gpu

    def as_numpy(self) -> np.ndarray:
        self.as_numpy_calls += 1
        if self._gpu:
            raise TritonModelException(GPU_REFUSAL)
        return self._array

    def to_dlpack(self):
        return self._array.__dlpack__()


def fake_pb_utils(run_pose, gpu_outputs: str) -> types.ModuleType:
    """``gpu_outputs``: "unless-cpu-preferred" (Triton honours preferred_memory) or "always"."""
    pb = types.ModuleType("triton_python_backend_utils")
    pb.TRITONSERVER_MEMORY_GPU, pb.TRITONSERVER_MEMORY_CPU = 2, 0  # TRITONSERVER_MemoryType values
    pb.TritonModelException = TritonModelException
    pb.Tensor = FakeTensor
    pb.requests, pb.outputs = [], []

    class PreferredMemory:
        def __init__(self, memory_type: int, memory_type_id: int = 0) -> None:
            self.memory_type, self.memory_type_id = memory_type, memory_type_id

    class Response:
        def __init__(self, tensors):
            self.tensors = tensors

        def has_error(self):
            return False

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs, preferred_memory=None, **kw):
            self.model_name, self.names, self.inputs, self.preferred = model_name, requested_output_names, inputs, \
                preferred_memory
            pb.requests.append(self)

        def exec(self):
            cpu = (gpu_outputs != "always" and self.preferred is not None
                   and self.preferred.memory_type == pb.TRITONSERVER_MEMORY_CPU)
            arrays = run_pose(self.inputs[0]._array)
            tensors = [FakeTensor(n, a, gpu=not cpu) for n, a in zip(self.names, arrays)]
            pb.outputs.extend(tensors)
            return Response(tensors)

    pb.PreferredMemory, pb.InferenceRequest = PreferredMemory, InferenceRequest
    pb.get_output_tensor_by_name = lambda r, n: next(t for t in r.tensors if t.name() == n)
    pb.get_input_tensor_by_name = lambda r, n: next(t for t in r if t.name() == n)  # a request: its tensors
    pb.InferenceResponse = lambda output_tensors=(), error=None: types.SimpleNamespace(
        output_tensors=list(output_tensors), error=error)
    pb.TritonError = str
    pb.Logger = types.SimpleNamespace(log_info=lambda msg: None)
    return pb


def _load(file: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, SERVE / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("gpu_outputs", ["unless-cpu-preferred", "always"])
def test_bls_pose_call_works_over_a_gpu_pose_model(fake_dyn, gpu_outputs):
    """Before: no preferred_memory and as_numpy() on the outputs -> every request over a GPU pose model failed."""
    pytest.importorskip("torch")  # the DLPack route reads GPU tensors with torch
    with create_runner(fake_dyn) as ort_runner:
        pb = fake_pb_utils(lambda batch: ort_runner.infer(batch), gpu_outputs)
        bls = _load("pipeline_model.py", "gtpt_pipeline_model_under_test")
        meta = read_onnx_meta(fake_dyn)
        crops = np.random.default_rng(0).standard_normal((3, 3, *meta.input_size)).astype(np.float32)
        with bls.BlsRunner(pb, "pose", meta, "images", ["simcc_x", "simcc_y"]) as runner:
            x, y = runner.infer(crops)
        ex, ey = ort_runner.infer(crops)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    (request,) = pb.requests
    assert request.preferred is not None and request.preferred.memory_type == pb.TRITONSERVER_MEMORY_CPU
    assert all(t.as_numpy_calls == 0 for t in pb.outputs if not t.is_cpu())  # never as_numpy on a GPU tensor


def test_python_pose_model_refuses_a_silent_cpu_fallback_on_kind_gpu(fake_dyn, tmp_path, monkeypatch):
    """Before: KIND_GPU asked for CUDA with CPU listed after it, and ONNX Runtime without CUDA ran on the CPU."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the GPU instance would really run on the GPU")
    pb = fake_pb_utils(lambda batch: (), "always")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(fake_dyn.read_bytes())
    config = {"parameters": {"device": {"string_value": "gpu"}, "onnx_file": {"string_value": "model.onnx"}},
              "input": [{"name": "images"}], "output": [{"name": "simcc_x"}, {"name": "simcc_y"}]}
    args = {"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1",
            "model_name": "pose", "model_instance_kind": "GPU", "model_instance_device_id": "0"}
    model = _load("python_model.py", "gtpt_python_model_under_test").TritonPythonModel()
    with pytest.raises(TritonModelException, match="KIND_GPU instance but ONNX Runtime .* runs it on"):
        model.initialize(args)
    # the same model on a CPU instance loads
    config["parameters"]["device"]["string_value"] = "cpu"
    model.initialize({**args, "model_config": json.dumps(config), "model_instance_kind": "CPU"})
    assert model.session.get_providers() == ["CPUExecutionProvider"]


def _pose_args(fake_dyn: Path, tmp_path: Path, **params: str) -> dict:
    (tmp_path / "1").mkdir(exist_ok=True)
    (tmp_path / "1" / "model.onnx").write_bytes(fake_dyn.read_bytes())
    config = {"parameters": {k: {"string_value": v} for k, v in {"onnx_file": "model.onnx", **params}.items()},
              "input": [{"name": "images"}], "output": [{"name": "simcc_x"}, {"name": "simcc_y"}]}
    return {"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1",
            "model_name": "pose", "model_instance_kind": "CPU", "model_instance_device_id": "0"}


def test_python_pose_model_runs_openvino_inside(fake_dyn, tmp_path, monkeypatch):
    """Issue 20 item 6: the Python-backend model can run OpenVINO (FP32) instead of ONNX Runtime; each request of
    a batched execute() gets its own rows back."""
    pytest.importorskip("openvino")
    pb = fake_pb_utils(lambda batch: (), "always")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    module = _load("python_model.py", "gtpt_python_model_ov_under_test")
    meta = read_onnx_meta(fake_dyn)
    crops = np.random.default_rng(1).standard_normal((3, 3, *meta.input_size)).astype(np.float32)
    requests = [[FakeTensor("images", crops[:1])], [FakeTensor("images", crops[1:])]]
    outputs = {}
    for runtime in ("onnxruntime", "openvino"):
        model = module.TritonPythonModel()
        model.initialize(_pose_args(fake_dyn, tmp_path, device="cpu", runtime=runtime, inference_precision="f32"))
        responses = model.execute(requests)
        assert [len(r.output_tensors[0]._array) for r in responses] == [1, 2]
        outputs[runtime] = [np.concatenate([r.output_tensors[i]._array for r in responses]) for i in (0, 1)]
    for ov_out, ort_out in zip(outputs["openvino"], outputs["onnxruntime"]):
        np.testing.assert_allclose(ov_out, ort_out, rtol=0, atol=1e-4)
    with pytest.raises(TritonModelException, match="runs on the CPU"):
        module.TritonPythonModel().initialize({**_pose_args(fake_dyn, tmp_path, device="gpu", runtime="openvino"),
                                               "model_instance_kind": "GPU"})


def test_python_runtime_option_is_written_and_checked(fake_dyn, tmp_path):
    from click.testing import CliRunner

    from gtpt_deploy.cli import main
    from gtpt_deploy.serve import config as cfg

    r = CliRunner().invoke(main, ["triton", str(fake_dyn), "--repo", str(tmp_path / "r"), "--backend", "python",
                                  "--python-runtime", "openvino"])
    assert r.exit_code == 0, r.output
    c = cfg.parse((tmp_path / "r" / "fake_dyn" / "config.pbtxt").read_text())
    assert c.parameters["runtime"].string_value == "openvino" and c.parameters["inference_precision"].string_value \
        == "f32"
    for extra, words in ((["--kind", "gpu"], "runs the model on the CPU"), ([], "add --backend python")):
        args = ["--backend", "python"] if extra else []
        r = CliRunner().invoke(main, ["triton", str(fake_dyn), "--repo", str(tmp_path / "x"), *args,
                                      "--python-runtime", "openvino", *extra])
        assert r.exit_code == 2 and words in r.output and not (tmp_path / "x").exists(), r.output
