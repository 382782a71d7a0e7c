"""``gtpt-deploy serve``: start a local Triton for a model repository, or print the container command for it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .main import main


@main.command("serve")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="HTTP port on 127.0.0.1 (clients use triton://127.0.0.1:PORT/NAME).")
@click.option("--models", default=None, metavar="A,B",
              help="Load only these models of the repository  [default: all]")
@click.option("--env", "env", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Server environment, used as it is (a venv with nvidia-pytriton 0.7.0, numpy<2, onnxruntime, "
                   "opencv-python-headless)  [default: $GTPT_TRITON_ENV, else one created once under "
                   "~/.cache/gtpt-deploy]")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=180, show_default=True,
              help="Seconds to wait for the server to be ready.")
@click.option("--print-command", is_flag=True, help="Only print the NVIDIA container command, start nothing.")
def serve_cmd(repo: Path, port: int, models: str | None, env: Path | None, ready_timeout: float,
              print_command: bool) -> None:
    """Serve the Triton model repository REPO (written by 'gtpt-deploy triton').

    \b
    CPU repositories (Python-backend models on CPU instances: 'triton --backend python', the pipeline) start
    here on a CPU-only tritonserver (PyTriton's, in its own cached environment: created with pip the first time,
    ~1 min, needs PyPI), on 127.0.0.1:PORT; the command waits until the server is ready, serves until Ctrl-C, then
    stops it with its model processes. The pipeline's Python imports this gtpt_deploy package: serve hands the
    server a private PYTHONPATH holding only it (so the server's numpy<2 is not shadowed by this environment's).
    GPU or native-backend repositories (tensorrt_plan, onnxruntime_onnx, openvino, KIND_GPU) need NVIDIA's Triton
    container: serve prints the docker command for them instead.
    Examples:
      gtpt-deploy triton export/gtpt_t_coco_bdyn.onnx --repo triton_repo --name gtpt_pose --backend python \\
          --pipeline --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy serve triton_repo                   # Ctrl-C stops it
      gtpt-deploy run triton://127.0.0.1:8000/gtpt_pose demo/images
      gtpt-deploy serve gpu_repo --print-command      # tensorrt_plan: the docker run line
    """
    from ..serve.launch import (check_port_free, container_command, container_notes, needs_container,
                                package_path, read_repository)

    served = read_repository(repo, [m for m in models.split(",") if m] if models else None)
    reasons = needs_container(served)
    if reasons or print_command:
        why = f" ({'; '.join(reasons)}: the local CPU server has the Python backend only)" if reasons else ""
        click.echo(f"serve {repo} with NVIDIA's Triton container{why}:", err=True)
        click.echo(container_command(repo, served, port))
        for note in container_notes(served):
            click.echo(f"  note: {note}", err=True)
        return
    from ..serve.server import TritonServer, TritonServerError, ensure_server_env

    check_port_free(port)
    if env is None:
        click.echo("preparing the Triton server environment (the first time: pip, ~1 min) ...", err=True)
    openvino = any(m.runtime == "openvino" for m in served)  # the server's Python then needs openvino too
    server_env = env if env is not None else ensure_server_env(openvino=openvino)  # --env: as it is, never rebuilt
    names = [m.name for m in served]
    # Ctrl-C and SIGTERM (docker stop, systemd, kill) stop the server the same way; SIGINT is set explicitly because
    # a shell's background job (`gtpt-deploy serve R &`) inherits it ignored, and Python then never raises for it
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    with package_path() as pythonpath:
        server = TritonServer(repo, server_env, models=names, pythonpath=[pythonpath], ready_timeout=ready_timeout,
                              http_port=port)
        try:
            server.start()
            click.echo(f"Triton ready on {server.url} in {server.start_seconds:.1f} s, models: {', '.join(names)}")
            for name in names:
                click.echo(f"  triton://{server.url}/{name}")
            click.echo("Ctrl-C stops it", err=True)
            code = server.process.wait() if server.process is not None else 0
            tail = server.log_tail()
            server.stop()
            raise TritonServerError(f"tritonserver exited by itself with code {code}; log tail: {tail}")
        except KeyboardInterrupt:
            server.stop()
            click.echo("stopped", err=True)
            sys.exit(0)
        finally:
            server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
