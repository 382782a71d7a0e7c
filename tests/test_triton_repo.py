"""gtpt-deploy triton: model repositories written from artifact metadata, and their bad inputs (no server here)."""

from __future__ import annotations

import dataclasses
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
    # Triton's batcher guide: most models should leave preferred_batch_size unset (the batcher then forms the
    # largest batch available within the queue delay)
    assert c.HasField("dynamic_batching") and not c.dynamic_batching.preferred_batch_size
    assert c.dynamic_batching.max_queue_delay_microseconds > 0
    assert c.instance_group[0].count == 2 and c.instance_group[0].kind == cfg.model_config_pb2().ModelInstanceGroup.KIND_GPU
    (warm,) = c.model_warmup  # one random batch of max_batch_size at load, every input with its config dims
    assert warm.batch_size == 16 and list(warm.inputs) == ["images"] and warm.inputs["images"].random_data
    assert list(warm.inputs["images"].dims) == [3, h, w]
    assert not c.optimization.execution_accelerators.gpu_execution_accelerator  # an option, not a default
    assert ModelMeta.from_dict(json.loads(c.parameters["gtpt_meta"].string_value)) == meta
    assert (repo / "pose" / "1" / "model.onnx").read_bytes() == fake_dyn.read_bytes()
    assert oct(stat.S_IMODE(repo.stat().st_mode)) != oct(0o700)  # not mkdtemp's private mode


