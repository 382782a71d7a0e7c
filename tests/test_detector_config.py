"""Detector pre-processing from mmdeploy's pipeline.json / deploy.json: a synthetic 640x640 RTMDet-style export,
the bundled 320x320 RTMDet-nano, the ONNX-shape fallback, and one-line errors for configurations that do not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.errors import ArtifactError
from gtpt_deploy.runtime.detect import PersonDetector, preprocess
from gtpt_deploy.runtime.detector_config import DEFAULT_MEAN, DEFAULT_STD, load_detector_config, parse_pipeline
from gtpt_fixtures import DETECTOR, write_fake_pose_onnx

# The box the synthetic detector reports, in the resized (pre-pad) image's pixels (x1, y1, x2, y2, score).
DET = (100.0, 50.0, 300.0, 450.0, 0.9)


def write_fake_detector(folder: Path, size: tuple[int | str, int | str] = (640, 640), pipeline_size: int | None = 640,
                        to_rgb: bool = False, pad_val: int = 114) -> Path:
    """An mmdeploy-shaped detector: input (1, 3, H, W) -> dets (1, 2, 5), labels (1, 2), plus its pipeline.json.

    dets are the constant DET (label 0) and a second box of another class, plus 0 x the input's mean, so the input
    is really consumed (ONNX Runtime checks its shape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    inits = [numpy_helper.from_array(np.array([[DET, (0, 0, 10, 10, 0.95)]], np.float32), "boxes"),
             numpy_helper.from_array(np.array([[0, 1]], np.int64), "labels_c"),
             numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["boxes", "z"], ["dets"]),
             helper.make_node("Identity", ["labels_c"], ["labels"])]
    graph = helper.make_graph(nodes, "fake_rtmdet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *size])],
                              [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 2, 5]),
                               helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / "end2end.onnx"
    onnx.save(model, str(path))
    (folder / "deploy.json").write_text(json.dumps(
        {"version": "1.3.1", "task": "Detector", "models": [{"name": "rtmdet", "net": "end2end.onnx"}]}))
    if pipeline_size is not None:
        s = pipeline_size
        transforms = [{"type": "LoadImageFromFile"}, {"type": "Resize", "keep_ratio": True, "size": [s, s]},
                      {"type": "Pad", "size": [s, s], "pad_val": {"img": [pad_val] * 3}},
                      {"type": "Normalize", "to_rgb": to_rgb, "mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)},
                      {"type": "Pad", "size_divisor": 1}, {"type": "DefaultFormatBundle"},
                      {"type": "Collect", "keys": ["img"]}]
        pipeline = {"pipeline": {"input": ["img"], "output": ["post_output"], "tasks": [
            {"type": "Task", "module": "Transform", "name": "Preprocess", "transforms": transforms},
            {"type": "Task", "module": "Net", "name": "rtmdet", "input_map": {"img": "input"}},
            {"type": "Task", "module": "mmdet", "name": "postprocess", "component": "ResizeBBox"}]}}
        (folder / "pipeline.json").write_text(json.dumps(pipeline))
    return path


def test_640_mmdeploy_detector_config_is_read_and_boxes_map_back(tmp_path):
    det = PersonDetector(write_fake_detector(tmp_path / "rtmdet_640"), score_thr=0.3)
    cfg = det.config
    assert (cfg.resize, cfg.pad_size, cfg.keep_ratio, cfg.pad_value, cfg.to_rgb) == ((640, 640), (640, 640), True,
                                                                                     114.0, False)
    assert cfg.input_name == "input" and cfg.source.endswith("pipeline.json")
    image = np.zeros((960, 1280, 3), np.uint8)           # resized by 0.5 to 640x480, padded to 640x640
    boxes = det.detect(image)
    assert len(boxes) == 1                               # the class-1 box is not a person
    np.testing.assert_allclose(boxes.xywh[0], [200, 100, 400, 800])   # DET / 0.5, as xywh
    np.testing.assert_allclose(boxes.scores, [0.9])


def test_preprocess_follows_the_pipeline_padding_normalization_and_colour_order(tmp_path):
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0], image[..., 2] = 10, 200               # B = 10, R = 200
    for to_rgb in (False, True):
        folder = tmp_path / f"rgb{to_rgb}"
        cfg = load_detector_config(write_fake_detector(folder, to_rgb=to_rgb, pad_val=0), (640, 640))
        x, (fx, fy) = preprocess(image, cfg)
        assert x.shape == (1, 3, 640, 640) and (fx, fy) == (3.2, 3.2)
        first = 200 if to_rgb else 10                    # channel 0 holds R after to_rgb, B otherwise
        assert x[0, 0, 10, 10] == pytest.approx((first - DEFAULT_MEAN[0]) / DEFAULT_STD[0], rel=1e-5)
        assert x[0, 0, 600, 10] == pytest.approx((0 - DEFAULT_MEAN[0]) / DEFAULT_STD[0], rel=1e-5)  # pad row


