"""Packaging rules (design.md §4.6): no heavy or optional import at import time; --help works without extras."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

OPTIONAL = ["tensorrt", "pycocotools", "onnxsim", "onnxslim", "pycuda", "cuda", "openvino"]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_every_module_imports_and_every_help_works_without_optional_packages():
    result = _run(f"""
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {OPTIONAL!r}:
                    raise ImportError(name + " is hidden in this test")
        sys.meta_path.insert(0, Block())
        import gtpt_deploy
        for m in pkgutil.walk_packages(gtpt_deploy.__path__, "gtpt_deploy."):
            if m.name != "gtpt_deploy.__main__":
                importlib.import_module(m.name)
        from click.testing import CliRunner
        from gtpt_deploy.cli import main
        for args in [["--help"]] + [[c, "--help"] for c in main.commands]:
            r = CliRunner().invoke(main, args)
            assert r.exit_code == 0 and "Usage" in r.output, (args, r.output)
            if args != ["--help"]:
                assert "Example" in r.output, f"{{args[0]}} --help has no examples"
        print(sorted(main.commands))
    """)
    assert result.returncode == 0, result.stderr
    assert "export" in result.stdout and "validate" in result.stdout


def test_import_gtpt_deploy_imports_neither_torch_nor_backends():
    result = _run("""
        import sys, gtpt_deploy, gtpt_deploy.cli
        heavy = [m for m in ("torch", "onnxruntime", "onnx", "cv2", "tensorrt", "pycocotools", "openvino")
                 if m in sys.modules]
        print(heavy)
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_extra_gives_a_one_line_install_hint(shared):
    """evaluate without pycocotools: exit 2, one line naming the extra to install, no traceback."""
    originals = shared / "data" / "coco_val2017_pose" / "originals"
    ann = originals / "mmpose_tests_data_coco_test_coco.json"
    preds = originals / "xtcocoapi_annotations_example_coco_preds.json"
    result = _run(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pycocotools":
                    raise ImportError("hidden")
        sys.meta_path.insert(0, Block())
        from gtpt_deploy.cli import main
        sys.argv = ["gtpt-deploy", "evaluate", {str(ann)!r}, {str(preds)!r}]
        main()
    """)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "pip install 'gtpt-deploy[eval]'" in lines[0]


def test_base_install_has_no_torch_and_the_export_extra_brings_it():
    """pyproject: `pip install gtpt-deploy` is the runtime (no torch); `[export]` adds torch; `[dev]` includes it."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in reqs}  # noqa: E731
    base = names(project["dependencies"])
    assert "torch" not in base and "onnxsim" not in base
    assert {"onnxruntime", "onnx", "opencv-python-headless", "pycocotools"} <= base   # run, evaluate, validate
    extras = project["optional-dependencies"]
    assert "torch" in names(extras["export"]) and any(d.startswith("gtpt-deploy[") and "export" in d for d in extras["dev"])
    # OpenVINO (~180 MB) is an extra, and [dev] has it so CI runs the OpenVINO runner tests
    assert "openvino" not in base and names(extras["openvino"]) == {"openvino"}
    assert any(d.startswith("gtpt-deploy[") and "openvino" in d for d in extras["dev"])


def test_runtime_without_torch_runs_onnx_and_names_the_export_extra(fake_dyn, shared, tmp_path):
    """A deployment machine without torch: run (detector + pose), predict and evaluate work on ONNX; every command
    that needs torch says, in one line, which extra to install."""
    people = shared / "data" / "people_photos_pypi"
    detector = shared / "data" / "models" / "rtmdet_nano_person" / "end2end.onnx"
    checkpoint = Path(__file__).resolve().parents[1] / "models" / "gtpt_t_coco_sample.pth"
    coco = shared / "data" / "coco_val2017_pose" / "images"
    result = _run(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name in ("onnxsim", "onnxslim"):
                    raise ImportError(name + " is hidden in this test")
        sys.meta_path.insert(0, Block())
        import cv2
        from click.testing import CliRunner
        import gtpt_deploy as gd
        from gtpt_deploy.cli import main
        out = {str(tmp_path / "out")!r}
        images = [{str(coco / "000000000785.jpg")!r}, {str(coco / "000000001000.jpg")!r}]
        r = CliRunner().invoke(main, ["run", {str(fake_dyn)!r}, *images, "--detector", {str(detector)!r}, "--out", out])
        assert r.exit_code == 0, r.output
        poses = gd.predict({str(fake_dyn)!r}, cv2.imread({str(people / "bus.jpg")!r}), detector={str(detector)!r})
        assert len(poses[0].poses) == 3, poses
        ann = {str(shared / "data" / "coco_val2017_pose" / "person_keypoints_val2017_subset.json")!r}
        r = CliRunner().invoke(main, ["evaluate", ann, out + "/results.json", "--json"])
        assert r.exit_code == 0, r.output
        assert "torch" not in sys.modules
        for args in (["export", "--checkpoint", {str(checkpoint)!r}],
                     ["run", {str(checkpoint)!r}, {str(people / "bus.jpg")!r}, "--out", out + "2"]):
            r = CliRunner().invoke(main, args)
            lines = r.stderr.strip().splitlines()
            assert r.exit_code == 2 and len(lines) == 1 and "pip install 'gtpt-deploy[export]'" in lines[0], r.output
        r = CliRunner().invoke(main, ["models"])  # the table is stored data (models.variants), no torch needed
        assert r.exit_code == 0 and "gtpt_b_wholebody" in r.output, r.output
        print("ok")
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_wheel_ships_the_demo_data_that_bench_and_export_default_to(tmp_path):
    """A wheel install has the demo images + annotations (bench's default crops, export's parity samples): `bench`
    from a wheel failed with '.../site-packages/demo/person_keypoints_demo.json: expected an existing COCO
    annotation file' (issue 19). Built from a copy of the sources (no build/ left in the checkout), unpacked, and the
    defaults resolved inside the unpacked package."""
    import shutil
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "NOTICE"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "gtpt_deploy", src / "gtpt_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", str(src), "-w", str(tmp_path / "dist")],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("gtpt_deploy-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    images = {n.rsplit("/", 1)[1] for n in names if n.startswith("gtpt_deploy/data/demo/images/")}
    assert images == {p.name for p in (repo / "gtpt_deploy" / "data" / "demo" / "images").iterdir()} and len(images) == 8
    assert "gtpt_deploy/data/demo/person_keypoints_demo.json" in names
    assert any(n.endswith(".dist-info/licenses/NOTICE") for n in names), "the images' licenses travel with them"
    site = tmp_path / "site"
    result = _run(f"""
        import json, sys
        sys.path.insert(0, {str(site)!r})
        import gtpt_deploy
        from gtpt_deploy.eval import bench, concurrency
        from gtpt_deploy.export.samples import default_samples
        from gtpt_deploy.runtime.crops import person_crops
        assert gtpt_deploy.__file__.startswith({str(site)!r}), gtpt_deploy.__file__
        ann = bench.DEMO_ANN
        crops = person_crops(ann, ann.parent / "images")
        print(json.dumps([str(ann), str(concurrency.DEMO_ANN), str(default_samples()), len(crops)]))
    """)
    assert result.returncode == 0, result.stderr
    bench_ann, conc_ann, samples, count = json.loads(result.stdout.strip().splitlines()[-1])
    expected = str(site / "gtpt_deploy" / "data" / "demo" / "person_keypoints_demo.json")
    assert bench_ann == conc_ann == samples == expected and count > 0


def test_writing_a_triton_repository_needs_the_triton_extra_and_the_readme_says_so(fake_dyn, tmp_path):
    """`gtpt-deploy triton` builds configs with tritonclient's model-config protobuf: without the [triton] extra it
    says so in one line, and the README's install paragraph states it (it presented the extra as client-only)."""
    result = _run(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tritonclient":
                    raise ImportError("hidden")
        sys.meta_path.insert(0, Block())
        from gtpt_deploy.cli import main
        sys.argv = ["gtpt-deploy", "triton", {str(fake_dyn)!r}, "--repo", {str(tmp_path / "repo")!r}]
        main()
    """)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "pip install 'gtpt-deploy[triton]'" in lines[0] and not (tmp_path / "repo").exists()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    installs = readme[readme.index("**Installs.**"):].split("\n\n")[0]
    assert "`[triton]`" in installs and "`gtpt-deploy triton`" in installs


def test_missing_onnxruntime_is_named_a_base_dependency_not_the_gpu_extra():
    """onnxruntime is a base dependency: its absence is a broken install, and the [gpu] extra the message used to name
    would add onnxruntime-gpu, which clashes with it (issue 19)."""
    result = _run("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnxruntime":
                    raise ImportError("hidden")
        sys.meta_path.insert(0, Block())
        from gtpt_deploy.errors import MissingDependencyError
        from gtpt_deploy.runners.ort import import_onnxruntime
        try:
            import_onnxruntime()
        except MissingDependencyError as e:
            print(e)
    """)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "pip install onnxruntime" in line and "[gpu]" not in line and "gtpt-deploy install" in line
