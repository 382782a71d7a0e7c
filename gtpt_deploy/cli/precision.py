"""``gtpt-deploy fp16`` and ``calibrate``: reduced precision inside the ONNX (FP16 graph, INT8 Q/DQ)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from .main import echo_json, main, show_progress


@main.command("fp16")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="<name>_fp16.onnx beside MODEL", help="FP16 ONNX to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def fp16_cmd(model: Path, output: Path | None, force: bool, as_json: bool) -> None:
    """Convert an FP32 gtpt-deploy ONNX (MODEL) to FP16: float16 weights, float32 inputs/outputs, FP32 islands.

    \b
    The pruning score -> TopK path and Softmax stay FP32 (measured: see the recipe in
    the file's gtpt.extra metadata). TensorRT 10/11 build the file as it is (strongly typed).
    Examples:
      gtpt-deploy fp16 export/gtpt_t_coco_b1.onnx
      gtpt-deploy fp16 export/gtpt_t_coco_b1.onnx -o /tmp/t_fp16.onnx --force --json
    """
    from ..export.fp16 import convert_fp16

    result = convert_fp16(model, output=output, force=force)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.format_report())


class ApBudget(click.ParamType):
    """--max-ap-drop: a finite 0-1 AP difference, or ``none`` (measure only, no budget). NaN, negative, inf and
    values above 1 are refused here, before anything runs."""

    name = "AP|none"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        text = str(value).strip().lower()
        if text == "none":
            return "none"
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and 0 <= number <= 1):
            self.fail(f"expected a 0-1 AP difference (0.005 = half an AP point) or 'none', got {value!r}", param, ctx)
        return number


@main.command("calibrate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ann", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO keypoint annotation file: its GT person boxes are the calibration crops.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with the annotation file's images.")
@click.option("--num", type=click.IntRange(min=1), default=None,
              show_default="every usable person left for calibration, at most 512",
              help="Calibration crops (seeded selection); more than the file has is an error.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="Range calibration method (ONNX Runtime's calibrators).")
@click.option("--target", type=click.Choice(["tensorrt", "cpu"]), default="tensorrt", show_default=True,
              help="tensorrt: symmetric int8, zero points 0; cpu: uint8 activations ONNX Runtime fuses on x86.")
@click.option("--max-ap-drop", type=ApBudget(), default=None, show_default="validate's INT8 budget, 0.005",
              help="AP budget (0-1): when the default recipe misses it, keep the most sensitive layer groups float "
                   "until ΔAP fits; 'none': measure only.")
@click.option("--eval-ann", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Annotation file to measure ΔAP / argmax agreement on (default: a seeded third of the "
                   "calibration file's persons, held out from calibration).")
@click.option("--eval-images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Images of --eval-ann.")
@click.option("--ranges", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Reuse this ranges JSON (refused unless model, data and method match).")
@click.option("--seed", type=int, default=0, show_default=True, help="Crop selection seed.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="<name>_int8.onnx (tensorrt) / <name>_int8cpu.onnx (cpu) beside MODEL",
              help="INT8 ONNX to write (its ranges/cache go to calib/, named after it).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs (and recompute mismatching ranges).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def calibrate_cmd(model: Path, ann: Path, images: Path, num: int | None, method: str, target: str,
                  max_ap_drop: float | str | None, eval_ann: Path | None, eval_images: Path | None, ranges: Path | None,
                  seed: int, output: Path | None, force: bool, as_json: bool) -> None:
    """Calibrate an FP32 gtpt-deploy ONNX (MODEL) on COCO person crops, write its INT8 Q/DQ form, and measure it.

    \b
    Writes <name>_int8.onnx (--target tensorrt) or <name>_int8cpu.onnx (--target cpu), and beside it in calib/,
    named after that output: <out>_<method>.ranges.json (ranges + manifest) and <out>_<method>.cache (TensorRT
    legacy calibration cache for trtexec --calib on TensorRT <= 10). Ranges depend on the FP32 model, the
    calibration crops (annotations, held-out persons, image bytes) and the method, not on the target; they are
    reused only when all of these match. Every run measures ΔAP and argmax agreement vs the FP32 model (on
    --eval-ann, else on a seeded third of the persons, held out from calibration) and prints them; when the
    default recipe misses --max-ap-drop (default 0.005, validate's INT8 budget) the layer search runs, each step
    on stderr. When even the most conservative recipe misses the budget the command exits non-zero and writes
    nothing.
    Examples:
      gtpt-deploy calibrate export/gtpt_t_coco_sample_b1.onnx \\
          --ann ../shared/data/coco_train2017_mini/person_keypoints_train2017_subset.json \\
          --images ../shared/data/coco_train2017_mini/images
      gtpt-deploy calibrate export/gtpt_t_coco_bdyn.onnx --ann train.json --images train/ --num 64 --target cpu
      gtpt-deploy calibrate export/gtpt_t_coco_b1.onnx --ann train.json --images train/ \\
          --eval-ann val.json --eval-images val/ --max-ap-drop 0.01 --json
      gtpt-deploy calibrate export/gtpt_t_coco_b1.onnx --ann train.json --images train/ --max-ap-drop none
    """
    from ..calib import calibrate_int8

    def report(line: str) -> None:
        if show_progress() or line.startswith("warning"):   # -q: warnings only, no step lines
            click.echo(line, err=True)

    budget: dict[str, Any] = {} if max_ap_drop is None else \
        {"max_ap_drop": None if max_ap_drop == "none" else max_ap_drop}   # not given: the API's default budget
    result = calibrate_int8(model, ann, images, num=num, method=method, target=target, **budget,
                            eval_ann=eval_ann, eval_images=eval_images, output=output, force=force, ranges=ranges,
                            seed=seed, report=report)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.format_report())
