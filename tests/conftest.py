"""Shared pytest fixtures. Shared data lives in $GTPT_SHARED (default: ../shared next to the repository)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before torch is imported: with OpenMP's default active spin-wait, 2 torch threads on a busy 2-core machine (other
# jobs running) slow a GTPT forward from ~40 ms to 1-20 s. Passive waiting keeps the suite fast there.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder (fixtures/, data/, docs/). Missing data FAILS the test: a green run must never mean
    that the parity and AP references were skipped."""
    path = Path(os.environ.get("GTPT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    if not (path / "fixtures" / "gtpt_reference").is_dir():
        pytest.fail(f"shared data folder {path} not found (expected fixtures/gtpt_reference inside); "
                    f"check out ../shared beside the repository or set GTPT_SHARED")
    return path


@pytest.fixture(scope="session")
def seed0_t_checkpoint(shared, tmp_path_factory) -> Path:
    """The official-format seed-0 GTPT-T COCO checkpoint, rebuilt with the fixtures README rule (tests/gtpt_fixtures)."""
    from gtpt_fixtures import write_seed0_checkpoint

    return write_seed0_checkpoint(tmp_path_factory.mktemp("seed0") / "gtpt_t_human_seed0.pth", "gtpt_t_human")


@pytest.fixture(scope="session")
def seed0_t_onnx_b1(seed0_t_checkpoint, tmp_path_factory) -> Path:
    """``seed0_t_checkpoint`` exported to ONNX, static batch 1, with gtpt metadata."""
    from gtpt_fixtures import export_test_onnx

    return export_test_onnx(seed0_t_checkpoint, tmp_path_factory.mktemp("seed0_onnx") / "gtpt_t_coco_b1.onnx", 1)


@pytest.fixture(scope="session")
def fake_dyn(tmp_path_factory) -> Path:
    """A tiny GTPT-shaped ONNX with a dynamic batch (fast runner / predictor tests)."""
    from gtpt_fixtures import write_fake_pose_onnx

    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_dyn.onnx", batch=None)


@pytest.fixture(scope="session")
def sample_onnx(tmp_path_factory) -> Path:
    """The committed sample checkpoint ``models/gtpt_t_coco_sample.pth`` exported to ONNX (static batch 1), once."""
    from gtpt_fixtures import export_test_onnx

    ckpt = Path(__file__).resolve().parents[1] / "models" / "gtpt_t_coco_sample.pth"
    return export_test_onnx(ckpt, tmp_path_factory.mktemp("sample_onnx") / "gtpt_t_coco_sample_b1.onnx", 1)


@pytest.fixture(params=["v10", "v11"])
def fake_trt(request, monkeypatch):
    """A fake ``tensorrt`` of one API flavour (10.x / 11.x) importable as ``tensorrt``, with fake CUDA memory behind
    the TensorRT backend's device-memory seam. Yields the ``fake_tensorrt.impl`` module (state, counters)."""
    from fake_tensorrt import impl, install

    install(monkeypatch, request.param)
    yield impl
    sys.modules.pop("tensorrt", None)
