"""The OpenVINO runner (runners/openvino.py): the Runner contract, parity with ONNX Runtime in f32 (logits and kept
tokens), the bf16 row and budget of ``validate``, and no silent bf16 fallback on CPUs without native bf16 (the CPU's
capabilities are faked through the ``cpu_capabilities`` seam). Skipped where the ``openvino`` package is missing
(it is in ``[dev]``, so CI runs them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gtpt_deploy.errors import ArtifactError, GtptError, RunnerInputError
from gtpt_deploy.runners import create_runner
from gtpt_fixtures import write_fake_pose_onnx

ov = pytest.importorskip("openvino")
from gtpt_deploy.runners import openvino as ov_runner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_ANN = REPO / "demo" / "person_keypoints_demo.json"


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 256, 192)).astype(np.float32)


def _native_bf16() -> bool:
    return "BF16" in ov_runner.cpu_capabilities(ov.Core())


def _no_bf16_cpu(monkeypatch) -> None:
    """Fake a CPU without native bf16 (an AVX2 / AVX-512 part before Cooper Lake)."""
    monkeypatch.setattr(ov_runner, "cpu_capabilities", lambda core: {"FP32", "INT8", "BIN", "EXPORT_IMPORT"})


def test_provider_openvino_opens_onnx_with_the_runner_contract(fake_dyn, tmp_path):
    runner = create_runner(fake_dyn, provider="openvino:f32", threads=1)
    assert type(runner).__name__ == "OpenVinoRunner"
    with runner as r:
        assert r.input_shape == (None, 3, 256, 192)
        x, y = r.infer(_crops(3))
        assert x.shape == (3, 17, 384) and y.shape == (3, 17, 512) and x.dtype == y.dtype == np.float32
        assert "openvino" in r.description and "f32" in r.description and "1 threads" in r.description
        assert r.run_precision == "fp32"
        with pytest.raises(RunnerInputError, match="NCHW"):
            r.infer(np.zeros((1, 3, 128, 96), np.float32))
    with create_runner(write_fake_pose_onnx(tmp_path / "b2.onnx", batch=2), provider="openvino:f32") as r:
        assert r.static_batch == 2
        with pytest.raises(RunnerInputError, match="exactly 2"):
            r.infer(_crops(1))
    bad = write_fake_pose_onnx(tmp_path / "bad.onnx", bins=(300, 512))  # metadata says 192*2 = 384 x bins
    with create_runner(bad, provider="openvino:f32") as r, pytest.raises(ArtifactError, match=r"simcc_x"):
        r.infer(_crops(1))
    plain = write_fake_pose_onnx(tmp_path / "plain.onnx", meta=False)
    with pytest.raises(ArtifactError, match="no gtpt-deploy metadata"):
        create_runner(plain, provider="openvino").activate()


def test_openvino_provider_is_refused_where_it_does_not_apply(fake_dyn, tmp_path):
    pth = tmp_path / "m.pth"
    pth.write_bytes(b"x")
    with pytest.raises(GtptError, match="applies to ONNX artifacts"):
        create_runner(pth, provider="openvino")
    with pytest.raises(GtptError, match="on the CPU"):
        create_runner(fake_dyn, provider="openvino", device="cuda")
    with pytest.raises(GtptError, match="openvino:f32 or openvino:bf16"):
        create_runner(fake_dyn, provider="openvino:int4")


def test_f32_matches_onnx_runtime_logits_and_kept_tokens(sample_onnx):
    """OpenVINO f32 is a drop-in for ONNX Runtime FP32: logits within 1e-4, the same tokens kept at every stage."""
    from gtpt_deploy.eval.tokens import kept_token_agreement, kept_tokens
    from gtpt_deploy.runtime.crops import person_crops

    crops = person_crops(DEMO_ANN, DEMO_ANN.parent / "images").crops
    with create_runner(sample_onnx, threads=1) as ort_r, \
            create_runner(sample_onnx, provider="openvino:f32", threads=1) as ov_r:
        for crop in crops:
            a, b = ort_r.infer(crop[None]), ov_r.infer(crop[None])
            for u, v in zip(a, b):
                assert np.abs(u - v).max() <= 1e-4
                assert (u.argmax(-1) == v.argmax(-1)).all()
    base = kept_tokens(sample_onnx, crops, threads=1)
    same = kept_tokens(sample_onnx, crops, threads=1, provider="openvino:f32")
    assert base is not None and len(base) >= 1
    assert kept_token_agreement(base, same) == tuple(1.0 for _ in base)


def test_bf16_asked_on_a_cpu_without_bf16_is_a_one_line_error(fake_dyn, monkeypatch):
    _no_bf16_cpu(monkeypatch)
    with pytest.raises(GtptError) as e:
        create_runner(fake_dyn, provider="openvino:bf16").activate()
    assert "native bf16" in str(e.value) and "openvino:f32" in str(e.value) and "\n" not in str(e.value)


def test_default_precision_is_bf16_only_where_the_cpu_has_it_and_says_so(fake_dyn, monkeypatch):
    if _native_bf16():
        with create_runner(fake_dyn, provider="openvino") as r:
            assert r.precision == "bf16" and "CPU bf16" in r.description and r.run_precision == "bf16"
    _no_bf16_cpu(monkeypatch)
    with create_runner(fake_dyn, provider="openvino") as r:  # the stated f32 run, not an emulated bf16 one
        assert r.precision == "f32" and "CPU f32" in r.description and r.run_precision == "fp32"
        r.infer(_crops(1))


def test_validate_gives_bf16_its_own_row_precision_and_budget(sample_onnx):
    """An FP32 file run by OpenVINO at bf16 is a 'bf16' row with the bf16 budget (not FP32's exact 0), and its kept
    tokens come from the bf16 run, not from ONNX Runtime."""
    if not _native_bf16():
        pytest.skip("this CPU has no native bf16")
    from gtpt_deploy.eval.validate import DEFAULT_BUDGETS, validate

    report = validate(REPO / "models" / "gtpt_t_coco_sample.pth", [sample_onnx], DEMO_ANN, DEMO_ANN.parent / "images",
                      flip=False, threads=1, provider="openvino:bf16")
    row = report.rows[1]
    assert row.precision == "bf16" and row.budget == DEFAULT_BUDGETS["bf16"] > 0
    assert "bf16" in row.runner and row.kept_tokens is not None
    # bf16's AP drift reached -0.0046 on a checkpoint trained elsewhere (issue 17's table): INT8's budget, not FP16's
    assert DEFAULT_BUDGETS["fp16"] < DEFAULT_BUDGETS["bf16"] == DEFAULT_BUDGETS["int8"]


def test_missing_openvino_is_an_install_hint(fake_dyn, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def block(name, *args, **kwargs):
        if name.split(".")[0] == "openvino":
            raise ImportError("hidden")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", block)
    with pytest.raises(GtptError, match=r"pip install 'gtpt-deploy\[openvino\]'"):
        create_runner(fake_dyn, provider="openvino").activate()


def test_ship_times_each_file_on_each_cpu_backend_and_names_the_fastest_within_budget(sample_onnx):
    from gtpt_deploy.eval.bench import bench
    from gtpt_deploy.eval.ship import cpu_providers

    report = bench([sample_onnx], batches=(1,), rounds=1, warmup=0, threads=1, ann=DEMO_ANN, ship=True)
    labels = [r.label for r in report.rows]
    assert labels == [f"{sample_onnx.name} [{p}]" for p in cpu_providers()] and "openvino:f32" in labels[1]
    assert set(report.accuracy) == set(labels) and report.accuracy[labels[0]]["delta_AP"] == 0
    assert report.verdict.startswith("ship on this CPU (batch 1): ") and "budget" in report.verdict
    assert report.verdict in report.format_lines()


def test_ship_verdict_skips_faster_artifacts_over_their_budget():
    from gtpt_deploy.eval.bench import BenchRow
    from gtpt_deploy.eval.ship import verdict

    rows = [BenchRow("a [cpu]", "a", "ort", 8, median_ms=80.0, ms_per_crop=10.0),
            BenchRow("a [openvino:bf16]", "a", "ov", 8, median_ms=40.0, ms_per_crop=5.0),
            BenchRow("q [cpu]", "q", "ort", 8, median_ms=60.0, ms_per_crop=7.5),
            BenchRow("a [cpu]", "a", "ort", 1, median_ms=9.0, ms_per_crop=9.0)]
    acc = {"a [cpu]": {"within_budget": True, "delta_AP": 0.0, "precision": "fp32", "budget": 0.0},
           "a [openvino:bf16]": {"within_budget": False, "delta_AP": -0.01, "precision": "bf16", "budget": 0.005},
           "q [cpu]": {"within_budget": True, "delta_AP": -0.002, "precision": "int8", "budget": 0.005}}
    v = verdict(rows, acc)
    assert (v.batch, v.label, v.ms_per_crop) == (8, "q [cpu]", 7.5) and "1.33x a [cpu]" in v.reason
    assert verdict(rows, None).label == "a [openvino:bf16]"  # without --ann: fastest, and it says AP was not checked
    assert "pass --ann" in verdict(rows, None).line()


def test_run_cli_and_predict_api_take_the_openvino_provider(fake_dyn, tmp_path):
    import json

    from click.testing import CliRunner

    import gtpt_deploy as gd
    from gtpt_deploy.cli import main
    from gtpt_fixtures import PEOPLE

    bus = PEOPLE / "bus.jpg"
    r = CliRunner().invoke(main, ["run", str(fake_dyn), str(bus), "--provider", "openvino:f32", "--threads", "1",
                                  "--out", str(tmp_path / "out"), "--no-draw", "--json"])
    assert r.exit_code == 0, r.output
    assert "openvino" in json.dumps(json.loads(r.stdout))
    poses = gd.predict(fake_dyn, str(bus), provider="openvino:f32", threads=1)
    same = gd.predict(fake_dyn, str(bus), threads=1)
    assert len(poses[0].poses) == len(same[0].poses) == 1
    assert np.abs(poses[0].poses[0].keypoints - same[0].poses[0].keypoints).max() < 1e-3
