"""INT8 calibration: the TensorRT and CPU Q/DQ forms, ranges JSON + TensorRT cache, reuse rules, budget, bad input."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from gtpt_deploy.calib import calibrate_int8
from gtpt_deploy.calib.budget import BudgetError, search
from gtpt_deploy.calib.evalset import CropScore
from gtpt_deploy.calib.int8 import Int8Recipe, collect_ranges
from gtpt_deploy.cli import main
from gtpt_deploy.coco import load_annotations
from gtpt_deploy.errors import ArtifactError, GtptError, InputImageError
from gtpt_deploy.metadata import ModelMeta, read_onnx_meta, write_onnx_meta
from gtpt_deploy.runtime.crops import person_crops
from gtpt_fixtures import COCO_VAL, COCO_VAL_ANN, write_fake_pose_onnx

IMAGES = COCO_VAL / "images"
WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


def _consumers(model):
    out = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


@pytest.fixture(scope="module")
def trt_int8(seed0_t_onnx_b1, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    src = folder / "export" / "t_b1.onnx"
    src.parent.mkdir()
    shutil.copy(seed0_t_onnx_b1, src)
    return calibrate_int8(src, COCO_VAL_ANN, IMAGES, num=16)


def test_tensorrt_form_symmetric_qdq_on_weight_layer_inputs_only(trt_int8):
    q = onnx.load(str(trt_int8.output))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    cons = _consumers(q)
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for n in qs + dqs:                                   # zero points 0, int8 (TensorRT's requirement)
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    for n in dqs:                                        # DQ feeds only weight layers
        assert {c.op_type for c in cons[n.output[0]]} <= set(WEIGHT_OPS)
        if n.input[0] in inits and inits[n.input[0]].ndim > 1:   # weights: per-channel scales
            assert inits[n.input[1]].size > 1
    fed = {c.name for n in dqs for c in cons[n.output[0]]}
    meta = read_onnx_meta(q)
    assert meta.precision == "int8" and meta.extra["int8"]["target"] == "tensorrt"
    assert "gates" in meta.extra["int8"]["float_groups"]
    assert meta.extra["int8"]["quantized_layers"] == trt_int8.quantized_layers == len(fed)
    assert trt_int8.quantized_layers < trt_int8.weight_layers
    for n in q.graph.node:                               # the float regions get no DQ input
        if n.op_type in ("TopK", "Softmax", "LayerNormalization", "Sigmoid"):
            assert all(i not in {d.output[0] for d in dqs} for i in n.input)


def test_ranges_manifest_and_trt_cache_agree(trt_int8):
    from gtpt_deploy.artifacts import sha256_file

    data = json.loads(trt_int8.ranges_path.read_text())
    assert trt_int8.ranges_path.parent.name == "calib" and trt_int8.output.name == "t_b1_int8.onnx"
    man = data["manifest"]
    assert man["model_sha256"] == sha256_file(trt_int8.source)
    assert man["data"]["ann_sha256"] == sha256_file(COCO_VAL_ANN) and man["data"]["crops"] == 16
    assert man["method"] == "minmax" and man["data"]["image_ids"] and len(man["data"]["images_sha256"]) == 64
    assert "target" not in man          # the ranges do not depend on it (test_calib_measure checks why)
    lines = trt_int8.cache_path.read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("Calibration2")
    cache = dict(line.split(": ") for line in lines[1:])
    assert set(cache) <= set(data["tensors"]) and len(cache) > 50
    for name, hexval in cache.items():
        assert len(hexval) == 8
        scale = struct.unpack(">f", bytes.fromhex(hexval))[0]
        assert scale == pytest.approx(np.float32(data["tensors"][name]["amax"] / 127.0), rel=1e-6)


def test_cpu_form_reuses_matching_ranges_and_is_fused_by_onnxruntime(trt_int8):
    res = calibrate_int8(trt_int8.source, COCO_VAL_ANN, IMAGES, num=16, target="cpu", ranges=trt_int8.ranges_path)
    assert res.output.name == "t_b1_int8cpu.onnx" and res.reused_ranges and "reused" in res.format_report()
    assert res.fusion is not None and res.fusion.ok, res.fusion.format()
    assert sum(res.fusion.integer_ops.values()) >= res.quantized_layers
    q = onnx.load(str(res.output))
    zps = [numpy_helper.to_array(t) for t in q.graph.initializer if t.name.endswith("_zero_point")]
    assert any(z.dtype == np.uint8 for z in zps)


def _grouped_model(path):
    """Tiny GTPT-shaped ONNX with three weight-layer groups: block00, block01 (to_qkv names) and the head."""
    rng = np.random.default_rng(0)
    w = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.3  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w(36, 36), "w0"), (w(36, 36), "w1"), (w(36, 17 * 384), "wx"), (w(36, 17 * 512), "wy"),
        (np.array([0, 36], np.int64), "sf"), (np.array([-1, 17, 384], np.int64), "sx"),
        (np.array([-1, 17, 512], np.int64), "sy")]]
    nodes = [helper.make_node("AveragePool", ["images"], ["p"], kernel_shape=[64, 64], strides=[64, 64]),
             helper.make_node("Reshape", ["p", "sf"], ["f"]),
             helper.make_node("MatMul", ["f", "w0"], ["a"], name="/t/to_qkv/MatMul"),
             helper.make_node("MatMul", ["a", "w1"], ["b"], name="/t/to_qkv_1/MatMul"),
             helper.make_node("MatMul", ["b", "wx"], ["x"], name="head_x"),
             helper.make_node("MatMul", ["b", "wy"], ["y"], name="head_y"),
             helper.make_node("Reshape", ["x", "sx"], ["simcc_x"]), helper.make_node("Reshape", ["y", "sy"], ["simcc_y"])]
    io = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "grouped", [io("images", ["b", 3, 256, 192])],
                          [io("simcc_x", ["b", 17, 384]), io("simcc_y", ["b", 17, 512])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    from gtpt_deploy.models.variants import VARIANTS

    write_onnx_meta(m, ModelMeta.for_config(VARIANTS["gtpt_t_coco"], None))
    onnx.save(m, str(path))
    return m


def _fake_score(model):
    """AP falls by 0.01 per quantized weight layer (a DequantizeLinear of a constant feeding a MatMul)."""
    consts = {t.name for t in model.graph.initializer}
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    quantized = sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in dq)
    return CropScore(0.8 - 0.01 * quantized, np.zeros((1, 17, 3)), np.zeros((1, 17, 2), np.int32))


def test_budget_search_keeps_sensitive_groups_float_until_within_budget(tmp_path):
    model = _grouped_model(tmp_path / "g.onnx")
    crops = person_crops(COCO_VAL_ANN, IMAGES, num=4)
    data = collect_ranges(model, crops.crops, "minmax")
    meta, gt, lines = read_onnx_meta(model), load_annotations(COCO_VAL_ANN), []
    res = search(model, data, Int8Recipe(), crops, meta, gt, 0.025, report=lines.append, scorer=_fake_score)
    assert res.steps[0].delta_ap == pytest.approx(-0.04)               # all four layers quantized
    assert res.final.ap - res.fp32.ap >= -0.025 - 1e-9
    assert len(res.steps) >= 2 and set(res.sensitivity) == {"block00", "block01", "head"}
    groups = [s.float_groups for s in res.steps]
    assert all(set(a) < set(b) for a, b in zip(groups, groups[1:]))   # one more float group per step
    assert any("ΔAP" in line for line in lines)
    with pytest.raises(BudgetError, match="no INT8 recipe within the AP budget"):
        search(model, data, Int8Recipe(), crops, meta, gt, 0.005, report=lines.append, scorer=_fake_score)


def test_bad_inputs_are_one_line_errors(tmp_path):
    fake = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    with pytest.raises(GtptError, match="found only"):
        calibrate_int8(fake, COCO_VAL_ANN, IMAGES, num=100000)
    empty = tmp_path / "empty.json"
    gt = json.loads(COCO_VAL_ANN.read_text())
    empty.write_text(json.dumps({**gt, "annotations": []}))
    with pytest.raises(GtptError, match="found none"):
        calibrate_int8(fake, empty, IMAGES, num=4)
    (tmp_path / "noimages").mkdir()
    with pytest.raises(InputImageError):
        calibrate_int8(fake, COCO_VAL_ANN, tmp_path / "noimages", num=4)
    plain = write_fake_pose_onnx(tmp_path / "plain.onnx", meta=False)
    with pytest.raises(ArtifactError, match="no gtpt-deploy metadata"):
        calibrate_int8(plain, COCO_VAL_ANN, IMAGES, num=4)
    first = calibrate_int8(fake, COCO_VAL_ANN, IMAGES, num=4)
    with pytest.raises(ArtifactError, match="already int8"):
        calibrate_int8(first.output, COCO_VAL_ANN, IMAGES, num=4, output=tmp_path / "again.onnx")
    other = write_fake_pose_onnx(tmp_path / "other.onnx", batch=None, seed=1)
    with pytest.raises(ArtifactError, match="computed for another model sha256"):
        calibrate_int8(other, COCO_VAL_ANN, IMAGES, num=4, ranges=first.ranges_path)
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "other_int8.onnx").exists()


def test_calibrate_cli_json_and_one_line_errors(tmp_path):
    fake = write_fake_pose_onnx(tmp_path / "fake.onnx", batch=None)
    args = ["calibrate", str(fake), "--ann", str(COCO_VAL_ANN), "--images", str(IMAGES), "--num", "4"]
    r = CliRunner().invoke(main, args + ["--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["output"] == str(tmp_path / "fake_int8.onnx") and data["reused_ranges"] is False
    again = CliRunner().invoke(main, args + ["--force", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["reused_ranges"] is True
    assert "reusing ranges" in again.stderr
    quiet = CliRunner().invoke(main, args + ["--force", "--json", "-q"])   # -q: no step lines (issue 19)
    assert quiet.exit_code == 0 and "reusing ranges" not in quiet.stderr and "budget" not in quiet.stderr
    other_data = CliRunner().invoke(main, args[:-1] + ["5", "-o", str(tmp_path / "x.onnx"), "--ranges",
                                                       data["ranges"]])
    assert other_data.exit_code == 2 and "computed for another calibration data" in other_data.output
    assert len(other_data.output.strip().splitlines()) == 1


def test_session_infer_releases_its_session(fake_dyn, monkeypatch):
    """The evaluation set's infer function owns an ONNX Runtime session: closed by `with`, by close(), or when the
    function is dropped (it used to stay active until garbage collection; issue 19)."""
    import gc

    import onnx

    import gtpt_deploy.runners as runners
    from gtpt_deploy.calib.evalset import session_infer

    made, real = [], runners.create_runner
    monkeypatch.setattr(runners, "create_runner", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    model = onnx.load(str(fake_dyn))
    with session_infer(model) as infer:
        x, _ = infer(np.zeros((2, 3, 256, 192), np.float32))
        assert x.shape[0] == 2 and made[0].is_active
    assert not made[0].is_active
    gc.disable()   # dropping the function releases the session at once, not at the collector's next run
    try:
        infer = session_infer(model)
        assert made[1].is_active
        del infer
        assert not made[1].is_active
    finally:
        gc.enable()


def test_budget_search_says_before_the_silent_sensitivity_ranking(monkeypatch):
    """The ranking of groups by sensitivity (one quantization + inference pass per group, ~75 s on a CPU) printed
    nothing until it ended; now one line says it is coming (issue 19)."""
    from types import SimpleNamespace

    from gtpt_deploy.calib import budget as budget_mod
    from gtpt_deploy.calib.int8 import Int8Recipe

    groups = ["block0", "block1", "block2"]
    events = []
    monkeypatch.setattr(budget_mod, "quantized_nodes", lambda m, r: [SimpleNamespace(group=g) for g in groups])
    monkeypatch.setattr(budget_mod, "quantize", lambda m, data, r: r)
    monkeypatch.setattr(budget_mod, "session_infer", lambda m, threads=None: m)
    monkeypatch.setattr(budget_mod, "_logits", lambda infer, crops: (events.append("pass"), (np.zeros((1, 2)),) * 2)[1])

    aps = iter([1.0, 0.9, 1.0])   # FP32, the full recipe (misses the budget), then the first step (within it)

    def scorer(m):
        return CropScore(next(aps), np.zeros((1, 17, 3), np.float32), np.zeros((1, 17, 2), np.int32))

    crops = type("Crops", (), {"crops": np.zeros((4, 3, 8, 6), np.float32), "__len__": lambda self: 4})()
    res = budget_mod.search("model", None, Int8Recipe(), crops, None, {}, 0.01, report=events.append, scorer=scorer)
    assert len(res.steps) == 2 and set(res.sensitivity) == set(groups)
    note = next(i for i, e in enumerate(events) if "ranking 3 weight-layer groups" in e)
    assert events[note + 1:note + 5] == ["pass"] * 4     # said before the base pass and one pass per group
