"""The one pose core (issue 19): typed options built once by the CLI option groups and by the Python API, the one
frame builder, and the frictions it removed (a static batch with --batch, the Python predict's detector device)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gtpt_deploy as gd
from gtpt_deploy import runners
from gtpt_deploy.cli import main
from gtpt_deploy.errors import InputImageError
from gtpt_deploy.runtime import person_boxes
from gtpt_deploy.runtime.boxes import Boxes
from gtpt_deploy.runtime.options import BoxSpec, RunnerSpec
from gtpt_deploy.runtime.predictor import Frame, ImageFailure, build_frames
from gtpt_deploy.runtime.sources import SourceFrame
from gtpt_fixtures import DETECTOR, PEOPLE, write_fake_pose_onnx


@pytest.fixture(scope="module")
def fake_b1(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b1.onnx", batch=1)


def _invoke(args: list) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_on_a_static_batch_artifact_ignores_batch_with_one_warning(fake_b1, tmp_path, caplog):
    """`run x_b1.onnx --batch 8` was refused although run's --help says a static batch is used as exported."""
    image = PEOPLE / "zidane.jpg"
    with caplog.at_level(logging.WARNING):
        r = _invoke(["run", fake_b1, image, "--batch", "8", "--no-draw", "--out", tmp_path / "b8"])
    assert r.exit_code == 0, r.output
    said = [rec.getMessage() for rec in caplog.records if "--batch" in rec.getMessage()]
    assert said == ["--batch 8 ignored: fake_b1.onnx has a static batch of 1, used as exported"]
    plain = _invoke(["run", fake_b1, image, "--no-draw", "--out", tmp_path / "plain"])
    assert plain.exit_code == 0, plain.output
    assert (tmp_path / "b8" / "results.json").read_bytes() == (tmp_path / "plain" / "results.json").read_bytes()


class _RecordingDetector:
    """Stands in for PersonDetector: records where it was asked to run, boxes the whole image."""

    devices: list = []

    def __init__(self, path, **options) -> None:
        self.devices.append(options["device"])

    def __call__(self, path: Path, image: np.ndarray) -> Boxes:
        return Boxes.of([[0, 0, image.shape[1], image.shape[0]]], [0.9])

    def image_id(self, path: Path) -> None:
        return None


def test_python_predict_runs_the_detector_on_its_own_device(fake_b1, monkeypatch):
    """`predict(device="cuda")` ran the detector on the pose model's device; `run` has --detector-device (cpu)."""
    _RecordingDetector.devices = []
    monkeypatch.setattr(person_boxes, "PersonDetector", _RecordingDetector)
    real = runners.create_runner
    # the pose model runs on this machine's CPU whatever device is asked: only the detector's device is looked at
    monkeypatch.setattr(runners, "create_runner", lambda artifact, device=None, **kw: real(artifact, **kw))
    out = gd.predict(fake_b1, [PEOPLE / "zidane.jpg"], detector=DETECTOR, device="cuda")
    assert _RecordingDetector.devices == ["cpu"] and len(out[0].poses) == 1
    gd.predict(fake_b1, [PEOPLE / "zidane.jpg"], detector=DETECTOR, device="cuda", detector_device="cuda:1")
    assert _RecordingDetector.devices == ["cpu", "cuda:1"]


def test_cli_option_groups_hand_one_typed_object_to_run_and_bench(fake_b1, tmp_path, monkeypatch):
    """run and bench --images get the same RunnerSpec / BoxSpec from the same options (they cannot drift)."""
    from gtpt_deploy.eval import pipeline_bench
    from gtpt_deploy.runtime import run as run_module

    seen: dict = {}

    class Stop(Exception):
        pass

    def capture(name):
        def fake(artifact, inputs, *args, **kwargs):
            seen[name] = (args, kwargs)
            raise Stop
        return fake

    monkeypatch.setattr(run_module, "run_inputs", capture("run"))
    monkeypatch.setattr(pipeline_bench, "bench_pipeline", capture("bench"))
    common = ["--detector", DETECTOR, "--detector-device", "cuda:1", "--detector-threads", "2", "--box-thr", "0.5",
              "--threads", "3", "--no-flip"]
    r = _invoke(["run", fake_b1, PEOPLE, *common, "--batch", "4", "--device", "cpu", "--provider", "openvino"])
    assert isinstance(r.exception, Stop), r.output
    b = _invoke(["bench", fake_b1, "--images", PEOPLE, *common, "--batch", "4", "--device", "cpu",
                 "--provider", "openvino"])
    assert isinstance(b.exception, Stop), b.output
    runner = RunnerSpec(device="cpu", provider="openvino", threads=3, batch=4, flip=False)
    boxes = BoxSpec(detector=DETECTOR, box_thr=0.5, detector_device="cuda:1", detector_threads=2)
    assert seen["run"][0][1:3] == (runner, boxes)   # (out_dir, runner, boxes, output)
    assert seen["bench"][0][:2] == (runner, boxes)
    crops_mode = _invoke(["bench", fake_b1, "--detector-device", "cuda"])   # not silently ignored without --images
    assert crops_mode.exit_code == 2 and "belong to pipeline mode" in crops_mode.output


def test_one_frame_builder_for_images_streams_and_arrays(tmp_path):
    image = np.zeros((20, 10, 3), np.uint8)

    class Source:
        def __call__(self, path: Path, img: np.ndarray) -> Boxes:
            if path.name == "refused.jpg":
                raise InputImageError("refused.jpg: no boxes for it")
            return Boxes.of([[1, 2, 3, 4]], [1.0])

    items = [SourceFrame("a.jpg", 0, None, image, tmp_path / "a.jpg"),
             SourceFrame("bad.jpg", 1, None, None, tmp_path / "bad.jpg", "bad.jpg: cannot decode it"),
             SourceFrame("refused.jpg", 2, None, image, tmp_path / "refused.jpg"),
             SourceFrame("clip", 7, 0.25, image)]
    stamps: dict = {}
    got = list(build_frames(items, Source(), lambda f: 100 + f.index, stamps))
    assert [type(g) for g in got] == [Frame, ImageFailure, ImageFailure, Frame]
    assert [g.path for g in got] == [tmp_path / "a.jpg", tmp_path / "bad.jpg", tmp_path / "refused.jpg",
                                     Path("clip#000007")]
    assert got[1].error == "bad.jpg: cannot decode it" and got[2].error == "refused.jpg: no boxes for it"
    assert [got[0].image_id, got[3].image_id] == [100, 107] and stamps == {100: None, 107: 0.25}
    assert json.dumps(got[3].boxes.xywh.tolist()) == "[[1.0, 2.0, 3.0, 4.0]]"


def test_python_predict_with_boxes_per_input_and_an_unreadable_input(fake_b1, tmp_path):
    image = PEOPLE / "zidane.jpg"
    out = gd.predict(fake_b1, [image, np.zeros((40, 30, 3), np.uint8)],
                     boxes=[np.array([[10, 10, 50, 80], [60, 10, 40, 90]]), np.array([[0, 0, 30, 40]])])
    assert [o.name for o in out] == ["zidane.jpg", "array1"] and [len(o.poses) for o in out] == [2, 1]
    assert out[0].poses[1].box.tolist() == [60, 10, 40, 90]
    with pytest.raises(InputImageError, match="missing.jpg"):
        gd.predict(fake_b1, [tmp_path / "missing.jpg", image], boxes=[np.zeros((1, 4)), np.zeros((1, 4))])
