"""How sure ``calibrate`` is of its own ΔAP: a seeded, paired bootstrap of COCO AP over the measured persons.

A ΔAP measured on a few dozen persons is noisy: on the bundled files a held-out third (29 persons) said +0.0064
where 137 other persons said -0.0069. So the budget is judged on a one-sided lower confidence bound of ΔAP, not on
the point estimate alone:

    bound = ΔAP - margin,   margin = max(0, ΔAP* - q_(1-c)(ΔAP* of the resamples))

ΔAP is the exact COCO ΔAP of the whole measured set (``evalset.score_crops``). ΔAP* is the same statistic recomputed
on resampled persons without pycocotools (thousands of COCOeval runs would take minutes): with GT boxes every person
has exactly one prediction, scored by the official rescoring (mean keypoint confidence) and matched to its own
ground truth, so COCO AP is the 101-point interpolated precision over the predictions sorted by score, averaged over
the ten OKS thresholds, with a prediction a true positive where its OKS (as COCOeval computes it: labelled
keypoints, the GT area; COCO-WholeBody: all 133 points and their sigmas) reaches the threshold; a prediction the
official OKS-NMS drops leaves its person unfound (on the sharper sigma-2 checkpoint that single dropped person was
the whole INT8 loss of -0.0069 on 137 persons), one on an ignored region (crowd, a person without keypoints) counts
neither way. Cross-person matches are left out (rare with GT boxes; ``benchmarks/int8_noise.py`` prints this AP
next to COCOeval's: equal on the sigma-2 and whole-body checkpoints, 0.001 apart on the jittered one). INT8 moves
the confidences as well as the positions, so the ranking and the NMS too; all of it is resampled: persons are drawn
with replacement ``RESAMPLES`` times, the same draws for FP32 and INT8 (paired), from a generator seeded by the
caller.

Properties the search relies on: the margin grows as the measured set shrinks (about 1/sqrt(n)); it is exactly 0
when the INT8 predictions equal FP32's (every resample has ΔAP* = 0), so a recipe that approaches FP32 narrows it;
it never makes the bound higher than the point estimate. What it cannot do: see a loss that none of the measured
persons shows. With n persons one person lost moves AP by ~1/n, so fewer than 1/budget persons (200 for 0.005)
cannot rule out a loss larger than the budget by themselves, whatever the bound says (``calibrate`` says so).
No torch import.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..coco import is_wholebody, oks_nms, rescore
from ..errors import GtptError
from ..keypoints import WHOLEBODY_PARTS, dataset_for
from ..runtime.boxes import gt_person_boxes

#: One-sided confidence of the lower bound. Measured (``benchmarks/int8_noise.py``, 50 random 29- and 43-person
#: subsets of the 137-person val set, jittered checkpoint, both INT8 forms): the bound fell at or below the 137-person
#: ΔAP in 70-84% of subsets at 0.90, 84-86% at 0.95, 86-94% at 0.99 (the percentile bootstrap under-covers on a few
#: dozen persons), while the share of subsets whose bound met 0.005 (no search) fell from 30-46% to 24-36% to 16-22%.
#: 0.95 is the compromise: 0.99 buys a few points of coverage with a margin of ~0.017 AP that sends nearly every
#: small-set calibration into the search.
CONFIDENCE = 0.95
#: Bootstrap resamples. Measured on 29-person subsets of the val set (sigma-2 checkpoint, TensorRT form), the bound's
#: spread over 10 seeds is 0.0003-0.0004 AP with 500, 0.0001-0.0002 with 2000 (under 4% of the 0.005 budget), and
#: 0.0001 with 5000 at 2.5x the cost: ~2 s per judged recipe for 29 persons on one core of this loaded machine.
RESAMPLES = 2000
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)        # COCOeval's
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_WB_FIELDS = tuple(field for _, _, field in WHOLEBODY_PARTS.values())   # body, foot, face, hands: 133 points


@dataclass(frozen=True)
class ApBound:
    """A measured ΔAP (0-1) and its one-sided lower confidence bound over ``persons`` persons."""

    delta_ap: float
    lower: float
    persons: int
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = 0

    @property
    def margin(self) -> float:
        return self.delta_ap - self.lower

    def within(self, max_ap_drop: float) -> bool:
        """Does the bound meet the budget ΔAP >= -max_ap_drop?"""
        return self.lower >= -max_ap_drop - 1e-12

    def to_dict(self) -> dict[str, Any]:
        return {"delta_AP": self.delta_ap, "lower_bound": self.lower, "margin": self.margin,
                "persons": self.persons, "confidence": self.confidence, "resamples": self.resamples,
                "seed": self.seed,
                "method": "paired bootstrap of COCO AP over persons (GT boxes: one prediction per person)"}

    def format(self) -> str:
        return (f"ΔAP {self.delta_ap:+.4f}, {self.confidence:.0%} lower bound {self.lower:+.4f} on "
                f"{self.persons} persons")


@dataclass(frozen=True)
class PersonRecords:
    """One model's predictions on the measured persons, as COCO AP sees them, float64 (N,) each: score (official
    rescoring), oks against each person's own ground truth, ignored_oks against the image's ignored annotations."""

    score: np.ndarray
    oks: np.ndarray
    ignored_oks: np.ndarray     # best OKS against an ignored annotation of its image (-1: none)


def resampled_ap(rec: PersonRecords, idx: np.ndarray, chunk: int = 1 << 21) -> np.ndarray:
    """COCO keypoint AP (0-1) of each resample: ``idx`` int (B, n) person indices -> float64 (B,). Interpolated
    precision at COCOeval's 101 recall thresholds, averaged over the ten OKS thresholds; ``chunk`` bounds the
    (resamples x thresholds x n) working arrays."""
    idx = np.atleast_2d(idx)
    b_all, n = idx.shape
    t = len(OKS_THRESHOLDS)
    out = np.empty(b_all)
    step = max(1, chunk // (t * n))
    for lo in range(0, b_all, step):
        part = idx[lo:lo + step]
        order = np.argsort(-rec.score[part], axis=1, kind="mergesort")            # COCOeval's sort
        hit = np.take_along_axis(rec.oks[part], order, 1)[:, None, :] >= OKS_THRESHOLDS[None, :, None]
        ign = np.take_along_axis(rec.ignored_oks[part], order, 1)[:, None, :] >= OKS_THRESHOLDS[None, :, None]
        tp = np.cumsum(hit, -1).reshape(-1, n)                                     # (rows, n)
        seen = tp + np.cumsum(~hit & ~ign, -1).reshape(-1, n)                      # true + false positives so far
        prec = np.where(seen > 0, tp / np.maximum(seen, 1), 0.0)  # an ignored one repeats the precision before it
        prec = np.maximum.accumulate(prec[:, ::-1], 1)[:, ::-1]                  # interpolated precision
        # first rank whose recall tp / n reaches each recall threshold: one searchsorted over rows laid end to end
        rows = np.arange(len(tp))[:, None]
        flat = (tp + rows * (n + 2)).ravel()
        pos = np.searchsorted(flat, (RECALL_THRESHOLDS[None] * n + rows * (n + 2)).ravel(), "left")
        pos = pos.reshape(len(tp), -1) - rows * n
        got = np.where(pos < n, np.take_along_axis(prec, np.minimum(pos, n - 1), 1), 0.0)
        out[lo:lo + step] = got.mean(1).reshape(len(part), t).mean(1)
    return out


def paired_bootstrap(base: PersonRecords, cand: PersonRecords, resamples: int = RESAMPLES,
                     seed: int = 0) -> tuple[float, np.ndarray]:
    """(ΔAP of the whole set by :func:`resampled_ap`, float64 (resamples,) ΔAP of each paired resample).

    Cost: two :func:`resampled_ap` over (resamples, n): 0.5-2 s for 29 persons, ~2 s for 512 (2000 resamples, one
    core of a loaded 2-core machine).
    """
    n = len(base.score)
    if n == 0 or len(cand.score) != n:
        raise GtptError(f"expected the same persons (N >= 1) for both models, got {n} and {len(cand.score)}")
    if all(np.array_equal(getattr(base, f), getattr(cand, f)) for f in ("score", "oks", "ignored_oks")):
        return 0.0, np.zeros(resamples)                  # identical predictions: every resample is exactly 0
    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    whole = np.arange(n)[None]
    return (float(resampled_ap(cand, whole)[0] - resampled_ap(base, whole)[0]),
            resampled_ap(cand, idx) - resampled_ap(base, idx))


def lower_bound(base: PersonRecords, cand: PersonRecords, delta_ap: float, confidence: float = CONFIDENCE,
                resamples: int = RESAMPLES, seed: int = 0) -> ApBound:
    """The one-sided lower confidence bound of ``delta_ap`` (the exact ΔAP of the whole set).

    Args:
        base, cand: FP32's and INT8's records on the same persons (same order).
        confidence: one-sided, in (0, 1); resamples: bootstrap draws; seed: their generator's seed.
    """
    point, deltas = paired_bootstrap(base, cand, resamples, seed)
    margin = max(0.0, point - float(np.quantile(deltas, 1.0 - confidence)))
    return ApBound(delta_ap, delta_ap - margin, len(base.score), confidence, resamples, seed)


def _gt_array(ann: dict, k: int) -> np.ndarray:
    """float64 (K, 3) x, y, v of an annotation (COCO-WholeBody: its five keypoint fields; zeros where absent)."""
    fields = ("keypoints",) if k == 17 else _WB_FIELDS
    sizes = (17,) if k == 17 else [stop - start for start, stop, _ in WHOLEBODY_PARTS.values()]
    parts = [np.asarray(ann.get(f) or [0.0] * 3 * n, np.float64) for f, n in zip(fields, sizes)]
    return np.concatenate(parts).reshape(-1, 3)


def _oks(kpts: np.ndarray, g: np.ndarray, bbox: Any, area: float, sigmas: np.ndarray) -> np.ndarray:
    """COCOeval's computeOks of predictions (N, K, 2+) against one GT (K, 3): over its labelled keypoints, or, for a
    GT without any (crowd regions, persons without keypoints), the distance outside its box grown by its size."""
    var = (2.0 * sigmas) ** 2
    vis = g[:, 2] > 0
    if vis.any():
        d2 = ((kpts[..., :2] - g[None, :, :2]) ** 2).sum(-1)
    else:
        x, y, w, h = (float(v) for v in bbox)
        dx = np.maximum(0, x - w - kpts[..., 0]) + np.maximum(0, kpts[..., 0] - (x + 2 * w))
        dy = np.maximum(0, y - h - kpts[..., 1]) + np.maximum(0, kpts[..., 1] - (y + 2 * h))
        d2 = dx ** 2 + dy ** 2
    e = np.exp(-d2 / var / (area + np.spacing(1)) / 2)
    return e[:, vis].mean(-1) if vis.any() else e.mean(-1)


class MeasuredPersons:
    """The measured persons of ``crops`` (``PersonCrops`` of ``gt``): their GT annotations, and per person the
    annotations of its image that COCOeval ignores (crowd regions, persons without keypoints) - a prediction that
    misses its own person but lands on one of those is neither a true nor a false positive.

    Raises:
        GtptError: a crop whose box is no usable person of ``gt`` (crops of another file).
    """

    def __init__(self, crops: Any, gt: dict) -> None:
        self.crops = crops
        self.persons = crop_annotations(crops, gt)
        mine = {id(p) for p in self.persons}
        wholebody = is_wholebody(gt)
        self.ignored: dict[Any, list[dict]] = defaultdict(list)
        for a in gt["annotations"]:
            if id(a) not in mine and a.get("category_id", 1) == 1 and (a.get("iscrowd") or not _labelled(a, wholebody)):
                self.ignored[a["image_id"]].append(a)

    def records(self, keypoints: np.ndarray) -> PersonRecords:
        """COCO AP's view of predictions keypoints float (N, K, 3) (image pixels, confidence), one per person."""
        kpts = np.asarray(keypoints, np.float64)
        k = kpts.shape[1]
        sigmas = np.asarray(dataset_for(k).sigmas, np.float64)
        oks = np.array([_oks(kpts[i:i + 1], _gt_array(p, k), p["bbox"], float(p.get("area", 0.0)), sigmas)[0]
                        for i, p in enumerate(self.persons)])
        ids = np.asarray(self.crops.image_ids).tolist()
        ign = np.array([max([_oks(kpts[i:i + 1], _gt_array(a, k), a["bbox"], float(a.get("area", 0.0)), sigmas)[0]
                             for a in self.ignored.get(im, [])], default=-1.0) for i, im in enumerate(ids)])
        score = rescore(kpts, np.ones(len(kpts)))
        # the NMS of coco.to_coco_results, on the same areas (float32 padded boxes), per image: a dropped
        # prediction leaves its person unfound (score -inf, OKS -1, always ignored)
        boxes = np.prod(np.asarray(self.crops.scales, np.float32) * np.float32(200.0), axis=1).astype(np.float64)
        arr = np.asarray(ids)
        kept = np.zeros(len(kpts), bool)
        for im in np.unique(arr):
            m = np.flatnonzero(arr == im)
            kept[m[oks_nms(kpts[m], score[m], boxes[m], sigmas)]] = True
        return PersonRecords(np.where(kept, score, -np.inf), np.where(kept, oks, -1.0), np.where(kept, ign, 2.0))