def test_bundled_rtmdet_nano_pipeline_and_fallbacks(tmp_path):
    cfg = load_detector_config(DETECTOR, (None, None))
    assert (cfg.resize, cfg.pad_size, cfg.pad_value, cfg.mean, cfg.to_rgb) == ((320, 320), (320, 320), 114.0,
                                                                               DEFAULT_MEAN, False)
    # Without pipeline.json: the ONNX's static input size (or 640x640 when dynamic) with RTMDet's defaults.
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(DETECTOR, lone / "end2end.onnx")
    assert load_detector_config(lone / "end2end.onnx", (None, None)).resize == (640, 640)
    static = write_fake_detector(tmp_path / "static", size=(416, 416), pipeline_size=None)
    assert PersonDetector(static).config.pad_size == (416, 416)
    # Symbolic H/W in the ONNX and a 640 pipeline: the pipeline decides.
    dynamic = write_fake_detector(tmp_path / "dyn", size=("height", "width"))
    assert PersonDetector(dynamic).detect(np.zeros((480, 640, 3), np.uint8)).xywh.shape == (1, 4)


def test_pipeline_that_does_not_fit_the_onnx_is_a_one_line_error(tmp_path):
    bad = write_fake_detector(tmp_path / "bad", size=(320, 320), pipeline_size=640)
    with pytest.raises(ArtifactError, match="fixed 320x320 input.*makes 640x640"):
        PersonDetector(bad)
    fake = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 48, 3), np.uint8))
    res = CliRunner().invoke(main, ["run", str(fake), str(image), "--detector", str(bad), "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "fixed 320x320 input" in res.stderr
    with pytest.raises(ArtifactError, match="'LetterResize' is not supported"):
        parse_pipeline({"pipeline": {"tasks": [{"module": "Transform", "transforms": [{"type": "LetterResize"}]}]}})
    (tmp_path / "bad" / "deploy.json").write_text(json.dumps({"task": "PoseDetector", "models": []}))
    with pytest.raises(ArtifactError, match="'PoseDetector' model, not a detector"):
        PersonDetector(bad)


def _pipeline(resize=(640, 640), pad=(640, 640), mean=list(DEFAULT_MEAN), std=list(DEFAULT_STD)) -> dict:
    transforms = [{"type": "Resize", "keep_ratio": True, "size": list(resize)},
                  {"type": "Pad", "size": list(pad), "pad_val": {"img": [114] * 3}},
                  {"type": "Normalize", "to_rgb": False, "mean": mean, "std": std}]
    return {"pipeline": {"tasks": [{"module": "Transform", "transforms": transforms},
                                   {"module": "Net", "input_map": {"img": "input"}}]}}


def test_absurd_sizes_and_degenerate_normalization_are_refused_before_any_allocation(tmp_path):
    # issue 21 #14: [40000, 40000] got the process killed by the kernel (19 GB per copy); std 0 or a NaN mean
    # made every input inf/NaN and the run reported "0 persons", exit 0.
    for resize, pad in (((40000, 40000), (640, 640)), ((640, 640), (40000, 40000)), ((0, 640), (640, 640)),
                        ((-1, 640), (640, 640))):
        with pytest.raises(ArtifactError, match=r"size must be \[height, width\] with each side 1\.\.4096"):
            parse_pipeline(_pipeline(resize, pad))
    for mean, std, what in (([0, 0, 0], [0, 0, 0], "std must be finite and > 0"),
                            ([1, 2, 3], [1, -1, 1], "std must be finite and > 0"),
                            ([1, 2, 3], [1, float("inf"), 1], "std must be finite and > 0"),
                            ([float("nan"), 0, 0], [1, 1, 1], "mean must be finite"),
                            (["1", 2, 3], [1, 1, 1], "expected a number for Normalize mean")):
        with pytest.raises(ArtifactError, match=what):
            parse_pipeline(_pipeline(mean=mean, std=std))
    # Without Resize, pad_to_square follows the image: a 5000-pixel panorama is refused per image, not allocated.
    square = parse_pipeline({"pipeline": {"tasks": [{"module": "Transform", "transforms": [
        {"type": "Pad", "pad_to_square": True}]}]}})
    with pytest.raises(ArtifactError, match="makes a 5000x5000 detector input from a 10x5000 image"):
        square.output_size(10, 5000)


def test_run_with_a_zero_std_or_nan_mean_pipeline_is_one_line_not_zero_persons(tmp_path):
    fake = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 48, 3), np.uint8))
    for i, (mean, std) in enumerate((([0, 0, 0], [0, 0, 0]), ([float("nan"), 0, 0], [1, 1, 1]))):
        det = write_fake_detector(tmp_path / f"det{i}", size=("h", "w"))
        (det.parent / "pipeline.json").write_text(json.dumps(_pipeline(mean=mean, std=std)))   # json writes NaN
        res = CliRunner().invoke(main, ["run", str(fake), str(image), "--detector", str(det), "--out",
                                        str(tmp_path / f"out{i}")])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "Normalize" in res.stderr, res.stderr
        assert not (tmp_path / f"out{i}" / "results.json").exists()
