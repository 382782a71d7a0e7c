"""`gtpt-deploy run` (bad images, summary, exit codes, outputs) and `gtpt-deploy validate` (table, --json,
budget), end to end through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.eval.metrics import Metrics
from gtpt_fixtures import COCO_VAL, DETECTOR, PEOPLE, write_fake_pose_onnx

pytest.importorskip("pycocotools")

MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"   # 4 images, 12 persons with kpts
MMPOSE_DETS = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco_det_AP_H_56.json"


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b2.onnx", batch=2)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """The same weights as ``fake`` with a dynamic batch: another file that agrees with it on every keypoint (a
    candidate validated against the file itself is refused: it certifies nothing)."""
    return write_fake_pose_onnx(tmp_path_factory.mktemp("twin") / "twin_dyn.onnx", batch=None)


@pytest.fixture
def photos(tmp_path) -> Path:
    """Good photos plus every bad case: undecodable, empty, grayscale, RGBA, 16-bit."""
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(PEOPLE / "zidane.jpg", d)
    shutil.copy(PEOPLE / "grace_hopper.jpg", d)
    im = cv2.imread(str(PEOPLE / "grace_hopper.jpg"))
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(im, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]))
    cv2.imwrite(str(d / "deep.png"), im.astype(np.uint16) * 256)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (d / "empty.png").write_bytes(b"")
    (d / "readme.txt").write_text("not an image, ignored in folders")
    return d


def _invoke(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_reports_bad_images_and_continues(fake, photos, tmp_path):
    out = tmp_path / "out"
    res = _invoke(["run", fake, photos, tmp_path / "nope.jpg", "--out", out])
    assert res.exit_code == 1, res.output
    assert "broken.jpg: not a decodable image" in res.stderr and "empty.png: not a decodable image" in res.stderr
    assert "nope.jpg: no such file" in res.stderr
    assert "8 image(s): 5 processed, 3 failed; 5 person(s)" in res.stdout
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 5 and {r["category_id"] for r in records} == {1}
    assert all(len(r["keypoints"]) == 51 and 0 <= r["score"] <= 1 for r in records)
    drawn = sorted(p.name for p in out.iterdir() if p.name not in ("results.json", ".gtpt-run.json"))
    assert drawn == ["deep.png", "grace_hopper.jpg", "gray.png", "rgba.png", "zidane.jpg"]
    assert cv2.imread(str(out / "gray.png")).shape == cv2.imread(str(PEOPLE / "grace_hopper.jpg")).shape

    again = _invoke(["run", fake, photos / "zidane.jpg", "--out", out])
    assert again.exit_code == 2 and "already exists" in again.stderr and "Traceback" not in again.output
    forced = _invoke(["run", fake, photos / "zidane.jpg", "--out", out, "--force", "--no-flip", "--no-draw"])
    assert forced.exit_code == 0, forced.output
    assert "1 image(s): 1 processed, 0 failed" in forced.stdout


def test_run_with_detector_and_detection_file(fake, tmp_path):
    res = _invoke(["run", fake, PEOPLE / "bus.jpg", "--detector", DETECTOR, "--out", tmp_path / "a", "--no-draw"])
    assert res.exit_code == 0, res.output
    assert "3 person(s)" in res.stdout  # RTMDet-nano: 3 persons at score >= 0.3

    images = [COCO_VAL / "images" / "000000000785.jpg", COCO_VAL / "images" / "000000040083.jpg"]
    res = _invoke(["run", fake, *images, "--boxes", MMPOSE_DETS, "--box-thr", "0.5", "--out", tmp_path / "b"])
    assert res.exit_code == 0, res.output
    records = json.loads((tmp_path / "b" / "results.json").read_text())
    assert {r["image_id"] for r in records} <= {785, 40083}  # COCO ids from the file names

    both = _invoke(["run", fake, images[0], "--boxes", MMPOSE_DETS, "--detector", DETECTOR, "--out", tmp_path / "c"])
    assert both.exit_code == 2 and "either --boxes or --detector" in both.stderr


def test_run_engine_without_sidecar(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    res = _invoke(["run", engine, PEOPLE / "bus.jpg", "--out", tmp_path / "o"])   # an engine's device: cuda
    assert res.exit_code == 2 and "has no sidecar m.engine.json" in res.stderr and "Traceback" not in res.output
    res = _invoke(["run", engine, PEOPLE / "bus.jpg", "--out", tmp_path / "o", "--device", "cpu"])
    assert res.exit_code == 2 and "TensorRT engines run on a CUDA GPU, got --device cpu" in res.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_validate_torch_vs_onnx_seed0(seed0_t_checkpoint, seed0_t_onnx_b1, monkeypatch):
    args = ["validate", seed0_t_checkpoint, seed0_t_onnx_b1, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images",
            "--threads", "1"]
    loads = _count_loads(monkeypatch)
    res = _invoke(args + ["--json"])
    assert res.exit_code == 0, res.output
    # issue 19: each artifact loaded once (it was: the checkpoint 3 times, the ONNX file in 2 sessions), the kept
    # tokens recorded in the same pass
    assert loads == {"torch.load": 1, "onnx.load": 1, "InferenceSession": 1}, loads
    monkeypatch.undo()
    report = json.loads(res.stdout)  # stdout is exactly one JSON object
    base, cand = report["rows"]
    assert base["artifact"] == str(seed0_t_checkpoint) and base["runner"].startswith("torch")
    assert cand["runner"] == "onnxruntime [CPUExecutionProvider]"
    assert report["images"] == 4 and report["persons"] == 12 and report["passed"] is True
    assert base["delta_AP"] == 0.0 and base["argmax_agreement"] == 1.0
    assert cand["AP"] == pytest.approx(base["AP"], abs=1e-9) and cand["delta_AP"] == pytest.approx(0.0, abs=1e-9)
    assert cand["argmax_agreement"] == 1.0 and cand["max_disp_px"] == 0.0  # FP32: same decisions
    for key in ("AP", "AP50", "AP75", "AR", "mean_disp_px"):
        assert key in cand
    # precision column, per-precision budget (FP32: 0.0) and pruning-aware parity per stage: FP32 ONNX keeps the
    # torch model's tokens (random weights have near-ties that float rounding may flip: 1 in ~1000 seen)
    assert cand["precision"] == "fp32" and cand["budget"] == 0.0
    assert len(cand["kept_tokens"]) == 3 and all(t >= 0.99 for t in cand["kept_tokens"])

    table = _invoke(args)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "0-1" in lines[0] and lines[1].split()[:4] == ["AP", "AP50", "AP75", "AR"]
    # per artifact: its name and runner, then its numbers under the header
    assert "(base)" in lines[3] and "torch" in lines[3] and lines[4].split()[5:7] == ["+0.0000", "0.0000"]
    assert lines[5].startswith(Path(seed0_t_onnx_b1).name + "  onnxruntime [CPUExecutionProvider]")
    assert float(lines[6].split()[0]) == pytest.approx(cand["AP"], abs=5e-4) and "within the budget" in lines[-1]


def _count_loads(monkeypatch) -> dict[str, int]:
    """Counts of checkpoint reads (torch.load), ONNX parses (onnx.load) and ONNX Runtime sessions from now on."""
    import onnx
    import onnxruntime
    import torch

    counts = {"torch.load": 0, "onnx.load": 0, "InferenceSession": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch, "load", counted("torch.load", torch.load))
    monkeypatch.setattr(onnx, "load", counted("onnx.load", onnx.load))
    monkeypatch.setattr(onnxruntime, "InferenceSession", counted("InferenceSession", onnxruntime.InferenceSession))
    return counts


def test_validate_exits_nonzero_over_budget(fake, twin, tmp_path, monkeypatch):
    """A candidate whose AP drops by more than --max-ap-drop fails the run (the AP itself is faked here)."""
    aps = iter([0.700, 0.6995, 0.690])

    def fake_evaluate(gt, results):
        ap = next(aps)
        return Metrics(ap, ap, ap, ap, ap, ap, ap, ap, ap, ap)

    monkeypatch.setattr("gtpt_deploy.eval.validate.evaluate", fake_evaluate)
    other = write_fake_pose_onnx(tmp_path / "other.onnx", batch=None, seed=1)
    res = _invoke(["validate", fake, twin, other, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images",
                   "--max-ap-drop", "0.001", "--no-flip", "--json"])
    assert res.exit_code == 1, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [r["within_budget"] for r in rows] == [True, True, False]
    assert rows[1]["delta_AP"] == pytest.approx(-0.0005) and rows[2]["delta_AP"] == pytest.approx(-0.01)
    assert rows[1]["argmax_agreement"] == 1.0 and rows[2]["argmax_agreement"] < 0.5  # different weights


def test_validate_runs_a_static_baseline_at_its_batch_beside_dynamic_candidates(fake, twin, caplog):
    """--batch 8 is for the dynamic candidates; the static b2 baseline runs at 2 and says so on stderr (issue 19:
    it used to refuse the run)."""
    args = ["validate", fake, twin, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images", "--no-flip", "--json"]
    with caplog.at_level("WARNING", logger="gtpt_deploy.eval.validate"):
        res = _invoke(args + ["--batch", "8"])
    assert res.exit_code == 0, res.output
    said = [r.getMessage() for r in caplog.records if r.name == "gtpt_deploy.eval.validate"]
    assert len(said) == 1 and "fake_b2.onnx has a static batch of 2: it runs at batch 2" in said[0], said
    rows = json.loads(res.stdout)["rows"]
    assert rows[1]["argmax_agreement"] == 1.0 and rows[1]["delta_AP"] == 0.0
    assert [r["AP"] for r in json.loads(_invoke(args).stdout)["rows"]] == [r["AP"] for r in rows]


def test_validate_user_errors(fake, twin, tmp_path):
    res = _invoke(["validate", fake, twin, "--ann", MMPOSE_ANN, "--images", tmp_path])
    assert res.exit_code == 2 and "validation needs every annotated image" in res.stderr
    res = _invoke(["validate", fake, twin, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images", "--boxes", "gt",
                   "--detector", DETECTOR])
    assert res.exit_code == 2 and "either --boxes or --detector" in res.stderr


def test_validate_and_run_wholebody_layout(tmp_path):
    """133 keypoints: COCO-WholeBody results fields, the whole-body headline AP, drawing of every part."""
    wb = write_fake_pose_onnx(tmp_path / "wb.onnx", batch=None, num_keypoints=133)
    wb2 = write_fake_pose_onnx(tmp_path / "wb2.onnx", batch=2, num_keypoints=133)
    ann = COCO_VAL.parent / "coco_wholebody_val_example" / "coco_wholebody_val_v1.0_5img.json"
    res = _invoke(["validate", wb, wb2, "--ann", ann, "--images", COCO_VAL / "images", "--json", "--no-flip"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["images"] == 5 and report["persons"] == 24 and len(report["rows"]) == 2
    assert report["rows"][1]["argmax_agreement"] == 1.0 and report["rows"][1]["delta_AP"] == 0.0
    # evaluate --json's whole-body keys, per part, 0-1
    assert set(report["rows"][1]) >= {"body", "foot", "face", "lefthand", "righthand", "wholebody"}
    assert report["rows"][1]["wholebody"]["AP"] <= 1.0

    res = _invoke(["run", wb, COCO_VAL / "images" / "000000000785.jpg", "--out", tmp_path / "o", "--kpt-thr", "0"])
    assert res.exit_code == 0, res.output
    (rec,) = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(rec["keypoints"]) == 51 and len(rec["face_kpts"]) == 68 * 3 and len(rec["righthand_kpts"]) == 63


@pytest.mark.parametrize("boxes", [["--detector", DETECTOR], ["--boxes", MMPOSE_DETS, "--box-thr", "0.3"]])
def test_validate_with_detected_boxes(fake, twin, boxes):
    res = _invoke(["validate", fake, twin, "--ann", MMPOSE_ANN, "--images", COCO_VAL / "images", "--json", *boxes])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["persons"] > 0 and report["boxes"] != "gt"
    assert report["rows"][1]["argmax_agreement"] == 1.0  # same weights, same cached boxes -> same crops


def test_validate_python_keywords_are_the_typed_options(fake, twin):
    """The Python API keeps its keywords (issue 19: <= 12 parameters); they become the same RunnerSpec / BoxSpec the
    CLI builds, and a keyword beside its spec, or an unknown one, is a TypeError."""
    from gtpt_deploy.eval.validate import BoxSpec, RunnerSpec, validate

    args = (fake, [twin], MMPOSE_ANN, COCO_VAL / "images")
    a = validate(*args, boxes=MMPOSE_DETS, box_thr=0.3, threads=1, flip=False, batch=4)
    b = validate(*args, BoxSpec(MMPOSE_DETS, box_thr=0.3), runner=RunnerSpec(threads=1, batch=4, flip=False))
    strip = [{k: v for k, v in r.to_dict().items() if k != "model_ms_per_crop"} for r in a.rows]
    assert strip == [{k: v for k, v in r.to_dict().items() if k != "model_ms_per_crop"} for r in b.rows]
    assert a.boxes == b.boxes == str(MMPOSE_DETS) and a.persons == b.persons > 0
    with pytest.raises(TypeError, match="not both"):
        validate(*args, runner=RunnerSpec(), threads=1)
    with pytest.raises(TypeError, match="unexpected keyword arguments box_threshold"):
        validate(*args, box_threshold=0.3)
