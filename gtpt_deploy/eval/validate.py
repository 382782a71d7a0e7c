"""Validate artifacts against a baseline: COCO keypoint AP of each on identical crops, plus runner agreement.

Every artifact sees the same boxes (cached from one box source) and therefore bit-identical crops (cropping is a
deterministic numpy/cv2 function), so an AP difference can only come from the backend. AP is 0-1 everywhere (as
pycocotools and ``evaluate`` report it), and so is the budget: ``max_ap_drop=0.005`` is half an AP point.
Each artifact runs on its own device (a CPU baseline and a GPU candidate fit in one table). A candidate passes only
when it is also the baseline's model, derived from it by the hashes the files record or agreeing with it above the
floors of its precision (:mod:`lineage`, the one rule); a candidate that is the baseline itself is refused.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..runners import Runner, create_runner, provider_for
from ..runtime.boxes import BoxSource, CachedBoxes, GroundTruthBoxes
from .compare import compare_keypoints
from .lineage import floor_key, provenance, refuse_self_comparison, relation, same_model
from .tokens import with_kept_tokens
from .validation_report import TABLE_WIDTH, ValidationReport, ValidationRow  # noqa: F401 - importable from here too
from ..errors import GtptError, InputImageError
from ..coco import load_annotations, to_coco_results
from .metrics import evaluate
from ..runtime.predictor import ImageFailure, ImagePoses, Predictor
from ..runtime.core import stack_poses
from ..runtime.options import BoxSpec, RunnerSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_AP_DROP = 0.005  # 0-1 AP: the INT8 budget of design.md §6 (FP32 must be 0.0, FP16 within 0.001)
#: per-precision default budgets (0-1 AP) of a candidate, by the precision its runner computes in (``gtpt.precision``
#: of the file, or ``bf16`` for a float file run by OpenVINO at bf16); ``max_ap_drop`` overrides them. bf16 (8-bit
#: mantissa, argmax agreement 0.83-0.91 like INT8's 0.82-0.88, far from FP16's 0.97) gets INT8's budget: first set to
#: 0.003 from the two samples (-0.0010 COCO, -0.0016 whole-body), then measured on checkpoints trained elsewhere
#: (issue 17's tools/train_checkpoints.sh; benchmarks/checkpoint_table.py): -0.0002, +0.0089 and -0.0046 for a
#: sharper sigma-2 GTPT-T, over 0.003. bf16's AP drift is INT8-sized on sharp models, so its budget is INT8's.
DEFAULT_BUDGETS = {"fp32": 0.0, "fp16": 0.001, "bf16": DEFAULT_MAX_AP_DROP, "int8": DEFAULT_MAX_AP_DROP}


def _box_source(spec: BoxSpec, gt: dict) -> CachedBoxes:
    """The boxes of ``spec`` (ground truth of ``gt`` when it names none), cached so every artifact sees the same."""
    return CachedBoxes(replace(spec, boxes="gt" if spec.whole_images else spec.boxes, ann=gt).source())


def _box_label(spec: BoxSpec) -> str:
    """How the report names the boxes."""
    if spec.detector is not None:
        return f"detector {Path(spec.detector).name}"
    return "gt" if spec.boxes is None or str(spec.boxes) == "gt" else str(spec.boxes)


@dataclass
class ArtifactRun:
    """One artifact's pass over the images: its poses (image order), the kept tokens of its crops per stage
    (``Predictor.kept_tokens``; None where the backend cannot expose them), runner facts and its time per crop."""

    poses: list[ImagePoses]
    kept: list[np.ndarray] | None
    description: str
    meta: Any
    ms_per_crop: float
    precision: str


def predict_all(runner: Runner, paths: list[Path], source: BoxSource, ids: dict[Path, int], flip: bool = True,
                batch: int | None = None, progress: bool = False) -> ArtifactRun:
    """Pose every image of ``paths`` with an active ``runner`` through the Predictor; a static-batch artifact runs
    at its exported batch whatever ``batch`` says (one line on stderr). InputImageError for an unreadable image."""
    from tqdm import tqdm

    name = Path(runner.source).name
    static = runner.static_batch
    if batch is not None and static is not None and batch != static:
        log.warning("%s has a static batch of %d: it runs at batch %d (--batch %d applies to dynamic-batch "
                    "artifacts)", name, static, static, batch)
        batch = None
    predictor = Predictor(runner, flip=flip, batch=batch)
    out: list[ImagePoses] = []
    with tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr, desc=name) as bar:
        for result in predictor.predict(paths, source, ids):
            bar.update(1)
            if isinstance(result, ImageFailure):
                raise InputImageError(f"validation needs every annotated image: {result.error}")
            out.append(result)
    crops = sum(len(p.keypoints) for p in out) * (2 if flip else 1)
    ms = 1000.0 * float(sum(runner.times)) / max(crops, 1)
    return ArtifactRun(out, predictor.kept_tokens(), runner.description, runner.meta, ms, runner.run_precision)


def validate(baseline: str | Path, candidates: Sequence[str | Path], ann: str | Path, images: str | Path,
             boxes: str | Path | BoxSpec | None = None, *, runner: RunnerSpec | None = None,
             baseline_device: str | None = None, max_ap_drop: float | Mapping[str, float] | None = None,
             progress: bool = False, **options: Any) -> ValidationReport:
    """Run the baseline and each candidate on the images of ``ann`` with the same boxes; AP and agreement rows.

    Args:
        baseline: usually the ``.pth`` checkpoint; candidates: anything :func:`~gtpt_deploy.runners.create_runner`
            opens (``.onnx``, ``.engine``, ``.pth``, ``triton://``). Each is loaded once: its runner (kept tokens
            recorded in the same pass) serves the layout check and the run.
        ann: COCO / COCO-WholeBody keypoint annotation file; ``images``: folder with its images.
        boxes: a :class:`BoxSpec`, or ``"gt"`` (official GT-box protocol, the default) / a detection results JSON.
        runner: how the candidates run (:class:`RunnerSpec`: device, provider, threads; ``batch``: crops per call
            of the dynamic-batch artifacts, a static one runs at its own and says so on stderr; ``flip``: the flip
            test); baseline_device: the baseline's device (default: the runner's).
        max_ap_drop: largest allowed AP drop of a candidate, 0-1 AP (0.005 = half an AP point): one number for
            every candidate, or {precision: budget} over :data:`DEFAULT_BUDGETS` (None: those defaults).
        options: the same as keywords: ``device``, ``provider``, ``threads``, ``batch``, ``flip`` (RunnerSpec) and
            ``detector``, ``box_thr``, ``detector_device``, ``detector_threads`` (BoxSpec).

    Returns:
        :class:`ValidationReport` (baseline row first); ``passed`` is False when a candidate is over budget.
    """
    budgets = _budgets(max_ap_drop)
    box_spec, spec = _specs(boxes, runner, options)
    gt = load_annotations(ann)
    on_base = baseline_device if baseline_device is not None else spec.device
    if on_base == spec.device:
        # the same file on the same device certifies nothing; on two devices (a CPU baseline and a CUDA candidate
        # of one checkpoint) it is the device parity check gpu_check runs
        refuse_self_comparison(baseline, candidates)
    images = Path(images)
    if not images.is_dir():
        raise InputImageError(f"image folder {images} does not exist; pass --images DIR holding the images of {ann}")
    paths = [images / n for n in GroundTruthBoxes(gt).file_names]
    ids = {images / Path(im["file_name"]).name: int(im["id"]) for im in gt["images"] if "file_name" in im}
    source = _box_source(box_spec, gt)
    artifacts = [baseline, *candidates]
    runs: list[ArtifactRun] = []
    with ExitStack() as stack:
        runners = [stack.enter_context(create_runner(a, on_base if i == 0 else spec.device,
                                                     provider=provider_for(a, spec.provider), threads=spec.threads,
                                                     kept_tokens=True)) for i, a in enumerate(artifacts)]
        for artifact, r in zip(artifacts, runners):  # before any inference: a wrong pair fails in seconds
            check_layout(artifact, r.meta, gt, ann)
        for r in runners:
            runs.append(predict_all(r, paths, source, ids, spec.flip, spec.batch, progress))
            r.deactivate()                           # its memory back before the next one runs
    rows = _rows(artifacts, runs, gt, budgets)
    _check_baseline(rows)
    rows = _with_lineage(with_kept_tokens(rows, [run.kept for run in runs]), [run.meta for run in runs])
    persons = sum(len(p.keypoints) for p in runs[0].poses)
    largest = max(r.budget for r in rows)       # the report's one number: the widest budget any row had
    return ValidationReport(rows, largest, _box_label(box_spec), len(paths), persons)


def _budgets(max_ap_drop: float | Mapping[str, float] | None) -> dict[str, float]:
    """{precision: allowed AP drop}: :data:`DEFAULT_BUDGETS` with ``max_ap_drop`` applied; GtptError for a budget
    outside 0-1."""
    budgets = dict(DEFAULT_BUDGETS)
    if isinstance(max_ap_drop, Mapping):
        budgets.update(max_ap_drop)
    elif max_ap_drop is not None:
        budgets = {k: float(max_ap_drop) for k in budgets}
    for value in budgets.values():
        if not value >= 0 or value > 1:  # also refuses NaN
            raise GtptError(f"--max-ap-drop is a 0-1 AP difference (0.005 = half an AP point), got {value}")
    return budgets


def _specs(boxes: str | Path | BoxSpec | None, runner: RunnerSpec | None,
           options: dict[str, Any]) -> tuple[BoxSpec, RunnerSpec]:
    """The typed options of ``validate`` from its arguments and keyword ``options`` (TypeError for an unknown one,
    or for a keyword given beside the spec it belongs to)."""
    run_keys = {"device", "provider", "threads", "batch", "flip"}
    box_keys = {"detector", "box_thr", "detector_device", "detector_threads"}
    unknown = set(options) - run_keys - box_keys
    if unknown:
        raise TypeError(f"validate() got unexpected keyword arguments {', '.join(sorted(unknown))}")
    if (runner is not None and run_keys & set(options)) or (isinstance(boxes, BoxSpec) and box_keys & set(options)):
        raise TypeError("validate(): pass a RunnerSpec / BoxSpec or its fields as keywords, not both")
    if runner is None:
        runner = RunnerSpec(**{k: v for k, v in options.items() if k in run_keys})
    if not isinstance(boxes, BoxSpec):
        boxes = BoxSpec(boxes, **{k: v for k, v in options.items() if k in box_keys})
    return boxes, runner


def _rows(artifacts: list[str | Path], runs: list[ArtifactRun], gt: dict,
          budgets: dict[str, float]) -> list[ValidationRow]:
    """One row per artifact (baseline first): AP on ``gt`` and agreement with the baseline's poses."""
    rows: list[ValidationRow] = []
    base = runs[0]
    base_ap = 0.0
    for i, (artifact, run) in enumerate(zip(artifacts, runs)):
        k = run.meta.num_keypoints        # precision: the one it ran in (OpenVINO bf16 of an FP32 file: bf16)
        metrics = evaluate(gt, to_coco_results(*stack_poses(run.poses, k)))
        ap = float(metrics.AP)            # COCO-WholeBody: the all-133-points headline
        base_ap = ap if i == 0 else base_ap
        agree = compare_keypoints(*_kb(base.poses, k), *_kb(run.poses, k))
        delta = ap - base_ap
        budget = budgets.get(run.precision, DEFAULT_MAX_AP_DROP)
        rows.append(ValidationRow(str(artifact), run.description, metrics.to_dict(), ap, delta,
                                  agree.argmax_agreement, agree.mean_disp_px, agree.max_disp_px,
                                  i == 0 or delta >= -budget - 1e-12, run.ms_per_crop, run.precision,
                                  0.0 if i == 0 else budget))
        log.info("%s: AP %.4f (delta %+.4f)", Path(artifact).name, ap, delta)
    return rows


