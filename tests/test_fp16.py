"""FP16 conversion: float16 weights, float32 I/O, FP32 islands (score path first), metadata, refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from gtpt_deploy.cli import main
from gtpt_deploy.errors import ArtifactError
from gtpt_deploy.export import regions
from gtpt_deploy.export.fp16 import DEFAULT_ISLANDS, convert_fp16
from gtpt_deploy.metadata import read_onnx_meta


def _run(model, x):
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(["simcc_x", "simcc_y"], {"images": x})


@pytest.fixture(scope="module")
def fp16_t(seed0_t_onnx_b1, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16") / "t_fp16.onnx"
    return convert_fp16(seed0_t_onnx_b1, output=out)


def test_fp16_graph_is_float16_with_fp32_islands_and_float32_io(fp16_t, seed0_t_onnx_b1):
    m = onnx.load(str(fp16_t.output))
    src = onnx.load(str(seed0_t_onnx_b1))
    weights = [t for t in m.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert sum(t.data_type == TensorProto.FLOAT16 for t in weights) > len(weights) // 2
    for vi in [*m.graph.input, *m.graph.output]:
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT
    # every node of the pruning-score path is still in the converted graph, computing in float32
    path = set(regions.score_path(src))
    assert path and path <= {n.name for n in m.graph.node}
    kept = {n.name: n for n in m.graph.node}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(m).graph.value_info}
    topk = [kept[n] for n in path if kept[n].op_type == "TopK"]
    assert topk and all(types.get(t.input[0]) == TensorProto.FLOAT for t in topk)
    assert fp16_t.islands["score_path"] == len(path)
    assert fp16_t.max_constant <= 65504.0


def test_fp16_metadata_records_recipe_and_logits_stay_close(fp16_t, seed0_t_onnx_b1):
    meta = read_onnx_meta(fp16_t.output)
    assert meta.precision == "fp16"
    assert meta.extra["fp16"]["island_regions"] == list(DEFAULT_ISLANDS)
    assert meta.extra["fp16"]["islands"]["score_path"] > 0
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 192)).astype(np.float32)
    a = _run(onnx.load(str(seed0_t_onnx_b1)), x)
    b = _run(onnx.load(str(fp16_t.output)), x)
    for u, v in zip(a, b):
        assert np.abs(u - v).max() < 0.05 * np.abs(u).max()


def test_fp16_refuses_reduced_precision_input_and_foreign_onnx(fp16_t, tmp_path):
    from gtpt_fixtures import write_fake_pose_onnx

    with pytest.raises(ArtifactError, match="already fp16"):
        convert_fp16(fp16_t.output, output=tmp_path / "again.onnx")
    plain = write_fake_pose_onnx(tmp_path / "plain.onnx", meta=False)
    with pytest.raises(ArtifactError, match="no gtpt-deploy metadata"):
        convert_fp16(plain)
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "plain_fp16.onnx").exists()


def test_fp16_cli_json_default_name_and_no_overwrite(fake_dyn, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(fake_dyn.read_bytes())
    r = CliRunner().invoke(main, ["fp16", str(src), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["output"] == str(tmp_path / "m_fp16.onnx") and (tmp_path / "m_fp16.onnx").is_file()
    again = CliRunner().invoke(main, ["fp16", str(src)])
    assert again.exit_code == 2 and "--force" in again.output
    bad = CliRunner().invoke(main, ["fp16", str(tmp_path / "m_fp16.onnx"), "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "already fp16" in bad.output and len(bad.output.strip().splitlines()) == 1
