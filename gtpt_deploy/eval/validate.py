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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..runtime.boxes import CachedBoxes, GroundTruthBoxes
from ..runtime.person_boxes import box_source
from .compare import compare_keypoints
from .lineage import floor_key, provenance, refuse_self_comparison, relation, same_model
from .tokens import with_kept_tokens
from ..errors import GtptError, InputImageError
from ..coco import load_annotations, to_coco_results
from .metrics import evaluate
from ..runtime.predictor import ImageFailure, ImagePoses, Predictor
from ..runtime.run import stack_poses

log = logging.getLogger(__name__)

DEFAULT_MAX_AP_DROP = 0.005  # 0-1 AP: the INT8 budget of design.md §6 (FP32 must be 0.0, FP16 within 0.001)
#: per-precision default budgets (0-1 AP) of a candidate, by the precision its runner computes in (``gtpt.precision``
#: of the file, or ``bf16`` for a float file run by OpenVINO at bf16); ``max_ap_drop`` overrides them. bf16 (8-bit
#: mantissa, argmax agreement 0.83-0.91 like INT8's 0.82-0.88, far from FP16's 0.97) gets INT8's budget: first set to
#: 0.003 from the two samples (-0.0010 COCO, -0.0016 whole-body), then measured on checkpoints trained elsewhere
#: (issue 17's tools/train_checkpoints.sh; benchmarks/checkpoint_table.py): -0.0002, +0.0089 and -0.0046 for a
#: sharper sigma-2 GTPT-T, over 0.003. bf16's AP drift is INT8-sized on sharp models, so its budget is INT8's.
DEFAULT_BUDGETS = {"fp32": 0.0, "fp16": 0.001, "bf16": DEFAULT_MAX_AP_DROP, "int8": DEFAULT_MAX_AP_DROP}


@dataclass(frozen=True)
class ValidationRow:
    """One artifact's result. The baseline row has delta 0, agreement 1 and displacement 0."""

    artifact: str
    runner: str
    metrics: dict[str, Any]         # evaluate --json's keys: AP, AP50, AP75, APm, APl, AR (whole-body: per part)
    AP: float                       # the headline AP, 0-1 (whole-body: all 133 points)
    delta_AP: float                 # AP - baseline AP (0-1)
    argmax_agreement: float         # fraction of keypoints with the baseline's argmax bins in x and y
    mean_disp_px: float             # keypoint displacement vs the baseline, image pixels
    max_disp_px: float
    within_budget: bool             # delta_AP >= -max_ap_drop (always True for the baseline); see also ``passed``
    model_ms_per_crop: float        # mean runner time per crop (flip test: both passes)
    precision: str = "fp32"         # the precision it ran in: gtpt.precision, or bf16 (OpenVINO bf16 run)
    budget: float = 0.0             # the AP drop allowed for this row (0-1)
    kept_tokens: tuple[float, ...] | None = None   # per pruning stage: fraction of the baseline's kept tokens kept
    lineage: str = "baseline"       # derived / other / unknown: what the recorded hashes say (eval/lineage.py)
    same_model: bool = True         # derived from the baseline, or agreeing with it above its precision's floors
    reason: str = ""                # why same_model is what it is (one line)

    @property
    def passed(self) -> bool:
        """Within the AP budget and the baseline's model."""
        return self.within_budget and self.same_model

    def to_dict(self) -> dict[str, object]:
        """The row as JSON: ``evaluate --json``'s keys at the top level, then the agreement columns."""
        d = asdict(self)
        metrics = d.pop("metrics")
        d.pop("AP")
        return {"artifact": d.pop("artifact"), "runner": d.pop("runner"), **metrics, **d, "passed": self.passed}

    @property
    def headline(self) -> dict[str, float]:
        """AP, AP50, AP75, AR of the headline metrics (whole-body: the ``wholebody`` part)."""
        return self.metrics.get("wholebody", self.metrics)


