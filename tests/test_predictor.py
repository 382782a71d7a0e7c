"""predictor / boxes / detect / compare / draw: image loading (bad and unusual files), batching with padding,
the official flip test end to end, every box source, the RTMDet person detector, agreement and drawing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from gtpt_deploy.runtime import codec
from gtpt_deploy.runtime.boxes import (Boxes, CachedBoxes, DetectionFileBoxes, GroundTruthBoxes, WholeImageBoxes,
                                       image_id_from_name)
from gtpt_deploy.runtime.person_boxes import box_source
from gtpt_deploy.eval.compare import compare_keypoints, compare_logits
from gtpt_deploy.runtime.draw import draw_poses
from gtpt_deploy.errors import AnnotationError, GtptError, InputImageError
from gtpt_deploy.keypoints import COCO
from gtpt_deploy.runtime.images import expand_inputs, load_image
from gtpt_deploy.runtime.batching import batched_calls, pad_batch
from gtpt_deploy.runtime.predictor import ImageFailure, ImagePoses, Predictor
from gtpt_deploy.runners import create_runner
from gtpt_deploy.runtime.transforms import crop_and_normalize
from gtpt_fixtures import COCO_VAL, COCO_VAL_ANN, DETECTOR, FIXTURES, PEOPLE, write_fake_pose_onnx

MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"
MMPOSE_DETS = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco_det_AP_H_56.json"


@pytest.fixture(scope="module")
def fake_b4(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b4.onnx", batch=4)


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory) -> dict[str, Path]:
    """Grayscale, RGBA, 16-bit PNGs, an undecodable file, an empty file and a missing path."""
    d = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (50, 30), dtype=np.uint8)
    files = {"gray": d / "gray.png", "rgba": d / "rgba.png", "sixteen": d / "sixteen.png",
             "junk": d / "junk.jpg", "empty": d / "empty.png", "missing": d / "missing.jpg"}
    cv2.imwrite(str(files["gray"]), gray)
    cv2.imwrite(str(files["rgba"]), np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)]))
    cv2.imwrite(str(files["sixteen"]), bgr.astype(np.uint16) * 256 + 3)
    files["junk"].write_bytes(b"\xff\xd8 definitely not a jpeg")
    files["empty"].write_bytes(b"")
    return {**files, "bgr": bgr, "gray_pixels": gray}  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------------ image loading

def test_load_image_converts_unusual_formats(odd_images):
    g = load_image(odd_images["gray"])
    assert g.shape == (50, 30, 3) and g.dtype == np.uint8
    assert (g == odd_images["gray_pixels"][..., None]).all()
    rgba = load_image(odd_images["rgba"])
    assert rgba.shape == (60, 40, 3) and (rgba == odd_images["bgr"]).all()  # alpha dropped
    s16 = load_image(odd_images["sixteen"])
    assert s16.dtype == np.uint8 and (s16 == odd_images["bgr"]).all()  # 16-bit scaled by 1/256


@pytest.mark.parametrize("key, message", [("junk", "not a decodable image"), ("empty", "not a decodable image"),
                                          ("missing", "no such file")])
def test_load_image_errors(odd_images, key, message):
    with pytest.raises(InputImageError, match=message):
        load_image(odd_images[key])


def test_load_image_matches_cv2_imread_color():
    path = COCO_VAL / "images" / "000000000785.jpg"
    ref = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(load_image(path), ref)


def test_expand_inputs(tmp_path):
    (tmp_path / "b.jpg").write_bytes(b"")
    (tmp_path / "a.PNG").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert expand_inputs([tmp_path, tmp_path / "gone.jpg"]) == [tmp_path / "a.PNG", tmp_path / "b.jpg",
                                                                tmp_path / "gone.jpg"]


# ------------------------------------------------------------------------------------------------ batching

class _CountBoxes:
    """n_i boxes for the i-th image (cycled), inside the image."""

    def __init__(self, counts: list[int]) -> None:
        self.counts, self.calls = counts, 0

    def image_id(self, path: Path) -> None:
        return None

    def __call__(self, path: Path, image: np.ndarray) -> Boxes:
        n = self.counts[self.calls % len(self.counts)]
        self.calls += 1
        h, w = image.shape[:2]
        return Boxes.of([[5 + 7 * i, 3 + 5 * i, w / 2, h / 2] for i in range(n)], np.linspace(1, 0.5, n))


def _run(artifact: Path, paths: list[Path], counts: list[int], **kw) -> tuple[list, Predictor]:
    with create_runner(artifact) as r:
        p = Predictor(r, **kw)
        return list(p.predict(paths, _CountBoxes(counts))), p


def test_batching_and_padding_do_not_change_results(fake_dyn, fake_b4, odd_images):
    img = [PEOPLE / "bus.jpg", PEOPLE / "zidane.jpg", PEOPLE / "astronaut.png"]
    paths = [img[0], img[1], odd_images["missing"], img[2], img[0], odd_images["junk"], img[1]]
    counts = [3, 0, 5, 2, 1]  # per *loaded* image; failures take no boxes
    ref, _ = _run(fake_dyn, paths, counts, batch=1)
    for artifact, batch in ((fake_dyn, 3), (fake_dyn, 64), (fake_b4, None)):
        got, pred = _run(artifact, paths, counts, batch=batch)
        assert [type(g) for g in got] == [type(r) for r in ref]
        assert [g.path for g in got] == paths  # input order kept, failures in place
        for g, r in zip(got, ref):
            if isinstance(r, ImagePoses):
                np.testing.assert_allclose(g.keypoints, r.keypoints, rtol=1e-5, atol=1e-4)
                assert np.array_equal(g.bins, r.bins)
    assert [len(g.keypoints) for g in ref if isinstance(g, ImagePoses)] == [3, 0, 5, 2, 1]
    # 11 crops + their 11 flipped copies = 22 rows -> 6 calls of 4 rows; only the last one is padded (2 rows)
    assert pred.batch == 4 and pred.padded_crops == 2
    assert isinstance(ref[2], ImageFailure) and "no such file" in ref[2].error


def test_static_batch_is_used_as_exported_and_another_batch_is_ignored_with_one_warning(fake_b4, caplog):
    """issue 19: `run x_b1.onnx --batch 8` was refused although run's help says a static batch is used as exported."""
    with create_runner(fake_b4) as r, caplog.at_level(logging.WARNING):
        p = Predictor(r, batch=2)
        assert p.batch == 4 and p.static == 4
    warned = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warned == ["--batch 2 ignored: fake_b4.onnx has a static batch of 4, used as exported"]
    with create_runner(fake_b4) as r, pytest.raises(GtptError, match="at least 1"):
        Predictor(r, batch=0)


