"""Issue 21, second sweep: one commit path for every artifact set (findings 4, 6), Ctrl-C on an image run keeps
the results so far (7), no leftovers of killed or failed runs (16, the empty runs/runN of issue 19)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gtpt_deploy import artifacts, scratch
from gtpt_fixtures import COCO_VAL, COCO_VAL_ANN, PEOPLE, write_fake_pose_onnx, another_writer_first, invoke_cli, one_line_error

IMAGES = COCO_VAL / "images"
REPO = Path(__file__).resolve().parents[1]


_invoke = invoke_cli
_one_line_error = one_line_error


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def fake(tmp_path) -> Path:
    return write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)


def _calibrate_args(model: Path, *extra) -> list:
    return ["calibrate", model, "--ann", COCO_VAL_ANN, "--images", IMAGES, "--num", "4", *extra]


# ------------------------------------------------------------------------------------------- 4. one commit
def test_two_fp16_to_one_output_cannot_both_succeed(fake, tmp_path, monkeypatch):
    """Both pass the up-front check; the one that commits second fails and keeps nothing (as export does)."""
    import gtpt_deploy.export.fp16 as fp16

    out = tmp_path / "same.onnx"
    another_writer_first(monkeypatch, fp16, "to_fp16", out, b"the other fp16")
    line = _one_line_error(_invoke(["fp16", fake, "-o", out]))
    assert "created by someone else" in line
    assert out.read_bytes() == b"the other fp16" and sorted(p.name for p in tmp_path.iterdir()) == ["fake.onnx",
                                                                                                  "same.onnx"]


def test_two_calibrates_to_one_output_cannot_both_succeed(fake, tmp_path, monkeypatch):
    import gtpt_deploy.calib.calibrate as cal

    out = tmp_path / "same.onnx"
    # write_onnx_meta is called once the INT8 model is final, on every path (budget search or not)
    another_writer_first(monkeypatch, cal, "write_onnx_meta", out, b"the other int8")
    line = _one_line_error(_invoke(_calibrate_args(fake, "-o", out)))
    assert "created by someone else" in line and out.read_bytes() == b"the other int8"
    assert not (tmp_path / "calib").exists()           # its ranges and cache went with it


# ------------------------------------------------------------------------------------------- 6. full disk
@pytest.mark.parametrize("full_at", [".ranges.json", ".cache", "_int8.onnx"])
def test_calibrate_on_a_full_disk_keeps_nothing(fake, tmp_path, monkeypatch, full_at):
    def full_disk(tmp: Path, data: bytes) -> None:
        if f"{full_at}." in tmp.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        Path(tmp).write_bytes(data)

    monkeypatch.setattr(artifacts, "_write", full_disk)
    line = _one_line_error(_invoke(_calibrate_args(fake)))
    assert "No space left on device" in line and "nothing was kept" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.onnx"]      # no model, no calib/ folder


def test_calibrate_writes_ranges_and_cache_before_the_model(fake, tmp_path, monkeypatch):
    order = []
    real = artifacts._link_new

    def record(tmp: Path, path: Path) -> None:
        order.append(Path(path).name)
        real(tmp, path)

    monkeypatch.setattr(artifacts, "_link_new", record)
    assert _invoke(_calibrate_args(fake)).exit_code == 0
    assert order == ["fake_int8_minmax.ranges.json", "fake_int8_minmax.cache", "fake_int8.onnx"]   # named after the output


# ------------------------------------------------------------------------------------------- 7. Ctrl-C
@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(PEOPLE / "zidane.jpg", d / "a.jpg")
    shutil.copy(PEOPLE / "grace_hopper.jpg", d / "b.jpg")
    shutil.copy(PEOPLE / "zidane.jpg", d / "c.jpg")
    return d


def test_ctrl_c_during_an_image_run_writes_the_results_so_far(fake, photos, tmp_path, monkeypatch):
    import gtpt_deploy.runtime.draw as draw

    out = tmp_path / "out"
    calls = []
    real = draw.draw_poses

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt            # Ctrl-C while the third image is drawn
        return real(*a, **k)

    monkeypatch.setattr(draw, "draw_poses", interrupted)
    res = _invoke(["run", fake, photos, "--out", out, "--no-flip", "--json"])
    summary = json.loads(res.stdout)
    assert summary["interrupted"] and summary["processed"] == 2 and summary["annotated_images"] == 2
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} == {"a.jpg", "b.jpg"}
    assert sorted(p.name for p in out.iterdir()) == [".gtpt-run.json", "a.jpg", "b.jpg", "results.json"]


def test_sigint_during_an_image_run_writes_the_results_so_far(tmp_path):
    """A real SIGINT to a running `gtpt-deploy run` (each image made slow so the signal lands midway)."""
    fake = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        shutil.copy(PEOPLE / "grace_hopper.jpg", photos / f"{i:03d}.jpg")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        import signal
        import gtpt_deploy.runtime.draw as draw
        from gtpt_deploy.cli import main
        # a shell's background job (a CI runner, nohup ... &) starts with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: restore the handler a terminal's Ctrl-C meets
        signal.signal(signal.SIGINT, signal.default_int_handler)
        real = draw.draw_poses
        calls = [0]
        def slow(*a, **k):
            calls[0] += 1
            print("drawing", flush=True, file=sys.stderr)
            # from the 3rd image on, wait for the signal (a loaded machine must not finish the run first)
            time.sleep(0.2 if calls[0] < 3 else 60)
            return real(*a, **k)
        draw.draw_poses = slow
        main(["run", {str(fake)!r}, {str(photos)!r}, "--out", {str(out)!r}, "--no-flip", "--json"])
    """)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 3 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"the run ended before it was interrupted: {proc.communicate()}"
        seen += line.count("drawing")        # after the progress bar on the same line
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and 2 <= summary["processed"] < 40
    results = json.loads((out / "results.json").read_text())
    names = {r["file_name"] for r in results}
    assert len(names) == summary["processed"] == summary["annotated_images"]
    assert {p.name for p in out.glob("*.jpg")} == names