def test_python_backend_and_pipeline_models(fake_dyn, tmp_path, shared):
    detector = shared / "data" / "models" / "rtmdet_nano_person" / "end2end.onnx"
    repo = tmp_path / "repo"
    r = _cli(str(fake_dyn), "--repo", str(repo), "--backend", "python", "--pipeline", "--detector", str(detector),
             "--instances", "3")
    assert r.exit_code == 0, r.output
    name = "fake_dyn"  # default: the file stem
    c = _parsed(repo, name)
    assert c.backend == "python" and not c.platform and c.parameters["onnx_file"].string_value == "model.onnx"
    assert sorted(p.name for p in (repo / name / "1").iterdir()) == ["model.onnx", "model.py"]
    p = _parsed(repo, "gtpt_pipeline")
    assert p.backend == "python" and p.parameters["pose_model"].string_value == name
    assert [o.name for o in p.output] == ["keypoints", "boxes", "box_scores"]
    # the pipeline batches concurrent requests (it had max_batch_size 0, no batcher, and one instance whatever
    # --instances said)
    assert p.max_batch_size == 8 and p.HasField("dynamic_batching") and not p.dynamic_batching.preferred_batch_size
    assert [(g.count, g.kind) for g in p.instance_group] == [(3, cfg.model_config_pb2().ModelInstanceGroup.KIND_CPU)]
    assert (repo / "gtpt_pipeline" / "1" / detector.name).read_bytes() == detector.read_bytes()
    assert (repo / "gtpt_pipeline" / "1" / "pipeline.json").is_file()  # the detector keeps its mmdeploy description


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_static_onnx_is_refused_naming_the_export_command(seed0_t_onnx_b1, tmp_path):
    r = _cli(str(seed0_t_onnx_b1), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 2 and "static batch of 1" in r.output and "--dynamic-batch" in r.output
    assert len(r.output.strip().splitlines()) == 1 and _listing(tmp_path) == []


def test_existing_repo_needs_force_and_bad_names_are_refused(fake_dyn, tmp_path):
    repo = tmp_path / "repo"
    assert _cli(str(fake_dyn), "--repo", str(repo)).exit_code == 0
    r = _cli(str(fake_dyn), "--repo", str(repo))
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    for bad in ("a/b", ".hidden", "with space", "-dash"):
        r = _cli(str(fake_dyn), "--repo", str(tmp_path / "other"), "--name", bad)
        assert r.exit_code == 2 and "rejected by Triton" in r.output, bad
    (repo / "notes.txt").write_text("mine")  # the user's own file inside a repository we wrote
    r = _cli(str(fake_dyn), "--repo", str(repo), "--name", "renamed", "--force")
    assert r.exit_code == 0, r.output
    # the earlier model folder is gone (the manifest listed it), the user's file stays
    assert _listing(repo) == [".gtpt-triton.json", "README.md", "notes.txt", "renamed"]
    assert _listing(tmp_path) == ["repo"]  # no temporary or moved-aside folder left


def test_force_never_deletes_a_folder_that_triton_did_not_write(fake_dyn, tmp_path):
    """Issue 21 finding 2: --force on an unrelated folder deleted it (a thesis and a sub-folder went with it)."""
    folder = tmp_path / "thesis"
    (folder / "figures").mkdir(parents=True)
    (folder / "thesis.txt").write_text("three years")
    (folder / "figures" / "f1.png").write_bytes(b"png")
    r = _cli(str(fake_dyn), "--repo", str(folder), "--force")
    assert r.exit_code == 2 and "did not write" in r.output and len(r.output.strip().splitlines()) == 1
    assert _listing(folder) == ["figures", "thesis.txt"] and (folder / "thesis.txt").read_text() == "three years"
    assert _listing(tmp_path) == ["thesis"]
    # an empty folder is fine without --force (nothing to lose)
    (tmp_path / "empty").mkdir()
    assert _cli(str(fake_dyn), "--repo", str(tmp_path / "empty")).exit_code == 0


def test_repo_dot_force_is_one_line_without_leftovers(fake_dyn, tmp_path, monkeypatch):
    """``--repo . --force`` ended in an EBUSY traceback (renaming the working directory) and left ``..old.*``."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2")
    monkeypatch.chdir(work)
    r = _cli(str(fake_dyn), "--repo", ".", "--force")
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception  # a refusal, no traceback
    assert "did not write" in r.output and len(r.output.strip().splitlines()) == 1
    assert _listing(work) == ["data.csv"] and _listing(tmp_path) == ["work"]
    # a repository written into the working folder can be rewritten in place (the folder itself never moves)
    (work / "data.csv").unlink()
    assert _cli(str(fake_dyn), "--repo", ".").exit_code == 0
    (work / "data.csv").write_text("1,2")
    r = _cli(str(fake_dyn), "--repo", ".", "--force")
    assert r.exit_code == 0, r.output
    assert _listing(work) == [".gtpt-triton.json", "README.md", "data.csv", "fake_dyn"] and _listing(tmp_path) == ["work"]


def test_force_refuses_to_replace_an_unlisted_entry(fake_dyn, tmp_path):
    repo = tmp_path / "repo"
    assert _cli(str(fake_dyn), "--repo", str(repo), "--name", "a").exit_code == 0
    (repo / "b").mkdir()
    (repo / "b" / "mine.txt").write_text("mine")  # same name as the new model, not written by us
    r = _cli(str(fake_dyn), "--repo", str(repo), "--name", "b", "--force")
    assert r.exit_code == 2 and "did not" in r.output and (repo / "b" / "mine.txt").read_text() == "mine"
    assert (repo / "a" / "config.pbtxt").is_file()  # and nothing of the old repository was touched


def test_a_failure_while_writing_leaves_nothing(fake_dyn, tmp_path, monkeypatch):
    def broken(config):
        raise OSError("disk full")

    monkeypatch.setattr(cfg, "render", broken)
    with pytest.raises(OSError):
        from gtpt_deploy.serve.repository import write_repository

        write_repository([fake_dyn], tmp_path / "repo")
    assert _listing(tmp_path) == []


def _fake_engine(tmp_path: Path, fake_dyn: Path, batches: tuple[int, int, int], input_name: str = "images",
                 name: str = "pose_fp16") -> Path:
    """An engine file with the sidecar ``gtpt-deploy build`` writes (engines/report.py): profile shapes + input."""
    engine = tmp_path / f"{name}.engine"
    engine.write_bytes(b"not a real plan")
    meta = read_onnx_meta(fake_dyn)
    h, w = meta.input_size
    lo, opt, hi = batches
    profile = {"input": input_name, "min": [lo, 3, h, w], "opt": [opt, 3, h, w], "max": [hi, 3, h, w],
               "static_batch": hi if lo == hi else None}
    (tmp_path / f"{name}.engine.json").write_text(json.dumps(
        {"tensorrt_version": "10.13.0.35", "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"},
         "engine_sha256": "0" * 64, "profile": profile, "model": meta.to_dict()}))
    return engine


def test_engine_max_batch_must_fit_its_profile_and_pins_tensorrt(fake_dyn, tmp_path):
    engine = _fake_engine(tmp_path, fake_dyn, (1, 2, 4))
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"), "--max-batch", "8")
    assert r.exit_code == 2 and "up to 4" in r.output and "--max-batch 4" in r.output
    assert not (tmp_path / "repo").exists()
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"))  # default: the profile's max
    assert r.exit_code == 0, r.output
    c = _parsed(tmp_path / "repo", "pose_fp16")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 4 and c.default_model_filename == "model.plan"
    assert c.parameters["tensorrt_version"].string_value == "10.13.0.35"
    assert "10.13.0.35" in (tmp_path / "repo" / "README.md").read_text()


def test_engine_gets_gpu_instances_and_the_profiles_input_name(fake_dyn, tmp_path):
    """The TensorRT backend accepts GPU instances only (it wrote KIND_CPU by default); the input name is the
    sidecar's profile.input (it read a key nobody writes and fell back to 'images')."""
    pb2 = cfg.model_config_pb2()
    engine = _fake_engine(tmp_path, fake_dyn, (1, 4, 8), input_name="input")
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 0, r.output
    c = _parsed(tmp_path / "repo", "pose_fp16")
    assert [g.kind for g in c.instance_group] == [pb2.ModelInstanceGroup.KIND_GPU]
    assert [i.name for i in c.input] == ["input"] and list(c.model_warmup[0].inputs) == ["input"]
    r = _cli(str(engine), "--repo", str(tmp_path / "cpu"), "--kind", "cpu")
    assert r.exit_code == 2 and "GPU instances only" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "cpu").exists()