def test_pad_batch_and_batched_calls():
    rows = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    assert np.array_equal(pad_batch(rows, 5), np.concatenate((rows, np.zeros((2, 2), np.float32))))
    # fill rows come cyclically from the first one (calibration: repeated crops keep min/max, zeros would not)
    fill = np.array([[7, 7], [8, 8]], np.float32)
    assert np.array_equal(pad_batch(rows, 6, fill=fill)[3:], [[7, 7], [8, 8], [7, 7]])
    assert pad_batch(rows, 3) is rows
    with pytest.raises(ValueError, match="at most 2 rows"):
        pad_batch(rows, 2)
    calls = list(batched_calls(np.ones((5, 2), np.float32), 2, static=True))
    assert [(len(c), m) for c, m in calls] == [(2, 2), (2, 2), (2, 1)] and not calls[-1][0][1:].any()
    assert [len(c) for c, _ in batched_calls(np.ones((5, 2), np.float32), 2, static=False)] == [2, 2, 1]


def test_flip_test_runs_the_flipped_batch(fake_dyn):
    with create_runner(fake_dyn) as r:
        on = Predictor(r, flip=True)
        off = Predictor(r, flip=False)
        (a,) = on.predict([PEOPLE / "astronaut.png"])
        n_on = len(r.times)
        (b,) = off.predict([PEOPLE / "astronaut.png"])
        assert n_on == 1 and len(r.times) == 2  # dynamic batch: the flipped crop rides in its original's call
        image = cv2.cvtColor(load_image(PEOPLE / "astronaut.png"), cv2.COLOR_BGR2RGB)
        crops = crop_and_normalize(image, a.centers, a.scales)
        x, y = r.infer(crops)
        fx, fy = r.infer(np.ascontiguousarray(crops[..., ::-1]))
    ref = codec.decode_to_image(x, y, a.centers, a.scales, COCO.flip_index(), (fx, fy))
    np.testing.assert_allclose(a.keypoints, ref, rtol=1e-6)
    np.testing.assert_allclose(b.keypoints, codec.decode_to_image(x, y, a.centers, a.scales), rtol=1e-6)
    assert a.image_id == 1 and a.boxes.tolist() == [[0, 0, 512, 512]]  # whole image by default


