"""``build_engine`` / ``gtpt-deploy build`` against the fake TensorRT, in both API flavours (10.x and 11.x).

The fake (tests/fake_tensorrt) is strict about the documented API: the 11.x flavour lacks every name 11.x removed,
so any use of one fails these tests; its plans carry the parsed ONNX, the profile and the build facts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from gtpt_deploy.errors import ArtifactError
from click.testing import CliRunner

from gtpt_deploy.artifacts import engine_sidecar_path, sha256_file
from gtpt_deploy.cli import main
from gtpt_deploy.engines import BuildError, build_engine
from gtpt_deploy.errors import ArtifactExistsError, GtptError
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_fixtures import write_fake_pose_onnx

REMOVED_IN_11 = [("BuilderFlag", "FP16"), ("BuilderFlag", "INT8"), ("BuilderFlag", "BF16"), ("BuilderFlag", "FP8"),
                 ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"), ("BuilderFlag", "PREFER_PRECISION_CONSTRAINTS"),
                 ("BuilderFlag", "DIRECT_IO"), ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
                 ("Builder", "platform_has_fast_fp16"), ("Builder", "platform_has_fast_int8"),
                 ("IBuilderConfig", "int8_calibrator"), ("IBuilderConfig", "set_calibration_profile"),
                 ("IBuilderConfig", "set_quantization_flag"), ("ICudaEngine", "device_memory_size"),
                 ("IInt8EntropyCalibrator2", None), ("IInt8MinMaxCalibrator", None), ("IInt8Calibrator", None)]


@pytest.fixture(scope="module")
def onnx_b2(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("onnx") / "fake_b2.onnx", batch=2)


@pytest.fixture(scope="module")
def onnx_dyn(tmp_path_factory) -> Path:
    return write_fake_pose_onnx(tmp_path_factory.mktemp("onnx") / "fake_dyn.onnx", batch=None)


def _cli(args: list[object]):
    return CliRunner().invoke(main, [str(a) for a in args])


def _plan_header(engine: Path) -> dict:
    from fake_tensorrt.impl import MAGIC

    data = engine.read_bytes()
    assert data.startswith(MAGIC), "the engine file must be the plan exactly as TensorRT serialized it"
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "little")
    return json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + n])


def test_fake_11_has_none_of_the_removed_api(fake_trt):
    import tensorrt as trt

    v11 = trt.__version__.startswith("11.")
    for owner, name in REMOVED_IN_11:
        obj = getattr(trt, owner, None)
        present = obj is not None if name is None else obj is not None and hasattr(obj, name)
        assert present != v11, f"{owner}.{name} present={present} in fake TensorRT {trt.__version__}"
    config = trt.Builder(trt.Logger()).create_builder_config()
    if v11:
        with pytest.raises(AttributeError):
            config.int8_calibrator = None


def test_static_build_writes_plain_plan_and_full_sidecar(fake_trt, onnx_b2, tmp_path):
    import tensorrt as trt

    out = tmp_path / "eng" / "fake_b2.engine"
    res = _cli(["build", onnx_b2, "-o", out, "--json", "--workspace", "2", "--opt-level", "4"])
    assert res.exit_code == 0, res.output
    side = json.loads(res.stdout)  # stdout is exactly the sidecar
    assert engine_sidecar_path(out).name == "fake_b2.engine.json"
    assert json.loads(engine_sidecar_path(out).read_text()) == side
    header = _plan_header(out)
    assert header["strongly_typed"] is True and header["opt_level"] == 4 and header["workspace"] == 2 << 30
    meta = read_onnx_meta(onnx_b2)
    assert side["tensorrt_version"] == trt.__version__ and side["strongly_typed"] is True
    assert side["gpu"] == {"index": 0, "name": "Fake L4", "compute_capability": "8.9"}
    assert side["profile"] == {"input": "images", "min": [2, 3, 256, 192], "opt": [2, 3, 256, 192],
                               "max": [2, 3, 256, 192], "static_batch": 2}
    assert side["precision"] == meta.precision == "fp32" and side["recipe"] == dict(meta.extra)
    assert side["model"] == meta.to_dict()
    assert side["onnx"]["sha256"] == sha256_file(onnx_b2)
    assert side["engine_sha256"] == sha256_file(out) and side["engine_bytes"] == out.stat().st_size
    assert side["build"]["seconds"] >= 0 and side["build"]["opt_level"] == 4
    n_nodes = len(onnx.load(str(onnx_b2)).graph.node)
    assert side["layers"] == {"count": n_nodes, "by_precision": {"FP32": n_nodes}}
    tx = side["trtexec"]
    assert f"--onnx={onnx_b2}" in tx and f"--saveEngine={out}" in tx
    assert "Shapes" not in tx, "trtexec refuses --minShapes/--optShapes/--maxShapes for a static model"
    assert "--memPoolSize=workspace:2048M" in tx and "--builderOptimizationLevel=4" in tx
    assert ("--stronglyTyped" in tx) == trt.__version__.startswith("10."), "10.x needs the flag, 11.x is typed"
    assert side["rebuild_command"].startswith(f"gtpt-deploy build {onnx_b2} --batch 2")
    assert "building fake_b2.onnx" in res.stderr  # progress on stderr


def test_dynamic_profile_and_profile_errors(fake_trt, onnx_dyn, onnx_b2, tmp_path):
    res = build_engine(onnx_dyn, dynamic_batch=(1, 2, 4), output=tmp_path / "dyn.engine", progress=False)
    assert res.profile.static_batch is None and _plan_header(res.engine_path)["profile"] == {
        "images": [[1, 3, 256, 192], [2, 3, 256, 192], [4, 3, 256, 192]]}
    assert "--dynamic-batch 1,2,4" in res.rebuild_command
    static = build_engine(onnx_dyn, batch=3, output=tmp_path / "b3.engine", progress=False)
    assert static.profile.to_dict()["static_batch"] == 3
    for kwargs, words in [({}, "--dynamic-batch MIN,OPT,MAX"), ({"dynamic_batch": (2, 1, 4)}, "1 <= MIN <= OPT"),
                          ({"batch": 2, "dynamic_batch": (1, 2, 4)}, "not both")]:
        with pytest.raises(GtptError, match=words.replace("(", r"\(")):
            build_engine(onnx_dyn, output=tmp_path / "x.engine", progress=False, **kwargs)
    with pytest.raises(GtptError, match="static batch of 2"):
        build_engine(onnx_b2, dynamic_batch=(1, 2, 4), output=tmp_path / "x.engine", progress=False)
    with pytest.raises(GtptError, match="static batch of 2, got --batch 4"):
        build_engine(onnx_b2, batch=4, output=tmp_path / "x.engine", progress=False)
    assert not (tmp_path / "x.engine").exists()


def test_timing_cache_created_then_reused(fake_trt, onnx_b2, tmp_path):
    cache = tmp_path / "caches" / "t.cache"
    first = build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "a.engine", progress=False)
    assert first.timing_cache["loaded_bytes"] == 0 and cache.stat().st_size == first.timing_cache["saved_bytes"] > 0
    misses = fake_trt.STATE["stats"]["timing_cache_misses"]
    assert misses > 0
    second = build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "b.engine", progress=False)
    assert second.timing_cache["loaded_bytes"] == first.timing_cache["saved_bytes"]
    assert fake_trt.STATE["stats"]["timing_cache_misses"] == misses, "the second build must hit the saved cache"
    default = build_engine(onnx_b2, output=tmp_path / "c.engine", progress=False)
    assert default.timing_cache["path"] == str(tmp_path / "timing.cache") and (tmp_path / "timing.cache").is_file()


def test_existing_output_and_input_are_protected(fake_trt, onnx_b2, tmp_path):
    out = tmp_path / "m.engine"
    build_engine(onnx_b2, output=out, progress=False)
    with pytest.raises(ArtifactExistsError, match="--force"):
        build_engine(onnx_b2, output=out, progress=False)
    build_engine(onnx_b2, output=out, force=True, progress=False)
    res = _cli(["build", onnx_b2, "-o", onnx_b2.with_suffix(".plan").with_name(onnx_b2.name), "--force"])
    assert res.exit_code == 2 and "must end in .engine" in res.stderr


def test_parser_errors_are_one_clear_error(fake_trt, tmp_path):
    model = onnx.load(str(write_fake_pose_onnx(tmp_path / "m.onnx", batch=1)))
    for node in list(model.graph.node)[:2]:
        node.domain = "com.example"  # ops TensorRT has no importer for
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(BuildError) as err:
        build_engine(tmp_path / "bad.onnx", output=tmp_path / "bad.engine", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "2 error(s)" in msg and "node 0: No importer registered for op: AveragePool" in msg
    assert not list(tmp_path.glob("bad.engine*"))


def test_tensorrt_not_installed_is_one_line(onnx_b2, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    for args in (["build", onnx_b2, "-o", tmp_path / "m.engine"],
                 ["build", "models/gtpt_t_coco_sample.pth", "--precision", "fp32", "-o", tmp_path / "m.engine"]):
        res = _cli(args)
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.output
        assert "'gtpt-deploy[tensorrt]'" in lines[0] and "NVIDIA GPU" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_no_cuda_device(fake_trt, onnx_b2, tmp_path):
    fake_trt.reset_state(devices=[])
    res = _cli(["build", onnx_b2, "-o", tmp_path / "m.engine"])
    assert res.exit_code == 2 and "no CUDA device" in res.stderr and "Traceback" not in res.output
    fake_trt.reset_state(devices=[("Fake L4", (8, 9))])
    res = _cli(["build", onnx_b2, "-o", tmp_path / "m.engine", "--gpu", "1"])
    assert res.exit_code == 2 and "GPU 1 requested but this machine has 1 CUDA device(s)" in res.stderr


def test_checkpoint_precision_stages(fake_trt, monkeypatch, tmp_path):
    """int8 from a checkpoint needs calibration crops: one line, before any export."""
    res = _cli(["build", "models/gtpt_t_coco_sample.pth", "--precision", "int8", "-o", tmp_path / "m.engine"])
    assert res.exit_code == 2 and "--calib-ann" in res.stderr
    res = _cli(["build", tmp_path / "x.onnx"])
    assert res.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_chain_exports_converts_and_builds(fake_trt, monkeypatch, tmp_path):
    """build CHECKPOINT: export (the options' batch) -> precision stage -> build, as plain functions in a row."""
    import gtpt_deploy.export
    import gtpt_deploy.export.fp16

    calls = []

    def fake_export(checkpoint, batch=None, dynamic_batch=False, force=False, **kw):
        calls.append(("export", batch, dynamic_batch, force))
        path = write_fake_pose_onnx(tmp_path / f"exported_{len(calls)}.onnx", batch=None if dynamic_batch else batch)
        return type("ExportResult", (), {"onnx_path": path})()

    def fake_fp16(onnx_path, force=False):
        calls.append(("fp16", Path(onnx_path).name, force))
        return type("Fp16Result", (), {"output": onnx_path})()

    monkeypatch.setattr(gtpt_deploy.export, "export_onnx", fake_export)
    res = _cli(["build", "models/gtpt_t_coco_sample.pth", "--precision", "fp32", "--batch", "2",
                "-o", tmp_path / "a.engine", "--json"])
    assert res.exit_code == 0, res.output
    assert calls == [("export", 2, False, False)] and json.loads(res.stdout)["profile"]["static_batch"] == 2

    monkeypatch.setattr(gtpt_deploy.export.fp16, "convert_fp16", fake_fp16)
    res = _cli(["build", "models/gtpt_t_coco_sample.pth", "--precision", "fp16", "--dynamic-batch", "1,2,4",
                "-o", tmp_path / "b.engine", "--force", "--json"])
    assert res.exit_code == 0, res.output
    assert calls[1:] == [("export", None, True, True), ("fp16", "exported_2.onnx", True)]
    assert json.loads(res.stdout)["profile"]["max"] == [4, 3, 256, 192]
    res = _cli(["build", onnx_path := tmp_path / "exported_1.onnx", "--precision", "fp16"])
    assert res.exit_code == 2 and f"{onnx_path.name} is an ONNX file" in res.stderr


def _profile_of(side: dict) -> dict:
    p = side["profile"]
    return {p["input"]: [p["min"], p["opt"], p["max"]]}


def test_recorded_trtexec_line_follows_trtexecs_shape_rules(fake_trt, onnx_b2, onnx_dyn, tmp_path):
    """Static ONNX: no explicit shapes (trtexec refuses them); dynamic ONNX: the shapes, even for min == max."""
    from fake_tensorrt.trtexec import check_command

    cases = [(onnx_b2, {}), (onnx_dyn, {"dynamic_batch": (1, 2, 4)}), (onnx_dyn, {"batch": 3})]
    for i, (src, kwargs) in enumerate(cases):
        res = build_engine(src, output=tmp_path / f"e{i}.engine", progress=False, **kwargs)
        side = json.loads(res.sidecar_path.read_text())
        parsed = check_command(side["trtexec"])
        assert parsed["engine"] == str(res.engine_path) and parsed["onnx"] == src
        want = _profile_of(side) if src == onnx_dyn else {}
        assert parsed["profile"] == want, (side["trtexec"], want)


def test_fake_trtexec_refuses_what_trtexec_refuses(onnx_b2, onnx_dyn):
    from fake_tensorrt.trtexec import TrtexecError, check_command

    with pytest.raises(TrtexecError, match="Static model does not take explicit shapes"):
        check_command(f"trtexec --onnx={onnx_b2} --minShapes=images:2x3x256x192")
    assert check_command(f"trtexec --onnx={onnx_dyn}")["profile"] == {"images": [[1, 3, 256, 192]] * 3}
    with pytest.raises(TrtexecError, match="Unknown option"):
        check_command(f"trtexec --onnx={onnx_dyn} --workspace=4096")


def test_timing_cache_of_another_gpu_or_version_is_replaced_with_a_warning(fake_trt, onnx_b2, tmp_path, caplog,
                                                                           monkeypatch):
    """TensorRT refuses a cache made elsewhere (create_timing_cache -> None for another version, set_timing_cache ->
    False for another device); the build starts a fresh cache with one warning instead of failing after minutes."""
    from fake_tensorrt import install

    cache = tmp_path / "t.cache"
    build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "a.engine", progress=False)
    fake_trt.STATE["devices"][0] = ("Fake H100", (9, 0))                  # same file, another GPU
    with caplog.at_level("WARNING"):
        res = build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "b.engine", progress=False)
    assert res.timing_cache["rejected"] is True and res.timing_cache["loaded_bytes"] == 0
    assert res.timing_cache["saved_bytes"] == cache.stat().st_size > 0
    warnings = [r for r in caplog.records if "timing cache" in r.getMessage()]
    assert len(warnings) == 1 and "another GPU" in warnings[0].getMessage()
    again = build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "c.engine", progress=False)
    assert again.timing_cache["rejected"] is False and again.timing_cache["loaded_bytes"] > 0

    import tensorrt
    other = "v11" if tensorrt.__version__.startswith("10.") else "v10"
    install(monkeypatch, other, reset=False)                             # same file, another TensorRT version
    # TensorRT cannot read it at all (create_timing_cache -> None), as it cannot read any other file: the build would
    # replace it, so it is refused up front with what to do (issue 21 finding 17), not a traceback after minutes
    before = cache.read_bytes()
    with pytest.raises(ArtifactError, match="not a timing cache TensorRT .* can read.*delete it if it is an old cache"):
        build_engine(onnx_b2, timing_cache=cache, output=tmp_path / "d.engine", progress=False)
    assert cache.read_bytes() == before and not (tmp_path / "d.engine").exists()


