"""``TrtRunner`` and ``run`` / ``validate`` of ``.engine`` files, against the fake TensorRT in both API flavours.

The fake executes the plan's ONNX with ONNX Runtime on the fake device memory behind the addresses the runner binds,
so an engine must reproduce its ONNX exactly: same results.json, same AP, 100% argmax agreement.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from fake_tensorrt import install
from gtpt_deploy.artifacts import engine_sidecar_path
from gtpt_deploy.cli import main
from gtpt_deploy.engines import build_engine
from gtpt_deploy.errors import ArtifactError, RunnerInputError
from gtpt_deploy.runners import create_runner
from gtpt_fixtures import COCO_VAL, PEOPLE, write_fake_pose_onnx

MODELS = Path(__file__).resolve().parents[1] / "models"
MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"   # 4 images, 12 persons with kpts


def _cli(args: list[object]):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def onnx_dyn(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("onnx") / "fake_dyn.onnx", batch=None)


@pytest.fixture(scope="module")
def sample_onnx_b8(tmp_path_factory) -> Path:
    """The memorized sample checkpoint (AP ~0.8 on these persons) exported once, static batch 8.

    A plain TorchScript export with gtpt metadata (no simplification or parity checks: those are export's tests;
    here only engine == its ONNX matters), to keep the test fast.
    """
    import torch

    from gtpt_deploy.metadata import ModelMeta, write_onnx_meta
    from gtpt_deploy.models import create_model

    out = tmp_path_factory.mktemp("sample") / "sample_b8.onnx"
    model = create_model(checkpoint=MODELS / "gtpt_t_coco_sample.pth")
    with warnings.catch_warnings():  # the TorchScript exporter's tracer / constant-folding notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(8, 3, *model.cfg.image_size),), str(out), dynamo=False,
                          opset_version=17, input_names=["images"], output_names=["simcc_x", "simcc_y"])
    m = onnx.load(str(out))
    write_onnx_meta(m, ModelMeta.for_config(model.cfg, 8))
    onnx.save(m, str(out))
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_engine_runs_and_validates_like_its_onnx(fake_trt, sample_onnx_b8, tmp_path):
    pytest.importorskip("pycocotools")
    onnx_path = sample_onnx_b8
    engine = tmp_path / "sample_b8.engine"
    res = _cli(["build", onnx_path, "-o", engine])
    assert res.exit_code == 0, res.output

    images = [PEOPLE / "zidane.jpg"]
    outs = {}
    for name, artifact in (("onnx", onnx_path), ("engine", engine)):
        device = ["--device", "cuda"] if name == "engine" else []
        res = _cli(["run", artifact, *images, "--out", tmp_path / name, "--no-draw", "--threads", "1", *device])
        assert res.exit_code == 0, res.output
        outs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert len(outs["engine"]) == len(outs["onnx"]) > 0
    for a, b in zip(outs["onnx"], outs["engine"]):
        assert a["image_id"] == b["image_id"] and np.allclose(a["keypoints"], b["keypoints"], atol=1e-4)

    res = _cli(["validate", onnx_path, engine, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images",
                "--threads", "1", "--max-ap-drop", "0", "--device", "cuda", "--baseline-device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    base, cand = json.loads(res.stdout)["rows"]
    assert cand["AP"] == base["AP"] and cand["delta_AP"] == 0.0 and cand["argmax_agreement"] == 1.0
    assert cand["runner"].startswith("tensorrt ") and base["AP"] > 0, (base, cand)
    assert fake_trt.STATE["memory"] == {}, "every device buffer is freed when the runner is done"


def test_dynamic_engine_batches_and_buffers(fake_trt, onnx_dyn, tmp_path):
    engine = build_engine(onnx_dyn, dynamic_batch=(1, 2, 4), output=tmp_path / "dyn.engine", progress=False).engine_path
    rng = np.random.default_rng(0)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_dyn), providers=["CPUExecutionProvider"])
    with create_runner(engine) as runner:
        assert runner.static_batch is None and "tensorrt" in runner.description
        for b in (3, 1, 4, 3):
            x = rng.standard_normal((b, 3, 256, 192)).astype(np.float32)
            got = runner.infer(x)
            want = session.run(["simcc_x", "simcc_y"], {"images": x})
            assert all(g.dtype == np.float32 and np.array_equal(g, w) for g, w in zip(got, want))
        with pytest.raises(RunnerInputError, match="outside the engine's profile 1..4"):
            runner.infer(np.zeros((5, 3, 256, 192), np.float32))
        assert fake_trt.STATE["stats"]["alloc"] == 3, "input + 2 outputs, allocated once per activation"
    assert fake_trt.STATE["stats"]["free"] == 3 and fake_trt.STATE["memory"] == {} and not fake_trt.STATE["streams"]


def test_version_mismatch_is_refused_with_the_rebuild_command(fake_trt, onnx_dyn, tmp_path, monkeypatch):
    import tensorrt as trt

    engine = build_engine(onnx_dyn, batch=2, output=tmp_path / "m.engine", progress=False).engine_path
    built = trt.__version__
    other = install(monkeypatch, "v11" if built.startswith("10.") else "v10", reset=False)
    with pytest.raises(ArtifactError) as err:
        create_runner(engine).activate()
    msg = str(err.value)
    assert "\n" not in msg and f"built with TensorRT {built} but TensorRT {other.__version__} is installed" in msg
    assert f"gtpt-deploy build {onnx_dyn} --batch 2 -o {engine} --force" in msg


def test_gpu_mismatch_is_refused(fake_trt, onnx_dyn, tmp_path):
    engine = build_engine(onnx_dyn, batch=2, output=tmp_path / "m.engine", progress=False).engine_path
    fake_trt.reset_state(devices=[("Fake H100", (9, 0))])
    with pytest.raises(ArtifactError, match=r"compute capability 8\.9 \(Fake L4\) but GPU 0 is Fake H100 "
                                            r"\(compute capability 9\.0\); rebuild it on this GPU: gtpt-deploy build"):
        create_runner(engine).activate()
    fake_trt.reset_state(devices=[])
    res = _cli(["run", engine, PEOPLE / "bus.jpg", "--out", tmp_path / "o", "--no-draw", "--device", "cuda"])
    assert res.exit_code == 2 and "no CUDA device" in res.stderr and "Traceback" not in res.output


def test_truncated_plan_and_missing_sidecar(fake_trt, onnx_dyn, tmp_path):
    engine = build_engine(onnx_dyn, batch=2, output=tmp_path / "m.engine", progress=False).engine_path
    data = engine.read_bytes()
    engine.write_bytes(data[: len(data) // 2])
    res = _cli(["run", engine, PEOPLE / "bus.jpg", "--out", tmp_path / "o", "--no-draw", "--device", "cuda:0"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "truncated or replaced" in res.stderr

    side = json.loads(engine_sidecar_path(engine).read_text())  # a damaged plan whose sidecar was "fixed" to match
    side["engine_sha256"] = __import__("hashlib").sha256(engine.read_bytes()).hexdigest()
    side["engine_bytes"] = engine.stat().st_size
    engine_sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(ArtifactError, match="could not deserialize m.engine .*Truncated"):
        create_runner(engine).activate()

    engine_sidecar_path(engine).unlink()
    with pytest.raises(ArtifactError, match="has no sidecar m.engine.json"):
        create_runner(engine).activate()


def test_min_equals_max_profile_of_a_dynamic_onnx_reports_minus_one_and_runs(fake_trt, onnx_dyn, tmp_path):
    """TensorRT's engine.get_tensor_shape keeps -1 for a dynamic input even when its profile has min == max; the
    runner takes the batch from the profile and sets the input shape itself."""
    import onnxruntime as ort
    import tensorrt as trt

    engine = build_engine(onnx_dyn, batch=3, output=tmp_path / "b3.engine", progress=False).engine_path
    runtime = trt.Runtime(trt.Logger())
    plan = runtime.deserialize_cuda_engine(engine.read_bytes())
    assert tuple(plan.get_tensor_shape("images"))[0] == -1 and tuple(plan.get_tensor_shape("simcc_x"))[0] == -1
    del plan, runtime
    x = np.random.default_rng(1).standard_normal((3, 3, 256, 192)).astype(np.float32)
    want = ort.InferenceSession(str(onnx_dyn), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    with create_runner(engine) as runner:
        assert runner.static_batch == 3
        got = runner.infer(x)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_tensorrt_extras_pair_one_cuda_major():
    """Each [tensorrt*] extra pins a TensorRT wheel and cuda-python of the same CUDA major (12 and 13 both offered),
    so that pip cannot mix TensorRT for CUDA 13 with a CUDA 12 setup."""
    import re
    import tomllib

    extras = tomllib.loads((MODELS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    majors = set()
    for name in [n for n in extras if n.startswith("tensorrt")]:
        reqs = extras[name]
        trt = [r for r in reqs if r.startswith("tensorrt")]
        cuda = [r for r in reqs if r.startswith("cuda-python")]
        assert len(trt) == 1 and len(cuda) == 1, (name, reqs)
        m = re.fullmatch(r"tensorrt-cu(\d+)>=10[.\d]*,<12", trt[0])
        assert m, f"[{name}] must name the CUDA major of its TensorRT wheel and bound it below 12: {trt[0]}"
        major = int(m.group(1))
        bounds = re.fullmatch(r"cuda-python>=(\d+)[.\d]*,<(\d+)", cuda[0])
        assert bounds and int(bounds.group(1)) == major and int(bounds.group(2)) == major + 1, (name, cuda[0])
        majors.add(major)
    assert majors == {12, 13}


def test_no_cuda_device_names_the_driver_requirement(monkeypatch):
    """cudaGetDeviceCount fails with cudaErrorInsufficientDriver on a driver older than the CUDA of cuda-python:
    the one-line error names the driver each CUDA major needs and the CUDA 12 pairing."""
    import sys
    import types

    from gtpt_deploy.tensorrt import cuda_mem

    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t = types.SimpleNamespace(cudaSuccess=0)
    rt.cudaGetDeviceCount = lambda: (35, 0)
    rt.cudaGetErrorName = lambda err: (0, b"cudaErrorInsufficientDriver")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    monkeypatch.setattr(cuda_mem, "memory_factory", cuda_mem.CudaRuntimeMemory)
    with pytest.raises(cuda_mem.NoCudaDeviceError) as err:
        cuda_mem.open_gpu(0)
    msg = str(err.value)
    assert "cudaErrorInsufficientDriver" in msg and "\n" not in msg
    assert "r580" in msg or "r535" in msg
    assert "gtpt-deploy[tensorrt-cu12]" in msg and "nvidia-smi" in msg


def test_engine_runs_on_cuda_without_device_option(fake_trt, onnx_dyn, tmp_path):
    """An engine runs only on a GPU, so run / validate default its device to cuda (a .pth/.onnx stays on cpu)."""
    pytest.importorskip("pycocotools")
    engine = build_engine(onnx_dyn, batch=2, output=tmp_path / "b2.engine", progress=False).engine_path
    res = _cli(["run", engine, PEOPLE / "zidane.jpg", "--out", tmp_path / "r", "--no-draw", "--threads", "1"])
    assert res.exit_code == 0, res.output
    res = _cli(["validate", onnx_dyn, engine, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images", "--threads", "1",
                "--batch", "2", "--max-ap-drop", "1", "--json"])
    assert res.exit_code == 0, res.output
    base, cand = json.loads(res.stdout)["rows"]
    assert cand["runner"].startswith("tensorrt ") and "tensorrt" not in base["runner"]
