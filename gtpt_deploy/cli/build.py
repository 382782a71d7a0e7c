"""``gtpt-deploy build``: ONNX (or checkpoint) -> TensorRT engine + JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime.options import CalibSpec
from .main import calib_options, echo_json, main


def _parse_dynamic(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        lo, opt, hi = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MIN,OPT,MAX (e.g. 1,8,16), got '{value}'") from None
    return lo, opt, hi


@main.command("build")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", type=int, default=None,
              help="Static engine batch (a dynamic-batch ONNX; a static ONNX keeps its own batch).")
@click.option("--dynamic-batch", callback=_parse_dynamic, metavar="MIN,OPT,MAX", default=None,
              help="Dynamic batch profile, e.g. 1,8,16 (needs an ONNX exported with --dynamic-batch).")
@click.option("--workspace", "workspace_gib", type=float, default=4.0, show_default=True,
              help="TensorRT workspace memory pool limit, GiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="timing.cache beside the engine", help="Timing cache file: read, then updated (a new name or a cache an earlier build wrote).")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="Builder optimization level (higher: longer build, maybe faster engine).")
@click.option("--gpu", type=click.IntRange(min=0), default=0, show_default=True, help="CUDA device to build on.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="engines/<variant>_b<N>_<precision>.engine", help="Engine file (.engine or .plan).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Checkpoint input only: export, convert / calibrate, then build. An ONNX keeps its own precision.")
@calib_options("--precision int8: ")
@click.option("--force", is_flag=True,
              help="Overwrite an existing engine / sidecar (and remake the intermediate ONNX files under export/).")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar as one JSON object on stdout.")
def build_cmd(model: Path, batch: int | None, dynamic_batch: tuple[int, int, int] | None, workspace_gib: float,
              timing_cache: Path | None, opt_level: int, gpu: int, output: Path | None, precision: str | None,
              calib: CalibSpec, force: bool, as_json: bool) -> None:
    """Build a TensorRT engine from MODEL (.onnx, or a .pth checkpoint with --precision).

    \b
    Strongly typed: the precision is the ONNX file's (FP32, FP16-typed, Q/DQ INT8), on TensorRT 10.x and 11.x.
    Writes the plain plan (loads unchanged in trtexec / Triton / Polygraphy) and <engine>.json beside it
    (TensorRT version, GPU, profile, precision recipe, layer precisions, the equivalent trtexec command).
    Needs an NVIDIA GPU and pip install 'gtpt-deploy[tensorrt]'. Progress goes to stderr.
    Examples:
      gtpt-deploy build export/gtpt_t_coco_b1.onnx
      gtpt-deploy build export/gtpt_t_coco_bdyn_fp16.onnx --dynamic-batch 1,8,16 -o engines/t_fp16.engine \\
          --timing-cache engines/timing.cache --workspace 4 --opt-level 3 --json
      gtpt-deploy build models/gtpt_t_coco.pth --precision fp16 --batch 8
      gtpt-deploy build models/gtpt_t_coco.pth --precision int8 --calib-ann train.json --calib-images train2017/ \\
          --calib-num 512
    """
    from ..errors import GtptError

    options = dict(dynamic_batch=dynamic_batch, workspace_gib=workspace_gib, timing_cache=timing_cache,
                   opt_level=opt_level, gpu=gpu, output=output, force=force)
    if model.suffix.lower() in (".pth", ".pt"):
        from ..engines import build_from_checkpoint

        result = build_from_checkpoint(model, precision or "fp32", calib_ann=calib.ann, calib_images=calib.images,
                                       calib_num=calib.num, batch=batch, **options)
    elif model.suffix.lower() == ".onnx":
        if precision is not None or calib.ann is not None or calib.images is not None:
            raise GtptError(f"{model.name} is an ONNX file: its precision is the file's own; --precision / "
                            f"--calib-* apply to checkpoints (or make the FP16 / INT8 ONNX first)")
        from ..engines import build_engine

        result = build_engine(model, batch=batch, **options)
    else:
        raise GtptError(f"expected an .onnx model or a .pth checkpoint, got '{model.name}'")
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.format_report())
