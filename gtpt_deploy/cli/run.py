"""``gtpt-deploy run`` and ``demo``: artifacts on images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .main import ARTIFACT, main


@main.command("run")
@click.argument("artifact", type=ARTIFACT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Person detector ONNX with dets/labels outputs (e.g. RTMDet-nano person).")
@click.option("--boxes", "boxes_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO detection results JSON (category 1); images matched by the id in their file name.")
@click.option("--box-thr", type=float, default=None, show_default="0.3 detector, 0.0 JSON",
              help="Minimum person box score.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Folder for results.json and the annotated images.")
@click.option("--no-flip", is_flag=True, help="Skip the flip test (about 2x faster, slightly less accurate).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Crops per model call (dynamic-batch artifacts; a static batch is used as exported).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="cuda / tensorrt need onnxruntime-gpu (ONNX) or a CUDA torch (.pth; cuda only).")
@click.option("--kpt-thr", type=float, default=None, show_default="0.03",
              help="Draw keypoints above this confidence (GTPT's SimCC confidences peak near 0.1).")
@click.option("--no-draw", is_flag=True, help="Write results.json only.")
@click.option("--force", is_flag=True, help="Overwrite results.json / annotated images from an earlier run.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of the pose backend (default: the backend's; 1 helps on a busy machine).")
def run_cmd(artifact: Path | str, inputs: tuple[Path, ...], detector: Path | None, boxes_json: Path | None,
            box_thr: float | None, out_dir: Path, no_flip: bool, batch: int | None, device: str, kpt_thr: float,
            no_draw: bool, force: bool, threads: int | None) -> None:
    """Pose on images: ARTIFACT (.pth / .onnx) on INPUT images or folders -> results.json + drawn skeletons.

    \b
    Person boxes come from --detector, from --boxes, or (neither) the whole image is one person.
    results.json is in COCO keypoint results format (rescored, OKS NMS). Images that are missing or cannot be
    decoded are reported and skipped; the exit code is 1 if any input failed.
    Examples:
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano_person/end2end.onnx
      gtpt-deploy run models/gtpt_t_coco.pth val2017/ --boxes detections.json --out runs/val --no-draw
      gtpt-deploy run export/gtpt_t_coco_b1.onnx portrait.jpg --no-flip
      gtpt-deploy run triton://127.0.0.1:8000/gtpt_pose photos/ --detector rtmdet_nano_person/end2end.onnx
    """
    from ..runtime.run import run_images

    s = run_images(artifact, inputs, out_dir, boxes=boxes_json, detector=detector, flip=not no_flip, batch=batch,
                   device=device, box_thr=box_thr, kpt_thr=kpt_thr, draw=not no_draw, force=force, progress=True,
                   threads=threads)
    for f in s.failures:
        click.echo(f"failed: {f.error}", err=True)
    click.echo("\n".join(s.format_lines(out_dir)))
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