def test_build_without_any_timing_cache_still_builds(fake_trt, onnx_b2, tmp_path):
    """create_timing_cache may return None even for a fresh cache: build without one, write no cache file."""
    fake_trt.STATE["timing_cache_unavailable"] = True
    res = build_engine(onnx_b2, timing_cache=tmp_path / "t.cache", output=tmp_path / "a.engine", progress=False)
    assert res.engine_path.is_file() and res.timing_cache["saved_bytes"] == 0 and not (tmp_path / "t.cache").exists()


def test_one_tensorrt_logger_per_process(fake_trt, onnx_dyn, tmp_path):
    """TensorRT keeps one logger per process: builds, inspections and several live runners share one."""
    from gtpt_deploy.runners import create_runner

    engine = build_engine(onnx_dyn, dynamic_batch=(1, 1, 2), output=tmp_path / "a.engine", progress=False)
    with create_runner(engine.engine_path) as first, create_runner(engine.engine_path) as second:
        first.infer(np.zeros((1, 3, 256, 192), np.float32))
        second.infer(np.zeros((1, 3, 256, 192), np.float32))
        build_engine(onnx_dyn, dynamic_batch=(1, 1, 2), output=tmp_path / "b.engine", progress=False)
    assert fake_trt.STATE["stats"]["logger_conflicts"] == 0


