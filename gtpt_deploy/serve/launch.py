"""``gtpt-deploy serve``: which Triton a repository needs, and starting the local CPU one.

A repository whose loaded models are all Python-backend models on CPU instances (``triton --backend python``, the
pipeline) runs on the CPU-only ``tritonserver`` that :mod:`.server` sets up in its own environment. Anything else
(``tensorrt_plan``, ``onnxruntime_onnx``, ``openvino``, or a ``KIND_GPU`` instance) needs NVIDIA's Triton container
with its backends: :func:`container_command` is the command to run there.

The pipeline model imports ``gtpt_deploy`` inside the server's Python. That Python must not see this environment's
site-packages (it holds numpy 2, the stub needs numpy<2), so :func:`package_path` gives it a private folder holding
only a link to this ``gtpt_deploy`` package; the pipeline's ``model.py`` puts the ``PYTHONPATH`` entries on
``sys.path`` itself (the stub runs Python isolated). No torch import.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import GtptError
from . import config as cfg

CONTAINER = "nvcr.io/nvidia/tritonserver:<YY.MM>-py3"


@dataclass(frozen=True)
class ServedModel:
    name: str
    platform: str          # platform or backend of its config.pbtxt
    gpu: bool              # any KIND_GPU instance group
    tensorrt_version: str | None
    runtime: str = ""      # Python-backend pose models: onnxruntime / openvino


def read_repository(repo: Path, models: Sequence[str] | None = None) -> list[ServedModel]:
    """The models of a repository (every ``*/config.pbtxt``, or only ``models``); one-line errors when unusable."""
    repo = Path(repo)
    if not repo.is_dir():
        raise GtptError(f"{repo} is not a folder; pass a model repository written by 'gtpt-deploy triton'")
    found = {p.parent.name: p for p in sorted(repo.glob("*/config.pbtxt"))}
    if not found:
        raise GtptError(f"{repo} holds no model (no NAME/config.pbtxt); write one with 'gtpt-deploy triton'")
    wanted = list(models) if models else sorted(found)
    missing = [m for m in wanted if m not in found]
    if missing:
        raise GtptError(f"--models names {', '.join(missing)}, not in {repo} (it has {', '.join(sorted(found))})")
    gpu_kind = cfg.model_config_pb2().ModelInstanceGroup.KIND_GPU
    out = []
    for name in wanted:
        c = cfg.parse(found[name].read_text())
        trt = c.parameters["tensorrt_version"].string_value if "tensorrt_version" in c.parameters else None
        runtime = c.parameters["runtime"].string_value if "runtime" in c.parameters else ""
        out.append(ServedModel(name, c.platform or c.backend, any(g.kind == gpu_kind for g in c.instance_group), trt,
                               runtime))
    return out


def needs_container(models: Sequence[ServedModel]) -> list[str]:
    """Why the local CPU server cannot serve ``models`` (one reason per model; empty: it can)."""
    reasons = []
    for m in models:
        if m.platform != "python":
            reasons.append(f"{m.name} is {m.platform}")
        elif m.gpu:
            reasons.append(f"{m.name} runs on GPU instances")
    return reasons


def container_command(repo: Path, models: Sequence[ServedModel], port: int = 8000) -> str:
    """The ``docker run`` line that serves ``repo`` with NVIDIA's Triton container (GPU instances included)."""
    gpu = any(m.gpu or m.platform == "tensorrt_plan" for m in models)
    lines = ["docker run --rm" + (" --gpus all" if gpu else "") + " --shm-size=1g",
             f"-p {port}:8000 -v {Path(repo).resolve()}:/models:ro", CONTAINER,
             "tritonserver --model-repository=/models"]
    return " \\\n    ".join(lines)


def container_notes(models: Sequence[ServedModel]) -> list[str]:
    """What to pick or install for the container command to work with these models."""
    notes = ["<YY.MM>: a Triton release from NVIDIA's frameworks support matrix"]
    versions = sorted({m.tensorrt_version for m in models if m.tensorrt_version})
    if versions:
        notes[0] += f" whose TensorRT is {', '.join(versions)} (a plan loads only with the TensorRT that built it)"
    if any(m.platform == "python" for m in models):
        notes.append("Python-backend models need their packages in the container: pip install numpy onnxruntime"
                     "(-gpu for GPU instances) opencv-python-headless, and gtpt-deploy for gtpt_pipeline")
    return notes


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """One-line error when something already listens on ``port`` (the server would fail with a log tail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise GtptError(f"port {port} on {host} is not free ({e.strerror}); pass another --port") from None


@contextlib.contextmanager
def package_path() -> Iterator[Path]:
    """A temporary folder holding only a link to this ``gtpt_deploy`` package: the ``pythonpath`` the pipeline
    model needs, without this environment's other packages."""
    package = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="gtpt_serve_path_"))
    try:
        (folder / "gtpt_deploy").symlink_to(package, target_is_directory=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