def test_official_flip_test_reference(seed0_t_checkpoint):
    """Predictor (torch runner) on the fixture's input reproduces the official validate_sa_simdr keypoints."""
    import torch

    io = torch.load(FIXTURES / "gtpt_t_human_seed0_io.pt", weights_only=True)
    post = io["post"]
    with create_runner(seed0_t_checkpoint, threads=1) as r:
        p = Predictor(r, flip=True, batch=2)
        x, y, fx, fy = p.infer_crops(io["input"].numpy())
    kpts, bins = p.decode(x, y, fx, fy, np.asarray(post["center"]), np.asarray(post["scale"]))
    ref = np.asarray(post["preds_image_space"])
    np.testing.assert_allclose(kpts[..., :2], ref[..., :2], atol=1e-3)
    np.testing.assert_allclose(kpts[..., 2], ref[..., 2], atol=1e-5)
    assert np.array_equal(bins, np.stack([np.asarray(post["argmax_x"]), np.asarray(post["argmax_y"])], -1))


# ------------------------------------------------------------------------------------------------ box sources

def test_ground_truth_boxes_follow_the_official_protocol():
    src = GroundTruthBoxes(COCO_VAL_ANN)
    ann = json.loads(COCO_VAL_ANN.read_text())
    dummy = np.zeros((10, 10, 3), np.uint8)
    total = sum(len(src(Path(n), dummy)) for n in src.file_names)
    assert len(src.file_names) == 57 and total == 137  # non-crowd persons with labelled keypoints
    b = src(Path("000000000785.jpg"), dummy)
    a = next(a for a in ann["annotations"] if a["image_id"] == 785)
    x, y, w, h = a["bbox"]
    assert b.xywh[0].tolist() == pytest.approx([x, y, w - 1, h - 1], abs=1e-3) and b.scores.tolist() == [1.0]
    assert src.image_id(Path("anywhere/000000000785.jpg")) == 785
    with pytest.raises(InputImageError, match="not listed"):
        src(Path("bus.jpg"), dummy)