def test_fake_enforces_pybind_types_and_one_logger(fake_trt):
    import tensorrt as trt

    class Skipped(trt.ILogger):
        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="ILogger.__init__\\(\\) must be called"):
        Skipped()
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1.5 * 2**30)
    with pytest.raises(TypeError):
        config.builder_optimization_level = 3.0
    seen = []

    class Recording(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            seen.append((severity, msg))

    first = Recording()
    keep = trt.Runtime(first)
    trt.Runtime(trt.Logger())
    assert fake_trt.STATE["stats"]["logger_conflicts"] == 1 and "single logger" in seen[-1][1]
    del keep


def test_float_opt_level_is_one_line_not_a_binding_typeerror(fake_trt, onnx_b2, tmp_path):
    with pytest.raises(GtptError, match="--opt-level must be an integer 0..5, got 3.0"):
        build_engine(onnx_b2, opt_level=3.0, output=tmp_path / "a.engine", progress=False)
    assert not list(tmp_path.iterdir())


def _qdq_input(src: Path, dst: Path, zp_type: int, zp: int) -> Path:
    """``src`` with a Q/DQ pair on the image input (scale 0.05, zero point ``zp`` of ``zp_type``)."""
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    name = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["images_dq" if i == name else i for i in node.input]
    model.graph.initializer.extend([helper.make_tensor("qs", TensorProto.FLOAT, [], [0.05]),
                                    helper.make_tensor("qz", zp_type, [], [zp])])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["images_q", "qs", "qz"], ["images_dq"]))
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", [name, "qs", "qz"], ["images_q"]))
    onnx.save(model, str(dst))
    return dst


