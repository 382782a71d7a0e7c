"""Choosing where person boxes come from (user options -> a box source). Sits above ``boxes`` and ``detect`` so that
neither imports the other's module at run time."""

from __future__ import annotations

from pathlib import Path

from ..errors import GtptError
from .boxes import BoxSource, DetectionFileBoxes, GroundTruthBoxes, WholeImageBoxes
from .detect import PersonDetector


def box_source(boxes: str | Path | None = None, detector: str | Path | None = None, ann: str | Path | dict | None = None,
               score_thr: float | None = None, device: str = "cpu", provider: str | None = None,
               threads: int | None = None) -> BoxSource:
    """Pick the box source from user options (one of them at most).

    Args:
        boxes: ``"gt"`` (ground-truth boxes of ``ann``) or a COCO detection results JSON.
        detector: a person detector ONNX with ``dets`` / ``labels`` outputs.
        ann: COCO annotation file; needed for ``"gt"``, optional for a detection file (matches images by name).
        score_thr: minimum box score (default: 0.3 for a detector, 0.0 for a detection file, as the official code).
        device, provider, threads: where the detector runs (its own setting, independent of the pose artifact's).

    Returns:
        ground truth, detection file, detector, or the whole image when neither is given.
    """
    if boxes is not None and detector is not None:
        raise GtptError(f"pass either --boxes or --detector, got both ({boxes} and {detector})")
    if detector is not None:
        return PersonDetector(detector, score_thr=0.3 if score_thr is None else score_thr, device=device,
                              provider=provider, threads=threads)
    if boxes is not None and str(boxes) == "gt":
        if ann is None:
            raise GtptError("--boxes gt needs the annotation file (--ann) the boxes come from")
        return GroundTruthBoxes(ann)
    if boxes is not None:
        gt = GroundTruthBoxes(ann) if ann is not None else None
        return DetectionFileBoxes(boxes, 0.0 if score_thr is None else score_thr, gt)
    return WholeImageBoxes()
