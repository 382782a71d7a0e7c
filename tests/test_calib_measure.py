"""calibrate measures by default (held-out persons or --eval-ann), the default budget and its layer search, --num,
per-target names, ranges named after the output, one validation of ranges (hand edits, fuzz), image bytes in the
manifest, and calibration data checks (layout, duplicate image ids, boxes outside the image). Issues 17 and 21."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from gtpt_deploy.calib import budget as budget_mod
from gtpt_deploy.calib import calibrate_int8
from gtpt_deploy.calib.budget import BudgetError
from gtpt_deploy.calib.data import split_persons
from gtpt_deploy.calib.ranges import read_ranges
from gtpt_deploy.cli import main
from gtpt_deploy.coco import load_annotations
from gtpt_deploy.errors import AnnotationError, ArtifactError, GtptError
from gtpt_deploy.eval.validate import DEFAULT_BUDGETS
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_fixtures import SHARED, write_fake_pose_onnx
from test_calib import _fake_score, _grouped_model

TRAIN = SHARED / "data" / "coco_train2017_mini"
TRAIN_ANN = TRAIN / "person_keypoints_train2017_subset.json"
TRAIN_IMAGES = TRAIN / "images"
WHOLEBODY_ANN = SHARED / "data" / "coco_wholebody_val_example" / "coco_wholebody_val_v1.0_5img.json"


@pytest.fixture()
def fake(tmp_path):
    return write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)


def _usable(ann=TRAIN_ANN) -> int:
    return split_persons(load_annotations(ann), str(ann), hold_out=False).usable


def test_calibrate_measures_on_held_out_persons_by_default(fake):
    lines: list[str] = []
    res = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, report=lines.append)
    m = res.measured
    assert m is not None and m.source == "held_out" and m.seed == 0 and m.persons == len(m.held_out_ids) > 0
    assert res.fp32_ap is not None and res.int8_ap is not None and res.argmax_agreement is not None
    assert res.available + m.persons == _usable()            # held-out persons never calibrate
    assert res.max_ap_drop == DEFAULT_BUDGETS["int8"]        # validate's INT8 budget
    info = read_onnx_meta(onnx.load(str(res.output))).extra["int8"]
    assert info["delta_AP"] == pytest.approx(res.delta_ap) and info["argmax_agreement"] == res.argmax_agreement
    assert info["eval"]["source"] == "held_out" and info["eval"]["held_out_annotation_ids"] == list(m.held_out_ids)
    man = read_ranges(res.ranges_path).manifest.data
    assert man["held_out_annotation_ids"] == list(m.held_out_ids)
    report = res.format_report()
    assert "held out from calibration" in report and "ΔAP" in report and "argmax agreement" in report


def test_calibrate_cli_defaults_run_on_the_bundled_data_and_print_the_measurement(fake):
    """The README's example: no --num (86 usable persons < 512), ΔAP and argmax in the report and --json."""
    args = ["calibrate", str(fake), "--ann", str(TRAIN_ANN), "--images", str(TRAIN_IMAGES)]
    r = CliRunner().invoke(main, args + ["--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["crops"] == data["available_persons"] and data["crops"] + data["eval"]["persons"] == _usable()
    assert data["delta_AP"] is not None and data["argmax_agreement"] is not None
    assert data["max_ap_drop"] == DEFAULT_BUDGETS["int8"] and data["budget_search"] is False
    text = CliRunner().invoke(main, args + ["--force", "--max-ap-drop", "none"])
    assert text.exit_code == 0, text.output
    assert "argmax agreement" in text.stdout and "no budget" in text.stdout and "budget:" not in text.output
    too_many = CliRunner().invoke(main, args + ["--num", str(_usable()), "-o", str(fake.parent / "x.onnx")])
    assert too_many.exit_code == 2 and "held out" in too_many.output and "--eval-ann" in too_many.output
    assert len(too_many.output.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["nan", "-0.01", "inf", "2", "-inf", "abc"])
def test_max_ap_drop_refused_at_option_parsing(fake, value):
    r = CliRunner().invoke(main, ["calibrate", str(fake), "--ann", str(TRAIN_ANN), "--images", str(TRAIN_IMAGES),
                                  "--max-ap-drop", value])
    assert r.exit_code == 2 and "0-1 AP difference" in r.output and "calibrating" not in r.output
    assert not (fake.parent / "fake_int8.onnx").exists()
    with pytest.raises(GtptError, match="0-1 AP difference"):
        calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=4, max_ap_drop=float(value) if value != "abc" else -1)


def test_default_budget_runs_the_layer_search_on_its_own(tmp_path, monkeypatch):
    """A recipe that misses the default budget starts the search (steps reported); one that cannot meet it exits
    non-zero with nothing written. Scores: AP falls 0.01 per quantized layer (test_calib._fake_score)."""
    real = budget_mod.session_infer

    def infer(model, threads=None):
        f = real(model, threads)
        f.model = model
        return f

    monkeypatch.setattr(budget_mod, "session_infer", infer)
    monkeypatch.setattr(budget_mod, "score_crops", lambda f, *a, **k: _fake_score(f.model))
    src = tmp_path / "g.onnx"
    _grouped_model(src)
    lines: list[str] = []
    with pytest.raises(BudgetError):                    # 0.005 < one layer's 0.01: no recipe fits
        calibrate_int8(src, TRAIN_ANN, TRAIN_IMAGES, num=8, report=lines.append)
    assert any("sensitivity" in x for x in lines) and not (tmp_path / "g_int8.onnx").exists()
    res = calibrate_int8(src, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=0.025, report=lines.append)
    assert res.search_engaged and len(res.steps) >= 2 and res.delta_ap >= -0.025 - 1e-9
    assert "after the layer search" in res.format_report()
    info = read_onnx_meta(onnx.load(str(res.output))).extra["int8"]
    assert len(info["budget_search"]) == len(res.steps) and info["float_groups"] == list(res.recipe.float_groups)


def _activation_tensors(qmodel) -> set[str]:
    """Float tensors the Q/DQ model quantizes as activations (non-constant inputs of QuantizeLinear)."""
    from gtpt_deploy.export.regions import constant_names

    consts = constant_names(qmodel)
    return {n.input[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in consts}


def test_targets_get_their_own_names_and_share_target_independent_ranges(fake):
    trt = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8)
    cpu = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, target="cpu", ranges=trt.ranges_path)
    assert (trt.output.name, cpu.output.name) == ("fake_int8.onnx", "fake_int8cpu.onnx")
    assert trt.output.exists() and cpu.output.exists() and cpu.reused_ranges
    # Why reuse across targets is right: the ranges record the same tensors whatever the target, and each target
    # quantizes a subset of them (cpu more: the outputs too).
    keys = set(read_ranges(trt.ranges_path).tensors)
    t, c = (_activation_tensors(onnx.load(str(r.output))) for r in (trt, cpu))
    assert t <= keys and c <= keys and t < c
    assert cpu.ranges_path.exists() and cpu.cache_path.exists()    # the report names only files that exist


