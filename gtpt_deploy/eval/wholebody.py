"""COCO-WholeBody per-part keypoint AP with xtcocotools' semantics, on top of plain pycocotools.

The official GTPT whole-body evaluation (``lib/dataset/coco_wholebody.py``) runs xtcocotools
``COCOeval(gt, dt, 'keypoints_<part>', sigmas[part], use_area=True)`` for body, foot, face, lefthand, righthand and
wholebody. xtcocotools' wheels do not import with numpy 2, so this module reproduces its behaviour (checked against
xtcocotools 1.14.3, ``xtcocotools/cocoeval.py``) by feeding pycocotools' unchanged matching / accumulation code with
per-part copies of the annotations. What xtcocotools does differently from pycocotools' ``'keypoints'`` mode:

* the keypoints of a part are its own field (``foot_kpts`` ...); ``wholebody`` concatenates all five fields in the
  order body, foot, face, lefthand, righthand; OKS uses the sigmas of that slice;
* a ground truth is ignored when it has no labelled point (visibility > 0) *in that part* (pycocotools instead reads
  ``num_keypoints``), or is a crowd;
* a detection whose part confidences are all 0 is dropped;
* detections are ranked by ``<part>_score`` when the record has one (``wholebody_score`` for wholebody, plain
  ``score`` for body), else by ``score``;
* ``use_area=True``: OKS and the area ranges use the ground-truth ``area``;
* a ground-truth id of 0 still counts as a match (pycocotools treats id 0 as "unmatched"): the copies get ids 1..G.

Everything else (OKS formula, greedy matching, 101-point interpolated precision, maxDets 20, area ranges) is the code
both libraries share.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from ..keypoints import WHOLEBODY_PARTS, WHOLEBODY_SIGMAS

# part name -> (flat index range in the 133 points, results/annotation fields, score key)
_ALL_FIELDS = tuple(field for _, _, field in WHOLEBODY_PARTS.values())
PART_SPECS: dict[str, tuple[tuple[int, int], tuple[str, ...], str]] = {
    "body": ((0, 17), ("keypoints",), "score"),
    "foot": (WHOLEBODY_PARTS["foot"][:2], ("foot_kpts",), "foot_score"),
    "face": (WHOLEBODY_PARTS["face"][:2], ("face_kpts",), "face_score"),
    "lefthand": (WHOLEBODY_PARTS["lefthand"][:2], ("lefthand_kpts",), "lefthand_score"),
    "righthand": (WHOLEBODY_PARTS["righthand"][:2], ("righthand_kpts",), "righthand_score"),
    "wholebody": ((0, 133), _ALL_FIELDS, "wholebody_score"),
}
PART_NAMES = tuple(PART_SPECS)


def require_pycocotools() -> Any:
    """Import pycocotools lazily; returns the ``pycocotools`` package or raises MissingDependencyError."""
    try:
        import pycocotools.coco
        import pycocotools.cocoeval  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("pycocotools", "eval", "COCO keypoint evaluation") from e
    return pycocotools


def _part_array(record: dict[str, Any], fields: tuple[str, ...]) -> np.ndarray:
    """The flat (3 P,) float64 array x, y, v/score of one part of an annotation or result record."""
    if len(fields) == 1:
        return np.asarray(record[fields[0]], dtype=np.float64)
    return np.concatenate([np.asarray(record[f], dtype=np.float64) for f in fields])


@lru_cache(maxsize=1)
def _part_eval_class() -> type:
    """Build (once) the pycocotools COCOeval subclass; done lazily so importing this module needs no pycocotools."""
    require_pycocotools()
    from pycocotools.cocoeval import COCOeval

    class PartCOCOeval(COCOeval):
        """pycocotools ``COCOeval(gt, dt, 'keypoints')`` on one COCO-WholeBody part, xtcocotools semantics."""

        def __init__(self, coco_gt: Any, coco_dt: Any, part: str) -> None:
            super().__init__(coco_gt, coco_dt, "keypoints")
            (start, stop), self.part_fields, self.score_key = PART_SPECS[part]
            self.params.kpt_oks_sigmas = np.asarray(WHOLEBODY_SIGMAS[start:stop], dtype=np.float64)

        def _prepare(self) -> None:
            p = self.params
            gts = self.cocoGt.loadAnns(self.cocoGt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds))
            dts = self.cocoDt.loadAnns(self.cocoDt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds))
            self._gts = defaultdict(list)
            self._dts = defaultdict(list)
            for new_id, gt in enumerate(gts, start=1):
                kpts = _part_array(gt, self.part_fields)
                crowd = bool(gt.get("iscrowd", 0))
                g = {"id": new_id, "image_id": gt["image_id"], "category_id": gt["category_id"],
                     "keypoints": kpts, "bbox": gt["bbox"], "area": gt["area"], "iscrowd": int(crowd),
                     "ignore": crowd or np.count_nonzero(kpts[2::3] > 0) == 0}
                self._gts[g["image_id"], g["category_id"]].append(g)
            for dt in dts:
                kpts = _part_array(dt, self.part_fields)
                if np.count_nonzero(kpts[2::3] > 0) == 0:
                    continue
                d = dict(dt, keypoints=kpts, score=dt.get(self.score_key, dt["score"]))
                self._dts[d["image_id"], d["category_id"]].append(d)
            self.evalImgs = defaultdict(list)
            self.eval = {}

    return PartCOCOeval


def evaluate_parts(coco_gt: Any, coco_dt: Any, parts: tuple[str, ...] = PART_NAMES) -> dict[str, np.ndarray]:
    """Per-part keypoint AP of loaded pycocotools COCO objects (ground truth, results from ``loadRes``).

    Returns:
        part name -> float64 (10,) COCO keypoint stats: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl
        (-1 where the part has no ground truth in range, as pycocotools). pycocotools prints; callers silence it.
    """
    cls = _part_eval_class()
    out = {}
    for part in parts:
        ev = cls(coco_gt, coco_dt, part)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        out[part] = np.asarray(ev.stats, dtype=np.float64)
    return out
