"""``gtpt-deploy triton``: write a Triton Inference Server model repository for artifacts."""

from __future__ import annotations

from pathlib import Path

import click

from .main import echo_json, main


@main.command("triton")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--repo", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model repository folder to write (replaced only with --force).")
@click.option("--name", default=None, help="Model name (one artifact)  [default: the file name without suffix]")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="max_batch_size; dynamic batching prefers this and half of it. Engines: within their profile.")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances (parallel executions) per device.")
@click.option("--kind", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Instance kind: where the pose model runs.")
@click.option("--backend", type=click.Choice(["onnxruntime", "python"]), default="onnxruntime", show_default=True,
              help="ONNX: Triton's onnxruntime_onnx platform (NVIDIA's containers) or the Python-backend model "
                   "with ONNX Runtime inside (any Triton, also the CPU-only pip server).")
@click.option("--pipeline", is_flag=True, help="Also write gtpt_pipeline: image bytes in, persons out (Python "
                                               "backend; needs --detector).")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Person detector ONNX with dets/labels outputs, for --pipeline.")
@click.option("--force", is_flag=True, help="Replace an existing repository.")
@click.option("--json", "as_json", is_flag=True, help='Print {"repo": ..., "models": [...]} on stdout.')
def triton_cmd(artifacts: tuple[Path, ...], repo: Path, name: str | None, max_batch: int, instances: int, kind: str,
               backend: str, pipeline: bool, detector: Path | None, force: bool, as_json: bool) -> None:
    """Write a Triton model repository (REPO/NAME/config.pbtxt + REPO/NAME/1/model.*) for ARTIFACTS.

    \b
    .onnx (dynamic batch; export with --dynamic-batch) -> onnxruntime_onnx, or --backend python;
    .engine -> tensorrt_plan with the TensorRT version of its sidecar. Configs are built as protobuf messages from
    the artifact's metadata, with dynamic batching; the repository appears complete or not at all.
    Serve it with NVIDIA's container (GPU) or, CPU-only, with the Python backend (README "Serving at scale"),
    then use triton://127.0.0.1:8000/NAME wherever an artifact is expected (run, validate, bench).
    Examples:
      gtpt-deploy triton export/gtpt_t_coco_bdyn.onnx --repo triton_repo --name gtpt_pose --kind gpu
      gtpt-deploy triton export/gtpt_t_coco_bdyn.onnx --repo triton_repo --name gtpt_pose --backend python \\
          --pipeline --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy triton engines/gtpt_t_coco_bdyn_fp16.engine --repo triton_repo --max-batch 16 --kind gpu --json
    """
    from ..serve.repository import write_repository

    report = write_repository(artifacts, repo, name=name, max_batch=max_batch, instances=instances, kind=kind,
                              backend=backend, pipeline=pipeline, detector=detector, force=force)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo("\n".join(report.format_lines()))
