"""Issue 11, the bad-input and fault sweep: forged metrics, data loss, half-written outputs, tracebacks and late or
misleading messages. Each test reproduces one finding through the public entry point (CLI or library)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from gtpt_deploy import artifacts
from gtpt_deploy.cli import main
from gtpt_deploy.errors import AnnotationError, ArtifactError, CheckpointError, InputImageError
from gtpt_deploy.eval.metrics import evaluate
from gtpt_deploy.metadata import ModelMeta
from gtpt_deploy.models import read_checkpoint
from gtpt_deploy.runtime.boxes import GroundTruthBoxes
from gtpt_deploy.runtime import images
from gtpt_deploy.runtime.images import load_image
from gtpt_fixtures import COCO_VAL, PEOPLE, write_fake_pose_onnx, another_writer_first, invoke_cli, one_line_error

pytest.importorskip("pycocotools")

ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"     # 4 images, 12 persons with keypoints
WB_ANN = COCO_VAL.parent / "coco_wholebody_val_example" / "coco_wholebody_val_v1.0_5img.json"


_invoke = invoke_cli
_one_line_error = one_line_error


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake.onnx", batch=None)


@pytest.fixture(scope="module")
def nan_onnx(tmp_path_factory) -> Path:
    """The fake pose model with NaN weights: every output is NaN (a broken FP16 or diverged artifact)."""
    path = write_fake_pose_onnx(tmp_path_factory.mktemp("nan") / "nan.onnx", batch=None)
    m = onnx.load(str(path))
    for init in m.graph.initializer:
        if init.name == "wx":
            init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), "wx"))
    onnx.save(m, str(path))
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(PEOPLE / "zidane.jpg", d)
    shutil.copy(PEOPLE / "grace_hopper.jpg", d)
    return d


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------------- 1. forged metric
def _results_from_gt() -> tuple[dict, list[dict]]:
    gt = json.loads(ANN.read_text())
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": list(a["keypoints"]), "score": 0.9}
           for a in gt["annotations"] if a["num_keypoints"] > 0]
    return gt, res


@pytest.mark.parametrize("field, value", [
    ("keypoints", float("nan")), ("keypoints", float("inf")), ("keypoints", None), ("keypoints", "12"),
    ("keypoints", True), ("score", float("nan")), ("score", float("-inf")), ("score", None), ("score", "0.9"),
    ("score", False),
])
def test_results_with_non_finite_or_non_numeric_values_are_refused(tmp_path, field, value):
    gt, res = _results_from_gt()
    if field == "score":
        res[2]["score"] = value
    else:
        res[2]["keypoints"][4] = value
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res))                       # Python writes NaN / Infinity, as a broken tool would
    with pytest.raises(AnnotationError, match=f"record 2: expected '{field}'") as e:
        evaluate(gt, path)
    assert "\n" not in str(e.value)


def test_all_nan_results_no_longer_score_ap_1(tmp_path):
    """Before: AP 1.000 for keypoints that are all NaN. Now: a one-line error naming the first bad record."""
    gt, res = _results_from_gt()
    for r in res:
        r["keypoints"] = [float("nan")] * 51
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res))
    line = _one_line_error(_invoke(["evaluate", ANN, path]))
    assert "record 0" in line and "nan" in line


def test_run_never_writes_nan_and_fails_the_images(nan_onnx, photos, tmp_path):
    out = tmp_path / "out"
    res = _invoke(["run", nan_onnx, photos, "--out", out])
    assert res.exit_code == 1, res.output
    assert res.stderr.count("NaN/Inf logits") == 2 and "2 image(s): 0 processed, 2 failed" in res.stdout
    assert _strict_json((out / "results.json").read_text()) == []


def test_validate_with_a_broken_baseline_fails(nan_onnx, fake):
    """NaN baseline vs a good candidate: before, AP 0 vs 0 printed 'within the budget'."""
    res = _invoke(["validate", nan_onnx, fake, "--ann", ANN, "--images", COCO_VAL / "images", "--no-flip"])
    line = _one_line_error(res)
    assert "NaN/Inf logits" in line and "within the budget" not in res.output


def test_validate_with_nan_checkpoint_names_the_weights(seed0_t_checkpoint, fake, tmp_path):
    bad = tmp_path / "nan.pth"
    sd = torch.load(seed0_t_checkpoint, weights_only=True)
    sd["ema_mlp_head_x.1.weight"] = sd["ema_mlp_head_x.1.weight"].clone().fill_(float("nan"))
    torch.save(sd, bad)
    line = _one_line_error(_invoke(["validate", bad, fake, "--ann", ANN, "--images", COCO_VAL / "images"]))
    assert "non-finite weights" in line and "ema_mlp_head_x.1.weight" in line
    # export used to blame ONNX Runtime / the simplifier for the same file
    line = _one_line_error(_invoke(["export", "--checkpoint", bad, "--output", tmp_path / "x.onnx"]))
    assert "non-finite weights" in line and not (tmp_path / "x.onnx").exists()


# ------------------------------------------------------------------------------------------- 2. data loss
@pytest.mark.parametrize("force", [False, True])
def test_run_never_overwrites_input_photos(fake, photos, force):
    before = _snapshot(photos)
    line = _one_line_error(_invoke(["run", fake, photos, "--out", photos] + (["--force"] if force else [])))
    assert "one of the input files" in line and "--force" not in line
    assert _snapshot(photos) == before
    # names that cannot collide are fine: results.json only
    res = _invoke(["run", fake, photos, "--out", photos, "--no-draw", "--no-flip"])
    assert res.exit_code == 0, res.output
    assert set(_snapshot(photos)) == set(before) | {"results.json", ".gtpt-run.json"}  # + the run manifest


def test_export_output_must_be_onnx(seed0_t_checkpoint, tmp_path):
    report = tmp_path / "x.json"
    line = _one_line_error(_invoke(["export", "--checkpoint", seed0_t_checkpoint, "--output", report]))
    assert "must name an .onnx file" in line and list(tmp_path.iterdir()) == []


def test_export_force_keeps_the_old_pair_when_the_report_cannot_be_written(seed0_t_checkpoint, tmp_path,
                                                                          monkeypatch):
    """A full disk while committing: before, --force had deleted both the old and the new ONNX. Also: the torch
    export no longer writes a temporary graph into $TMPDIR (a SIGKILL left 34 MB there)."""
    import tempfile

    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    out.write_bytes(b"old model")
    report.write_text("old report")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))

    def full_disk(tmp: Path, data: bytes) -> None:
        if ".t.json." in tmp.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        Path(tmp).write_bytes(data)

    monkeypatch.setattr(artifacts, "_write", full_disk)
    res = _invoke(["export", "--checkpoint", seed0_t_checkpoint, "--output", out, "--force", "--samples",
                   PEOPLE / "zidane.jpg"])
    assert "No space left on device" in _one_line_error(res)
    assert out.read_bytes() == b"old model" and report.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.onnx", "tmpdir"]
    assert list(tmpdir.iterdir()) == []


def test_export_loses_a_race_for_its_output_without_force(seed0_t_checkpoint, tmp_path, monkeypatch):
    """Two exports to one path: both pass the up-front check; the one that commits second must fail."""
    import gtpt_deploy.export.onnx as ex

    out = tmp_path / "t.onnx"
    another_writer_first(monkeypatch, ex, "check_parity", out, b"the other export")
    line = _one_line_error(_invoke(["export", "--checkpoint", seed0_t_checkpoint, "--output", out, "--samples",
                                    PEOPLE / "zidane.jpg"]))
    assert "created by someone else" in line
    assert out.read_bytes() == b"the other export" and sorted(p.name for p in tmp_path.iterdir()) == ["t.onnx"]


# ------------------------------------------------------------------------------------------- 3. half-written
def test_run_interrupted_midway_keeps_a_consistent_set(fake, photos, tmp_path, monkeypatch):
    """Ctrl-C (issue 21, finding 7): the results so far are written, and the earlier run's files are not mixed in."""
    import gtpt_deploy.runtime.draw as draw

    out = tmp_path / "out"
    assert _invoke(["run", fake, photos / "zidane.jpg", "--out", out, "--no-flip"]).exit_code == 0
    calls = []
    real = draw.draw_poses

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt            # Ctrl-C while the second image (zidane.jpg) is drawn
        return real(*a, **k)

    monkeypatch.setattr(draw, "draw_poses", interrupted)
    res = _invoke(["run", fake, photos, "--out", out, "--force", "--no-flip"])
    assert res.exit_code == 0 and len(calls) == 2 and "stopped by Ctrl-C" in res.stdout
    assert sorted(_snapshot(out)) == [".gtpt-run.json", "grace_hopper.jpg", "results.json"]   # earlier zidane gone
    assert {r["file_name"] for r in json.loads((out / "results.json").read_text())} == {"grace_hopper.jpg"}