def _with_lineage(rows: list[ValidationRow], metas: list[Any]) -> list[ValidationRow]:
    """Rows with the one same-model rule applied to every candidate (lineage.py): derived or agreeing."""
    base = provenance(rows[0].artifact, metas[0])
    out = [replace(rows[0], reason="the baseline")]
    for row, meta in zip(rows[1:], metas[1:]):
        kind, why = relation(base, provenance(row.artifact, meta))
        ok, reason = same_model(kind, why, floor_key(meta, row.precision), row.argmax_agreement, row.kept_tokens)
        out.append(replace(row, lineage=kind, same_model=ok, reason=reason))
    return out


def check_layouts(artifacts: Sequence[str | Path], gt: dict, ann: str | Path | dict) -> None:
    """Every artifact's keypoint count must be the annotation file's (17 COCO, 133 COCO-WholeBody); checked from the
    artifacts' metadata, without running them. GtptError naming the first mismatch."""
    from ..runners import artifact_meta

    for artifact in artifacts:
        meta = artifact_meta(artifact)
        if meta is not None:
            check_layout(artifact, meta, gt, ann)


def check_layout(artifact: str | Path, meta: Any, gt: dict, ann: str | Path | dict) -> None:
    """GtptError unless ``meta`` (the artifact's ``ModelMeta``) predicts the keypoint layout of ``gt``."""
    from ..coco import is_wholebody

    want, layout = (133, "COCO-WholeBody") if is_wholebody(gt) else (17, "COCO")
    if meta.num_keypoints != want:
        raise GtptError(f"{artifact} predicts {meta.num_keypoints} keypoints ({meta.variant}) but "
                        f"{ann if not isinstance(ann, dict) else 'the annotations'} is {layout} ({want} "
                        f"keypoints); validate it on annotations of its own keypoint layout")


def _kb(poses: list[ImagePoses], k: int) -> tuple[np.ndarray, np.ndarray]:
    """All instances' (keypoints (N, K, 3), bins (N, K, 2)) in image order."""
    if not poses:
        return np.zeros((0, k, 3), np.float32), np.zeros((0, k, 2), np.int32)
    return np.concatenate([p.keypoints for p in poses]), np.concatenate([p.bins for p in poses])


def _check_baseline(rows: list[ValidationRow]) -> None:
    """A baseline whose AP is NaN, or that agrees with no candidate on a single argmax, cannot vouch for anything."""
    base = rows[0]
    if base.AP != base.AP:
        raise GtptError(f"baseline {Path(base.artifact).name} yields AP NaN (no scorable keypoints); check the "
                        f"annotation file and the baseline's outputs")
    if len(rows) > 1 and all(r.argmax_agreement == 0 for r in rows[1:]):
        raise GtptError(f"baseline {Path(base.artifact).name} agrees with no candidate on any keypoint (argmax "
                        f"agreement 0 with all {len(rows) - 1}); the baseline is broken or belongs to another model")
