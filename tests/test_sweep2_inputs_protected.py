"""Issue 21, second sweep: one input-protection check for every writer (findings 1, 3, 17) and one-line errors for
files that are not what they claim (finding 15). Each test reproduces the finding through the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gtpt_fixtures import COCO_VAL, COCO_VAL_ANN, PEOPLE, write_fake_pose_onnx, invoke_cli, one_line_error

IMAGES = COCO_VAL / "images"


_invoke = invoke_cli
_one_line_error = one_line_error


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake.onnx", batch=None)


def _write_clip(path: Path, frames: int = 3) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    return path


# ------------------------------------------------------------------------------------------- 1. run: videos
@pytest.mark.parametrize("force", [False, True])
def test_run_never_replaces_the_input_video(fake, tmp_path, force):
    clip = _write_clip(tmp_path / "clip.mp4")
    before = _md5(clip)
    line = _one_line_error(_invoke(["run", fake, clip, "--out", tmp_path] + (["--force"] if force else [])))
    assert "one of the input files" in line and "--force" not in line
    assert _md5(clip) == before and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_run_on_a_previous_runs_video_in_its_own_folder_keeps_it(fake, tmp_path):
    out = tmp_path / "out"
    assert _invoke(["run", fake, _write_clip(tmp_path / "clip.mp4"), "--out", out, "--no-flip"]).exit_code == 0
    annotated = out / "clip.mp4"
    before = _md5(annotated)
    line = _one_line_error(_invoke(["run", fake, annotated, "--out", out, "--force", "--no-flip"]))
    assert "one of the input files" in line
    assert _md5(annotated) == before


def test_run_output_cannot_be_the_model_or_annotation_file(fake, tmp_path):
    """Every input of the command is protected, not only the images: here the annotation file named like the
    results (a hard link of it called results.json in --out)."""
    out = tmp_path / "out"
    out.mkdir()
    photo = tmp_path / "zidane.jpg"
    shutil.copy(PEOPLE / "zidane.jpg", photo)
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [{"id": 1, "file_name": "zidane.jpg", "width": 1280, "height": 720}], '
                   '"annotations": [], "categories": [{"id": 1, "name": "person"}]}')
    os.link(ann, out / "results.json")
    before = ann.read_bytes()
    line = _one_line_error(_invoke(["run", fake, photo, "--ann", ann, "--out", out, "--force", "--no-draw"]))
    assert "one of the input files" in line and ann.read_bytes() == before


# ------------------------------------------------------------------------------------------- 3. calibrate / fp16
@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_calibrate_never_overwrites_its_annotation_file(fake, tmp_path, how):
    ann = tmp_path / "A.json"
    shutil.copy(COCO_VAL_ANN, ann)
    before = _md5(ann)
    target = {"same": ann, "hardlink": tmp_path / "B.json", "symlink": tmp_path / "C.json"}[how]
    if how == "hardlink":
        os.link(ann, target)
    elif how == "symlink":
        target.symlink_to(ann)
    line = _one_line_error(_invoke(["calibrate", fake, "--ann", ann, "--images", IMAGES, "--num", "4",
                                    "-o", target, "--force"]))
    assert "one of the input files" in line and "--force" not in line
    assert _md5(ann) == before and not list((tmp_path).glob("*.onnx"))


def test_calibrate_never_writes_over_a_file_in_the_images_folder(fake, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    victim = sorted(images.iterdir())[0]
    before = _md5(victim)
    line = _one_line_error(_invoke(["calibrate", fake, "--ann", COCO_VAL_ANN, "--images", images, "--num", "4",
                                    "-o", victim, "--force"]))
    assert "one of the input files" in line and _md5(victim) == before
    # files in that folder that are not images are not inputs: an earlier output there is replaced with --force
    earlier = images / "m_int8.onnx"
    earlier.write_bytes(b"an earlier calibration")
    res = _invoke(["calibrate", fake, "--ann", COCO_VAL_ANN, "--images", images, "--num", "4", "-o", earlier,
                   "--force"])
    assert res.exit_code == 0, res.output
    assert earlier.read_bytes() != b"an earlier calibration"


def test_fp16_output_hard_linked_to_the_source_is_refused(fake, tmp_path):
    src = tmp_path / "m.onnx"
    shutil.copy(fake, src)
    os.link(src, tmp_path / "alias.onnx")
    before = _md5(src)
    line = _one_line_error(_invoke(["fp16", src, "-o", tmp_path / "alias.onnx", "--force"]))
    assert "one of the input files" in line and _md5(src) == before


# ------------------------------------------------------------------------------------------- 17. build
def test_build_timing_cache_cannot_be_the_onnx_or_a_foreign_file(fake_trt, fake, tmp_path):
    src = tmp_path / "m.onnx"
    shutil.copy(fake, src)
    before = _md5(src)
    line = _one_line_error(_invoke(["build", src, "--batch", "1", "-o", tmp_path / "m.engine",
                                    "--timing-cache", src]))
    assert "one of the input files" in line and _md5(src) == before
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("three years of work\n")
    line = _one_line_error(_invoke(["build", src, "--batch", "1", "-o", tmp_path / "m.engine",
                                    "--timing-cache", thesis, "--force"]))
    assert "not a timing cache TensorRT" in line
    assert thesis.read_text() == "three years of work\n" and not (tmp_path / "m.engine").exists()
    # a cache written by a build is read and updated as before
    cache = tmp_path / "t.cache"
    for name in ("a", "b"):
        assert _invoke(["build", src, "--batch", "1", "-o", tmp_path / f"{name}.engine", "--timing-cache",
                        cache]).exit_code == 0
    assert cache.stat().st_size > 0


def test_build_from_checkpoint_advice_moves_past_an_existing_intermediate(fake_trt, seed0_t_checkpoint, tmp_path,
                                                                          monkeypatch):
    """'choose another --output' did not move the intermediate ONNX; the advice now names what works."""
    monkeypatch.chdir(tmp_path)
    existing = Path("export") / f"{seed0_t_checkpoint.stem}_b1.onnx"
    existing.parent.mkdir()
    existing.write_bytes(b"an earlier export")
    line = _one_line_error(_invoke(["build", seed0_t_checkpoint, "--precision", "fp16", "-o", tmp_path / "X.engine"]))
    assert "choose another --output" not in line and "--force" in line
    assert f"gtpt-deploy fp16 {tmp_path / existing}" in line and "-o names only the engine" in line
    assert existing.read_bytes() == b"an earlier export" and not (tmp_path / "X.engine").exists()


# ------------------------------------------------------------------------------------------- 15. one-line errors
@pytest.mark.parametrize("content", ["truncated", "text"])
@pytest.mark.parametrize("command", ["fp16", "calibrate", "build"])
def test_truncated_or_text_onnx_is_a_one_line_error(fake_trt, fake, tmp_path, command, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(fake.read_bytes()[:300] if content == "truncated" else b"this is not a model\n")
    extra = {"fp16": [], "calibrate": ["--ann", COCO_VAL_ANN, "--images", IMAGES, "--num", "4"],
             "build": ["-o", tmp_path / "m.engine"]}[command]
    line = _one_line_error(_invoke([command, bad, *extra]))
    assert "bad.onnx is not a loadable ONNX model" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_run_on_a_symlink_to_itself_is_a_one_line_failure(fake, tmp_path):
    loopy = tmp_path / "loopy.jpg"
    loopy.symlink_to("loopy.jpg")
    res = _invoke(["run", fake, loopy, "--out", tmp_path / "out"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    failed = [ln for ln in res.stderr.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and "loopy.jpg" in failed[0] and "symbolic links" in failed[0]


def test_bench_batch_is_refused_up_front(fake):
    line = _one_line_error(_invoke(["bench", fake, "--batch", "100000"]))
    assert "--batch must be <= 1024" in line and "GB" in line
