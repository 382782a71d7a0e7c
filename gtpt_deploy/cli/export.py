"""``gtpt-deploy export``: checkpoint -> verified ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime.options import CalibSpec
from .main import calib_options, echo_json, main


@main.command("export")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="GTPT checkpoint (.pth).")
@click.option("--model", default=None, help="Variant name (see 'gtpt-deploy models'); detected when omitted.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="export/<checkpoint name>_b<N>.onnx", help="ONNX file to write (a .json report goes next to it).")
@click.option("--batch", type=int, default=None, show_default="1", help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Symbolic batch dimension instead of a static one.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (17..20).")
@click.option("--no-simplify", is_flag=True, help="Keep the graph as exported (no onnxsim / onnxslim).")
@click.option("--samples", type=click.Path(exists=True, path_type=Path), default=None,
              show_default="$GTPT_SAMPLES or the bundled demo images",
              help="Person crops for the parity check: COCO keypoint JSON (GT boxes), image folder or image.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="Also write the FP16 (<name>_fp16.onnx) or INT8 (<name>_int8.onnx) form of the export.")
@calib_options("int8: ")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as one JSON object on stdout.")
def export_cmd(checkpoint: Path, model: str | None, output: Path | None, batch: int | None, dynamic_batch: bool,
               opset: int, no_simplify: bool, samples: Path | None, precision: str, calib: CalibSpec, force: bool,
               as_json: bool) -> None:
    """Export a checkpoint to a simplified, self-describing ONNX with static top-k, verified against PyTorch.

    \b
    The file is kept only if onnx.checker passes and ONNX Runtime matches PyTorch on person crops and random inputs
    (max |logit diff| <= 1e-4, 100% argmax agreement where both keep the same tokens; top-k near-ties are reported
    and checked with PyTorch's tokens); the report is printed and written next to it (.json, "near_ties").
    Examples:
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth
      gtpt-deploy export --checkpoint models/gtpt_b_wholebody.pth --batch 8 --output export/b_wb_b8.onnx
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --dynamic-batch --force
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --precision fp16
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --precision int8 --calib-ann train.json --calib-images train/
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --json | jq .max_abs_diff
    """
    from ..engines.chain import CalibSpec as Int8Stage
    from ..engines.chain import ExportSpec, export_chain, reduced
    from ..errors import GtptError

    stage = None
    if precision == "int8":
        if calib.ann is None or calib.images is None:
            raise GtptError("--precision int8 needs calibration crops: pass --calib-ann ANN.json and --calib-images "
                            "DIR")
        stage = Int8Stage(calib.ann, calib.images, calib.num)   # the option group's crops + the stage's defaults
    spec = ExportSpec(model=model, output=output, batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                      simplify=not no_simplify, samples=samples)
    chain = export_chain(checkpoint, reduced(precision), spec, stage, force=force,
                         report=lambda line: click.echo(line, err=True))
    result, reduced = chain.export, chain.reduced.get(precision)
    if as_json:
        echo_json({**result.to_dict(), **({precision: reduced.to_dict()} if reduced is not None else {})})
    else:
        click.echo(result.format_report())
        if reduced is not None:
            click.echo(reduced.format_report())