def test_detection_file_boxes(tmp_path):
    dets = json.loads(MMPOSE_DETS.read_text())
    src = DetectionFileBoxes(MMPOSE_DETS, score_thr=0.0)
    b = src(Path("000000000785.jpg"), np.zeros((1, 1, 3), np.uint8))
    assert len(b) == sum(d["image_id"] == 785 for d in dets)
    assert len(DetectionFileBoxes(MMPOSE_DETS, score_thr=0.5)(Path("000000000785.jpg"), None)) == 1
    assert len(src(Path("000000000139.jpg"), None)) == 0  # no detections for this image
    with pytest.raises(InputImageError, match="not a COCO image id"):
        src(Path("bus.jpg"), None)
    other = tmp_path / "dets.json"
    other.write_text(json.dumps([{"image_id": 785, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    assert len(DetectionFileBoxes(other)(Path("000000000785.jpg"), None)) == 0  # not a person
    other.write_text(json.dumps({"annotations": []}))
    with pytest.raises(AnnotationError, match="detection results list"):
        DetectionFileBoxes(other)


def test_whole_image_box_and_source_choice(tmp_path):
    assert WholeImageBoxes()(Path("x.jpg"), np.zeros((30, 20, 3), np.uint8)).xywh.tolist() == [[0, 0, 20, 30]]
    assert image_id_from_name(Path("000000000785.jpg")) == 785 and image_id_from_name(Path("bus.jpg")) is None
    assert isinstance(box_source(), WholeImageBoxes)
    assert isinstance(box_source("gt", ann=MMPOSE_ANN), GroundTruthBoxes)
    with pytest.raises(GtptError, match="either --boxes or --detector"):
        box_source(MMPOSE_DETS, detector=DETECTOR)
    with pytest.raises(GtptError, match="--ann"):
        box_source("gt")
    cached = CachedBoxes(_CountBoxes([1, 2]))
    img = np.zeros((40, 40, 3), np.uint8)
    assert len(cached(Path("a.jpg"), img)) == 1 and len(cached(Path("a.jpg"), img)) == 1
    assert len(cached(Path("b.jpg"), img)) == 2


def test_rtmdet_person_detector_on_bus():
    det = box_source(detector=DETECTOR)  # score >= 0.3 by default
    image = load_image(PEOPLE / "bus.jpg")
    b = det(PEOPLE / "bus.jpg", image)
    assert len(b) == 3  # SOURCE.md: 3 persons on bus.jpg at score >= 0.3
    assert (b.scores >= 0.3).all() and (b.xywh[:, 2:] > 50).all()
    assert (b.xywh[:, 0] >= 0).all() and (b.xywh[:, 0] + b.xywh[:, 2] <= image.shape[1]).all()
    assert (b.xywh[:, 3] > b.xywh[:, 2]).all()  # standing people are taller than wide


# ------------------------------------------------------------------------------------------------ compare / draw

def test_compare_keypoints_and_logits():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 100, (3, 17, 3)).astype(np.float32)
    bins = rng.integers(0, 384, (3, 17, 2))
    same = compare_keypoints(kp, bins, kp, bins)
    assert (same.argmax_agreement, same.mean_disp_px, same.max_disp_px, same.keypoints) == (1.0, 0.0, 0.0, 51)
    moved, mbins = kp.copy(), bins.copy()
    moved[0, 0, :2] += (3.0, 4.0)
    mbins[0, 0, 1] += 1
    d = compare_keypoints(kp, bins, moved, mbins)
    assert d.argmax_agreement == pytest.approx(50 / 51) and d.max_disp_px == pytest.approx(5.0)
    assert d.mean_disp_px == pytest.approx(5.0 / 51)
    with pytest.raises(GtptError, match="same instances"):
        compare_keypoints(kp, bins, kp[:2], bins[:2])
    assert compare_logits(np.zeros(3), np.array([0, 1, -2]))["max_abs"] == 2.0


def test_draw_poses_only_confident_points():
    img = np.zeros((200, 200, 3), np.uint8)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = np.linspace(20, 180, 17)[:, None]
    assert np.array_equal(draw_poses(img, kp, COCO), img)  # all confidences 0: nothing drawn
    kp[0, :, 2] = 0.9
    out = draw_poses(img, kp, COCO, boxes_xywh=np.array([[10, 10, 50, 50]]))
    assert out.shape == img.shape and out.any() and not img.any()  # input untouched
    assert out[100, 100].any() and out[10, 30].any()  # a keypoint and the box edge
