"""gtpt-deploy triton: model repositories written from artifact metadata, and their bad inputs (no server here)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main

pytest.importorskip("tritonclient", reason="writing Triton configs needs tritonclient (pip install '.[triton]')")

from gtpt_deploy.metadata import ModelMeta, read_onnx_meta  # noqa: E402
from gtpt_deploy.serve import config as cfg  # noqa: E402


def _cli(*args: str):
    return CliRunner().invoke(main, ["triton", *args])


def _parsed(repo: Path, name: str):
    return cfg.parse((repo / name / "config.pbtxt").read_text())


def test_onnx_repository_config_comes_from_the_metadata(fake_dyn, tmp_path):
    repo = tmp_path / "repo"
    r = _cli(str(fake_dyn), "--repo", str(repo), "--name", "pose", "--max-batch", "16", "--instances", "2",
             "--kind", "gpu", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["models"][0]["name"] == "pose" and report["models"][0]["platform"] == "onnxruntime_onnx"
    c = _parsed(repo, "pose")
    meta = read_onnx_meta(fake_dyn)
    h, w = meta.input_size
    k, s = meta.num_keypoints, meta.split_ratio
    assert c.platform == "onnxruntime_onnx" and c.max_batch_size == 16 and c.default_model_filename == "model.onnx"
    assert [(i.name, list(i.dims)) for i in c.input] == [("images", [3, h, w])]
    assert [(o.name, list(o.dims)) for o in c.output] == [("simcc_x", [k, int(w * s)]), ("simcc_y", [k, int(h * s)])]
    assert list(c.dynamic_batching.preferred_batch_size) == [8, 16]
    assert c.instance_group[0].count == 2 and c.instance_group[0].kind == cfg.model_config_pb2().ModelInstanceGroup.KIND_GPU
    assert ModelMeta.from_dict(json.loads(c.parameters["gtpt_meta"].string_value)) == meta
    assert (repo / "pose" / "1" / "model.onnx").read_bytes() == fake_dyn.read_bytes()
    assert oct(stat.S_IMODE(repo.stat().st_mode)) != oct(0o700)  # not mkdtemp's private mode


def test_python_backend_and_pipeline_models(fake_dyn, tmp_path, shared):
    detector = shared / "data" / "models" / "rtmdet_nano_person" / "end2end.onnx"
    repo = tmp_path / "repo"
    r = _cli(str(fake_dyn), "--repo", str(repo), "--backend", "python", "--pipeline", "--detector", str(detector))
    assert r.exit_code == 0, r.output
    name = "fake_dyn"  # default: the file stem
    c = _parsed(repo, name)
    assert c.backend == "python" and not c.platform and c.parameters["onnx_file"].string_value == "model.onnx"
    assert sorted(p.name for p in (repo / name / "1").iterdir()) == ["model.onnx", "model.py"]
    p = _parsed(repo, "gtpt_pipeline")
    assert p.backend == "python" and p.max_batch_size == 0 and p.parameters["pose_model"].string_value == name
    assert [o.name for o in p.output] == ["keypoints", "boxes", "box_scores"]
    assert (repo / "gtpt_pipeline" / "1" / "detector.onnx").read_bytes() == detector.read_bytes()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_static_onnx_is_refused_naming_the_export_command(seed0_t_onnx_b1, tmp_path):
    r = _cli(str(seed0_t_onnx_b1), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 2 and "static batch of 1" in r.output and "--dynamic-batch" in r.output
    assert len(r.output.strip().splitlines()) == 1 and _listing(tmp_path) == []


def test_existing_repo_needs_force_and_bad_names_are_refused(fake_dyn, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("old")
    r = _cli(str(fake_dyn), "--repo", str(repo))
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert _listing(repo) == ["keep.txt"]
    for bad in ("a/b", ".hidden", "with space", "-dash"):
        r = _cli(str(fake_dyn), "--repo", str(tmp_path / "other"), "--name", bad)
        assert r.exit_code == 2 and "rejected by Triton" in r.output, bad
    r = _cli(str(fake_dyn), "--repo", str(repo), "--force")
    assert r.exit_code == 0 and _listing(repo) == ["README.md", "fake_dyn"]
    assert _listing(tmp_path) == ["repo"]  # no temporary or moved-aside folder left


def test_a_failure_while_writing_leaves_nothing(fake_dyn, tmp_path, monkeypatch):
    def broken(config):
        raise OSError("disk full")

    monkeypatch.setattr(cfg, "render", broken)
    with pytest.raises(OSError):
        from gtpt_deploy.serve.repository import write_repository

        write_repository([fake_dyn], tmp_path / "repo")
    assert _listing(tmp_path) == []


def _fake_engine(tmp_path: Path, fake_dyn: Path, profile: object) -> Path:
    engine = tmp_path / "pose_fp16.engine"
    engine.write_bytes(b"not a real plan")
    meta = read_onnx_meta(fake_dyn).to_dict()
    (tmp_path / "pose_fp16.engine.json").write_text(json.dumps(
        {"tensorrt_version": "10.13.0.35", "profile": profile, "model": meta}))
    return engine


@pytest.mark.parametrize("profile", [{"min": [1, 3, 256, 192], "opt": [4, 3, 256, 192], "max": [4, 3, 256, 192]},
                                     {"min": 1, "opt": 2, "max": 4}])
def test_engine_max_batch_must_fit_its_profile_and_pins_tensorrt(fake_dyn, tmp_path, profile):
    engine = _fake_engine(tmp_path, fake_dyn, profile)
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"), "--kind", "gpu")  # --max-batch 8 > 4
    assert r.exit_code == 2 and "up to 4" in r.output and "--max-batch 4" in r.output
    assert not (tmp_path / "repo").exists()
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"), "--kind", "gpu", "--max-batch", "4")
    assert r.exit_code == 0, r.output
    c = _parsed(tmp_path / "repo", "pose_fp16")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 4 and c.default_model_filename == "model.plan"
    assert c.parameters["tensorrt_version"].string_value == "10.13.0.35"
    assert "10.13.0.35" in (tmp_path / "repo" / "README.md").read_text()


def test_server_that_never_gets_ready_is_stopped_with_its_log_tail(tmp_path):
    """Bounded wait: a 'tritonserver' that only logs and sleeps is given up on, and killed with its group."""
    from gtpt_deploy.serve.server import TritonServer, TritonServerError

    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    os.symlink(sys.executable, env / "bin" / "python")
    root = env / "lib" / "python3" / "site-packages" / "pytriton" / "tritonserver"
    (root / "backends" / "python").mkdir(parents=True)
    version = "%d.%d" % sys.version_info[:2]
    (root / "python_backend_stubs" / version).mkdir(parents=True)
    (root / "python_backend_stubs" / version / "triton_python_backend_stub").write_text("")
    fake = tmp_path / "tritonserver"
    pid_file = tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\n"
                    "echo 'E1203 12:00:00.0 1 model_lifecycle.cc:1] failed to load pose'\nexec sleep 60\n")
    fake.chmod(0o755)
    server = TritonServer(tmp_path, env, ready_timeout=2, binary=fake)
    with pytest.raises(TritonServerError, match="not ready after 2 s; log tail: .*failed to load pose"):
        server.start()
    assert server.process is None
    with pytest.raises(ProcessLookupError):  # stopped, and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_triton_urls_are_parsed_and_a_missing_server_is_one_line(tmp_path):
    from gtpt_deploy.errors import GtptError
    from gtpt_deploy.runners import create_runner
    from gtpt_deploy.runners.triton import parse_url
    from gtpt_deploy.serve.server import free_port

    assert parse_url("triton://127.0.0.1:8000/gtpt_pose") == ("127.0.0.1:8000", "gtpt_pose", "")
    assert parse_url("triton://localhost:9/pose/2") == ("localhost:9", "pose", "2")
    with pytest.raises(GtptError, match="expected a Triton model address"):
        create_runner("triton://127.0.0.1/gtpt_pose")
    port = free_port()  # nothing listens there
    with pytest.raises(GtptError, match=f"no Triton server at 127.0.0.1:{port}"):
        with create_runner(f"triton://127.0.0.1:{port}/gtpt_pose"):
            pass