# ------------------------------------------------------------------------------------------- 16 / 19. leftovers
def test_failed_run_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.onnx"
    broken.write_text("not a model\n")
    _one_line_error(_invoke(["run", broken, PEOPLE / "zidane.jpg"]))
    assert not (tmp_path / "runs").exists()


def test_killed_calibration_scratch_folders_are_removed_by_the_next_run(fake, tmp_path, monkeypatch):
    import tempfile

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    dead = tmpdir / f"gtpt_calib_{_dead_pid()}_abc123"
    alive = tmpdir / f"gtpt_calib_{os.getppid()}_xyz789"         # its owner still runs: left alone
    for d in (dead, alive):
        d.mkdir()
        (d / "augmented.onnx").write_bytes(b"x" * 1000)
    res = _invoke(_calibrate_args(fake))
    assert res.exit_code == 0, res.output
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in tmpdir.iterdir()) == [alive.name]  # its own scratch folders are gone too


def test_scratch_folder_of_a_sigkilled_process_is_swept(tmp_path):
    script = textwrap.dedent(f"""
        import sys, tempfile, time
        tempfile.tempdir = {str(tmp_path)!r}
        from gtpt_deploy.scratch import scratch_dir
        with scratch_dir("calib") as path:
            (path / "model.onnx").write_bytes(b"x" * 1000)
            print(path, flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    path = Path(proc.stdout.readline().strip())
    assert path.name.startswith(f"gtpt_calib_{proc.pid}_") and path.is_dir()
    assert scratch.clean_stale_scratch(tmp_path) == []            # alive: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert path.is_dir()                                            # SIGKILL: nothing could clean up
    assert scratch.clean_stale_scratch(tmp_path) == [path] and not path.exists()


def test_two_builds_to_one_engine_cannot_both_succeed(fake_trt, fake, tmp_path, monkeypatch):
    import gtpt_deploy.engines.build as build

    out = tmp_path / "same.engine"
    another_writer_first(monkeypatch, build, "_inspect", out, b"the other engine")
    line = _one_line_error(_invoke(["build", fake, "--batch", "1", "-o", out]))
    assert "created by someone else" in line and out.read_bytes() == b"the other engine"
    assert not (tmp_path / "same.engine.json").exists()


def test_partial_video_of_a_killed_run_is_removed_by_the_next_run(fake, tmp_path):
    """A SIGKILL while a video is written leaves its partial file; it now carries the owner pid like every other
    temporary, so the next run into that folder removes it (before: `.clip.part.mp4` stayed forever)."""
    import cv2
    import numpy as np

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for _ in range(2):
        writer.write(np.zeros((64, 96, 3), np.uint8))
    writer.release()
    out = tmp_path / "out"
    out.mkdir()
    left = out / f".clip.mp4.{_dead_pid()}.part.tmp.mp4"
    left.write_bytes(b"half a video")
    res = _invoke(["run", fake, clip, "--out", out, "--no-flip"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [".gtpt-run.json", "clip.json", "clip.mp4"]
