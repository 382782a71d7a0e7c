"""The pose core that ``run``, ``predict`` and ``bench --images`` stand on: typed options -> box source and
:class:`~gtpt_deploy.runtime.predictor.Predictor`, image ids, and per-image poses -> COCO result arrays.

Everything from a decoded image to poses happens in the Predictor (crops, static-batch padding, flip test,
``codec.decode_to_image``); this module only opens it the same way for every front door. No torch import.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputImageError
from .boxes import BoxSource, WholeImageBoxes, image_id_from_name
from .options import BoxSpec, RunnerSpec
from .predictor import DEFAULT_PREFETCH, ImagePoses, Predictor

log = logging.getLogger(__name__)

WHOLE_IMAGE_NOTE = ("no --detector or --boxes: each whole image is used as one person box (fine for single-person "
                    "crops; pass --detector for photos and videos with several people)")


def open_boxes(boxes: BoxSpec, whole_image_note: str = WHOLE_IMAGE_NOTE) -> BoxSource:
    """The box source of ``boxes`` (the detector on its own device); whole images are logged as a warning."""
    source = boxes.source()
    if isinstance(source, WholeImageBoxes):
        log.warning(whole_image_note)
    return source


@contextlib.contextmanager
def open_predictor(artifact: Any, runner: RunnerSpec, keep_images: bool = False,
                   prefetch: int = DEFAULT_PREFETCH) -> Iterator[Predictor]:
    """A :class:`Predictor` over the active runner of ``artifact`` (``predictor.runner``), released on exit."""
    with runner.open(artifact) as active:
        yield Predictor(active, flip=runner.flip, batch=runner.batch, keep_images=keep_images, prefetch=prefetch)


def ann_image_ids(ann: str | Path, paths: list[Path]) -> dict[Path, int]:
    """Image ids from an annotation file's ``file_name``s for the inputs it lists (the others are left out, with one
    warning); InputImageError when it lists none of them. Checked before any inference."""
    from .boxes import GroundTruthBoxes

    gt = GroundTruthBoxes(ann)
    listed = set(gt.file_names)
    missing = [p.name for p in paths if p.name not in listed]
    if len(missing) == len(paths):
        raise InputImageError(f"--ann {ann}: expected the inputs to be images it lists, got none of them "
                              f"(e.g. {missing[0]}); pass the images of that annotation file or leave out --ann")
    if missing:
        log.warning("%d input image(s) not listed in %s were left out (e.g. %s)", len(missing), ann, missing[0])
    return {p: int(gt.image_id(p)) for p in paths if p.name in listed}


def assign_image_ids(paths: list[Path]) -> dict[Path, int]:
    """COCO ids from the file names when every name is a distinct number, else 1-based positions."""

    ids = [image_id_from_name(p) for p in paths]
    if None in ids or len(set(ids)) != len(ids):
        return {p: i for i, p in enumerate(paths, 1)}
    return dict(zip(paths, ids))  # type: ignore[arg-type]


def stack_poses(poses: list[ImagePoses], k: int) -> tuple[np.ndarray, ...]:
    """Per-image results -> (image_ids (N,), keypoints (N, K, 3), box_scores (N,), centers (N, 2), scales (N, 2))
    over all instances, in image order (the arguments of ``evaluate.to_coco_results``)."""
    def cat(arrays: list[np.ndarray], shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        return np.concatenate(arrays).reshape(shape) if arrays else np.zeros((0, *shape[1:]), dtype)

    return (cat([np.full(len(p.keypoints), p.image_id, np.int64) for p in poses], (-1,), np.int64),
            cat([p.keypoints for p in poses], (-1, k, 3)), cat([p.box_scores for p in poses], (-1,)),
            cat([p.centers for p in poses], (-1, 2)), cat([p.scales for p in poses], (-1, 2)))


def coco_records(poses: list[ImagePoses], k: int) -> list[dict]:
    """``run``'s results.json records of ``poses`` (rescored, OKS NMS, each naming its file_name)."""
    from ..coco import to_coco_results

    return to_coco_results(*stack_poses(poses, k), file_names={p.image_id: Path(p.path).name for p in poses})
