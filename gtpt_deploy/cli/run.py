"""``gtpt-deploy run`` and ``demo``: artifacts on images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .main import echo_json, main


@main.command("run")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Person detector ONNX (mmdeploy end2end export with dets/labels outputs; its pipeline.json "
                   "beside it sets the input size and normalization).")
@click.option("--boxes", "boxes_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO detection results JSON (category 1); images matched by the id in their file name.")
@click.option("--box-thr", type=float, default=None, show_default="0.3 detector, 0.0 JSON",
              help="Minimum person box score.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="runs/run, runs/run2, ... (the first free one)",
              help="Folder for results and annotated images / videos.")
@click.option("--no-flip", is_flag=True, help="Skip the flip test (about 2x faster, slightly less accurate).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Crops per model call (dynamic-batch artifacts; a static batch is used as exported).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="cuda / tensorrt need onnxruntime-gpu (ONNX) or a CUDA torch (.pth; cuda only).")
@click.option("--kpt-thr", type=float, default=None, show_default="0.03",
              help="Draw keypoints above this confidence (GTPT's SimCC confidences peak near 0.1).")
@click.option("--no-draw", is_flag=True, help="Write results only (no annotated images or videos).")
@click.option("--show/--no-show", default=None,
              help="Live window for a camera  [default: when a display exists; else an annotated video is written]")
@click.option("--force", is_flag=True,
              help="Reuse an existing --out folder: the earlier run's files there are removed first (only those).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of the pose backend (default: the backend's; 1 helps on a busy machine).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (progress on stderr).")
def run_cmd(artifact: Path, inputs: tuple[str, ...], detector: Path | None, boxes_json: Path | None,
            box_thr: float | None, out_dir: Path | None, no_flip: bool, batch: int | None, device: str,
            kpt_thr: float, no_draw: bool, show: bool | None, force: bool, threads: int | None,
            as_json: bool) -> None:
    """Pose with ARTIFACT (.pth / .onnx) on INPUTS: images, folders, glob patterns, videos or a camera index.

    \b
    Images -> results.json (COCO keypoint results, rescored, OKS NMS) + annotated copies. Each video or camera ->
    <name>.json (persons per frame with frame index and timestamp) + annotated <name>.mp4; a camera shows a live
    window instead when a display exists (q / Esc closes it). Ctrl-C ends cleanly with the results so far written.
    Person boxes come from --detector, from --boxes, or (neither) the whole image is one person.
    Images that are missing or cannot be decoded are reported and skipped; the exit code is 1 if any failed.
    Examples:
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run export/gtpt_t_coco_b1.onnx clip.mp4 'shots/*.jpg' --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run export/gtpt_t_coco_b1.onnx 0 --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run models/gtpt_t_coco.pth val2017/ --boxes detections.json --out runs/val --no-draw
    """
    from ..runtime.run import run_inputs

    s = run_inputs(artifact, inputs, out_dir, boxes=boxes_json, detector=detector, flip=not no_flip, batch=batch,
                   device=device, box_thr=box_thr, kpt_thr=kpt_thr, draw=not no_draw, force=force, progress=True,
                   threads=threads, show=show)
    for f in s.failures:
        click.echo(f"failed: {f.error}", err=True)
    if as_json:
        echo_json({"out_dir": str(s.out_dir), "runner": s.runner, "images": s.images, "persons": s.persons,
                   "failed": [f.error for f in s.failures], "drawn": s.drawn, "interrupted": s.interrupted,
                   "results": str(s.results_path) if s.results_path else None, "seconds": round(s.seconds, 3),
                   "model_seconds": round(s.model_seconds, 3),
                   "streams": [{"name": v.name, "frames": v.frames, "persons": v.persons, "fps": round(v.fps, 2),
                                "results": str(v.results_path), "video": str(v.video_path) if v.video_path else None}
                               for v in s.streams]})
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
def demo_cmd(out_dir: Path, checkpoint: Path | None, detector: Path | None, threads: int | None) -> None:
    """The whole pipeline on the bundled sample: export -> run detector + pose -> validate ONNX vs PyTorch.

    \b
    Uses the memorized sample checkpoint (models/gtpt_t_coco_sample.pth, a pipeline-test model, not a general
    pose model) and the CC BY / public-domain images in demo/ (see NOTICE). Exit code 1 if an image failed or
    the ONNX file's AP differs from PyTorch's at all (FP32 budget: dAP = 0).
    Examples:
      gtpt-deploy demo
      gtpt-deploy demo --out /tmp/demo --detector rtmdet_nano_person/end2end.onnx
    """
    from ..demo import run_demo

    result = run_demo(out_dir, checkpoint, detector, threads=threads, say=click.echo)
    if not (result.run.ok and result.validation.passed):
        sys.exit(1)