@pytest.mark.parametrize("batches, words", [((8, 8, 8), "static batch of 8"), ((2, 4, 8), "from batch 2 to 8")])
def test_engine_whose_profile_starts_above_1_is_refused(fake_dyn, tmp_path, batches, words):
    """Triton's batcher sends any batch from 1 up: below the profile's minimum every request would fail."""
    engine = _fake_engine(tmp_path, fake_dyn, batches)
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 2 and words in r.output and "--dynamic-batch 1," in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "repo").exists()


def test_static_batch_1_engine_is_served_without_batching(fake_dyn, tmp_path):
    engine = _fake_engine(tmp_path, fake_dyn, (1, 1, 1))
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 0, r.output
    c = _parsed(tmp_path / "repo", "pose_fp16")
    h, w = read_onnx_meta(fake_dyn).input_size
    assert c.max_batch_size == 0 and not c.HasField("dynamic_batching")
    assert list(c.input[0].dims) == [1, 3, h, w] and all(o.dims[0] == 1 for o in c.output)


def test_engine_sidecar_is_read_by_the_one_reader(fake_dyn, tmp_path):
    engine = _fake_engine(tmp_path, fake_dyn, (1, 4, 8))
    side = tmp_path / "pose_fp16.engine.json"
    data = json.loads(side.read_text())
    del data["engine_sha256"]
    side.write_text(json.dumps(data))
    r = _cli(str(engine), "--repo", str(tmp_path / "repo"))
    assert r.exit_code == 2 and "not a gtpt-deploy engine sidecar" in r.output and "engine_sha256" in r.output


def _with_precision(src: Path, dst: Path, precision: str) -> Path:
    import onnx

    from gtpt_deploy.metadata import write_onnx_meta

    model = onnx.load(str(src))
    write_onnx_meta(model, dataclasses.replace(read_onnx_meta(model), precision=precision))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("precision, mode", [("fp16", "FP16"), ("int8", "INT8"), ("fp32", "FP32")])
