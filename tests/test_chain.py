"""One precision chain, one ONNX input probe, typed options behind the keyword APIs (issue 19 items 1-2).

* ``engines.chain.export_chain`` is the export -> fp16 / int8 chain of ``gtpt-deploy export --precision``,
  ``gtpt-deploy build CHECKPOINT`` and the demo: the same stages with each caller's options, the same files;
* ``onnx_io.image_input`` is the one reader of an ONNX graph's image input;
* ``serve/`` decides nothing by file suffix (the runners know which file is which backend's);
* ``build_from_checkpoint``, ``write_repository`` and ``bench`` take a typed options object, or its fields as keywords.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from gtpt_deploy.bundled import DEMO_DIR
from gtpt_deploy.cli import main
from gtpt_deploy.engines.chain import (CalibSpec, CheckpointBuild, ExportSpec, StageExistsError,
                                       build_from_checkpoint, export_chain)
from gtpt_deploy.errors import ArtifactError, ArtifactExistsError, GtptError
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_deploy.onnx_io import image_input

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ the chain
@pytest.fixture
def staged(monkeypatch, tmp_path):
    """export_onnx / convert_fp16 / calibrate_int8 replaced by recorders that write a file named like the real ones."""
    import gtpt_deploy.calib
    import gtpt_deploy.export
    import gtpt_deploy.export.fp16

    calls: list = []

    class Result:
        def __init__(self, **kw):
            self.__dict__.update(kw)

        def format_report(self) -> str:
            return f"report of {self.__dict__}"

    def export(checkpoint, **kw):
        calls.append(("export", kw))
        path = Path(kw.get("output") or tmp_path / "export" / "m_b1.onnx")
        if path.exists() and not kw["force"]:
            raise ArtifactExistsError(f"{path} already exists; pass --force", path=path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"fp32")
        return Result(onnx_path=path)

    def fp16(source, **kw):
        calls.append(("fp16", Path(source).name, kw))
        out = Path(source).with_name(Path(source).stem + "_fp16.onnx")
        if out.exists() and not kw["force"]:
            raise ArtifactExistsError(f"{out} already exists; pass --force", path=out)
        return Result(output=out)

    def int8(source, ann, images, **kw):
        calls.append(("int8", Path(source).name, ann, images, kw))
        return Result(output=Path(source).with_name(Path(source).stem + "_int8.onnx"))

    monkeypatch.setattr(gtpt_deploy.export, "export_onnx", export)
    monkeypatch.setattr(gtpt_deploy.export.fp16, "convert_fp16", fp16)
    monkeypatch.setattr(gtpt_deploy.calib, "calibrate_int8", int8)
    return calls


def test_export_chain_passes_each_callers_options_and_nothing_else(staged, tmp_path):
    seen, lines = [], []
    chain = export_chain("m.pth", ["fp16", "int8"], ExportSpec(output=tmp_path / "o_b1.onnx", batch=1),
                         CalibSpec("ann.json", "imgs", None, threads=2, measure_only=True), force=True,
                         report=lines.append, on_result=seen.append)
    export_kw = {"model": None, "output": tmp_path / "o_b1.onnx", "batch": 1, "dynamic_batch": False,
                 "simplify": True, "samples": None, "force": True}   # no opset: export's own default stays
    assert staged == [("export", export_kw), ("fp16", "o_b1.onnx", {"force": True}),
                      ("int8", "o_b1.onnx", "ann.json", "imgs",
                       {"num": None, "force": True, "report": lines.append, "threads": 2, "max_ap_drop": None})]
    assert seen == [chain.export, chain.reduced["fp16"], chain.reduced["int8"]]
    assert chain.onnx.name == "o_b1_int8.onnx" and list(chain.reduced) == ["fp16", "int8"]
    # calibration's own defaults (budget, threads, the log as report) stay when a caller sets nothing
    staged.clear()
    export_chain("m.pth", ["int8"], calib=CalibSpec("a.json", "i", 4))
    assert staged[-1] == ("int8", "m_b1.onnx", "a.json", "i", {"num": 4, "force": False})
    with pytest.raises(GtptError, match="calibration data"):
        export_chain("m.pth", ["int8"])


def test_an_existing_output_names_its_stage_with_the_stages_own_message(staged, tmp_path):
    export_chain("m.pth", ["fp16"])
    with pytest.raises(StageExistsError) as e:
        export_chain("m.pth", ["fp16"])
    assert e.value.stage == "export" and isinstance(e.value, ArtifactExistsError)
    assert str(e.value) == f"{tmp_path / 'export' / 'm_b1.onnx'} already exists; pass --force"
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "m_b1_fp16.onnx").write_bytes(b"earlier")
    with pytest.raises(StageExistsError) as e:
        export_chain("m.pth", ["fp16"], ExportSpec(output=tmp_path / "n" / "m_b1.onnx"))
    assert (e.value.stage, e.value.source) == ("fp16", tmp_path / "n" / "m_b1.onnx")
    assert str(e.value) == f"{tmp_path / 'n' / 'm_b1_fp16.onnx'} already exists; pass --force"


def test_cli_export_and_demo_ask_the_chain_for_the_same_stages(staged, monkeypatch, tmp_path):
    res = CliRunner().invoke(main, ["export", "--checkpoint", str(tmp_path / "c.pth"), "--precision", "int8",
                                    "--calib-ann", str(DEMO_DIR / "person_keypoints_demo.json"),
                                    "--calib-images", str(DEMO_DIR / "images"), "--calib-num", "3",
                                    "--opset", "18", "--force"])
    assert res.exit_code == 0, res.output
    assert [c[0] for c in staged] == ["export", "int8"]
    assert staged[0][1]["opset"] == 18 and staged[1][4]["num"] == 3 and staged[1][4]["force"] is True
    assert callable(staged[1][4]["report"])           # calibration's progress goes to stderr

    import gtpt_deploy.engines.chain as chain_mod
    from gtpt_deploy.demo import SAMPLE_CHECKPOINT, run_demo

    asked = []

    def stop(*a, **k):
        asked.append((a, k))
        raise GtptError("stop here")

    monkeypatch.setattr(chain_mod, "export_chain", stop)
    with pytest.raises(GtptError, match="stop here"):
        run_demo(tmp_path / "demo", checkpoint=REPO / SAMPLE_CHECKPOINT, threads=1)
    (ckpt, precisions, spec, calib), k = asked[0]
    assert precisions == ["fp16", "int8"] and spec == ExportSpec(output=tmp_path / "demo" / f"{ckpt.stem}_b1.onnx",
                                                                   batch=1)
    assert calib.measure_only and calib.threads == 1 and k["force"] is True


@pytest.mark.parametrize("fake_trt", ["v11"], indirect=True)
def test_export_and_build_from_a_checkpoint_write_the_same_intermediates(fake_trt, seed0_t_checkpoint, tmp_path,
                                                                         monkeypatch):
    """The real stages: ``export --precision fp16`` and ``build CHECKPOINT --precision fp16`` leave the same files
    under export/ with the same graphs and metadata."""
    trees = {}
    for name, args in (("export", ["export", "--checkpoint", seed0_t_checkpoint, "--precision", "fp16", "--json"]),
                       ("build", ["build", seed0_t_checkpoint, "--precision", "fp16", "-o", "x.engine", "--json"])):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        res = CliRunner().invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        trees[name] = sorted(p.name for p in Path("export").iterdir())
        if name == "export":
            assert json.loads(res.stdout)["fp16"]["output"].endswith(f"{seed0_t_checkpoint.stem}_b1_fp16.onnx")
    assert trees["export"] == trees["build"] and f"{seed0_t_checkpoint.stem}_b1_fp16.onnx" in trees["export"]
    for f in trees["export"]:
        if f.endswith(".onnx"):
            a, b = (onnx.load(str(tmp_path / n / "export" / f)) for n in ("export", "build"))
            assert read_onnx_meta(a).to_dict() == read_onnx_meta(b).to_dict()
            assert a.graph.SerializeToString() == b.graph.SerializeToString()


# ------------------------------------------------------------------------------------------- typed options
def test_build_from_checkpoint_takes_options_or_the_same_keywords():
    with pytest.raises(GtptError, match="--precision int8 needs calibration crops"):
        build_from_checkpoint("m.pth", "int8", CheckpointBuild(calib_ann="a.json"))
    with pytest.raises(GtptError, match="--precision int8 needs calibration crops"):
        build_from_checkpoint("m.pth", "int8", calib_ann="a.json")
    with pytest.raises(GtptError, match="not both"):
        build_from_checkpoint("m.pth", options=CheckpointBuild(batch=2), dynamic_batch=(1, 2, 4))
    with pytest.raises(TypeError):
        build_from_checkpoint("m.pth", calib_annotations="a.json")


def test_write_repository_takes_options_or_the_same_keywords(fake_dyn, tmp_path):
    from gtpt_deploy.serve.repository import RepositorySpec, write_repository

    a = write_repository([fake_dyn], tmp_path / "a", options=RepositorySpec(name="pose", max_batch=4))
    b = write_repository([fake_dyn], tmp_path / "b", name="pose", max_batch=4)
    assert a.to_dict()["models"] == b.to_dict()["models"]
    config = [(tmp_path / r / "pose" / "config.pbtxt").read_text() for r in ("a", "b")]
    assert config[0] == config[1]
    with pytest.raises(TypeError):
        write_repository([fake_dyn], tmp_path / "c", max_batches=4)


def test_bench_takes_options_or_the_same_keywords(fake_dyn):
    from gtpt_deploy.eval.bench import BenchOptions, bench

    for call in (lambda: bench([fake_dyn], BenchOptions(batches=(0,))), lambda: bench([fake_dyn], batches=(0,))):
        with pytest.raises(GtptError, match="expected batch sizes >= 1"):
            call()
    with pytest.raises(GtptError, match="--rounds >= 1"):
        bench([fake_dyn], BenchOptions(rounds=5), rounds=0)        # a keyword overrides the options' field
    with pytest.raises(TypeError):
        bench([fake_dyn], batch=1)


# --------------------------------------------------------------------------------------- one input probe
def _graph(inputs: list, initializer_as_input: bool = True) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((1,), np.float32), "w")
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs]
    if initializer_as_input:   # old exporters list initializers among the inputs
        vis.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    node = helper.make_node("Mul", [inputs[0][0], "w"], ["y"])
    return helper.make_model(helper.make_graph([node], "g", vis, [helper.make_tensor_value_info("y", 1, None)], [w]))


def test_image_input_reads_name_batch_and_dims():
    dyn = image_input(_graph([("images", ["N", 3, 256, 192])]), "m.onnx")
    assert (dyn.name, dyn.batch, dyn.dims) == ("images", None, ("N", 3, 256, 192))
    static = image_input(_graph([("x", [4, 3, 8, 6])], initializer_as_input=False), "m.onnx")
    assert (static.name, static.batch, static.dims) == ("x", 4, (4, 3, 8, 6))
    with pytest.raises(ArtifactError) as e:
        image_input(_graph([("a", [1, 3, 8, 6]), ("b", [1])]), "m.onnx", hint="; re-export it")
    assert str(e.value) == "m.onnx: expected one image input, got ['a', 'b']; re-export it"


def test_onnx_file_probes_use_the_one_reader():
    """The builder, the Triton repository, calibration and export's parity session read the input through
    onnx_io.image_input: none of them walks ``graph.input`` itself."""
    for rel in ("engines/build.py", "serve/repository.py", "calib/int8.py", "export/parity.py"):
        src = (REPO / "gtpt_deploy" / rel).read_text()
        assert "graph.input" not in src and "image_input(" in src, rel


def test_serve_decides_no_file_kind_by_suffix():
    """Which files are ONNX and which are engines is the runners' knowledge (runners.backends_for): serve/ compares
    no suffix (issue 19: no backend branching outside runners/)."""
    kinds = {".onnx", ".engine", ".plan", ".pth", ".pt"}
    found = []
    for path in sorted((REPO / "gtpt_deploy" / "serve").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
                if consts & kinds:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found


def test_repository_still_refuses_a_checkpoint_with_the_same_line(tmp_path):
    from gtpt_deploy.serve.repository import write_repository

    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"weights")
    with pytest.raises(ArtifactError) as e:
        write_repository([ckpt], tmp_path / "repo")
    assert str(e.value) == "cannot serve m.pth: expected .onnx or .engine/.plan, got '.pth'"
    assert not (tmp_path / "repo").exists()
