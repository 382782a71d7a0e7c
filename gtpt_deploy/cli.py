"""The ``gtpt-deploy`` command line. Each command parses options and calls one library function; no logic here.

User errors (:class:`GtptError`) print one line and exit non-zero without a traceback; bugs keep their traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .errors import GtptError


class _Group(click.Group):
    """Turns a GtptError raised by any command into one ``error: ...`` line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GtptError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="gtpt-deploy")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Deploy GTPT pose transformers: checkpoint -> ONNX -> TensorRT, run on images, validate COCO AP.

    \b
    Examples:
      gtpt-deploy models
      gtpt-deploy export --checkpoint models/gtpt_t_coco_sample.pth
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano.onnx
      gtpt-deploy validate models/gtpt_t_coco_sample.pth export/gtpt_t_coco_b1.onnx --ann val.json --images val/
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the GTPT variants with keypoints, input size, parameters and GMACs.

    \b
    Parameters count the inference (EMA) branch; MACs are counted by torch's FLOP counter on one 256x192 crop,
    attention matmuls included.
    Examples:
      gtpt-deploy models
      gtpt-deploy models --json | jq '.[0]'
    """
    from .models.summary import model_table

    rows = model_table()
    if as_json:
        _echo_json(rows)
        return
    header = f"{'name':<18} {'keypoints':>9} {'input (HxW)':>11} {'params (M)':>10} {'GMACs':>7}  description"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(f"{r['name']:<18} {r['keypoints']:>9} {r['input_size'][0]:>5}x{r['input_size'][1]:<5} "
                   f"{r['params_m']:>10.3f} {r['gmacs']:>7.3f}  {r['description']}")


@main.command("evaluate")
@click.argument("ann", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def evaluate_cmd(ann: Path, results: Path, as_json: bool) -> None:
    """COCO keypoint AP of a RESULTS file against an ANN annotation file (COCO or COCO-WholeBody).

    \b
    COCO: pycocotools COCOeval 'keypoints' -> {"AP","AP50","AP75","APm","APl","AR"}.
    COCO-WholeBody (annotations with foot_kpts): xtcocotools per-part semantics ->
    {"body","foot","face","lefthand","righthand","wholebody"}, each with the same keys.
    The results are scored as they are (rescoring and OKS NMS belong to the run that wrote them).
    Examples:
      gtpt-deploy evaluate person_keypoints_val2017.json results.json
      gtpt-deploy evaluate coco_wholebody_val_v1.0.json results.json --json | jq .wholebody.AP
    """
    from .evaluate import evaluate

    metrics = evaluate(ann, results)
    if as_json:
        _echo_json(metrics.to_dict())
    else:
        click.echo(metrics.format_table())


if __name__ == "__main__":  # pragma: no cover
    main()
