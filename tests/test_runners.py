"""runners: the one contract (shape / dtype checks, activation, timing), backend choice, ORT providers,
torch vs ONNX Runtime numerics on the seed-0 fixture, and the ONNX-only (no torch) import path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gtpt_deploy.errors import ArtifactError, GtptError
from gtpt_deploy.runners import RunnerInputError, RunnerStateError, create_runner
from gtpt_deploy.runners.ort import OrtRunner
from gtpt_fixtures import FIXTURES, write_fake_pose_onnx


@pytest.fixture(scope="module")
def fake_b2(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b2.onnx", batch=2)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 256, 192)).astype(np.float32)


def test_create_runner_picks_backend_from_suffix(fake_dyn, tmp_path):
    assert type(create_runner(fake_dyn)).__name__ == "OrtRunner"
    pth = tmp_path / "m.pth"
    pth.write_bytes(b"x")  # not loaded until activation
    assert type(create_runner(pth)).__name__ == "TorchRunner"
    with pytest.raises(ArtifactError, match="cannot tell the backend"):
        create_runner(tmp_path / "model.tflite")
    with pytest.raises(ArtifactError, match="does not exist"):
        create_runner(tmp_path / "missing.onnx")


def test_engine_without_sidecar_refuses_clearly(tmp_path):
    engine = tmp_path / "gtpt_t_coco_b1_fp16.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match="has no sidecar gtpt_t_coco_b1_fp16.engine.json"):
        create_runner(engine).activate()


def test_torch_runner_refuses_ort_only_device(tmp_path):
    pth = tmp_path / "m.pth"
    pth.write_bytes(b"x")
    with pytest.raises(GtptError, match="chosen with --provider"):
        create_runner(pth, device="tensorrt")
    with pytest.raises(GtptError, match="applies to ONNX artifacts"):
        create_runner(pth, provider="cuda")


def test_contract_shapes_dtype_and_timing(fake_dyn):
    runner = create_runner(fake_dyn)
    with pytest.raises(RunnerStateError, match="not active"):
        runner.infer(_crops(1))
    with runner as r:
        assert r.input_shape == (None, 3, 256, 192) and r.static_batch is None
        x, y = r.infer(_crops(3))
        assert x.shape == (3, 17, 384) and y.shape == (3, 17, 512) and x.dtype == y.dtype == np.float32
        assert len(r.times) == 1 and r.times[0] > 0
        assert "CPUExecutionProvider" in r.description and r.providers == ["CPUExecutionProvider"]
        with pytest.raises(RunnerInputError, match="float32"):
            r.infer(_crops(1).astype(np.float64))
        with pytest.raises(RunnerInputError, match="NCHW"):
            r.infer(np.zeros((1, 256, 192, 3), np.float32))
        with pytest.raises(RunnerInputError, match="NCHW"):
            r.infer(np.zeros((1, 3, 128, 96), np.float32))
        with pytest.raises(RunnerInputError, match="numpy"):
            r.infer([[0.0]])
        assert len(r.times) == 1  # rejected batches are not timed
    assert not runner.is_active


def test_static_batch_is_enforced(fake_b2):
    with create_runner(fake_b2) as r:
        assert r.static_batch == 2 and r.input_shape == (2, 3, 256, 192)
        assert r.infer(_crops(2))[0].shape == (2, 17, 384)
        with pytest.raises(RunnerInputError, match="exactly 2"):
            r.infer(_crops(1))


def test_outputs_are_checked_against_metadata(tmp_path):
    bad = write_fake_pose_onnx(tmp_path / "bad.onnx", bins=(300, 512))  # metadata says 192*2 = 384 x bins
    with create_runner(bad) as r, pytest.raises(ArtifactError, match=r"simcc_x \(1, 17, 384\)"):
        r.infer(_crops(1))


def test_onnx_without_metadata_is_refused(tmp_path):
    plain = write_fake_pose_onnx(tmp_path / "plain.onnx", meta=False)
    with pytest.raises(ArtifactError, match="no gtpt-deploy metadata"):
        create_runner(plain).activate()


def test_not_an_onnx_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        create_runner(junk).activate()


def test_gpu_providers_missing_or_silently_falling_back(fake_dyn, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(GtptError, match="onnxruntime-gpu"):
        create_runner(fake_dyn, device="cuda").activate()

    # onnxruntime-gpu on a machine without a usable GPU: the provider is listed, the session quietly runs on CPU.
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession",
                        lambda path, sess_options=None, providers=None: real(path, sess_options,
                                                                             providers=["CPUExecutionProvider"]))
    for provider in ("cuda", "tensorrt"):
        with pytest.raises(GtptError, match="fell back to CPUExecutionProvider"):
            OrtRunner(fake_dyn, provider=provider).activate()
    with pytest.raises(GtptError, match="providers are"):
        OrtRunner(fake_dyn, provider="gpu")
    with pytest.raises(GtptError, match="expected a device"):
        OrtRunner(fake_dyn, device="gpu")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_and_onnxruntime_agree_on_seed0_fixture(seed0_t_checkpoint, seed0_t_onnx_b1):
    import torch

    io = torch.load(FIXTURES / "gtpt_t_human_seed0_io.pt", weights_only=True)
    x = io["input"].numpy()
    threads = torch.get_num_threads()
    with create_runner(seed0_t_checkpoint, threads=1) as tr:
        assert tr.meta.variant == "gtpt_t_coco" and tr.static_batch is None and torch.get_num_threads() == 1
        px, py = tr.infer(x)
    assert torch.get_num_threads() == threads  # restored on exit
    # the official code's outputs: the right (EMA) branch, to ~1e-5
    np.testing.assert_allclose(px, io["pred_x"].numpy(), atol=1e-4)
    np.testing.assert_allclose(py, io["pred_y"].numpy(), atol=1e-4)
    with create_runner(seed0_t_onnx_b1) as r:
        assert r.meta.variant == "gtpt_t_coco" and r.static_batch == 1
        for i in range(2):
            ox, oy = r.infer(x[i:i + 1])
            np.testing.assert_allclose(ox, px[i:i + 1], atol=1e-4)
            np.testing.assert_allclose(oy, py[i:i + 1], atol=1e-4)


def test_onnx_only_modules_import_and_run_without_torch(fake_dyn, tmp_path):
    """An ONNX-Runtime-only install: these modules must not import torch, and an ONNX runner must work."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is hidden in this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        for m in ("runtime.transforms", "runtime.codec", "coco", "eval.metrics", "runners", "runners.base",
                  "runners.ort", "runners.trt", "runtime.predictor", "runtime.run", "runtime.images", "runtime.boxes", "runtime.detect", "eval.compare",
                  "runtime.draw", "eval.validate", "cli"):
            importlib.import_module("gtpt_deploy." + m)
        from gtpt_deploy import create_runner
        from gtpt_deploy.runtime.predictor import Predictor
        with create_runner({str(fake_dyn)!r}) as r:
            x, y = r.infer(np.zeros((2, 3, 256, 192), np.float32))
            assert x.shape == (2, 17, 384)
        assert "torch" not in sys.modules
        from click.testing import CliRunner
        from gtpt_deploy.cli import main
        for cmd in (["--help"], ["run", "--help"], ["validate", "--help"]):
            res = CliRunner().invoke(main, cmd)
            assert res.exit_code == 0, res.output
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_torch_runner_turns_tf32_off_only_during_its_own_calls():
    """The FP32 reference runs without TF32 on CUDA, but the process's switches are restored after each call (they
    used to be turned off for the whole process when a CUDA torch runner was activated; issue 19)."""
    torch = pytest.importorskip("torch")
    from gtpt_deploy.runners.torch import exact_fp32

    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # noqa: E731
    saved = flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with exact_fp32(torch, "cuda:0"):
            assert flags() == (False, False)
        assert flags() == (True, True)
        with pytest.raises(RuntimeError), exact_fp32(torch, "cuda"):
            raise RuntimeError("a failed call restores them too")
        assert flags() == (True, True)
        with exact_fp32(torch, "cpu"):
            assert flags() == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