def _labelled(a: dict, wholebody: bool) -> bool:
    """Not ignored by COCOeval for having no keypoints: COCO ``num_keypoints > 0`` (pycocotools), COCO-WholeBody a
    visible point in any of the five fields (the all-133-points evaluation of ``eval.wholebody``)."""
    if not wholebody:
        return a.get("num_keypoints", np.count_nonzero(np.asarray(a.get("keypoints") or [0.0] * 3)[2::3] > 0)) > 0
    return any(np.count_nonzero(np.asarray(a.get(f) or [0.0] * 3)[2::3] > 0) for f in _WB_FIELDS)


def crop_annotations(crops: Any, gt: dict) -> list[dict]:
    """The GT annotation of each crop (``PersonCrops`` of ``gt``, matched by image id and sanitized box).

    Raises:
        GtptError: a crop whose box is no usable person of ``gt`` (crops of another file).
    """
    images = {im["id"]: im for im in gt["images"]}
    by_image: dict[Any, list[dict]] = defaultdict(list)
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    out: list[dict] = []
    used: set[int] = set()
    for image_id, box in zip(np.asarray(crops.image_ids).tolist(), np.asarray(crops.boxes)):
        im = images.get(image_id, {})
        for a in by_image.get(image_id, []):
            if id(a) in used:
                continue
            b = gt_person_boxes([a], int(im.get("width", 0)), int(im.get("height", 0)))
            if b and np.array_equal(b[0], box):
                used.add(id(a))
                out.append(a)
                break
        else:
            raise GtptError(f"expected every measured crop to be a person of its annotation file, found none for "
                            f"image {image_id} box {box.tolist()}; pass the crops of that file")
    return out