@dataclass(frozen=True)
class ValidationReport:
    rows: list[ValidationRow]       # baseline first
    max_ap_drop: float
    boxes: str
    images: int
    persons: int

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict[str, object]:
        return {"rows": [r.to_dict() for r in self.rows], "max_ap_drop": self.max_ap_drop, "boxes": self.boxes,
                "images": self.images, "persons": self.persons, "passed": self.passed}

    def format_table(self) -> str:
        """The terminal table: one row per artifact (baseline first), then the verdict line."""
        names = [Path(r.artifact).name + (" (base)" if i == 0 else "" if r.passed else " FAIL")
                 for i, r in enumerate(self.rows)]
        wa, wr = max(len(n) for n in names + ["artifact"]), max(len(r.runner) for r in self.rows)
        header = (f"{'artifact':<{wa}}  {'runner':<{wr}} {'AP':>6} {'AP50':>6} {'AP75':>6} {'AR':>6} {'prec':>4} "
                  f"{'dAP':>7} {'budget':>6} {'argmax':>7} {'mean px':>8} {'max px':>8} {'model':>8}  "
                  f"kept tokens/stage")
        lines = ["AP columns: COCO keypoint AP, 0-1", header, "-" * len(header)]
        for name, r in zip(names, self.rows):
            h = r.headline
            tokens = " ".join(f"{t:.3f}" for t in r.kept_tokens) if r.kept_tokens is not None else "-"
            lines.append(f"{name:<{wa}}  {r.runner:<{wr}} {h['AP']:6.3f} {h['AP50']:6.3f} {h['AP75']:6.3f} "
                         f"{h['AR']:6.3f} {r.precision:>4} {r.delta_AP:+7.4f} {r.budget:6.4f} "
                         f"{r.argmax_agreement:7.4f} {r.mean_disp_px:8.3f} {r.max_disp_px:8.3f} {_model(r):>8}  "
                         f"{tokens}")
        lines += [f"{name}: {r.reason}" for name, r in zip(names, self.rows) if not r.same_model]
        if self.passed:
            verdict = "within the budget (AP drop <= the row's budget, 0-1 AP), every candidate the baseline's model"
        else:
            verdict = "OVER the budget (AP drop <= the row's budget, 0-1 AP) or not the baseline's model"
        lines.append(f"boxes: {self.boxes}; {self.images} images, {self.persons} persons; {verdict}")
        return "\n".join(lines)


def _model(row: ValidationRow) -> str:
    """The table's model column: how a row is the baseline's model (or NOT)."""
    if row.lineage == "baseline":
        return "base"
    return ("derived" if row.lineage == "derived" else "agrees") if row.same_model else "NOT"


def _predict_all(artifact: str | Path, paths: list[Path], source: CachedBoxes, ids: dict[Path, int], flip: bool,
                 batch: int | None, device: str | None, provider: str | None, threads: int | None,
                 progress: bool) -> tuple[list[ImagePoses], str, Any, float, str]:
    from tqdm import tqdm

    from ..runners import create_runner

    out: list[ImagePoses] = []
    with create_runner(artifact, device=device, provider=provider if Path(artifact).suffix == ".onnx" else None,
                       threads=threads) as runner:
        predictor = Predictor(runner, flip=flip, batch=batch)
        bar = tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr, desc=Path(artifact).name)
        for result in predictor.predict(paths, source, ids):
            bar.update(1)
            if isinstance(result, ImageFailure):
                bar.close()
                raise InputImageError(f"validation needs every annotated image: {result.error}")
            out.append(result)
        bar.close()
        crops = sum(len(p.keypoints) for p in out) * (2 if flip else 1)
        ms = 1000.0 * float(sum(runner.times)) / max(crops, 1)
        return out, runner.description, runner.meta, ms, runner.run_precision