def test_trt_accelerator_runs_the_file_in_its_precision(fake_dyn, tmp_path, precision, mode):
    onnx_file = _with_precision(fake_dyn, tmp_path / f"pose_{precision}.onnx", precision)
    r = _cli(str(onnx_file), "--repo", str(tmp_path / "repo"), "--kind", "gpu", "--trt-accelerator")
    assert r.exit_code == 0, r.output
    (acc,) = _parsed(tmp_path / "repo", f"pose_{precision}").optimization.execution_accelerators \
        .gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == mode
    r = _cli(str(onnx_file), "--repo", str(tmp_path / "cpu"), "--trt-accelerator")  # default kind: cpu
    assert r.exit_code == 2 and "KIND_GPU" in r.output and not (tmp_path / "cpu").exists()


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
    with pytest.raises(GtptError, match="TCP port 1-65535"):  # it ended in a traceback from tritonclient
        create_runner("triton://localhost:99999/x")
    r = CliRunner().invoke(main, ["bench", "triton://localhost:99999/x"])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit) and "TCP port 1-65535" in r.output
    port = free_port()  # nothing listens there
    with pytest.raises(GtptError, match=f"no Triton server at 127.0.0.1:{port}"):
        with create_runner(f"triton://127.0.0.1:{port}/gtpt_pose"):
            pass


def test_server_environment_not_made_here_is_never_deleted(tmp_path):
    """ensure_server_env rebuilt any folder whose marker did not match - a user's own venv passed as
    GTPT_TRITON_ENV was deleted before pip even ran."""
    from gtpt_deploy.serve.server import TritonServerError, ensure_server_env

    venv = tmp_path / "my_venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("# mine")
    with pytest.raises(TritonServerError, match="was not made by gtpt-deploy"):
        ensure_server_env(venv, python="/nonexistent/python", timeout=5)
    assert (venv / "bin" / "activate").read_text() == "# mine"


def test_serve_prints_the_container_command_for_gpu_repositories(fake_dyn, tmp_path):
    engine = _fake_engine(tmp_path, fake_dyn, (1, 4, 8))
    repo = tmp_path / "repo"
    assert _cli(str(engine), "--repo", str(repo)).exit_code == 0
    r = CliRunner().invoke(main, ["serve", str(repo), "--port", "8123"])
    assert r.exit_code == 0, r.output
    assert "docker run --rm --gpus all" in r.stdout and f"-v {repo.resolve()}:/models:ro" in r.stdout
    assert "-p 8123:8000" in r.stdout and "tritonserver --model-repository=/models" in r.stdout
    assert "pose_fp16 is tensorrt_plan" in r.stderr and "TensorRT is 10.13.0.35" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["serve", str(empty)])
    assert r.exit_code == 2 and "holds no model" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["serve", str(repo), "--models", "nope"])
    assert r.exit_code == 2 and "--models names nope" in r.output


def test_a_repository_created_meanwhile_is_not_overwritten(fake_dyn, tmp_path, monkeypatch):
    """Two writers to one new --repo: the second must not replace what the first finished (no --force given)."""
    from gtpt_deploy.serve import commit

    repo = tmp_path / "repo"
    real = commit.commit_repository

    def first_writer_wins(tmp, target, previous):
        target.mkdir()
        (target / "theirs.txt").write_text("first")
        return real(tmp, target, previous)

    monkeypatch.setattr("gtpt_deploy.serve.repository.commit_repository", first_writer_wins)
    r = _cli(str(fake_dyn), "--repo", str(repo))
    assert r.exit_code == 2 and "created by someone else" in r.output
    assert _listing(repo) == ["theirs.txt"] and _listing(tmp_path) == ["repo"]


def test_a_failure_while_moving_in_restores_the_earlier_repository(fake_dyn, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    assert _cli(str(fake_dyn), "--repo", str(repo), "--name", "old").exit_code == 0
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    real = os.replace

    def failing(src, dst):
        if Path(dst).name == "new":  # the new model folder cannot be moved in (disk error, ...)
            raise OSError(5, "I/O error")
        return real(src, dst)

    monkeypatch.setattr("gtpt_deploy.serve.commit.os.replace", failing)
    with pytest.raises(OSError):
        from gtpt_deploy.serve.repository import write_repository

        write_repository([fake_dyn], repo, name="new", force=True)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before and _listing(tmp_path) == ["repo"]
