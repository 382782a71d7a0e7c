"""Issue-8 seams: runners from memory, one comparison, a device per artifact, AP in 0-1, CLI consistency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.errors import GtptError
from gtpt_deploy.eval.compare import compare_runners
from gtpt_deploy.runners import create_runner
from gtpt_deploy.runners.ort import resolve_provider

REPO = Path(__file__).resolve().parents[1]
DEMO_ANN = REPO / "demo" / "person_keypoints_demo.json"
DEMO_IMAGES = REPO / "demo" / "images"


def _invoke(args: list) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_runners_from_memory_match_the_file(fake_dyn):
    crops = np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)
    model = onnx.load(str(fake_dyn))
    with create_runner(fake_dyn) as a, create_runner(model) as b, create_runner(model.SerializeToString()) as c:
        assert b.source == "in-memory ONNX model" and b.meta == a.meta
        same = compare_runners(a, b, crops)
        assert same.max_abs_diff == 0.0 and same.argmax_agreement == 1.0 and same.samples == 3
        assert compare_runners(a, c, crops, batch=2).samples == 4  # wrapped to fill the last batch of 2
    with pytest.raises(GtptError, match="expected an artifact path"):
        create_runner(object())


def test_compare_runners_sees_a_different_model(fake_dyn, tmp_path):
    from gtpt_fixtures import write_fake_pose_onnx

    other = write_fake_pose_onnx(tmp_path / "other.onnx", batch=None, seed=1)
    crops = np.random.default_rng(0).standard_normal((4, 3, 256, 192)).astype(np.float32)
    with create_runner(fake_dyn) as a, create_runner(other) as b:
        diff = compare_runners(a, b, crops)
    assert diff.max_abs_diff > 1e-3 and diff.argmax_agreement < 0.5


def test_torch_module_runner_in_memory():
    torch = pytest.importorskip("torch")
    from gtpt_deploy.models import create_model

    net = create_model("gtpt_t_coco")
    x = np.random.default_rng(0).standard_normal((2, 3, 256, 192)).astype(np.float32)
    with create_runner(net) as r:
        sx, _ = r.infer(x)
        assert r.meta.variant == "gtpt_t_coco" and r.static_batch is None
    with torch.no_grad():
        ref = net(torch.from_numpy(x))[0].numpy()
    assert np.array_equal(sx, ref)


def test_device_and_provider_resolution():
    assert resolve_provider(None, "cpu") == ("cpu", 0)
    assert resolve_provider(None, "cuda:1") == ("cuda", 1)
    assert resolve_provider("tensorrt", "cuda:2") == ("tensorrt", 2)
    with pytest.raises(GtptError, match="needs a GPU provider"):
        resolve_provider("cpu", "cuda")
    with pytest.raises(GtptError, match="expected a device cpu, cuda or cuda:N"):
        resolve_provider(None, "gpu0")


def test_run_ann_then_evaluate_equals_validate(seed0_t_checkpoint, seed0_t_onnx_b1, tmp_path):
    """run --ann A --boxes gt, then evaluate A results.json: the same 0-1 AP as validate's row for that artifact."""
    out = tmp_path / "run"
    res = _invoke(["run", seed0_t_onnx_b1, DEMO_IMAGES, "--ann", DEMO_ANN, "--boxes", "gt", "--out", out,
                   "--no-draw", "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["images"] == 6 and summary["results"] == str(out / "results.json")
    records = json.loads((out / "results.json").read_text())
    assert all(r["file_name"].endswith(".jpg") for r in records)
    ev = _invoke(["evaluate", DEMO_ANN, out / "results.json", "--json"])
    assert ev.exit_code == 0, ev.output
    ev_ap = json.loads(ev.stdout)
    val = _invoke(["validate", seed0_t_checkpoint, seed0_t_onnx_b1, "--ann", DEMO_ANN, "--images", DEMO_IMAGES,
                   "--json", "--threads", "1"])
    assert val.exit_code == 0, val.output
    row = json.loads(val.stdout)["rows"][1]
    for key in ("AP", "AP50", "AP75", "APm", "APl", "AR"):
        assert row[key] == ev_ap[key], key
    assert 0.0 <= row["AP"] <= 1.0


def test_run_refuses_inputs_not_in_ann(fake_dyn, tmp_path):
    res = _invoke(["run", fake_dyn, REPO / "demo" / "images" / "astronaut.jpg", "--ann", DEMO_ANN,
                   "--out", tmp_path / "o"])
    assert res.exit_code == 2 and "got none of them" in res.stderr and not (tmp_path / "o").exists()


def test_export_output_must_be_onnx_and_json_report(seed0_t_checkpoint, tmp_path):
    res = _invoke(["export", "--checkpoint", seed0_t_checkpoint, "--output", tmp_path / "x.json"])
    assert res.exit_code == 2 and "must name an .onnx file" in res.stderr and not list(tmp_path.iterdir())
    res = _invoke(["export", "--checkpoint", seed0_t_checkpoint, "--output", tmp_path / "x.onnx", "--json", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["onnx_path"] == str(tmp_path / "x.onnx") and report["argmax_agreement"] == 1.0
    assert all(c["passed"] for c in report["parity"])


def test_verbosity_after_the_subcommand_and_max_ap_drop_unit(fake_dyn):
    res = _invoke(["validate", fake_dyn, fake_dyn, "--ann", DEMO_ANN, "--images", DEMO_IMAGES, "-v",
                   "--max-ap-drop", "5"])
    assert res.exit_code == 2 and "0-1 AP difference" in res.stderr  # 5 "points" is no longer a valid budget
    assert "--quiet" in _invoke(["run", "--help"]).output and "0-1 AP" in _invoke(["validate", "--help"]).output


def test_importing_the_cli_changes_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import gtpt_deploy.cli; "
            "print(json.dumps(dict(os.environ) == before))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "true", out.stderr


def test_no_import_cycle_between_modules():
    """Every module imports on its own, in a fresh interpreter (a cycle shows up as a partially initialised module)."""
    import pkgutil

    import gtpt_deploy

    names = [m.name for m in pkgutil.walk_packages(gtpt_deploy.__path__, "gtpt_deploy.")
             if m.name != "gtpt_deploy.__main__"]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n    " \
           "[sys.modules.pop(k) for k in list(sys.modules) if k.startswith('gtpt_deploy')]"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