def test_run_full_disk_is_reported_and_nothing_is_kept(fake, photos, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def full_disk(tmp: Path, data: bytes) -> None:
        if tmp.name.startswith(".zidane"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        Path(tmp).write_bytes(data)

    monkeypatch.setattr(artifacts, "_write", full_disk)
    line = _one_line_error(_invoke(["run", fake, photos, "--out", out, "--no-flip"]))
    assert "zidane.jpg" in line and "No space left on device" in line
    assert not out.exists()                    # not even the folder it had created (issue 19)


# ------------------------------------------------------------------------------------------- 4. tracebacks
def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def test_png_over_the_pixel_limits_is_a_per_image_failure(fake, photos, tmp_path):
    """40000x40000 is over OpenCV's own limit (the whole run aborted); 30000x30000 under it took 5.4 GB."""
    (photos / "huge.png").write_bytes(_png_header(40000, 40000))
    (photos / "big.png").write_bytes(_png_header(30000, 30000))
    out = tmp_path / "out"
    res = _invoke(["run", fake, photos, "--out", out, "--no-flip"])
    assert res.exit_code == 1, res.output
    assert "4 image(s): 2 processed, 2 failed" in res.stdout
    assert res.stderr.count(f"above the limit of {images.MAX_PIXELS / 1e6:.0f}") == 2
    assert len(json.loads((out / "results.json").read_text())) == 2


def test_zero_and_negative_size_boxes_are_skipped(fake, photos, tmp_path):
    dets = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9}
            for b in ([10, 10, 0, 0], [10, 10, -5, -5], [10, 10, 0, 50], [50, 40, 200, 300])]
    shutil.copy(photos / "zidane.jpg", tmp_path / "000000000001.jpg")
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    res = _invoke(["run", fake, tmp_path / "000000000001.jpg", "--boxes", tmp_path / "dets.json", "--out",
                   tmp_path / "out", "--no-draw"])
    assert res.exit_code == 0, res.output
    assert "1 person(s)" in res.stdout

    gt = json.loads(ANN.read_text())
    image = gt["images"][0]
    gt["annotations"] = [dict(gt["annotations"][0], image_id=image["id"], bbox=[10, 10, 0, 0], area=5.0)]
    boxes = GroundTruthBoxes(gt)(Path(image["file_name"]), np.zeros((480, 640, 3), np.uint8))
    assert len(boxes) == 0                      # its crop would have scale 0 (ZeroDivisionError before)


