"""The end-to-end demo on the embedded defaults (the README's main command).

export the sample checkpoint to ONNX, convert it to FP16 and calibrate INT8 on the bundled annotations -> run person
detector + INT8 pose on the bundled images (annotated copies and results.json) -> validate FP32, FP16 and INT8 ONNX
against PyTorch on the bundled annotated images (one AP table, each row with its precision's budget).
The demo images and annotations are package data (:mod:`.bundled`, see NOTICE); the sample checkpoint is the
checkout's ``models/gtpt_t_coco_sample.pth``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .artifacts import MODELS_DIR
from .bundled import DEMO_DIR
from .errors import GtptError

# The sample checkpoint sits in the checkout's models/ data folder, not in the package (5 MB of weights that only
# the demo uses): like every data folder it is found relative to the current folder (the README runs the demo from
# the checkout); elsewhere pass --checkpoint.
SAMPLE_CHECKPOINT = MODELS_DIR / "gtpt_t_coco_sample.pth"


def _shared() -> Path:
    """The shared test data: ``$GTPT_SHARED``, else ``../shared`` beside the current folder (CI, development)."""
    return Path(os.environ.get("GTPT_SHARED", "../shared"))


#: What the sample checkpoint is and is not, in one line (the demo says it first).
SAMPLE_NOTE = ("sample model: GTPT-T memorized by tools/train_sample.py on ~220 persons of a few COCO images, with "
               "jittered and detector boxes so it holds on the detector's boxes of these images (AP 0.62); it shows "
               "the pipeline and is NOT a general pose model: use the official GTPT checkpoints for other images")


@dataclass(frozen=True)
class DemoResult:
    export: Any          # export.ExportResult
    run: Any             # runtime.run.RunSummary
    validation: Any      # validate.ValidationReport
    detector: Path | None
    out_dir: Path
    calibration: Any = None    # calib.CalibrationResult
    calib_ann: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The demo as one JSON object: files, the INT8 measurement, the run and the validate rows."""
        return {"out_dir": str(self.out_dir), "detector": None if self.detector is None else str(self.detector),
                "onnx": str(self.export.onnx_path), "calibration_ann": None if self.calib_ann is None else str(
                    self.calib_ann), "int8": None if self.calibration is None else self.calibration.to_dict(),
                "run": self.run.to_dict(),
                "validation": self.validation.to_dict(), "passed": bool(self.run.ok and self.validation.passed)}


def default_detector() -> Path | None:
    """``$GTPT_DETECTOR`` if set, else the shared RTMDet-nano person detector if it is there, else None."""
    env = os.environ.get("GTPT_DETECTOR")
    if env:
        return Path(env)
    found = _shared() / "data" / "models" / "rtmdet_nano_person" / "end2end.onnx"   # RTMDet-nano person detector
    return found if found.is_file() else None


def default_calibration() -> tuple[Path, Path] | None:
    """INT8 calibration data the demo does not validate on: ``$GTPT_CALIB_ANN`` + ``$GTPT_CALIB_IMAGES``, else the
    shared ``coco_train2017_mini`` (``$GTPT_SHARED``, else ../shared beside the current folder), else None."""
    ann, images = os.environ.get("GTPT_CALIB_ANN"), os.environ.get("GTPT_CALIB_IMAGES")
    if ann and images:
        return Path(ann), Path(images)
    calib = _shared() / "data" / "coco_train2017_mini"   # COCO train2017 persons: not what the demo validates on
    ann_file = calib / "person_keypoints_train2017_subset.json"
    return (ann_file, calib / "images") if ann_file.is_file() and (calib / "images").is_dir() else None


def run_demo(out_dir: str | os.PathLike[str] = "runs/demo", checkpoint: str | os.PathLike[str] | None = None,
             detector: str | os.PathLike[str] | None = None, assets: str | os.PathLike[str] | None = None,
             threads: int | None = None, say: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Export -> run -> validate into ``out_dir`` (overwriting earlier demo outputs there).

    ``detector`` defaults to :func:`default_detector`; without one, every image is one person box.
    ``say`` receives a line per stage (the CLI passes ``click.echo``).
    """
    from .engines.chain import CalibSpec, ExportSpec, export_chain
    from .runtime.options import BoxSpec, OutputSpec, RunnerSpec
    from .runtime.run import run_inputs
    from .eval.validate import validate

    out = Path(out_dir)
    assets_dir = Path(assets) if assets is not None else DEMO_DIR
    images, ann = assets_dir / "images", assets_dir / "person_keypoints_demo.json"
    ckpt = Path(checkpoint) if checkpoint is not None else SAMPLE_CHECKPOINT
    for needed in (images, ann, ckpt):
        if not needed.exists():
            hint = ("pass --checkpoint, or run the demo from a checkout of gtpt-deploy (its models/ folder holds the "
                    "sample)") if needed == ckpt else "reinstall gtpt-deploy (the demo images are package data)"
            raise GtptError(f"demo input {needed} is missing; {hint}")
    det = Path(detector) if detector is not None else default_detector()
    calib = default_calibration()
    if checkpoint is None:
        say(SAMPLE_NOTE)
    cal_ann, cal_images = calib if calib is not None else (ann, images)
    if calib is None:   # the INT8 row then measures memory of these persons, not calibration: say so
        say(f"warning: no calibration data apart from {ann.name} (set GTPT_CALIB_ANN and GTPT_CALIB_IMAGES, or keep "
            f"../shared beside the checkout): INT8 is calibrated on persons it is then validated on")

    say(f"[1/3] export {ckpt} -> ONNX (FP32), FP16, INT8 (calibrated on {cal_ann.name})")
    # Measured on persons held out of the calibration file but not budgeted there (measure_only): a few dozen
    # persons cannot resolve a 0.005 AP budget; step 3 validates the INT8 file against PyTorch on the demo's persons.
    chain = export_chain(ckpt, ["fp16", "int8"], ExportSpec(output=out / f"{ckpt.stem}_b1.onnx", batch=1),
                         CalibSpec(cal_ann, cal_images, None, threads=threads, measure_only=True), force=True,
                         report=say, on_result=lambda stage: say(stage.format_report()))
    exported, fp16, int8 = chain.export, chain.reduced["fp16"], chain.reduced["int8"]

    say(f"[2/3] run {int8.output.name} on {images} "
        + (f"with detector {det}" if det else "(no detector found: one box per image; pass --detector)"))
    summary = run_inputs(int8.output, [images], out / "run", RunnerSpec(threads=threads), BoxSpec(detector=det),
                         OutputSpec(force=True), progress=True)
    say("\n".join(summary.format_lines(out / "run")))

    say(f"[3/3] validate FP32 / FP16 / INT8 ONNX vs PyTorch on {ann.name} (GT boxes, flip test)")
    report = validate(ckpt, [exported.onnx_path, fp16.output, int8.output], ann, images, boxes="gt",
                      threads=threads, progress=True)
    say(report.format_table())
    return DemoResult(exported, summary, report, det, out, int8, cal_ann)
