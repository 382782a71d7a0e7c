"""Person boxes for top-down pose: ground truth, a detection results file, a detector, or the whole image.

Every source is a callable ``source(path, image_bgr) -> Boxes`` with an ``image_id(path)`` method, so the
predictor does not care where boxes come from. Pure numpy (+ json); the detector lives in :mod:`detect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import AnnotationError, InputImageError
from .transforms import positive_boxes, sanitize_gt_box

PERSON_CATEGORY = 1


@dataclass(frozen=True)
class Boxes:
    """Person boxes of one image: ``xywh`` float32 (N, 4) in image pixels, ``scores`` float32 (N,)."""

    xywh: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    @classmethod
    def of(cls, xywh: Any, scores: Any) -> "Boxes":
        b = np.asarray(xywh, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        return cls(b, s)

    def __len__(self) -> int:
        return len(self.xywh)

    def positive(self) -> "Boxes":
        """The boxes of positive, finite width and height (``transforms.positive_boxes``); the others have no crop."""
        keep = positive_boxes(self.xywh)
        return self if keep.all() else Boxes(self.xywh[keep], self.scores[keep])


class BoxSource(Protocol):
    """Where the person boxes come from. ``image_id`` is None when the source has no opinion."""

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes: ...

    def image_id(self, path: Path) -> int | None: ...


def image_id_from_name(path: Path) -> int | None:
    """COCO file names are the zero-padded image id (``000000000785.jpg`` -> 785); None for other names."""
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else None


def gt_person_boxes(anns: list[dict], width: int, height: int) -> list[np.ndarray]:
    """The official GT-box protocol for one image's annotations: non-crowd persons with area > 0 and labelled
    keypoints, boxes sanitized to the image (``transforms.sanitize_gt_box``) -> list of float32 (4,) xywh."""
    boxes = []
    for a in anns:
        if a.get("category_id") != PERSON_CATEGORY or a.get("iscrowd", 0) or a.get("area", 0) <= 0:
            continue
        if max(a.get("keypoints") or [0]) == 0:  # official: skip objects without keypoint labels
            continue
        box = sanitize_gt_box(a["bbox"], width, height)
        if box is not None:
            boxes.append(box)
    return boxes


class GroundTruthBoxes:
    """The official GT-box protocol: every non-crowd person annotation with labelled keypoints, box sanitized.

    Images are matched by file name (``images[].file_name``); score 1 for every box (spec §5 step 2).
    """

    def __init__(self, ann: str | Path | dict) -> None:
        from ..coco import load_annotations  # numpy-only; validates the file

        gt = load_annotations(ann)
        self.source = str(ann) if not isinstance(ann, dict) else "annotations"
        self._images = {Path(im["file_name"]).name: im for im in gt["images"] if "file_name" in im}
        self._anns: dict[Any, list[dict]] = {}
        for a in gt["annotations"]:
            self._anns.setdefault(a["image_id"], []).append(a)

    def _record(self, path: Path) -> dict:
        im = self._images.get(Path(path).name)
        if im is None:
            raise InputImageError(f"{Path(path).name} is not listed in {self.source}; pass the images of that "
                                  f"annotation file (or use a detector / a detection file for other images)")
        return im

    def image_id(self, path: Path) -> int | None:
        return int(self._record(path)["id"])

    @property
    def file_names(self) -> list[str]:
        """File names of the annotated images, in annotation-file order."""
        return list(self._images)

    def boxes_of(self, image: dict, width: int | None = None, height: int | None = None) -> Boxes:
        """GT person boxes of one ``images[]`` record (its width/height, else the given decoded size)."""
        boxes = gt_person_boxes(self._anns.get(image["id"], []), int(image.get("width", width)),
                                int(image.get("height", height)))
        return Boxes.of(np.array(boxes).reshape(-1, 4), np.ones(len(boxes)))

    @property
    def images(self) -> list[dict]:
        """The annotated images' records, in annotation-file order."""
        return list(self._images.values())

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        height, width = image_bgr.shape[:2]
        return self.boxes_of(self._record(path), width, height)


class DetectionFileBoxes:
    """Boxes from a COCO detection results JSON (``[{image_id, category_id, bbox, score}, ...]``).

    Only ``category_id == 1`` with ``score >= score_thr`` (official ``IMAGE_THRE`` 0.0); images are matched by the
    image id in their file name, or through ``ann`` (file name -> id) when given. An image with no detection gets
    no boxes.
    """

    def __init__(self, path: str | Path, score_thr: float = 0.0, ann: "GroundTruthBoxes | None" = None) -> None:
        from ..coco import is_bbox, is_number, read_json  # numpy-only

        data = read_json(path, "detection file")
        if not isinstance(data, list):
            raise AnnotationError(f"detection file {path}: expected a COCO detection results list "
                                  f"[{{image_id, category_id, bbox, score}}, ...], got a JSON {type(data).__name__}")
        self._by_image: dict[int, list[tuple[list[float], float]]] = {}
        for i, d in enumerate(data):
            if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= d.keys() \
                    or not is_bbox(d["bbox"]) or not is_number(d["score"]) or not isinstance(d["image_id"], int):
                raise AnnotationError(f"detection file {path}: record {i} lacks image_id / category_id / bbox (4 "
                                      f"finite numbers) / score (a finite number); write detections in COCO results "
                                      f"format")
            if d["category_id"] == PERSON_CATEGORY and float(d["score"]) >= score_thr:
                self._by_image.setdefault(int(d["image_id"]), []).append((d["bbox"], float(d["score"])))
        self._ann = ann
        self.source = str(path)

    def image_id(self, path: Path) -> int | None:
        if self._ann is not None:
            return self._ann.image_id(path)
        return image_id_from_name(path)

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        image_id = self.image_id(path)
        if image_id is None:
            raise InputImageError(f"cannot match {Path(path).name} to {self.source}: its name is not a COCO image id "
                                  f"(e.g. 000000000785.jpg); rename it or use --detector")
        dets = self._by_image.get(image_id, [])
        return Boxes.of([b for b, _ in dets], [s for _, s in dets]).positive()


class WholeImageBoxes:
    """One box covering the whole image (score 1): for single-person photos when no detector is given."""

    def image_id(self, path: Path) -> int | None:
        return image_id_from_name(path)

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        h, w = image_bgr.shape[:2]
        return Boxes.of([[0.0, 0.0, float(w), float(h)]], [1.0])


class CachedBoxes:
    """Remembers another source's boxes per path, so several runners get exactly the same boxes (and crops)."""

    def __init__(self, source: BoxSource) -> None:
        self.source = source
        self._cache: dict[Path, Boxes] = {}

    def image_id(self, path: Path) -> int | None:
        return self.source.image_id(path)

    def __call__(self, path: Path, image_bgr: np.ndarray) -> Boxes:
        if path not in self._cache:
            self._cache[path] = self.source(path, image_bgr)
        return self._cache[path]
