"""COCO / COCO-WholeBody keypoint AP (official GTPT protocol, spec §5 step 14). AP values are 0-1.

numpy only; pycocotools is imported when a metric is computed (extra ``eval``). COCO uses plain pycocotools
``COCOeval(gt, dt, 'keypoints')``; COCO-WholeBody (detected from ``foot_kpts`` in the annotations) uses
:mod:`gtpt_deploy.eval.wholebody`, which reproduces xtcocotools' per-part numbers without depending on it.
File reading and checking live in :mod:`gtpt_deploy.coco`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..coco import AnnotationsLike, ResultsLike, is_wholebody, load_annotations, load_results
from .wholebody import PART_NAMES, evaluate_parts, require_pycocotools

log = logging.getLogger(__name__)

HEADLINE = ("AP", "AP50", "AP75", "APm", "APl", "AR")

@dataclass(frozen=True)
class Metrics:
    """The 10 COCO keypoint stats (OKS thresholds .50:.95, maxDets 20); -1 where no ground truth is in range."""

    AP: float
    AP50: float
    AP75: float
    APm: float
    APl: float
    AR: float
    AR50: float
    AR75: float
    ARm: float
    ARl: float

    @classmethod
    def from_stats(cls, stats: np.ndarray) -> "Metrics":
        """From pycocotools ``COCOeval.stats`` (10,) in its order."""
        return cls(*(float(v) for v in np.asarray(stats)[:10]))

    def to_dict(self, full: bool = False) -> dict[str, float]:
        """The headline AP, AP50, AP75, APm, APl, AR (all 10 stats with ``full``)."""
        d = asdict(self)
        return d if full else {k: d[k] for k in HEADLINE}

    def format_table(self) -> str:
        """One header line and one value line (3 decimals, as the COCO summary)."""
        names = [f.name for f in fields(self)]
        return "  ".join(f"{n:>6}" for n in names) + "\n" + "  ".join(f"{getattr(self, n):6.3f}" for n in names)


@dataclass(frozen=True)
class WholeBodyMetrics:
    """COCO-WholeBody per-part metrics; ``wholebody`` (all 133 points) is the headline."""

    body: Metrics
    foot: Metrics
    face: Metrics
    lefthand: Metrics
    righthand: Metrics
    wholebody: Metrics

    @property
    def AP(self) -> float:  # noqa: N802 - COCO naming
        return self.wholebody.AP

    def to_dict(self, full: bool = False) -> dict[str, dict[str, float]]:
        """``{part: metrics dict}`` for the six parts."""
        return {p: getattr(self, p).to_dict(full) for p in PART_NAMES}

    def format_table(self) -> str:
        """One line per part: AP, AP50, AP75, APm, APl, AR."""
        lines = [f"{'part':<10}" + "".join(f"{n:>7}" for n in HEADLINE)]
        for p in PART_NAMES:
            m = getattr(self, p).to_dict()
            lines.append(f"{p:<10}" + "".join(f"{m[n]:7.3f}" for n in HEADLINE))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- metrics

@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; keep it off stdout (``--json`` must stay clean), log it at DEBUG."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.debug(buf.getvalue().rstrip())


def _coco_objects(gt: dict, res: list[dict]) -> tuple[Any, Any]:
    require_pycocotools()
    from pycocotools.coco import COCO as CocoApi

    coco_gt = CocoApi()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    if res:
        coco_dt = coco_gt.loadRes(res)
    else:  # loadRes cannot take an empty list; no detections means AP 0
        coco_dt = CocoApi()
        coco_dt.dataset = {"images": list(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                           "annotations": []}
        coco_dt.createIndex()
    return coco_gt, coco_dt


def evaluate(ann: AnnotationsLike, results: ResultsLike) -> Metrics | WholeBodyMetrics:
    """COCO keypoint AP of a results file (no rescoring / NMS here: the records are scored as they are).

    Args:
        ann: COCO or COCO-WholeBody annotation file (or loaded dict); the layout is detected from ``foot_kpts``.
        results: COCO keypoint results file (or list of records), e.g. from :func:`to_coco_results`.

    Returns:
        :class:`Metrics` (pycocotools ``COCOeval(gt, dt, 'keypoints')``) for COCO, or :class:`WholeBodyMetrics`
        (xtcocotools per-part semantics, ``use_area=True``) for COCO-WholeBody.
    """
    gt = load_annotations(ann)
    res = load_results(results, gt)
    with _quiet():
        coco_gt, coco_dt = _coco_objects(gt, res)
        if is_wholebody(gt):
            stats = evaluate_parts(coco_gt, coco_dt)
            return WholeBodyMetrics(**{p: Metrics.from_stats(s) for p, s in stats.items()})
        from pycocotools.cocoeval import COCOeval

        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return Metrics.from_stats(ev.stats)
