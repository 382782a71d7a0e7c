"""Packaging rules (design.md §4.6): no heavy or optional import at import time; --help works without extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap

OPTIONAL = ["tensorrt", "pycocotools", "onnxsim", "onnxslim", "pycuda", "cuda"]


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
        heavy = [m for m in ("torch", "onnxruntime", "onnx", "cv2", "tensorrt", "pycocotools") if m in sys.modules]
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
