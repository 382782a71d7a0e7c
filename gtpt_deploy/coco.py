"""COCO / COCO-WholeBody keypoint files: read and check annotations and results, and turn predictions into
rescored, OKS-NMS'd results records (official GTPT protocol, spec §5 steps 11-14).

The bottom layer below both the runtime (ground-truth boxes, ``run``'s results.json) and the evaluator.
numpy + json only.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import AnnotationError
from .keypoints import COCO, WHOLEBODY, WHOLEBODY_PARTS, DatasetInfo, dataset_for

IN_VIS_THRE = 0.01
OKS_THRE = 0.9

AnnotationsLike = Union[str, Path, dict]
ResultsLike = Union[str, Path, list]

# ----------------------------------------------------------------------------------------------- loading / checks

def read_json(path: str | Path, what: str) -> Any:
    """Load a JSON file; AnnotationError (one line) when it is missing or not valid JSON."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{p}: expected an existing {what} file, got no such file; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{p}: expected a {what} in JSON, got invalid JSON ({e}); "
                              f"pass the .json file itself") from None


def is_number(v: Any) -> bool:
    """A finite JSON number. Booleans are not numbers here, and NaN / Infinity (which Python's json reads) are not
    scores or coordinates: pycocotools would score them silently and wrongly (all-NaN keypoints gave AP 1.0)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_bbox(v: Any) -> bool:
    """A COCO box: a list of 4 finite numbers [x, y, width, height]."""
    return isinstance(v, list) and len(v) == 4 and all(map(is_number, v))


def _bad_value(v: Any) -> str:
    return "null" if v is None else repr(v) if isinstance(v, (bool, float, int)) else f"a {type(v).__name__}"


def _check_number(rec: dict, field: str, where: str) -> None:
    if not is_number(rec[field]):
        raise AnnotationError(f"{where}: expected '{field}' as a finite number, got {_bad_value(rec[field])}; "
                              f"repair the file (NaN / Infinity / null / strings are not scores or sizes)")


def _check_kpts(rec: dict, field: str, n: int, where: str) -> None:
    v = rec.get(field)
    if not isinstance(v, list) or len(v) != 3 * n:
        got = f"length {len(v)}" if isinstance(v, list) else ("no such field" if v is None else type(v).__name__)
        raise AnnotationError(f"{where}: expected '{field}' as a flat list of {3 * n} numbers ({n} points x, y, v), "
                              f"got {got}; check that the file matches the dataset's keypoint layout")
    bad = next((i for i, x in enumerate(v) if not is_number(x)), None)
    if bad is not None:
        raise AnnotationError(f"{where}: expected '{field}' to hold finite numbers, got {_bad_value(v[bad])} at "
                              f"position {bad} (point {bad // 3}); repair the file - the model or tool that wrote it "
                              f"produced invalid values")


def is_wholebody(gt: dict) -> bool:
    """True for COCO-WholeBody annotations (records carry ``foot_kpts``)."""
    return any("foot_kpts" in a for a in gt.get("annotations", []))


def _check_unique_image_ids(images: list[dict], where: str) -> None:
    """Image ids are keys: a repeated id merges two images' persons in pycocotools (a wrong AP, no error) and
    drops persons from the GT-box crops, so it is refused."""
    seen: set = set()
    for im in images:
        i = im["id"]
        if isinstance(i, bool) or not isinstance(i, (int, str)):
            raise AnnotationError(f"{where}: expected every image 'id' to be an integer, got {_bad_value(i)}; "
                                  f"repair the file")
        if i in seen:
            raise AnnotationError(f"{where}: expected unique image ids, got image id {i} on two 'images' records "
                                  f"({im.get('file_name', 'no file_name')} is the second); give each image its own "
                                  f"id in the file")
        seen.add(i)


def load_annotations(ann: AnnotationsLike) -> dict:
    """Read and check a COCO / COCO-WholeBody keypoint annotation file (or a loaded dict, which is copied).

    Checks the top-level lists, image ids and, per annotation, image_id, category_id, bbox, area and the keypoint
    fields of the layout; a missing ``iscrowd`` is read as 0 (as xtcocotools does). Raises AnnotationError.
    """
    where = str(ann) if isinstance(ann, (str, Path)) else "annotations"
    gt = read_json(ann, "COCO annotation") if isinstance(ann, (str, Path)) else copy.deepcopy(ann)
    if not isinstance(gt, dict):
        raise AnnotationError(f"{where}: expected a COCO annotation object with 'images', 'annotations' and "
                              f"'categories', got a JSON {type(gt).__name__}; is this a results file? "
                              f"pass the annotation file first")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise AnnotationError(f"{where}: expected a COCO annotation file whose '{key}' is a list, got "
                                  f"{'none' if key not in gt else type(gt[key]).__name__}; pass a COCO keypoint "
                                  f"annotation file (e.g. person_keypoints_val2017.json)")
    if not all(isinstance(im, dict) and "id" in im for im in gt["images"]):
        raise AnnotationError(f"{where}: expected every entry of 'images' to have an 'id', got one without; "
                              f"repair the file")
    _check_unique_image_ids(gt["images"], where)
    wholebody = is_wholebody(gt)
    seen_ids: set = set()
    for i, a in enumerate(gt["annotations"]):
        at = f"{where}: annotation {i} (id {a.get('id')})" if isinstance(a, dict) else f"{where}: annotation {i}"
        missing = [k for k in ("id", "image_id", "category_id", "bbox", "area")
                   if not isinstance(a, dict) or k not in a]
        if missing:
            raise AnnotationError(f"{at}: expected fields id, image_id, category_id, bbox, area, got none for "
                                  f"{', '.join(missing)}; repair the file")
        if not isinstance(a["id"], (int, str)) or isinstance(a["id"], bool) or a["id"] in seen_ids:
            raise AnnotationError(f"{at}: expected a unique integer 'id', got "
                                  f"{'a duplicate' if a['id'] in seen_ids else _bad_value(a['id'])}; repair the file")
        seen_ids.add(a["id"])
        box = a["bbox"]
        if not is_bbox(box):
            got = f"{len(box)} values" if isinstance(box, list) and len(box) != 4 else _bad_value(box) \
                if not isinstance(box, list) else "non-numeric values"
            raise AnnotationError(f"{at}: expected 'bbox' as [x, y, width, height] (4 finite numbers), got {got}; "
                                  f"repair the file")
        _check_number(a, "area", at)
        a.setdefault("iscrowd", 0)
        if wholebody:
            for _, (start, stop, field) in WHOLEBODY_PARTS.items():
                _check_kpts(a, field, stop - start, at)
        else:
            _check_kpts(a, "keypoints", COCO.num_keypoints, at)
            if "num_keypoints" not in a:
                raise AnnotationError(f"{at}: expected 'num_keypoints' (pycocotools reads it), got none; "
                                      f"repair the file")
    return gt


def load_results(results: ResultsLike, gt: dict) -> list[dict]:
    """Read and check a COCO keypoint results file (or a list, which is copied) against loaded annotations.

    Each record needs image_id (of an image in ``gt``), category_id, score and the keypoint fields of the layout
    (whole-body: keypoints 17x3, foot_kpts, face_kpts, lefthand_kpts, righthand_kpts). Raises AnnotationError.
    """
    where = str(results) if isinstance(results, (str, Path)) else "results"
    res = read_json(results, "COCO results") if isinstance(results, (str, Path)) else copy.deepcopy(results)
    if not isinstance(res, list):
        hint = " (this looks like an annotation file: pass ANN first, RESULTS second)" if isinstance(res, dict) else ""
        raise AnnotationError(f"{where}: expected a COCO results list of keypoint records, got a JSON "
                              f"{type(res).__name__}{hint}; pass a results file")
    image_ids = {im["id"] for im in gt["images"]}
    wholebody = is_wholebody(gt)
    for i, r in enumerate(res):
        at = f"{where}: record {i}"
        missing = [k for k in ("image_id", "category_id", "score") if not isinstance(r, dict) or k not in r]
        if missing:
            raise AnnotationError(f"{at}: expected fields image_id, category_id, score, got none for "
                                  f"{', '.join(missing)}; write results in COCO keypoint results format")
        if not isinstance(r["image_id"], (int, str)) or r["image_id"] not in image_ids:
            raise AnnotationError(f"{at}: expected an image_id of the annotation file, got {r['image_id']!r}, which "
                                  f"it does not list; evaluate against the annotation file the results were made for")
        _check_number(r, "score", at)
        if wholebody:
            for _, (start, stop, field) in WHOLEBODY_PARTS.items():
                _check_kpts(r, field, stop - start, at)
        else:
            _check_kpts(r, "keypoints", COCO.num_keypoints, at)
    return res


# ------------------------------------------------------------------------------------------ rescoring / OKS NMS

def rescore(keypoints: np.ndarray, box_scores: np.ndarray, in_vis_thre: float = IN_VIS_THRE) -> np.ndarray:
    """Official rescoring: mean of the confidences > ``in_vis_thre`` (0 if none) times the box score.

    Args:
        keypoints: (N, K, 3) x, y, confidence.
        box_scores: (N,) detection scores.

    Returns:
        float64 (N,) instance scores.
    """
    conf = np.asarray(keypoints, dtype=np.float64)[..., 2]
    valid = conf > in_vis_thre
    n = valid.sum(axis=-1)
    kpt_score = np.where(n > 0, np.where(valid, conf, 0.0).sum(axis=-1) / np.maximum(n, 1), 0.0)
    return kpt_score * np.asarray(box_scores, dtype=np.float64)


def oks_iou(kpts: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
            sigmas: np.ndarray) -> np.ndarray:
    """OKS of one instance against M others as in the official NMS (all joints, no visibility filter).

    Args:
        kpts: (K, 2+) one instance; others: (M, K, 2+); area: its area; other_areas: (M,); sigmas: (K,).

    Returns:
        float64 (M,) mean over joints of exp(-d^2 / (2 sigma)^2 / ((a_i + a_j) / 2 + eps) / 2).
    """
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    ref = np.asarray(kpts, dtype=np.float64)[None, :, :2]  # (1, K, 2)
    d2 = ((np.asarray(others, dtype=np.float64)[..., :2] - ref) ** 2).sum(axis=-1)  # (M, K)
    e = d2 / var / ((area + np.asarray(other_areas, dtype=np.float64))[:, None] / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=-1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            thresh: float = OKS_THRE) -> list[int]:
    """Greedy OKS NMS of one image's instances: keep the best, drop those with OKS > ``thresh`` to a kept one.

    Args:
        keypoints: (N, K, 2+) image-pixel keypoints; scores: (N,); areas: (N,); sigmas: (K,).

    Returns:
        indices kept, in descending score order. Equal scores: the later instance first (the official
        ``scores.argsort()[::-1]`` on a stable sort).
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], float(areas[i]), areas[order[1:]], sigmas)
        order = order[1:][ovr <= thresh]
    return keep


