"""Person crops from a COCO keypoint file: ground-truth person boxes through exactly the inference preprocessing.

One source of real crops for export's parity check, INT8 calibration and ``bench``, so all three see what the
predictor feeds a model. The selection of ``num`` crops is seeded and reproducible, and only the images that hold
a selected person are decoded. No torch import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..coco import load_annotations
from ..errors import GtptError, InputImageError
from .boxes import GroundTruthBoxes
from .images import load_image
from .transforms import box_to_center_scale, crop_and_normalize


@dataclass(frozen=True)
class PersonCrops:
    """N normalized person crops and where they came from.

    Attributes:
        crops: float32 (N, 3, H, W), ``transforms.crop_and_normalize`` of each GT box.
        image_ids: int64 (N,) COCO image id of each crop; file_names: its image's file name.
        boxes: float32 (N, 4) sanitized GT boxes xywh; centers, scales: float32 (N, 2) each.
        ann_sha256: sha256 of the annotation file (of its canonical JSON when given as a dict).
        available: usable person boxes in the file (``num`` were selected from them).
        seed: the selection seed.
    """

    crops: np.ndarray
    image_ids: np.ndarray
    file_names: tuple[str, ...]
    boxes: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    ann_sha256: str
    available: int
    seed: int

    def __len__(self) -> int:
        return len(self.crops)

    def manifest(self) -> dict[str, Any]:
        """What identifies this crop set (for calibration caches): annotation hash, ids, count, seed."""
        return {"ann_sha256": self.ann_sha256, "image_ids": sorted({int(i) for i in self.image_ids}),
                "crops": len(self), "available": self.available, "seed": self.seed}


def _sha256(ann: str | Path | dict) -> str:
    if isinstance(ann, dict):
        return hashlib.sha256(json.dumps(ann, sort_keys=True).encode()).hexdigest()
    h = hashlib.sha256()
    with open(ann, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def person_crops(ann: str | Path | dict, images: str | Path, num: int | None = None, seed: int = 0,
                 input_size: tuple[int, int] = (256, 192), at_most: bool = False) -> PersonCrops:
    """GT person crops of a COCO / COCO-WholeBody keypoint file (official GT-box protocol, spec §5).

    Args:
        ann: annotation file (or a loaded dict); images: folder holding its ``file_name``s.
        num: how many crops to select (seeded, without replacement); None = all usable boxes.
        seed: selection seed; the same (file, num, seed) always gives the same crops, in file order.
        input_size: (H, W) of the model input.
        at_most: take ``min(num, available)`` instead of refusing a ``num`` above what exists.

    Raises:
        GtptError: no usable person, or fewer than ``num`` (unless ``at_most``), saying how many exist.
        InputImageError: an image of a selected person is missing or cannot be decoded.
    """
    gt = GroundTruthBoxes(load_annotations(ann))
    where = str(ann) if not isinstance(ann, dict) else "the annotations"
    candidates: list[tuple[dict, np.ndarray]] = []
    for im in gt.images:
        if "width" not in im or "height" not in im:
            raise GtptError(f"{where}: expected width and height on every image record, got none for image "
                            f"{im.get('id')}; repair the annotation file")
        candidates.extend((im, box) for box in gt.boxes_of(im).xywh)
    if not candidates:
        raise GtptError(f"{where}: expected person annotations with labelled keypoints, found none; pass a COCO "
                        f"keypoint annotation file (e.g. person_keypoints_val2017.json)")
    if num is not None and num < 1:
        raise GtptError(f"expected at least 1 crop, got --num {num}")
    count = len(candidates) if num is None else num
    if count > len(candidates):
        if not at_most:
            raise GtptError(f"{where}: expected {num} person crops, found only {len(candidates)} usable person boxes "
                            f"(non-crowd, labelled keypoints); pass --num {len(candidates)} or a larger annotation file")
        count = len(candidates)
    chosen = np.sort(np.random.default_rng(seed).choice(len(candidates), count, replace=False)) \
        if count < len(candidates) else np.arange(len(candidates))

    folder = Path(images)
    if not folder.is_dir():
        raise InputImageError(f"image folder {folder} does not exist; pass the folder holding the images of {where}")
    by_image: dict[str, list[int]] = {}
    for i in chosen.tolist():
        by_image.setdefault(candidates[i][0]["file_name"], []).append(i)
    crops, ids, names, boxes = [], [], [], []
    for file_name, members in by_image.items():
        rgb = cv2.cvtColor(load_image(folder / Path(file_name).name), cv2.COLOR_BGR2RGB)
        b = np.stack([candidates[i][1] for i in members])
        center, scale = box_to_center_scale(b, input_size)
        crops.append(crop_and_normalize(rgb, center, scale, input_size))
        ids += [int(candidates[i][0]["id"]) for i in members]
        names += [file_name] * len(members)
        boxes.append(b)
    xywh = np.concatenate(boxes).astype(np.float32)
    centers, scales = box_to_center_scale(xywh, input_size)
    return PersonCrops(np.concatenate(crops), np.asarray(ids, np.int64), tuple(names), xywh, centers, scales,
                       _sha256(ann), len(candidates), seed)
