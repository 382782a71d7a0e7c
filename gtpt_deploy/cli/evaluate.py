"""``gtpt-deploy evaluate`` and ``validate``: COCO AP of results files and of artifacts on identical crops."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .main import ARTIFACT, detector_options, echo_json, main, show_progress, where_options


@main.command("evaluate")
@click.argument("ann", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def evaluate_cmd(ann: Path, results: Path, as_json: bool) -> None:
    """COCO keypoint AP of a RESULTS file against an ANN annotation file (COCO or COCO-WholeBody).

    \b
    COCO: pycocotools COCOeval 'keypoints' -> {"AP","AP50","AP75","APm","APl","AR","AR50","AR75","ARm","ARl"}
    (the table's ten stats). COCO-WholeBody (annotations with foot_kpts): xtcocotools per-part semantics ->
    {"body","foot","face","lefthand","righthand","wholebody"}, each with the same keys.
    The results are scored as they are (rescoring and OKS NMS belong to the run that wrote them).
    An empty results list scores AP 0 by definition: that is said on stderr and the exit code is 1.
    Examples:
      gtpt-deploy evaluate person_keypoints_val2017.json results.json
      gtpt-deploy evaluate coco_wholebody_val_v1.0.json results.json --json | jq .wholebody.AP
    """
    from ..coco import read_json
    from ..eval.metrics import evaluate

    metrics = evaluate(ann, results)
    if as_json:
        echo_json(metrics.to_dict(full=True))
    else:
        click.echo(metrics.format_table())
    if read_json(results, "COCO results") == []:
        # AP 0 here measures nothing: a run that found no person, or the wrong file. Never a silent 0.000.
        click.echo(f"warning: {results} holds no results: AP 0 by definition (nothing was scored); "
                   f"check that the run found persons", err=True)
        sys.exit(1)


@main.command("validate")
@click.argument("baseline", type=ARTIFACT)
@click.argument("candidates", nargs=-1, required=True, type=ARTIFACT)
@click.option("--ann", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO / COCO-WholeBody keypoint annotation file.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with the annotation file's images.")
@click.option("--boxes", default=None, metavar="gt|DETS.json",
              help="Ground-truth boxes (default) or a COCO detection results JSON.")
@detector_options
@click.option("--max-ap-drop", type=float, default=None,
              show_default="by precision: fp32 0, fp16 0.001, bf16 and int8 0.005",
              help="Largest allowed AP drop of every candidate, 0-1 AP (0.005 = half an AP point).")
@click.option("--no-flip", is_flag=True, help="Skip the flip test.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Crops per call of the dynamic-batch artifacts; a static-batch one runs at its exported batch.")
@where_options("the candidates")
@click.option("--baseline-device", default=None, metavar="cpu|cuda|cuda:N", show_default="--device",
              help="Where the baseline runs (e.g. a CPU .pth baseline against GPU candidates).")
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} (baseline first) on stdout.')
def validate_cmd(baseline: Path | str, candidates: tuple[Path | str, ...], ann: Path, images: Path, boxes: str | None,
                 max_ap_drop: float | None, no_flip: bool, batch: int | None, baseline_device: str | None,
                 as_json: bool, **where: Any) -> None:
    """Prove CANDIDATE artifacts match the BASELINE: COCO AP of each on identical crops, and their agreement.

    \b
    Per artifact (baseline first) a line with its name and runner, then its numbers: AP, AP50, AP75, AR (0-1, as
    'evaluate'), dAP vs the baseline, argmax agreement (fraction of keypoints with the same SimCC bins), mean / max
    keypoint displacement vs the baseline (pixels), the kept tokens per pruning stage (recorded in the same pass).
    Each artifact is loaded once; a static-batch one runs at its exported batch beside --batch for the others.
    --json rows carry evaluate --json's keys (whole-body: per part) plus the agreement columns.
    Every candidate must also be the baseline's model (column 'model', JSON same_model / lineage / reason):
    derived from it by the hashes the files record (checkpoint sha256, source ONNX, engine sidecar), or
    agreeing with it above its precision's argmax / kept-token floors; the baseline file itself is refused.
    Exit code 1 when a candidate's AP drop exceeds --max-ap-drop or it is not the baseline's model.
    Examples:
      gtpt-deploy validate models/gtpt_t_coco.pth export/gtpt_t_coco_b1.onnx --ann val.json --images val2017/
      gtpt-deploy validate gtpt_t.pth gtpt_t_b1.onnx gtpt_t_b1_fp16.onnx --ann val.json --images val2017/ \\
          --boxes COCO_val2017_detections_AP_H_56_person.json --max-ap-drop 0.001 --json
      gtpt-deploy validate gtpt_t.pth gtpt_t_b1.onnx --ann val.json --images val2017/ \\
          --baseline-device cpu --device cuda --provider cuda
      gtpt-deploy validate gtpt_t.pth gtpt_t_b1.onnx gtpt_t_b1_int8.onnx --ann val.json --images val2017/ \\
          --provider openvino:bf16
    """
    from ..eval.validate import BoxSpec, RunnerSpec, validate

    # the option groups' values as the typed options validate takes (where_options, detector_options)
    runner = RunnerSpec(where.pop("device"), where.pop("provider"), where.pop("threads"), batch, not no_flip)
    report = validate(baseline, candidates, ann, images, BoxSpec(boxes, **where), runner=runner,
                      baseline_device=baseline_device, max_ap_drop=max_ap_drop, progress=show_progress())
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.format_table())
    if not report.passed:
        sys.exit(1)
