"""A local ``tritonserver`` on 127.0.0.1: the one bundled by the ``nvidia-pytriton`` wheel (Python backend only).

That wheel needs ``numpy<2``, so it lives in an environment of its own (:func:`ensure_server_env`), never in the
project's. Its quirks, handled by :class:`TritonServer`:

* the Python-backend stub is built per Python version (``python_backend_stubs/3.X``): the one matching the server
  environment's interpreter is copied into a private ``--backend-directory``;
* the stub takes its Python from the first ``python`` on ``PATH`` -> the environment's ``bin`` goes first;
* the stub links ``libpython3.X.so``: the interpreter's ``LIBDIR`` (pyenv builds keep it outside the system paths)
  and the wheel's bundled libraries go on ``LD_LIBRARY_PATH``.

The server listens on loopback only, waits for readiness with a bounded timeout (its log tail in the error), and is
stopped with its whole process group (the stubs are its children). No torch import, no tritonclient needed here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import GtptError

PYTRITON = "nvidia-pytriton==0.7.0"  # bundles tritonserver 2.51; its Python-backend stub needs numpy<2
HOST = "127.0.0.1"


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def server_requirements(openvino: bool = False) -> tuple[list[str], list[str]]:
    """What the server environment gets: (``pip install`` list, ``pip install --no-deps`` list).

    onnxruntime and OpenCV are pinned to the versions of *this* environment: the pipeline model's crops and the
    pose model's logits are then bit-identical to ``run`` in-process (OpenCV 4.11 and 5.x warp crops differently).
    OpenCV goes in without its dependencies: its wheels declare numpy>=2 but run with the numpy 1.26 the stub needs.
    ``openvino``: also OpenVINO (this environment's version) for Python-backend models with ``runtime: openvino``.
    """
    ort = _installed("onnxruntime")
    cv = _installed("opencv-python-headless") or _installed("opencv-python")
    pip = [PYTRITON, "numpy<2", f"onnxruntime=={ort}" if ort else "onnxruntime"]
    if openvino:
        ov = _installed("openvino")
        pip.append(f"openvino=={ov}" if ov else "openvino")
    if cv is None:
        return pip + ["opencv-python-headless<4.12"], []
    return pip, [f"opencv-python-headless=={cv}"]


class TritonServerError(GtptError):
    """The server could not be set up, started or made ready."""


def default_env_path(openvino: bool = False) -> Path:
    """``$GTPT_TRITON_ENV``, else a cache folder named after the Python version and :func:`server_requirements`."""
    if os.environ.get("GTPT_TRITON_ENV"):
        return Path(os.environ["GTPT_TRITON_ENV"])
    tag = hashlib.sha256(json.dumps(server_requirements(openvino)).encode()).hexdigest()[:10]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "gtpt-deploy" / f"triton-server-py{sys.version_info[0]}.{sys.version_info[1]}-{tag}"


def ensure_server_env(path: Path | None = None, python: str = sys.executable, timeout: float = 900,
                      openvino: bool = False) -> Path:
    """Find, or create with ``python -m venv`` + pip, the environment holding :func:`server_requirements`.

    A marker file written last makes a half-built environment (interrupted install) be rebuilt, not used; a
    non-empty folder without the marker (not made here) is refused, never deleted.
    Takes ~30-90 s the first time (a 55 MB wheel plus onnxruntime and OpenCV), nothing afterwards.
    """
    path = Path(path or default_env_path(openvino))
    marker = path / "gtpt-server-requirements.json"
    pip, nodeps = server_requirements(openvino)
    if marker.is_file() and json.loads(marker.read_text()) == [pip, nodeps]:
        return path
    if path.is_dir() and any(path.iterdir()) and not marker.is_file():
        # not one we made (ours carry the marker from their first build): never delete someone's environment
        raise TritonServerError(f"{path} exists and was not made by gtpt-deploy (no {marker.name}); pass it as the "
                                f"server environment only to use it as it is (serve --env), or choose an empty "
                                f"folder for GTPT_TRITON_ENV")
    shutil.rmtree(path, ignore_errors=True)  # ours, for other requirements (or half-built): rebuilt
    path.parent.mkdir(parents=True, exist_ok=True)
    install = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [[python, "-m", "venv", str(path)], install + pip] + ([install + ["--no-deps", *nodeps]] if nodeps else [])
    deadline = time.monotonic() + timeout
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TritonServerError(f"setting up the Triton server environment {path} took over {timeout:.0f} s "
                                    f"({' '.join(cmd[-3:])}); check the network to PyPI") from None
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise TritonServerError(f"could not set up the Triton server environment {path}: {' '.join(cmd[-3:])} "
                                    f"failed ({tail[0]}); install {' '.join(pip + nodeps)} into a Python 3.8-3.13 "
                                    f"venv yourself and pass it as GTPT_TRITON_ENV")
    marker.write_text(json.dumps([pip, nodeps]))
    return path


@dataclass(frozen=True)
class ServerDist:
    """The pieces of the bundled server inside an environment."""

    binary: Path
    python_backend: Path                  # backends/python (libtriton_python.so, triton_python_backend_utils.py)
    stub: Path                            # triton_python_backend_stub for the environment's Python version
    libs: Path                            # nvidia_pytriton.libs (bundled shared libraries)
    python_bin: Path                      # the environment's bin folder (first on PATH for the stub)
    python_libdir: str                    # LIBDIR of its interpreter (libpython3.X.so)


def find_server(env: Path) -> ServerDist:
    """Locate tritonserver, the Python backend and the matching stub in ``env``; TritonServerError if absent."""
    env = Path(env)
    python = env / "bin" / "python"
    if not python.exists():
        raise TritonServerError(f"{env} is not a Python environment (no bin/python); create it with "
                                f"ensure_server_env or pass a venv holding {PYTRITON}")
    r = subprocess.run([str(python), "-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
                        "print(sysconfig.get_config_var('LIBDIR') or '')"], capture_output=True, text=True, timeout=60)
    version, libdir = (r.stdout.splitlines() + ["", ""])[:2]
    found = sorted(env.glob("lib/python*/site-packages/pytriton/tritonserver"))
    if r.returncode != 0 or not found:
        raise TritonServerError(f"{env} has no PyTriton server (pytriton/tritonserver); pip install {PYTRITON} "
                                f"'numpy<2' there")
    root = found[0]
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise TritonServerError(f"PyTriton in {env} has no Python-backend stub for Python {version} (it has "
                                f"{', '.join(have)}); make the environment with one of those versions")
    return ServerDist(root / "bin" / "tritonserver", root / "backends" / "python", stub,
                      root.parents[1] / "nvidia_pytriton.libs", python.parent, libdir)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class TritonServer:
    """``with TritonServer(repo, env) as server:`` -> a ready server at ``server.url`` (``127.0.0.1:PORT``).

    Args:
        repo: the model repository.
        env: environment with the server (:func:`ensure_server_env`); its Python runs the Python-backend models.
        models: models to load at start (explicit model control; others can be loaded with :meth:`load_model`);
            None loads every model of the repository.
        pythonpath: folders put first on the models' ``PYTHONPATH`` (e.g. the checkout, for ``gtpt_pipeline``).
        ready_timeout: seconds to wait for readiness before giving up (and stopping the server).
        binary: another ``tritonserver`` executable (default: the environment's).
    """

    def __init__(self, repo: str | Path, env: str | Path, models: Sequence[str] | None = None,
                 pythonpath: Sequence[str | Path] = (), ready_timeout: float = 120.0, http_port: int | None = None,
                 binary: str | Path | None = None) -> None:
        self.repo, self.env = Path(repo).resolve(), Path(env)
        self.models = list(models) if models is not None else None
        self.pythonpath = [str(Path(p).resolve()) for p in pythonpath]
        self.ready_timeout = float(ready_timeout)
        self.http_port = http_port
        self.binary = Path(binary) if binary else None
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._work: tempfile.TemporaryDirectory | None = None
        self._log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"{HOST}:{self.http_port}"

    def start(self) -> "TritonServer":
        dist = find_server(self.env)
        self._work = tempfile.TemporaryDirectory(prefix="gtpt_triton_")
        work = Path(self._work.name)
        backend = work / "backends" / "python"
        shutil.copytree(dist.python_backend, backend, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(dist.stub, backend / "triton_python_backend_stub")
        self.http_port = self.http_port or free_port()
        env = dict(os.environ)
        env["PATH"] = f"{dist.python_bin}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (dist.python_libdir, str(dist.libs),
                                                             env.get("LD_LIBRARY_PATH", "")) if p)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*self.pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        cmd = [str(self.binary or dist.binary), f"--model-repository={self.repo}",
               f"--backend-directory={work / 'backends'}", f"--http-address={HOST}", f"--http-port={self.http_port}",
               "--allow-grpc=false", "--allow-metrics=false", "--exit-timeout-secs=5",
               "--model-control-mode=explicit"]
        cmd += [f"--load-model={m}" for m in (self.models if self.models is not None else ["*"])]
        self._log_path = work / "tritonserver.log"
        t0 = time.monotonic()
        with open(self._log_path, "wb") as log:
            # own session: stop() signals the whole group, so the Python-backend stubs go with the server
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=work, start_new_session=True)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.process is not None
        while time.monotonic() - t0 < self.ready_timeout:
            code = self.process.poll()
            if code is not None:
                raise TritonServerError(f"tritonserver exited with code {code} before it was ready; log tail: "
                                        f"{self.log_tail()}")
            if self._get("/v2/health/ready") == 200:
                return
            time.sleep(0.2)
        raise TritonServerError(f"tritonserver on {self.url} not ready after {self.ready_timeout:.0f} s; log tail: "
                                f"{self.log_tail()}")

    def _get(self, route: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://{self.url}{route}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError):
            return None

    def load_model(self, name: str) -> str | None:
        """Ask the running server to load ``name`` -> None when loaded, else the server's error message."""
        req = urllib.request.Request(f"http://{self.url}/v2/repository/models/{name}/load", data=b"{}",
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.ready_timeout):
                return None
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            try:
                return str(json.loads(body).get("error", body))
            except json.JSONDecodeError:
                return body

    def log_tail(self, lines: int = 4) -> str:
        """The server's last error lines (``E<date> ...``) and its last line, joined with `` | ``, for one-line
        messages; its last ``lines`` lines when it logged no error."""
        if self._log_path is None or not self._log_path.is_file():
            return "(no log)"
        text = [line.strip() for line in self._log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in text if line[:1] == "E" and line[1:5].isdigit() and "CudaDriverHelper" not in line]
        picked = (errors[-lines:] + text[-1:]) if errors else text[-lines:]
        return " | ".join(line[:400] for line in picked) or "(empty log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout`` s; idempotent."""
        p, self.process = self.process, None
        if p is not None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            _kill_group_leftovers(p.pid)
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group_leftovers(pgid: int) -> None:
    """Stubs that outlived the server (it died hard): they are still in its process group."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
