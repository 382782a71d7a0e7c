"""The README's Python API snippet runs as written (in a scratch copy of the repository layout), and the public names
it promises resolve lazily from ``gtpt_deploy``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _api_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_snippet_runs(shared, sample_onnx, tmp_path):
    # The snippet's relative paths, in a scratch folder: export/ holds the exported sample, demo/ is the repo's,
    # ../shared is the shared data. Nothing is written into the repository.
    work = tmp_path / "repo"
    (work / "export").mkdir(parents=True)
    (work / "export" / "gtpt_t_coco_sample_b1.onnx").symlink_to(sample_onnx)
    (work / "demo").symlink_to(REPO / "demo")
    (tmp_path / "shared").symlink_to(shared)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", _api_snippet()], cwd=work, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    poses = [line for line in lines if line.startswith(("000000000785.jpg ", "array1 "))]
    assert any(line.startswith("000000000785.jpg") for line in poses) and any(line.startswith("array1") for line in poses)
    assert any("gtpt_t_coco_sample_b1.onnx" in line for line in lines), result.stdout   # the AP table


def test_public_api_names_resolve():
    import gtpt_deploy as gd

    for name in ("predict", "evaluate", "validate", "export_onnx", "create_runner", "Pose", "ImagePrediction",
                 "RunnerSpec", "BoxSpec"):
        assert callable(getattr(gd, name)), name
    assert "build_engine" in dir(gd)      # gtpt_deploy.engines.build (the TensorRT stage) defines it
