"""INT8 for TensorRT is INT8 + FP16 (calib/mixed.py): every float op outside the FP32 islands is float16, Q/DQ
scales are float16 (opset 19), the base precision is in the metadata; ``--target cpu`` stays FP32-based."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from gtpt_deploy.calib import calibrate_int8
from gtpt_deploy.export.fp16 import DEFAULT_ISLANDS, island_nodes
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_fixtures import COCO_VAL

MMPOSE_ANN = COCO_VAL / "originals" / "mmpose_tests_data_coco_test_coco.json"   # 4 images, 12 persons


def _types(model) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {v.name: v.type.tensor_type.elem_type
            for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    elem.update({t.name: t.data_type for t in model.graph.initializer})
    return elem


@pytest.fixture(scope="module")
def int8_files(sample_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    trt = calibrate_int8(sample_onnx, MMPOSE_ANN, COCO_VAL / "images", num=8, output=out / "trt.onnx")
    cpu = calibrate_int8(sample_onnx, MMPOSE_ANN, COCO_VAL / "images", num=8, target="cpu", output=out / "cpu.onnx")
    return trt.output, cpu.output


def test_tensorrt_int8_types_every_float_op_outside_the_islands_fp16(sample_onnx, int8_files):
    fp32 = onnx.load(str(sample_onnx))
    islands = {n for names in island_nodes(fp32, DEFAULT_ISLANDS).values() for n in names}
    model = onnx.load(str(int8_files[0]))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    meta = read_onnx_meta(model)
    assert meta.precision == "int8" and meta.extra["int8"]["base"] == "fp16"
    assert meta.extra["int8"]["fp16_base"]["qdq_scale_dtype"] == "float16"
    elem = _types(model)
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    fp32_ops, fp16_qdq, quantized = [], 0, 0
    for n in model.graph.node:
        if n.op_type == "Cast" or n.name in islands:
            continue
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            quantized += 1
            feeds_island = n.op_type == "DequantizeLinear" and set(consumers.get(n.output[0], [])) <= islands
            if elem[n.input[1]] == TensorProto.FLOAT16:
                fp16_qdq += 1
            elif not feeds_island and not all(
                    set(consumers.get(d, [])) <= islands for d in consumers.get(n.output[0], [])):
                fp32_ops.append(n.name)
            continue
        if any(elem.get(o) == TensorProto.FLOAT for o in n.output):
            fp32_ops.append(f"{n.op_type}:{n.name}")
    assert fp32_ops == [], fp32_ops[:5]
    assert quantized > 0 and fp16_qdq >= quantized * 0.8, (fp16_qdq, quantized)
    big = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and
           not set(consumers.get(t.name, [])) <= islands and t.dims and int(np.prod(t.dims)) > 1]
    assert big == [], f"float32 weights outside the islands: {big[:5]}"
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert set(io.values()) == {TensorProto.FLOAT}, "graph inputs and outputs stay float32"


def test_cpu_int8_stays_fp32_based(int8_files):
    model = onnx.load(str(int8_files[1]))
    assert read_onnx_meta(model).extra["int8"]["base"] == "fp32"
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert not any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)


def test_int8_fp16_engine_shows_int8_and_fp16_layers(fake_trt, int8_files, tmp_path):
    """The engine sidecar's per-layer precision summary is how the first GPU run will show the mix."""
    from gtpt_deploy.engines import build_engine

    res = build_engine(int8_files[0], output=tmp_path / "i8.engine", progress=False)
    by = res.layers["by_precision"]
    assert by.get("FP16", 0) > by.get("FP32", 0) and by.get("Int8", 0) > 0, by