def test_ranges_and_cache_are_named_after_the_output(fake):
    a = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, output=fake.parent / "a.onnx")
    before = a.ranges_path.read_bytes(), a.cache_path.read_bytes()
    b = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=5, seed=3, output=fake.parent / "b.onnx", force=True)
    assert b.ranges_path != a.ranges_path and b.cache_path != a.cache_path
    assert (a.ranges_path.read_bytes(), a.cache_path.read_bytes()) == before
    assert a.ranges_path.name == "a_minmax.ranges.json" and b.cache_path.name == "b_minmax.cache"
    a.output.unlink()                     # the model gone, its ranges and cache kept: reused as they are
    again = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, output=fake.parent / "a.onnx")
    assert again.reused_ranges and (a.ranges_path.read_bytes(), a.cache_path.read_bytes()) == before


def _edit(name, tensors):
    first = next(iter(tensors))
    if name == "renamed":
        tensors[first + "_renamed"] = tensors.pop(first)
    elif name == "empty key":
        tensors[""] = tensors.pop(first)
    elif name == "no tensors":
        tensors.clear()
    else:
        lo, hi = {"nan": (math.nan, 1.0), "inverted": (2.0, -2.0), "zero": (0.0, 0.0), "tiny": (-1e-30, 1e-30),
                  "huge": (-1e30, 1e30), "inf": (-math.inf, math.inf)}[name]
        tensors[first] = {"min": lo, "max": hi, "amax": max(abs(lo), abs(hi))}
    return first


@pytest.mark.parametrize("edit", ["nan", "renamed", "empty key", "no tensors", "inverted", "zero", "tiny", "huge",
                                  "inf"])
def test_hand_edited_ranges_are_one_line_errors(fake, edit):
    first = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=None)
    data = json.loads(first.ranges_path.read_text())
    tensor = _edit(edit, data["tensors"])
    edited = fake.parent / "edited.ranges.json"
    edited.write_text(json.dumps(data))          # Python writes NaN / Infinity as a hand edit would
    args = ["calibrate", str(fake), "--ann", str(TRAIN_ANN), "--images", str(TRAIN_IMAGES), "--num", "8",
            "--ranges", str(edited), "-o", str(fake.parent / "x.onnx")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert str(edited) in r.output and "re-run" in r.output
    if edit not in ("no tensors", "empty key"):
        assert f"'{tensor}'" in r.output
    assert not (fake.parent / "x.onnx").exists()
    # this output's own ranges file, hand-edited: refused without --force, recomputed (saying so) with it
    first.ranges_path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError):
        calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=None, output=first.output.with_name("y.onnx"),
                       ranges=first.ranges_path)
    again = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=None, force=True)
    assert not again.reused_ranges and read_ranges(again.ranges_path).tensors


