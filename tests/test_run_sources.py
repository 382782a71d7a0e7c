"""`run` as a deployment user expects: video files (annotated video + per-frame results), folders and globs, camera
indices and URLs, output folders that never collide (runs/run, runs/run2), --force with a manifest, Ctrl-C."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.errors import InputImageError
from gtpt_deploy.runtime import run as run_module
from gtpt_deploy.runtime.run import run_inputs
from gtpt_deploy.runtime.sources import CameraSource, ImageSource, VideoSource, open_sources
from gtpt_fixtures import DETECTOR, write_fake_pose_onnx

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "images"
FPS, SIZE = 5.0, (320, 240)   # (W, H)


@pytest.fixture(scope="module")
def fake_b1(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b1.onnx", batch=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame MPEG-4 clip (mp4v: what opencv-python-headless writes) made from two demo photos."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    assert writer.isOpened()
    for name in ("000000000785.jpg", "000000397133.jpg"):
        frame = cv2.resize(cv2.imread(str(DEMO_IMAGES / name)), SIZE)
        for _ in range(3):
            writer.write(frame)
    writer.release()
    return path


def _invoke(args: list) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sources_from_files_folders_globs_cameras_and_urls(clip, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(DEMO_IMAGES / "astronaut.jpg", folder)
    shutil.copy(clip, folder / "b.mp4")
    (folder / "notes.txt").write_text("ignored")
    sources = open_sources([folder, str(DEMO_IMAGES / "0000*785.jpg")])
    assert [type(s) for s in sources] == [ImageSource, VideoSource]
    assert [p.name for p in sources[0].paths] == ["astronaut.jpg", "000000000785.jpg"]
    frames = list(sources[1])
    assert [f.index for f in frames] == list(range(6)) and frames[0].image.shape == (240, 320, 3)
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(6) / FPS, atol=1e-6)
    with pytest.raises(InputImageError, match="URLs are not read directly"):
        open_sources(["rtsp://camera.local/stream"])
    with pytest.raises(InputImageError, match="matches no image or video"):
        open_sources([str(tmp_path / "*.jpeg")])
    with pytest.raises(InputImageError, match="camera 97 cannot be opened"):
        CameraSource(97)


def test_run_on_a_video_and_a_folder_with_the_detector(fake_b1, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _invoke(["run", fake_b1, clip, DEMO_IMAGES, "--detector", DETECTOR])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "run"
    assert "clip: 6 frame(s)" in res.stdout and "8 image(s): 8 processed" in res.stdout
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n = 0
    while (frame := cap.read())[0]:
        assert frame[1].shape == (240, 320, 3)
        n += 1
    assert n == 6
    data = json.loads((out / "clip.json").read_text())
    assert data["fps"] == FPS and [f["frame"] for f in data["frames"]] == list(range(6))
    np.testing.assert_allclose([f["timestamp"] for f in data["frames"]], np.arange(6) / FPS, atol=1e-6)
    person = data["frames"][0]["persons"][0]
    assert len(person["keypoints"]) == 17 and len(person["keypoints"][0]) == 3 and len(person["bbox"]) == 4
    assert len(json.loads((out / "results.json").read_text())) > 0
    assert (out / "astronaut.jpg").is_file() and not list(out.glob(".*.part*"))
    # A second run without --out never mixes into the first one's folder.
    again = _invoke(["run", fake_b1, clip, "--no-draw", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["out_dir"] == str(tmp_path / "runs" / "run2")
    assert sorted(p.name for p in (tmp_path / "runs" / "run2").iterdir()) == [".gtpt-run.json", "clip.json"]


def test_force_removes_only_the_previous_runs_files(fake_b1, tmp_path):
    out = tmp_path / "out"
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut.jpg", "grace_hopper.jpg"):
        shutil.copy(DEMO_IMAGES / name, photos)
    assert _invoke(["run", fake_b1, photos, "--out", out]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    refused = _invoke(["run", fake_b1, photos / "astronaut.jpg", "--out", out])
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "Traceback" not in refused.output
    forced = _invoke(["run", fake_b1, photos / "astronaut.jpg", "--out", out, "--force"])
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == [".gtpt-run.json", "astronaut.jpg", "notes.txt", "results.json"]


def test_whole_image_note_and_ctrl_c_keeps_the_results(fake_b1, clip, tmp_path, monkeypatch, caplog):
    real = run_module._stream_frames

    def interrupted_after_three(*args, **kwargs):   # as if Ctrl-C arrived while reading frame 4
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(run_module, "_stream_frames", interrupted_after_three)
    with caplog.at_level(logging.WARNING):
        summary = run_inputs(fake_b1, [clip], tmp_path / "out")
    assert any("whole image is used as one person box" in r.getMessage() for r in caplog.records)
    assert summary.interrupted and summary.streams[0].frames == 3
    assert "stopped by Ctrl-C" in summary.format_lines()[-1]
    data = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert [f["frame"] for f in data["frames"]] == [0, 1, 2]
    assert (tmp_path / "out" / "clip.mp4").is_file()
