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

    def to_dict(self) -> dict[str, object]:
        """The summary as JSON (``run --json``)."""
        return {"artifact": self.artifact, "runner": self.runner, "images": self.images, "persons": self.persons,
                "failed": [{"path": str(f.path), "error": f.error} for f in self.failures],
                "results": str(self.results_path), "annotated_images": self.drawn,
                "seconds": round(self.seconds, 3), "model_seconds": round(self.model_seconds, 3)}

    def format_lines(self, out_dir: str | Path) -> list[str]:
        """The end-of-run summary for the terminal."""
        done = self.images - len(self.failures)
        return [f"{self.images} image(s): {done} processed, {len(self.failures)} failed; {self.persons} person(s); "
                f"{self.seconds:.2f} s (model {self.model_seconds:.2f} s) [{self.runner}]",
                f"results: {self.results_path}" + (f"; {self.drawn} annotated image(s) in {out_dir}" if self.drawn else "")]


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
               threads: int | None = None, provider: str | None = None, ann: str | Path | None = None,
               detector_device: str = "cpu", detector_threads: int | None = None) -> RunSummary:
    """Pose on images/folders -> ``out_dir/results.json`` (COCO keypoint results, rescored + OKS NMS, each record
    with its image's ``file_name``) and, with ``draw``, annotated copies of the images. Undecodable / missing
    images are skipped and listed in the summary.

    Args:
        boxes: ``"gt"`` (ground-truth boxes of ``ann``) or a COCO detection results JSON; detector: a person
            detector ONNX; neither: the whole image is one person.
        ann: COCO annotation file whose ``file_name``s give the image ids (so ``evaluate ann results.json`` works).
        device, provider, threads: where the pose artifact runs; detector_device / detector_threads: the detector's.
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
    ids = assign_image_ids(paths) if ann is None else ann_image_ids(ann, paths)
    paths = [p for p in paths if p in ids]
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    names = _output_names(paths)
    for target in [results_path] + ([out_dir / n for n in names] if draw else []):
        check_writable(target, force, option="--out")
    source = box_source(boxes=boxes, detector=detector, ann=ann, score_thr=box_thr, device=detector_device,
                        threads=detector_threads)
    poses: list[ImagePoses] = []
    failures: list[ImageFailure] = []
    drawn = 0
    t0 = time.perf_counter()
    with create_runner(artifact, device=device, provider=provider, threads=threads) as runner, \
            logging_redirect_tqdm():
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
    records = to_coco_results(*stack_poses(poses, k), file_names={p.image_id: Path(p.path).name for p in poses})
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