def to_coco_results(image_ids: np.ndarray, keypoints: np.ndarray, box_scores: np.ndarray, centers: np.ndarray,
                    scales: np.ndarray, areas: np.ndarray | None = None, dataset: DatasetInfo | None = None,
                    category_id: int = 1, in_vis_thre: float = IN_VIS_THRE,
                    oks_thre: float = OKS_THRE, file_names: dict[int, str] | None = None) -> list[dict]:
    """Predicted instances -> rescored, OKS-NMS'd COCO results records (official steps 11-14).

    Args:
        image_ids: (N,) int image id of each instance.
        keypoints: (N, K, 3) x, y in image pixels and confidence (``codec.decode_to_image``).
        box_scores: (N,) detection scores (1 for ground-truth boxes).
        centers, scales: (N, 2) each, the boxes used for the crops.
        areas: (N,) instance areas for NMS; default (200 s_x)(200 s_y), the official padded-box area.
        dataset: keypoint layout; default from K (17 COCO, 133 COCO-WholeBody).
        file_names: image id -> file name, written into each record as ``file_name`` when given.

    Returns:
        JSON-ready records, grouped by image (first-appearance order), kept instances by descending score:
        image_id, category_id, keypoints (flat x, y, score; whole-body: body only, plus foot_kpts, face_kpts,
        lefthand_kpts, righthand_kpts), score, center, scale.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    n = len(kpts)
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise AnnotationError(f"to_coco_results: expected keypoints (N, K, 3), got {kpts.shape}; "
                              f"pass decode_to_image output")
    dataset = dataset or dataset_for(kpts.shape[1])
    ids = np.asarray(image_ids).reshape(-1)
    centers = np.asarray(centers, dtype=np.float64).reshape(n, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(n, 2)
    if areas is None:  # float32 product, as the official all_boxes[:, 4] = np.prod(s * 200, 1) on float32 scales
        areas = np.prod(scales.astype(np.float32) * np.float32(200.0), axis=1)
    areas = np.asarray(areas, dtype=np.float64)
    scores = rescore(kpts, box_scores, in_vis_thre)
    sigmas = np.asarray(dataset.sigmas)
    by_image: dict[int, list[int]] = {}
    for idx, im in enumerate(ids.tolist()):
        by_image.setdefault(int(im), []).append(idx)
    out = []
    for im, members in by_image.items():
        m = np.asarray(members)
        for j in oks_nms(kpts[m], scores[m], areas[m], sigmas, oks_thre):
            i = int(m[j])
            rec: dict[str, Any] = {"image_id": im, "category_id": category_id}
            if dataset.num_keypoints == WHOLEBODY.num_keypoints:
                for _, (start, stop, field) in WHOLEBODY_PARTS.items():
                    rec[field] = kpts[i, start:stop].reshape(-1).tolist()
            else:
                rec["keypoints"] = kpts[i].reshape(-1).tolist()
            rec.update(score=float(scores[i]), center=centers[i].tolist(), scale=scales[i].tolist())
            if file_names is not None and im in file_names:
                rec["file_name"] = file_names[im]
            out.append(rec)
    return out
