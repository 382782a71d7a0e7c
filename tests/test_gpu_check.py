"""benchmarks/gpu_check.py end to end in CI: against the fake TensorRT (T only, tiny counts), and its PyTorch-only
path without TensorRT - so an import error or a wrong device in the GPU check shows here, not on GPU day."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gtpt_fixtures import COCO_VAL

ROOT = Path(__file__).resolve().parents[1]
MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"   # 4 images, 12 persons


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--variants", "t", "--iters", "1", "--warmup", "0", "--crops", "8",
            "--calib-num", "8", "--torch-device", "cpu", "--threads", "1", "--val-ann", str(MMPOSE_ANN),
            "--val-images", str(COCO_VAL / "images"), *extra]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gpu_check_builds_validates_and_times_every_precision_against_the_fake(monkeypatch, tmp_path):
    pytest.importorskip("pycocotools")
    from fake_tensorrt import impl, install

    install(monkeypatch, "v11")
    rc = _gpu_check().main(_args(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    errors = [r.get("error") for r in report["rows"] if "error" in r]
    assert rc == 0 and not errors, errors
    torch_row, *rows = report["rows"]
    assert torch_row["precision"] == "torch eager (cpu)" and [r["precision"] for r in rows] == ["fp32", "fp16", "int8"]
    for r in rows:
        assert r["tensorrt"] == "11.4.0.7" and set(r["latency"]) == {"b1", "b8"}
        assert r["AP"]["torch"] > 0 and r["AP"]["candidate"] > 0 and r["vs_torch"]["argmax_agreement"] > 0.5
        assert r["device_only_b8"].startswith("not measured")   # fake memory: no cuda-python graphs
    by = {r["precision"]: r["layers"]["by_precision"] for r in rows}
    assert set(by["fp32"]) <= {"FP32", "Int64", "Int32", "Bool"} and "FP16" in by["fp16"]
    assert {"Int8", "FP16"} <= set(by["int8"]), "INT8 for TensorRT is INT8 + FP16"
    assert report["skipped"] == [] and impl.STATE["memory"] == {}
    assert "| gtpt_t_coco | int8 |" in (tmp_path / "report.md").read_text()


def test_gpu_check_without_tensorrt_checks_the_pytorch_path_and_says_what_it_skipped(monkeypatch, tmp_path):
    pytest.importorskip("pycocotools")
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import tensorrt -> ImportError
    rc = _gpu_check().main(_args(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0, report
    (row,) = report["rows"]
    assert row["precision"] == "torch eager (cpu)" and row["vs_torch"]["argmax_agreement"] == 1.0
    assert row["AP"].startswith("not measured")   # validate refuses a file against itself on one device
    assert len(report["skipped"]) == 1 and "TensorRT engines" in report["skipped"][0]
    assert "tensorrt" in report["skipped"][0] and "gtpt-deploy[tensorrt]" in report["skipped"][0]


def test_gpu_check_time_limit_skips_cells_and_still_reports(monkeypatch, tmp_path):
    from fake_tensorrt import install

    install(monkeypatch, "v10")
    rc = _gpu_check().main(_args(tmp_path, "--time-limit", "0", "--precisions", "fp32,int8"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0 and report["rows"] == []
    assert [s.split(":")[0] for s in report["skipped"]] == ["gtpt_t_coco fp32", "gtpt_t_coco int8"]


def test_gpu_check_sh_reports_every_step():
    """gpu_check.sh must not stop at the first failing step (set -e): the report is the point of the run."""
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "set -e" not in text and "set -euo" not in text
    assert "timeout" in text and "--time-limit" in text