def test_ranges_manifest_hashes_the_image_bytes(fake, tmp_path):
    first = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=None)
    other = tmp_path / "other_images"
    shutil.copytree(TRAIN_IMAGES, other)
    for p in sorted(other.iterdir()):             # same names, other pictures
        cv2.imwrite(str(p), cv2.flip(cv2.imread(str(p)), 1))
    with pytest.raises(ArtifactError, match="images_sha256"):
        calibrate_int8(fake, TRAIN_ANN, other, num=8, max_ap_drop=None, ranges=first.ranges_path,
                       output=tmp_path / "o.onnx")


def test_eval_ann_of_another_layout_fails_before_calibrating(fake):
    lines: list[str] = []
    with pytest.raises(GtptError, match="COCO-WholeBody"):
        calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, eval_ann=WHOLEBODY_ANN,
                       eval_images=WHOLEBODY_ANN.parent / "images", report=lines.append)
    assert not any("calibrating" in x for x in lines)


def test_duplicate_image_ids_are_one_line_errors(tmp_path):
    gt = json.loads(TRAIN_ANN.read_text())
    gt["images"][1]["id"] = gt["images"][0]["id"]
    bad = tmp_path / "dup.json"
    bad.write_text(json.dumps(gt))
    with pytest.raises(AnnotationError, match=f"unique image ids, got image id {gt['images'][0]['id']}"):
        load_annotations(bad)


def test_boxes_outside_their_image_are_skipped_with_a_warning(fake, tmp_path):
    gt = json.loads(TRAIN_ANN.read_text())
    persons = [a for a in gt["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")]
    persons[0]["bbox"] = [-5000.0, 10.0, 100.0, 200.0]       # entirely left of its image
    persons[1]["bbox"][1] = 1e5                               # entirely below
    bad = tmp_path / "outside.json"
    bad.write_text(json.dumps(gt))
    lines: list[str] = []
    res = calibrate_int8(fake, bad, TRAIN_IMAGES, max_ap_drop=None, report=lines.append)
    assert res.outside_boxes == 2 and res.available + res.measured.persons == _usable() - 2
    assert any("2 person box(es)" in x and "outside" in x for x in lines)
    assert "outside their image skipped" in res.format_report()


def test_fuzz_ranges_files(fake, tmp_path):
    """Mutated ranges files: a reuse or a one-line ArtifactError, never a traceback or an unchecked range."""
    first = calibrate_int8(fake, TRAIN_ANN, TRAIN_IMAGES, num=8, max_ap_drop=None)
    real = first.ranges_path.read_text()
    rng = np.random.default_rng(0)
    values = [None, True, "x", [], {}, -1, 0, 1e-40, 1e40, math.nan, math.inf, [1.0], {"min": 1}]
    cases = [real[:int(n)] for n in np.linspace(0, len(real) - 1, 12)] + ["", "[]", "null", "{}", '{"format": 1}']
    for _ in range(60):
        data = json.loads(real)
        where = [data, data["manifest"], data["tensors"], data["tensors"][next(iter(data["tensors"]))]][rng.integers(4)]
        key = list(where)[rng.integers(len(where))]
        if rng.random() < 0.3:
            where.pop(key)
        else:
            where[key] = values[rng.integers(len(values))]
        cases.append(json.dumps(data))
    path = tmp_path / "fuzz.ranges.json"
    for i, text in enumerate(cases):
        path.write_text(text)
        try:
            r = read_ranges(path)
        except ArtifactError as e:
            assert "\n" not in str(e) and str(path) in str(e), (i, str(e))
            continue
        assert all(math.isfinite(lo) and math.isfinite(hi) and lo <= hi for lo, hi in r.tensors.values()), i


def test_readme_calibrate_example_runs_as_written(tmp_path, monkeypatch):
    """The README's bundled-data calibrate command, word for word, with a fake ONNX under the export's name (the
    real sample takes a minute; the arguments and defaults are what this checks)."""
    import re
    import shlex

    from gtpt_fixtures import SHARED as shared

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"\n(gtpt-deploy calibrate export/gtpt_t_coco_sample_b1\.onnx.*?)\n```", text, re.S).group(1)
    args = shlex.split(re.sub(r"#[^\n]*", "", block).replace("\\\n", " "))
    work = tmp_path / "repo"
    (work / "export").mkdir(parents=True)
    write_fake_pose_onnx(work / "export" / "gtpt_t_coco_sample_b1.onnx", batch=1)
    (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(work)
    r = CliRunner().invoke(main, args[1:])
    assert r.exit_code == 0, r.output
    assert (work / "export" / "gtpt_t_coco_sample_b1_int8.onnx").is_file() and "ΔAP" in r.stdout
