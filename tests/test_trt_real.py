"""Real TensorRT on a real GPU: runs only where ``tensorrt`` and cuda-python import and a CUDA device exists.

Everywhere else (our CI) these tests are skipped with the reason; the same code paths run against the fake
TensorRT in test_engines.py / test_trt_runner.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gtpt_fixtures import COCO_VAL, write_fake_pose_onnx

MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"


def _unavailable() -> str | None:
    """Why real-TensorRT tests cannot run here (None: they can). Checked at collection, before any fixture."""
    try:
        import tensorrt
    except ImportError as e:
        return f"tensorrt is not installed ({e}); real-TensorRT tests need an NVIDIA GPU machine"
    if "fake_tensorrt" in str(getattr(tensorrt, "__file__", "")):
        return "only the fake tensorrt is importable"
    from gtpt_deploy.errors import GtptError
    from gtpt_deploy.tensorrt import cuda_mem

    try:
        cuda_mem.open_gpu(0)
    except GtptError as e:
        return f"no usable CUDA device: {e}"
    return None


REASON = _unavailable()
pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module")
def real_trt():
    """The installed TensorRT and GPU 0."""
    import tensorrt

    from gtpt_deploy.tensorrt import cuda_mem

    return tensorrt, cuda_mem.open_gpu(0)[1]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_real_build_and_run_matches_onnx_runtime(real_trt, tmp_path, dynamic):
    import onnxruntime as ort

    from gtpt_deploy.engines import build_engine
    from gtpt_deploy.runners import create_runner

    trt, gpu = real_trt
    onnx_path = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None if dynamic else 4)
    res = build_engine(onnx_path, dynamic_batch=(1, 4, 8) if dynamic else None, output=tmp_path / "fake.engine",
                       workspace_gib=1, progress=False)
    side = json.loads(res.sidecar_path.read_text())
    assert side["tensorrt_version"] == trt.__version__ and side["gpu"]["compute_capability"] == gpu.cc
    assert res.layers is None or res.layers["count"] > 0
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    with create_runner(res.engine_path) as runner:
        for b in ((1, 3, 8) if dynamic else (4,)):
            x = rng.standard_normal((b, 3, 256, 192)).astype(np.float32)
            got = runner.infer(x)
            want = session.run(["simcc_x", "simcc_y"], {"images": x})
            # TF32 may be used for FP32 matmuls on Ampere and later: compare at TF32 accuracy
            for g, w in zip(got, want):
                assert np.allclose(g, w, rtol=1e-2, atol=1e-2 * np.abs(w).max())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_real_engine_validates_like_its_onnx(real_trt, seed0_t_onnx_b1, tmp_path):
    pytest.importorskip("pycocotools")
    from gtpt_deploy.engines import build_engine
    from gtpt_deploy.eval.validate import validate

    engine = build_engine(seed0_t_onnx_b1, output=tmp_path / "seed0.engine", progress=False).engine_path
    # no device: the engine follows its artifact (cuda), the ONNX baseline stays on the CPU
    report = validate(seed0_t_onnx_b1, [engine], MMPOSE_ANN, COCO_VAL / "images", boxes="gt", threads=1)
    base, cand = report.rows
    assert cand.argmax_agreement >= 0.99, cand
    assert abs(cand.AP - base.AP) <= 0.01 * max(base.AP, 1e-9) + 1e-6, (base, cand)
    assert Path(engine).stat().st_size > 0


def test_real_one_logger_and_timing_cache_reuse(real_trt, tmp_path, caplog):
    """One TensorRT logger per process: two live runners and a build give no 'differs from one already provided'
    warning; the second build reuses the timing cache the first wrote."""
    from gtpt_deploy.engines import build_engine
    from gtpt_deploy.runners import create_runner

    onnx_path = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    cache = tmp_path / "t.cache"
    first = build_engine(onnx_path, dynamic_batch=(1, 2, 4), output=tmp_path / "a.engine", timing_cache=cache,
                         workspace_gib=1, progress=False)
    with caplog.at_level("DEBUG", logger="gtpt_deploy.tensorrt.api"):
        with create_runner(first.engine_path) as a, create_runner(first.engine_path) as b:
            x = np.zeros((2, 3, 256, 192), np.float32)
            a.infer(x), b.infer(x)
            second = build_engine(onnx_path, dynamic_batch=(1, 2, 4), output=tmp_path / "b.engine",
                                  timing_cache=cache, workspace_gib=1, progress=False)
    assert not [r for r in caplog.records if "single logger" in r.getMessage()]
    assert second.timing_cache["rejected"] is False and second.timing_cache["loaded_bytes"] > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_real_int8_engine_runs_int8_and_fp16_layers(real_trt, seed0_t_onnx_b1, tmp_path):
    """The TensorRT-form INT8 file (INT8 + FP16 base) builds, and the inspector shows Int8 and FP16 layers."""
    import shutil

    from gtpt_deploy.calib import calibrate_int8
    from gtpt_deploy.engines import build_engine

    src = tmp_path / "t_b1.onnx"
    shutil.copy(seed0_t_onnx_b1, src)
    int8 = calibrate_int8(src, MMPOSE_ANN, COCO_VAL / "images", num=8).output
    res = build_engine(int8, output=tmp_path / "i8.engine", progress=False)
    assert res.layers is not None, "the engine inspector must report layer precisions"
    by = res.layers["by_precision"]
    assert by.get("Int8", 0) > 0 and by.get("FP16", 0) > 0, by
