"""``gtpt-deploy run`` and ``demo``: artifacts on images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..runtime.options import BoxSpec, RunnerSpec
from .main import ARTIFACT, box_options, echo_json, main, runner_options, show_progress


@main.command("run")
@click.argument("artifact", type=ARTIFACT)
@click.argument("inputs", nargs=-1, required=True)
@box_options(boxes_help="Person boxes from a COCO detection results JSON (category 1), or 'gt' with --ann (images "
                        "only).",
             ann_help="COCO annotation file of the inputs: image ids from its file_names (then 'evaluate ANN "
                      "results.json' works) and the source of --boxes gt.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="runs/run, runs/run2, ... (the first free one)",
              help="Folder for results and annotated images / videos.")
@runner_options("the pose artifact", batch_help="Crops per model call (dynamic-batch artifacts; a static batch is "
                                                "used as exported and --batch is ignored, with a warning).")
@click.option("--kpt-thr", type=float, default=None, show_default="0.03",
              help="Draw keypoints above this confidence (GTPT's SimCC confidences peak near 0.1).")
@click.option("--no-draw", is_flag=True, help="Write results only (no annotated images or videos).")
@click.option("--show/--no-show", default=None,
              help="Live window for a camera  [default: when a display exists; else an annotated video is written]")
@click.option("--force", is_flag=True,
              help="Reuse an existing --out folder: the earlier run's files there are removed first (only those).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object on stdout (progress on stderr).")
def run_cmd(artifact: Path | str, inputs: tuple[str, ...], boxes: BoxSpec, out_dir: Path | None, runner: RunnerSpec,
            kpt_thr: float | None, no_draw: bool, show: bool | None, force: bool, as_json: bool) -> None:
    """Pose with ARTIFACT (.pth, .onnx, .engine, triton://...) on INPUTS: images, folders, globs, videos or a camera.

    \b
    Images -> results.json (COCO keypoint results, rescored, OKS NMS; each record names its file_name) +
    annotated copies. Each video or camera -> <name>.json (persons per frame with frame index and timestamp) +
    annotated <name>.mp4; a camera shows a live window instead when a display exists (q / Esc closes it).
    Ctrl-C ends cleanly with the results so far written. Person boxes come from --detector (any mmdeploy
    RTMDet / YOLOX export; its pipeline.json sets the pre-processing), from --boxes, or (neither) the whole
    image is one person. Images that are missing or cannot be decoded are reported and skipped (exit code 1).
    Examples:
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run export/gtpt_t_coco_b1.onnx clip.mp4 'shots/*.jpg' --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run export/gtpt_t_coco_b1.onnx 0 --detector rtmdet_nano_person/end2end.onnx --no-show
      gtpt-deploy run engines/t_b8_fp16.engine clip.mp4 --detector det.onnx --detector-device cuda
      gtpt-deploy run models/gtpt_t_coco.pth val2017/ --boxes detections.json --out runs/val --no-draw
      gtpt-deploy run export/gtpt_t_coco_b1.onnx val2017/ --ann val.json --boxes gt --out runs/gt --json
      gtpt-deploy run triton://127.0.0.1:8000/gtpt_pose photos/ --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run export/gtpt_t_coco_bdyn.onnx photos/ --detector det.onnx --provider openvino --batch 8
    """
    from ..runtime.options import OutputSpec
    from ..runtime.run import run_inputs

    s = run_inputs(artifact, inputs, out_dir, runner, boxes,
                   OutputSpec(kpt_thr=kpt_thr, draw=not no_draw, show=show, force=force), progress=show_progress())
    for f in s.failures:
        click.echo(f"failed: {f.error}", err=True)
    if as_json:
        echo_json(s.to_dict())
    else:
        click.echo("\n".join(s.format_lines()))
    if not s.ok:
        sys.exit(1)


@main.command("demo")
@click.option("--out", "out_dir", default="runs/demo", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the ONNX file, annotated images, results.json (overwritten on each demo run).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Checkpoint to demo  [default: models/gtpt_t_coco_sample.pth]")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Person detector ONNX  [default: $GTPT_DETECTOR, else ../shared's RTMDet-nano if present]")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of the pose backends.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object on stdout (the stages' lines go to stderr).")
def demo_cmd(out_dir: Path, checkpoint: Path | None, detector: Path | None, threads: int | None,
             as_json: bool) -> None:
    """The whole pipeline on the bundled sample: export -> run detector + pose -> validate ONNX vs PyTorch.

    \b
    Uses the sample checkpoint (models/gtpt_t_coco_sample.pth, a pipeline-test model trained on a few COCO
    images, not a general pose model) and the CC BY / public-domain images in demo/ (see NOTICE). INT8 is
    calibrated on other persons than it is validated on: COCO train2017 persons of ../shared (or
    $GTPT_CALIB_ANN + $GTPT_CALIB_IMAGES). Exit code 1 if an image failed or a file misses its precision's budget
    (FP32: dAP = 0).
    Examples:
      gtpt-deploy demo
      gtpt-deploy demo --out /tmp/demo --detector rtmdet_nano_person/end2end.onnx --json | jq .validation
    """
    from ..demo import run_demo

    result = run_demo(out_dir, checkpoint, detector, threads=threads,
                      say=(lambda line: click.echo(line, err=True)) if as_json else click.echo)
    if as_json:
        echo_json(result.to_dict())
    if not (result.run.ok and result.validation.passed):
        sys.exit(1)
