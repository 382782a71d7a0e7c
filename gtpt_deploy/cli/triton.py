"""``gtpt-deploy triton``: write a Triton Inference Server model repository for artifacts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import click

from .main import F, bundle, echo_json, main


@dataclass(frozen=True)
class ModelConfigSpec:
    """How each pose model is served: the ``config.pbtxt`` choices (``write_repository``'s keyword arguments)."""

    max_batch: int | None = None
    instances: int = 1
    kind: str | None = None
    backend: str = "onnxruntime"
    python_runtime: str = "onnxruntime"
    trt_accelerator: bool = False
    warmup: bool = True


def model_config_options(f: F) -> F:
    """--max-batch / --instances / --kind / --backend / --python-runtime / --trt-accelerator / --warmup as ONE
    argument ``config: ModelConfigSpec`` of the command function."""
    f = bundle("config", ModelConfigSpec, tuple(ModelConfigSpec.__dataclass_fields__))(f)
    f = click.option("--warmup/--no-warmup", default=True, show_default=True,
                     help="model_warmup: one random max-size batch at load, so the first request pays no "
                          "setup.")(f)
    f = click.option("--trt-accelerator", is_flag=True,
                     help="onnxruntime_onnx on --kind gpu: ONNX Runtime's TensorRT execution accelerator in the "
                          "file's precision (FP16 / INT8 Q/DQ files then run in FP16 / INT8, not in float).")(f)
    f = click.option("--python-runtime", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime",
                     show_default=True, help="--backend python: what the pose model runs the ONNX with inside "
                                             "Triton (openvino: FP32 on CPU instances; the server's Python needs "
                                             "openvino).")(f)
    f = click.option("--backend", type=click.Choice(["onnxruntime", "python", "openvino"]), default="onnxruntime",
                     show_default=True,
                     help="ONNX: Triton's onnxruntime_onnx platform (NVIDIA's containers), the Python-backend model "
                          "with ONNX Runtime inside (any Triton, also the CPU-only pip server `serve` starts), or "
                          "Triton's OpenVINO backend (CPU).")(f)
    f = click.option("--kind", type=click.Choice(["cpu", "gpu"]), default=None,
                     help="Instance kind: where the pose model runs  [default: gpu for engines (the TensorRT "
                          "backend runs GPU instances only), cpu for .onnx]")(f)
    f = click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Model instances (parallel executions) per device; also the pipeline's CPU instances.")(f)
    return click.option("--max-batch", type=click.IntRange(min=1), default=None,
                        help="max_batch_size (the dynamic batcher forms batches up to it)  [default: 8 for .onnx, "
                             "the profile's max for engines]")(f)


@main.command("triton")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--repo", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model repository folder to write (replaced only with --force).")
@click.option("--name", default=None, help="Model name (one artifact)  [default: the file name without suffix]")
@model_config_options
@click.option("--pipeline", is_flag=True, help="Also write gtpt_pipeline: image bytes in, persons out (Python "
                                               "backend; needs --detector).")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Person detector ONNX with dets/labels outputs, for --pipeline.")
@click.option("--force", is_flag=True, help="Replace what an earlier 'gtpt-deploy triton' wrote into --repo (its "
                                            ".gtpt-triton.json lists it); other content of the folder stays.")
@click.option("--json", "as_json", is_flag=True, help='Print {"repo": ..., "models": [...]} on stdout.')
def triton_cmd(artifacts: tuple[Path, ...], repo: Path, name: str | None, config: ModelConfigSpec, pipeline: bool,
               detector: Path | None, force: bool, as_json: bool) -> None:
    """Write a Triton model repository (REPO/NAME/config.pbtxt + REPO/NAME/1/model.*) for ARTIFACTS.

    \b
    .onnx (dynamic batch; export with --dynamic-batch) -> onnxruntime_onnx, --backend python or openvino;
    .engine -> tensorrt_plan (GPU instances) with the TensorRT version of its sidecar; its profile must start at
    batch 1 (a static batch-1 engine is served without batching). Configs are built as protobuf messages from
    the artifact's metadata and checked against Triton's load-time rules; the repository appears complete or not
    at all. Serve it with 'gtpt-deploy serve REPO' (CPU: starts a local Triton; GPU: prints NVIDIA's container
    command), then use triton://127.0.0.1:8000/NAME wherever an artifact is expected (run, validate, bench).
    Examples:
      gtpt-deploy triton export/gtpt_t_coco_bdyn.onnx --repo triton_repo --name gtpt_pose --backend python \\
          --pipeline --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy triton export/gtpt_t_coco_bdyn_fp16.onnx --repo triton_repo --kind gpu --trt-accelerator
      gtpt-deploy triton engines/gtpt_t_coco_bdyn_fp16.engine --repo triton_repo --max-batch 16 --json
      gtpt-deploy triton export/gtpt_t_coco_bdyn.onnx --repo ov_repo --backend openvino
    """
    from ..serve.repository import write_repository

    report = write_repository(artifacts, repo, name=name, pipeline=pipeline, detector=detector, force=force,
                              **asdict(config))
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo("\n".join(report.format_lines()))
