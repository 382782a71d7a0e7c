"""Which persons of a COCO file calibrate and which measure: usable persons, boxes outside their image, the seeded
held-out split, and the manifest that identifies the crops a set of ranges was computed from.

Without ``--eval-ann``, ``calibrate`` measures ΔAP on persons of the calibration file that it holds out from
calibration (a seeded third, at most 512), so the measurement never scores the crops the ranges were fitted on. The
split is by person: the held-out set is an annotation file of its own (the images of the held-out persons, those
persons, and the annotations of those images that no protocol scores - crowd regions, persons without keypoints),
so COCO AP on it is the GT-box AP of exactly those persons. No torch import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GtptError
from ..runtime.boxes import gt_person_boxes

HOLDOUT_FRACTION = 1 / 3        # of the usable persons, for measuring; the rest calibrates
HOLDOUT_MAX = 512               # enough for a ΔAP on large files (each search step scores them all)
NUM_MAX = 512                   # default --num: every usable person of the calibration pool, up to this


@dataclass(frozen=True)
class PersonSplit:
    """A calibration file split into calibration and measurement persons.

    Attributes:
        calib: annotation dict with every image and only the usable persons that calibrate.
        held_out: annotation dict of the held-out persons (None when no split was asked for).
        held_out_ids: annotation ids of the held-out persons (sorted as in the file).
        usable: usable persons of the file (non-crowd, labelled keypoints, box overlapping its image).
        outside: person boxes skipped because they lie entirely outside their image.
    """

    calib: dict
    held_out: dict | None
    held_out_ids: tuple[Any, ...]
    usable: int
    outside: int

    @property
    def pool(self) -> int:
        """Persons available for calibration."""
        return self.usable - len(self.held_out_ids)


def _inside(bbox: list[float], width: float, height: float) -> bool:
    """Does the raw COCO box overlap its image? (The official clean-up moves a box left of / above the image onto
    its corner, which would calibrate on a crop of something else.)"""
    x, y, w, h = (float(v) for v in bbox)
    return x < width and y < height and x + w > 0 and y + h > 0


def _scored(a: dict) -> bool:
    """A person the GT-box protocol would crop (``runtime.boxes.gt_person_boxes`` before the box clean-up)."""
    return a.get("category_id") == 1 and not a.get("iscrowd") and a.get("area", 0) > 0 and \
        max(a.get("keypoints") or [0]) > 0


def split_persons(gt: dict, where: str, hold_out: bool, seed: int = 0) -> PersonSplit:
    """Split the usable persons of ``gt`` (a loaded, checked annotation dict; ``where`` names it in errors).

    Args:
        hold_out: hold out ``HOLDOUT_FRACTION`` of the usable persons (at least 1, at most ``HOLDOUT_MAX``) for
            measuring, chosen with ``seed``; False: every usable person calibrates.

    Raises:
        GtptError: an image record without width/height, no usable person, or too few to hold one out.
    """
    images = {im["id"]: im for im in gt["images"]}
    usable: list[dict] = []
    outside = 0
    for a in gt["annotations"]:
        im = images.get(a["image_id"])
        if im is None:
            continue
        if "width" not in im or "height" not in im:
            raise GtptError(f"{where}: expected width and height on every image record, got none for image "
                            f"{im.get('id')}; repair the annotation file")
        if _scored(a) and not _inside(a["bbox"], im["width"], im["height"]):
            outside += 1
            continue
        if gt_person_boxes([a], int(im["width"]), int(im["height"])):
            usable.append(a)
    if not usable:
        raise GtptError(f"{where}: expected person annotations with labelled keypoints, found none; pass a COCO "
                        f"keypoint annotation file (e.g. person_keypoints_train2017.json)")
    held: set[int] = set()
    if hold_out:
        if len(usable) < 2:
            raise GtptError(f"{where}: expected at least 2 usable persons (one to calibrate, one to measure ΔAP), "
                            f"found {len(usable)}; pass --eval-ann/--eval-images to measure on another file")
        n = min(HOLDOUT_MAX, max(1, round(len(usable) * HOLDOUT_FRACTION)))
        held = {int(i) for i in np.random.default_rng(seed).choice(len(usable), n, replace=False)}
    keep = [a for i, a in enumerate(usable) if i not in held]
    calib = {**gt, "annotations": keep}
    held_out = None
    if hold_out:
        chosen = [a for i, a in enumerate(usable) if i in held]
        ids = {a["image_id"] for a in chosen}
        used = {id(a) for a in usable}
        # Unscored annotations of those images stay (crowd regions are ignore areas, persons without keypoints are
        # ignored): the calibration persons and out-of-image boxes go.
        others = [a for a in gt["annotations"] if a["image_id"] in ids and id(a) not in used and not _scored(a)]
        held_out = {**gt, "images": [im for im in gt["images"] if im["id"] in ids], "annotations": chosen + others}
    return PersonSplit(calib, held_out, tuple(a["id"] for i, a in enumerate(usable) if i in held), len(usable),
                       outside)


def default_num(split: PersonSplit, num: int | None, where: str, eval_given: bool) -> int:
    """The calibration crop count: ``num``, or every person of the pool up to ``NUM_MAX``. An explicit ``num``
    beyond the pool is an error that says how many there are (and how many were held out)."""
    if num is None:
        return min(split.pool, NUM_MAX)
    if num < 1:
        raise GtptError(f"expected at least 1 crop, got --num {num}")
    if num > split.pool:
        held = "" if eval_given else (f" ({len(split.held_out_ids)} more are held out to measure ΔAP; pass "
                                      f"--eval-ann/--eval-images to calibrate on all {split.usable})")
        raise GtptError(f"{where}: expected {num} person crops, found only {split.pool} usable person boxes for "
                        f"calibration{held}; pass --num {split.pool} or fewer, or a larger annotation file")
    return num


def images_sha256(folder: str | Path, file_names: tuple[str, ...]) -> str:
    """sha256 over the bytes of every image the crops came from (sorted by name): another folder with the same file
    names but other pictures gives another digest, so its ranges are not reused as "same data"."""
    h = hashlib.sha256()
    for name in sorted(set(file_names)):
        f = hashlib.sha256()
        with open(Path(folder) / Path(name).name, "rb") as fh:
            while block := fh.read(1 << 20):
                f.update(block)
        h.update(f"{Path(name).name}\0{f.hexdigest()}\n".encode())
    return h.hexdigest()
