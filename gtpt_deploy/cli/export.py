"""``gtpt-deploy export``: checkpoint -> verified ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from .main import echo_json, main


@main.command("export")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="GTPT checkpoint (.pth).")
@click.option("--model", default=None, help="Variant name (see 'gtpt-deploy models'); detected when omitted.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="export/<variant>_b<N>.onnx", help="ONNX file to write (a .json report goes next to it).")
@click.option("--batch", type=int, default=None, show_default="1", help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Symbolic batch dimension instead of a static one.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (17..20).")
@click.option("--no-simplify", is_flag=True, help="Keep the graph as exported (no onnxsim / onnxslim).")
@click.option("--samples", type=click.Path(exists=True, path_type=Path), default=None,
              show_default="$GTPT_SAMPLES or the bundled demo images",
              help="Person crops for the parity check: COCO keypoint JSON (GT boxes), image folder or image.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as one JSON object on stdout.")
def export_cmd(checkpoint: Path, model: str | None, output: Path | None, batch: int | None, dynamic_batch: bool,
               opset: int, no_simplify: bool, samples: Path | None, force: bool, as_json: bool) -> None:
    """Export a checkpoint to a simplified, self-describing ONNX with static top-k, verified against PyTorch.

    \b
    The file is kept only if onnx.checker passes and ONNX Runtime matches PyTorch on person crops and random inputs
    (max |logit diff| <= 1e-4, 100% argmax agreement); the report is printed and written next to it (.json).
    Examples:
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth
      gtpt-deploy export --checkpoint models/gtpt_b_wholebody.pth --batch 8 --output export/b_wb_b8.onnx
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --dynamic-batch --force
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --json | jq .max_abs_diff
    """
    from ..export import export_onnx

    result = export_onnx(checkpoint, model=model, output=output, batch=batch, dynamic_batch=dynamic_batch,
                         opset=opset, simplify=not no_simplify, force=force, samples=samples)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.format_report())