def validate(baseline: str | Path, candidates: Sequence[str | Path], ann: str | Path, images: str | Path,
             boxes: str | Path | None = None, detector: str | Path | None = None, flip: bool = True,
             batch: int | None = None, device: str | None = None, box_thr: float | None = None,
             max_ap_drop: float | Mapping[str, float] | None = None, threads: int | None = None,
             progress: bool = False, provider: str | None = None, baseline_device: str | None = None,
             detector_device: str = "cpu", detector_threads: int | None = None) -> ValidationReport:
    """Run the baseline and each candidate on the images of ``ann`` with the same boxes; AP and agreement rows.

    Args:
        baseline: usually the ``.pth`` checkpoint; candidates: anything :func:`~gtpt_deploy.runners.create_runner` opens
            (``.onnx``, ``.engine``, ``.pth``, ``triton://``).
        ann: COCO / COCO-WholeBody keypoint annotation file; ``images``: folder with its images.
        boxes: ``"gt"`` (official GT-box protocol; the default without ``detector``) or a COCO detection results
            JSON; or pass ``detector`` (an ONNX person detector, run once per image).
        batch: crops per call for dynamic-batch artifacts (static ones use their own).
        max_ap_drop: largest allowed AP drop of a candidate, 0-1 AP (0.005 = half an AP point): one number for
            every candidate, or {precision: budget} over :data:`DEFAULT_BUDGETS` (None: those defaults).
        device, provider: where the candidates run (``cpu`` / ``cuda[:N]``; None: each artifact's default, ``cuda``
            for an engine, ``cpu`` otherwise; ONNX Runtime provider for .onnx); baseline_device: the baseline's
            device (default: ``device``).
        threads: CPU threads of each backend (None: its default).
        detector_device, detector_threads: where the person detector runs (its own setting).

    Returns:
        :class:`ValidationReport` (baseline row first); ``passed`` is False when a candidate is over budget.
    """
    budgets = dict(DEFAULT_BUDGETS)
    if isinstance(max_ap_drop, Mapping):
        budgets.update(max_ap_drop)
    elif max_ap_drop is not None:
        budgets = {k: float(max_ap_drop) for k in budgets}
    for value in budgets.values():
        if not value >= 0 or value > 1:  # also refuses NaN
            raise GtptError(f"--max-ap-drop is a 0-1 AP difference (0.005 = half an AP point), got {value}")
    gt = load_annotations(ann)
    check_layouts([baseline, *candidates], gt, ann)    # before any inference: a wrong pair fails in seconds
    if (baseline_device if baseline_device is not None else device) == device:
        # the same file on the same device certifies nothing; on two devices (a CPU baseline and a CUDA candidate
        # of one checkpoint) it is the device parity check gpu_check runs
        refuse_self_comparison(baseline, candidates)
    images = Path(images)
    if not images.is_dir():
        raise InputImageError(f"image folder {images} does not exist; pass --images DIR holding the images of {ann}")
    names = GroundTruthBoxes(gt).file_names
    paths = [images / n for n in names]
    ids = {images / Path(im["file_name"]).name: int(im["id"]) for im in gt["images"] if "file_name" in im}
    if boxes is None and detector is None:
        boxes = "gt"
    source = CachedBoxes(box_source(boxes=boxes, detector=detector, ann=gt, score_thr=box_thr,
                                    device=detector_device, threads=detector_threads))
    label = f"detector {Path(detector).name}" if detector is not None else ("gt" if str(boxes) == "gt" else str(boxes))

    rows: list[ValidationRow] = []
    base_poses: list[ImagePoses] = []
    base_ap = 0.0
    metas = []
    for i, artifact in enumerate([baseline, *candidates]):
        on = (baseline_device or device) if i == 0 else device
        poses, description, meta, ms, precision = _predict_all(artifact, paths, source, ids, flip, batch, on, provider,
                                                               threads, progress)
        k = meta.num_keypoints           # precision: the one it ran in (OpenVINO bf16 of an FP32 file: bf16)
        metas.append(meta)
        ids_, kpts, scores, centers, scales = stack_poses(poses, k)
        metrics = evaluate(gt, to_coco_results(ids_, kpts, scores, centers, scales))
        ap = float(metrics.AP)  # COCO-WholeBody: the all-133-points headline
        if i == 0:
            base_poses, base_ap = poses, ap
        agree = compare_keypoints(*_kb(base_poses, k), *_kb(poses, k))
        delta = ap - base_ap
        budget = budgets.get(precision, DEFAULT_MAX_AP_DROP)
        rows.append(ValidationRow(str(artifact), description, metrics.to_dict(), ap, delta, agree.argmax_agreement,
                                  agree.mean_disp_px, agree.max_disp_px, i == 0 or delta >= -budget - 1e-12,
                                  ms, precision, 0.0 if i == 0 else budget))
        log.info("%s: AP %.4f (delta %+.4f)", Path(artifact).name, ap, delta)
    _check_baseline(rows)
    onnx_provider = [provider if Path(a).suffix == ".onnx" else None for a in [baseline, *candidates]]
    rows = with_kept_tokens(rows, gt, images, threads, onnx_provider)
    rows = _with_lineage(rows, metas)
    persons = sum(len(p.keypoints) for p in base_poses)
    largest = max(r.budget for r in rows)       # the report's one number: the widest budget any row had
    return ValidationReport(rows, largest, label, len(paths), persons)


def _with_lineage(rows: list[ValidationRow], metas: list[Any]) -> list[ValidationRow]:
    """Rows with the one same-model rule applied to every candidate (lineage.py): derived or agreeing."""
    from dataclasses import replace

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
    from ..coco import is_wholebody
    from ..runners import artifact_meta

    want, layout = (133, "COCO-WholeBody") if is_wholebody(gt) else (17, "COCO")
    for artifact in artifacts:
        meta = artifact_meta(artifact)
        if meta is not None and meta.num_keypoints != want:
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
