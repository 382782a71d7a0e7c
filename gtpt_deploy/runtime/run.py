"""The run stage: an artifact on image files -> ``results.json`` (COCO keypoint results) and annotated images.

A thin loop around :class:`~gtpt_deploy.runtime.predictor.Predictor`. No torch import.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import InputImageError
from .boxes import image_id_from_name
from .images import expand_inputs
from .predictor import ImageFailure, ImagePoses, Predictor

log = logging.getLogger(__name__)

_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # annotated images keep these formats


@dataclass
class RunSummary:
    """What ``run_images`` did. ``failures`` lists the inputs that were skipped and why."""

    artifact: str
    runner: str
    images: int
    persons: int
    failures: list[ImageFailure]
    results_path: Path
    drawn: int
    seconds: float                        # wall time of the whole loop (load, boxes, crops, model, decode, draw)
    model_seconds: float                  # time inside runner.infer

    @property
    def ok(self) -> bool:
        return not self.failures

    def format_lines(self, out_dir: str | Path) -> list[str]:
        """The end-of-run summary for the terminal."""
        done = self.images - len(self.failures)
        return [f"{self.images} image(s): {done} processed, {len(self.failures)} failed; {self.persons} person(s); "
                f"{self.seconds:.2f} s (model {self.model_seconds:.2f} s) [{self.runner}]",
                f"results: {self.results_path}" + (f"; {self.drawn} annotated image(s) in {out_dir}" if self.drawn else "")]


def assign_image_ids(paths: list[Path]) -> dict[Path, int]:
    """COCO ids from the file names when every name is a distinct number, else 1-based positions."""

    ids = [image_id_from_name(p) for p in paths]
    if None in ids or len(set(ids)) != len(ids):
        return {p: i for i, p in enumerate(paths, 1)}
    return dict(zip(paths, ids))  # type: ignore[arg-type]


def _output_names(paths: list[Path]) -> list[str]:
    """Annotated-image file names: the input's name, made unique (``a.jpg``, ``a_2.jpg``) across folders."""
    seen: set[str] = set()
    out = []
    for p in paths:
        suffix = p.suffix if p.suffix.lower() in _WRITABLE else ".png"
        name, i = p.stem + suffix, 1
        while name.lower() in seen:
            i += 1
            name = f"{p.stem}_{i}{suffix}"
        seen.add(name.lower())
        out.append(name)
    return out


def run_images(artifact: str | Path, inputs: Iterable[str | Path], out_dir: str | Path,
               boxes: str | Path | None = None, detector: str | Path | None = None, flip: bool = True,
               batch: int | None = None, device: str = "cpu", box_thr: float | None = None,
               kpt_thr: float | None = None, draw: bool = True, force: bool = False, progress: bool = False,
               threads: int | None = None) -> RunSummary:
    """Pose on images/folders -> ``out_dir/results.json`` (COCO keypoint results, rescored + OKS NMS) and, with
    ``draw``, annotated copies of the images. Undecodable / missing images are skipped and listed in the summary.
    ``threads``: CPU threads of the pose backend (None: its default).
    """
    import time

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..artifacts import check_writable, write_json
    from .person_boxes import box_source
    from .draw import DEFAULT_KPT_THR, draw_poses
    from ..coco import to_coco_results
    from ..runners import create_runner

    paths = expand_inputs(inputs)
    if not paths:
        raise InputImageError(f"no images found in {', '.join(map(str, inputs)) or 'the inputs'}; pass image files "
                              f"or folders holding .jpg / .png files")
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    names = _output_names(paths)
    for target in [results_path] + ([out_dir / n for n in names] if draw else []):
        check_writable(target, force)
    source = box_source(boxes=boxes, detector=detector, score_thr=box_thr, device=device)
    ids = assign_image_ids(paths)
    poses: list[ImagePoses] = []
    failures: list[ImageFailure] = []
    drawn = 0
    t0 = time.perf_counter()
    with create_runner(artifact, device=device, threads=threads) as runner, logging_redirect_tqdm():
        predictor = Predictor(runner, flip=flip, batch=batch, keep_images=draw)
        bar = tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr, desc="pose")
        for result, name in zip(predictor.predict(paths, source, ids), names):
            bar.update(1)
            if isinstance(result, ImageFailure):
                log.warning("skipped %s", result.error)
                failures.append(result)
                continue
            if draw and result.image is not None:
                canvas = draw_poses(result.image, result.keypoints, predictor.dataset, result.boxes,
                                    DEFAULT_KPT_THR if kpt_thr is None else kpt_thr)
                drawn += bool(cv2.imwrite(str(out_dir / name), canvas))
                result.image = None
            poses.append(result)
        bar.close()
        model_seconds = float(sum(runner.times))
        description = runner.description
        k = runner.meta.num_keypoints
    seconds = time.perf_counter() - t0
    records = to_coco_results(*stack_poses(poses, k))
    write_json(results_path, records)
    return RunSummary(str(artifact), description, len(paths), sum(len(p.keypoints) for p in poses), failures,
                      results_path, drawn, seconds, model_seconds)


def stack_poses(poses: list[ImagePoses], k: int) -> tuple[np.ndarray, ...]:
    """Per-image results -> (image_ids (N,), keypoints (N, K, 3), box_scores (N,), centers (N, 2), scales (N, 2))
    over all instances, in image order (the arguments of ``evaluate.to_coco_results``)."""
    def cat(arrays: list[np.ndarray], shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        return np.concatenate(arrays).reshape(shape) if arrays else np.zeros((0, *shape[1:]), dtype)

    return (cat([np.full(len(p.keypoints), p.image_id, np.int64) for p in poses], (-1,), np.int64),
            cat([p.keypoints for p in poses], (-1, k, 3)), cat([p.box_scores for p in poses], (-1,)),
            cat([p.centers for p in poses], (-1, 2)), cat([p.scales for p in poses], (-1, 2)))