@pytest.mark.parametrize("bbox", ["10,10,50,50", [10, 10, 50], [10, 10, float("nan"), 50]])
def test_malformed_bbox_is_a_one_line_error(tmp_path, bbox):
    gt = json.loads(ANN.read_text())
    gt["annotations"][0]["bbox"] = bbox
    with pytest.raises(AnnotationError, match="'bbox' as \\[x, y, width, height\\]"):
        evaluate(gt, [])
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": bbox, "score": 0.9}]))
    from gtpt_deploy.runtime.boxes import DetectionFileBoxes

    with pytest.raises(AnnotationError, match="record 0 lacks"):
        DetectionFileBoxes(dets)


def test_annotation_without_id_is_a_one_line_error():
    gt = json.loads(ANN.read_text())
    del gt["annotations"][3]["id"]
    with pytest.raises(AnnotationError, match="annotation 3 .*none for id"):
        evaluate(gt, [])


@pytest.mark.parametrize("content", [b"hello", b"https://example.com/gtpt_t.pth\n", b"GIF89a", b"\x80\x02]q\x00"])
def test_text_and_foreign_files_are_checkpoint_errors(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint|not a PyTorch checkpoint") as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value)


def test_export_batch_is_bounded(seed0_t_checkpoint, tmp_path):
    line = _one_line_error(_invoke(["export", "--checkpoint", seed0_t_checkpoint, "--batch", 100000, "--output",
                                    tmp_path / "x.onnx"]))
    assert "<= 1024" in line and "GB" in line and list(tmp_path.iterdir()) == []


def test_metadata_flip_pair_out_of_range_is_refused(fake):
    props = {p.key: p.value for p in onnx.load(str(fake)).metadata_props}
    for pairs in ([[1, 99]], [[1, 1]], [[1, 2], [2, 3]], [[-1, 2]]):
        edited = dict(props, **{"gtpt.flip_pairs": json.dumps(pairs)})
        with pytest.raises(ArtifactError, match="flip pair") as e:
            ModelMeta.from_props(edited, source="edited.onnx")
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------- 5. messages
def test_directory_checkpoint_says_directory(tmp_path):
    line = _one_line_error(_invoke(["export", "--checkpoint", tmp_path, "--output", tmp_path / "x.onnx"]))
    assert "is a directory" in line


def test_float_tiff_names_the_sample_format(tmp_path):
    path = tmp_path / "depth.tiff"
    cv2.imwrite(str(path), np.random.default_rng(0).random((20, 30, 3)).astype(np.float32))
    with pytest.raises(InputImageError, match="floating-point samples, an unsupported sample format"):
        load_image(path)


def test_failed_images_are_printed_once(fake, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    res = _invoke(["run", fake, photos, "--out", tmp_path / "out", "--no-draw", "--no-flip"])
    assert res.exit_code == 1 and res.output.count("broken.jpg") == 1, res.output


def test_max_ap_drop_must_be_finite(fake):
    for value in ("nan", "inf", "-1"):
        line = _one_line_error(_invoke(["validate", fake, fake, "--ann", ANN, "--images", COCO_VAL / "images",
                                        "--max-ap-drop", value]))
        assert "--max-ap-drop is a 0-1 AP difference" in line


def test_layout_mismatch_fails_before_any_inference(fake, tmp_path, monkeypatch):
    """A COCO model on whole-body annotations: before, the whole baseline ran first. validate loads each artifact
    once (issue 19), so the check reads the loaded runners' metadata, and not one crop runs."""
    from gtpt_deploy.runners.base import Runner

    def no_inference(*a, **k):
        raise AssertionError("a crop ran before the layouts were checked")

    monkeypatch.setattr(Runner, "infer", no_inference)
    monkeypatch.setattr(Runner, "infer_kept", no_inference)
    other = write_fake_pose_onnx(tmp_path / "other.onnx", batch=None, seed=1)
    line = _one_line_error(_invoke(["validate", fake, other, "--ann", WB_ANN, "--images", COCO_VAL / "images"]))
    assert "predicts 17 keypoints" in line and "COCO-WholeBody (133 keypoints)" in line


def test_header_parser_agrees_with_opencv(tmp_path):
    """The pre-decode size check reads the same size OpenCV decodes, for every format it parses."""
    from gtpt_deploy.runtime.imageinfo import image_info

    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"):
        ok, buf = cv2.imencode(ext, image if ext != ".pgm" else image[..., 0])
        info = image_info(buf)
        assert ok and info is not None and (info.width, info.height) == (53, 37), ext
    assert math.prod((37, 53)) == image_info(cv2.imencode(".png", image)[1]).pixels
    assert image_info(b"not an image") is None and image_info(b"\x89PNG\r\n\x1a\n") is None


def test_every_option_named_in_a_message_exists():
    """'pass the variant explicitly' / '--assets' named options no command has: every --option in the package's
    text must be an option of some gtpt-deploy command."""
    import re

    import click

    def options(cmd: click.Command) -> set[str]:
        names = {o for p in cmd.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]
                 if o.startswith("--")}
        for sub in getattr(cmd, "commands", {}).values():
            names |= options(sub)
        return names

    known = options(main) | {"--help", "--version"}
    # Other tools' options that the package writes into their command lines or names for them: trtexec (the
    # sidecar's equivalent command, --calib for legacy caches), tritonserver and pip (serve/server.py).
    foreign = {"--onnx", "--save", "--load", "--min", "--opt", "--max", "--mem", "--builder", "--profiling",
               "--timing", "--calib", "--strongly", "--no-deps", "--disable-pip-version-check", "--model-repository",
               "--backend-directory", "--http-address", "--http-port", "--allow-grpc", "--allow-metrics",
               "--exit-timeout-secs", "--model-control-mode", "--load-model", "--calib-",
               "--query-gpu", "--format",  # ... and nvidia-smi (eval/machine.py)
               "--rm", "--gpus", "--shm-size"}  # ... and docker (serve/launch.py: the Triton container command)
    package = Path(__file__).resolve().parents[1] / "gtpt_deploy"
    named = {(m, p.name) for p in package.rglob("*.py") for m in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+",
                                                                        p.read_text()) if m not in foreign}
    assert {(m, f) for m, f in named if m not in known} == set()