def test_parser_refuses_asymmetric_qdq_like_tensorrt(fake_trt, onnx_b2, tmp_path):
    """onnx-tensorrt takes symmetric Q/DQ only: uint8 zero point 128 and non-zero int8 zero points are errors."""
    from onnx import TensorProto

    for i, (zp_type, zp, ok) in enumerate([(TensorProto.INT8, 0, True), (TensorProto.UINT8, 128, False),
                                            (TensorProto.INT8, 3, False)]):
        src = _qdq_input(onnx_b2, tmp_path / f"q{i}.onnx", zp_type, zp)
        if ok:
            assert build_engine(src, output=tmp_path / f"q{i}.engine", progress=False).engine_path.is_file()
            continue
        with pytest.raises(BuildError, match="TensorRT only supports symmetric quantization"):
            build_engine(src, output=tmp_path / f"q{i}.engine", progress=False)


def test_cpu_form_int8_file_is_refused_before_tensorrt_loads(fake_trt, onnx_b2, tmp_path, monkeypatch):
    from dataclasses import replace

    from gtpt_deploy.metadata import write_onnx_meta

    model = onnx.load(str(onnx_b2))
    meta = read_onnx_meta(model)
    write_onnx_meta(model, replace(meta, precision="int8", extra={**dict(meta.extra), "int8": {"target": "cpu"}}))
    onnx.save(model, str(tmp_path / "cpu_int8.onnx"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # refused before TensorRT is even imported
    with pytest.raises(BuildError, match="--target tensorrt"):
        build_engine(tmp_path / "cpu_int8.onnx", output=tmp_path / "a.engine", progress=False)


@pytest.mark.parametrize("flavour", ["v10", "v11"])
def test_layer_summary_reads_10x_and_11x_inspector_json(flavour):
    from gtpt_deploy.engines.report import layer_summary

    if flavour == "v10":
        layers = [{"Name": "a", "Outputs": [{"Name": "x", "Format/Datatype": "Row major linear FP16 format"}]},
                  {"Name": "b", "Outputs": [{"Name": "y", "Format/Datatype": "Channel major FP32 format where..."}]},
                  {"Name": "c", "Outputs": [{"Name": "z", "Format/Datatype": "Row major Int8 format"}]}]
        info = {"Layers": layers, "Bindings": ["images"]}
    else:
        layers = [{"Name": "a", "Outputs": [{"Name": "x", "Format": "Row major linear", "Datatype": "Half"}]},
                  {"Name": "b", "Outputs": [{"Name": "y", "Format": "Channel major", "Datatype": "Float"}]},
                  {"Name": "c", "Outputs": [{"Name": "z", "Format": "Row major", "Datatype": "Int8"}]}]
        info = {"Layers": layers, "I/O Tensors": ["images"]}
    assert layer_summary(json.dumps(info)) == {"count": 3, "by_precision": {"FP16": 1, "FP32": 1, "Int8": 1}}
