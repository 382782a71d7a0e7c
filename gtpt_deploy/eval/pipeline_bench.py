"""``bench --images``: the whole ``run`` path timed end to end (decode, person boxes, crops, pose with the flip test,
SimCC decoding, rescoring + OKS NMS into COCO records; no drawing, nothing written), with the time inside the two
models (pose runner, box source) measured in the same passes. Rates count processed images only: inputs that fail
(undecodable, a video) are counted and named, and when none is processed there is no rate at all (an error).
No torch import.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import GtptError, InputImageError
from ..runtime.options import BoxSpec, RunnerSpec
from .bench import apply_policy
from .machine import Machine, describe_machine, load_average, machine_line, report_dict


class _TimedSource:
    """A box source that adds up the seconds spent in it (the detector, when the source is one)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.seconds = 0.0

    def __call__(self, path: Path, image: np.ndarray) -> Any:
        t0 = time.perf_counter()
        try:
            return self.source(path, image)
        finally:
            self.seconds += time.perf_counter() - t0

    def image_id(self, path: Path) -> int | None:
        return self.source.image_id(path)


@dataclass
class PipelineReport:
    """Medians over ``rounds`` full passes.

    ``outside_models_share``: (wall - pose - boxes) / wall, the time in neither model (0 when read-ahead hides the
    box source behind the pose model, so that wall < pose + boxes). ``pose_idle_share``: (wall - pose) / wall,
    the time the pose model waited for anything else (decoding, boxes, crops, decoding the logits, NMS): with
    read-ahead the headline overhead, an upper bound of the time outside both models.
    """

    artifact: str
    runner: str
    box_source: str
    images: int
    persons: int
    failures: int
    processed: int
    rounds: int
    flip: bool
    batch: int
    prefetch: int
    wall_s: float
    pose_s: float
    boxes_s: float
    images_per_s: float
    persons_per_s: float
    outside_models_share: float
    pose_idle_share: float
    pose_calls: int
    padded_crops: int
    machine: Machine
    load_average_end: tuple[float, float, float]
    per_round: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return report_dict(self)

    def format_lines(self) -> list[str]:
        return [machine_line(self.machine, self.load_average_end),
                *[f"note: {n}" for n in self.notes],
                *([f"FAILED: {self.failures} of {self.images} images could not be processed and are not in the "
                   f"rates (first: {self.first_failure})"] if self.failures else []),
                f"{Path(self.artifact).name} [{self.runner}], boxes: {self.box_source}; {self.processed} images "
                f"processed ({self.failures} failed), {self.persons} persons, flip {self.flip}, batch {self.batch}, "
                f"read-ahead {self.prefetch}; median "
                f"of {self.rounds} pass(es)",
                f"end to end {self.wall_s:.2f} s: {self.images_per_s:.2f} images/s, {self.persons_per_s:.1f} persons/s",
                f"pose model {self.pose_s:.2f} s ({self.pose_calls} calls, {self.padded_crops} padded rows), "
                f"box source {self.boxes_s:.2f} s; outside the two models: {100 * self.outside_models_share:.1f}%; "
                f"pose model idle: {100 * self.pose_idle_share:.1f}%"]


def bench_pipeline(artifact: str | Path, images: str | Path, runner: RunnerSpec = RunnerSpec(),
                   boxes: BoxSpec = BoxSpec(), rounds: int = 3, spin: bool | None = None, prefetch: int | None = None,
                   progress: Callable[[str], None] | None = None) -> PipelineReport:
    """Time ``run``'s path on every image of ``images`` (a folder or file), ``rounds`` times after a warm-up pass
    over the first images. ``runner``, ``boxes``: as ``run`` (the same typed options, so the bench times what
    ``run`` does: the detector on ``boxes.detector_device``). ``prefetch``: the predictor's read-ahead (None: its
    default). ``spin``, ``progress``: as :func:`bench`."""
    from ..runtime.core import assign_image_ids, coco_records, open_boxes, open_predictor
    from ..runtime.images import expand_inputs
    from ..runtime.predictor import DEFAULT_PREFETCH, ImageFailure, ImagePoses

    say = progress or (lambda _line: None)
    if rounds < 1:
        raise GtptError(f"expected at least 1 round, got {rounds}")
    notes = apply_policy(spin)
    machine = describe_machine()
    paths = expand_inputs([images])
    if not paths:
        raise InputImageError(f"no images found in {images}; pass a folder holding .jpg / .png files")
    source = _TimedSource(open_boxes(boxes))
    ids = assign_image_ids(paths)
    per_round: list[dict[str, float]] = []
    with open_predictor(artifact, runner, prefetch=DEFAULT_PREFETCH if prefetch is None else prefetch) as predictor:
        k = predictor.runner.meta.num_keypoints

        def one_pass(subset: list[Path]) -> tuple[int, list[ImageFailure]]:
            results = list(predictor.predict(subset, source, ids))
            poses = [r for r in results if isinstance(r, ImagePoses)]
            coco_records(poses, k)  # run's post-processing (rescoring + OKS NMS), not written
            return sum(len(p.keypoints) for p in poses), [r for r in results if isinstance(r, ImageFailure)]

        say("warm-up pass")
        one_pass(paths[:4])
        for r in range(rounds):
            say(f"pass {r + 1}/{rounds} over {len(paths)} images")
            predictor.runner.times.clear()
            source.seconds, predictor.padded_crops = 0.0, 0
            t0 = time.perf_counter()
            persons, failed = one_pass(paths)
            wall = time.perf_counter() - t0
            if len(failed) == len(paths):  # a rate of work that never ran would be forged
                raise InputImageError(f"none of the {len(paths)} input(s) of {images} could be processed, so there "
                                      f"is nothing to time (first: {failed[0].error}); bench --images times still "
                                      f"images (.jpg / .png), not videos")
            if r == 0 and failed:
                say(f"{len(failed)} of {len(paths)} image(s) failed and are not counted (first: {failed[0].error})")
            pose = float(sum(predictor.runner.times))
            per_round.append({"wall_s": wall, "pose_s": pose, "boxes_s": source.seconds,
                              "calls": len(predictor.runner.times),
                              "padded": predictor.padded_crops, "load_1min": describe_machine().load_average[0]})
        description = predictor.runner.description
    med = {key: statistics.median(r[key] for r in per_round) for key in ("wall_s", "pose_s", "boxes_s")}
    outside = statistics.median(max(0.0, r["wall_s"] - r["pose_s"] - r["boxes_s"]) / r["wall_s"] for r in per_round)
    idle = statistics.median((r["wall_s"] - r["pose_s"]) / r["wall_s"] for r in per_round)
    return PipelineReport(
        artifact=str(artifact), runner=description, box_source=type(source.source).__name__, images=len(paths),
        persons=persons, failures=len(failed), processed=len(paths) - len(failed), rounds=rounds, flip=runner.flip,
        batch=predictor.batch,
        prefetch=predictor.prefetch, wall_s=med["wall_s"], pose_s=med["pose_s"], boxes_s=med["boxes_s"],
        images_per_s=(len(paths) - len(failed)) / med["wall_s"], persons_per_s=persons / med["wall_s"],
        outside_models_share=outside,
        pose_idle_share=idle,
        pose_calls=int(per_round[-1]["calls"]), padded_crops=int(per_round[-1]["padded"]), machine=machine,
        load_average_end=load_average(), per_round=per_round, notes=notes,
        first_failure=failed[0].error if failed else None)
