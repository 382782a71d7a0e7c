"""The ``gtpt-deploy`` command line. Each command parses options and calls one library function; no logic here.

User errors (:class:`GtptError`) print one line and exit non-zero without a traceback; bugs keep their traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import GtptError

# torch / OpenMP spin-wait by default; on a machine whose cores are busy (CI, shared servers) that made a GTPT-T
# forward take seconds instead of ~40 ms. Passive waiting costs little on an idle machine. Set before any command
# imports torch; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


@main.command("run")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
def run_cmd(artifact: Path, inputs: tuple[Path, ...], detector: Path | None, boxes_json: Path | None,
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
    """
    from .predictor import run_images

    s = run_images(artifact, inputs, out_dir, boxes=boxes_json, detector=detector, flip=not no_flip, batch=batch,
                   device=device, box_thr=box_thr, kpt_thr=kpt_thr, draw=not no_draw, force=force, progress=True,
                   threads=threads)
    for f in s.failures:
        click.echo(f"failed: {f.error}", err=True)
    click.echo("\n".join(s.format_lines(out_dir)))
    if not s.ok:
        sys.exit(1)


@main.command("validate")
@click.argument("baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("candidates", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ann", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO / COCO-WholeBody keypoint annotation file.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with the annotation file's images.")
@click.option("--boxes", default=None, metavar="gt|DETS.json",
              help="Ground-truth boxes (default) or a COCO detection results JSON.")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Person detector ONNX instead of --boxes (run once; every artifact gets the same boxes).")
@click.option("--box-thr", type=float, default=None, show_default="0.3 detector, 0.0 JSON",
              help="Minimum person box score.")
@click.option("--max-ap-drop", type=float, default=0.5, show_default=True,
              help="Largest allowed AP drop of a candidate, in AP points (0-100 scale).")
@click.option("--no-flip", is_flag=True, help="Skip the flip test.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Crops per call (dynamic-batch artifacts).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} (baseline first) on stdout.')
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads of the pose backend (default: the backend's; 1 helps on a busy machine).")
def validate_cmd(baseline: Path, candidates: tuple[Path, ...], ann: Path, images: Path, boxes: str | None,
                 detector: Path | None, box_thr: float | None, max_ap_drop: float, no_flip: bool, batch: int | None,
                 device: str, as_json: bool, threads: int | None) -> None:
    """Prove CANDIDATE artifacts match the BASELINE: COCO AP of each on identical crops, and their agreement.

    \b
    One row per artifact: AP, AP50, AP75, AR (points), dAP vs the baseline, argmax agreement (fraction of
    keypoints with the same SimCC bins), mean / max keypoint displacement vs the baseline (pixels).
    Exit code 1 when a candidate's AP drop exceeds --max-ap-drop.
    Examples:
      gtpt-deploy validate models/gtpt_t_coco.pth export/gtpt_t_coco_b1.onnx --ann val.json --images val2017/
      gtpt-deploy validate gtpt_t.pth gtpt_t_b1.onnx gtpt_t_b1_fp16.onnx --ann val.json --images val2017/ \\
          --boxes COCO_val2017_detections_AP_H_56_person.json --max-ap-drop 0.1 --json
    """
    from .validate import validate

    report = validate(baseline, candidates, ann, images, boxes=boxes, detector=detector, flip=not no_flip,
                      batch=batch, device=device, box_thr=box_thr, max_ap_drop=max_ap_drop, threads=threads,
                      progress=True)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(report.format_table())
    if not report.passed:
        sys.exit(1)


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
def export_cmd(checkpoint: Path, model: str | None, output: Path | None, batch: int | None, dynamic_batch: bool,
               opset: int, no_simplify: bool, samples: Path | None, force: bool) -> None:
    """Export a checkpoint to a simplified, self-describing ONNX with static top-k, verified against PyTorch.

    \b
    The file is kept only if onnx.checker passes and ONNX Runtime matches PyTorch on person crops and random inputs
    (max |logit diff| <= 1e-4, 100% argmax agreement); the report is printed and written next to it (.json).
    Examples:
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth
      gtpt-deploy export --checkpoint models/gtpt_b_wholebody.pth --batch 8 --output export/b_wb_b8.onnx
      gtpt-deploy export --checkpoint models/gtpt_t_coco.pth --dynamic-batch --force
    """
    from .export import export_onnx

    result = export_onnx(checkpoint, model=model, output=output, batch=batch, dynamic_batch=dynamic_batch,
                         opset=opset, simplify=not no_simplify, force=force, samples=samples)
    click.echo(result.format_report())


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
    from .demo import run_demo

    result = run_demo(out_dir, checkpoint, detector, threads=threads, say=click.echo)
    if not (result.run.ok and result.validation.passed):
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
