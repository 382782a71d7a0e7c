"""The run stage: an artifact on images, videos or a camera -> results and annotated copies.

Images -> ``results.json`` (COCO keypoint results, rescored + OKS NMS) and annotated images; each video or camera ->
``<name>.json`` (persons per frame, with frame index and timestamp) and an annotated ``<name>.mp4`` (or a live
window for a camera when a display exists). A thin shell over the pose core (:mod:`.core`, which ``predict`` and
``bench --images`` use too): it plans the outputs, feeds frames to
:meth:`~gtpt_deploy.runtime.predictor.Predictor.predict_frames` and writes what comes back. No torch import.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from ..artifacts import Inputs
from ..errors import GtptError, InputImageError
from .boxes import BoxSource
# stack_poses and WHOLE_IMAGE_NOTE stay importable from here for earlier callers; they live in the core
from .core import WHOLE_IMAGE_NOTE, ann_image_ids, assign_image_ids, coco_records, open_boxes, stack_poses  # noqa: F401
from .options import BoxSpec, OutputSpec, RunnerSpec
from .outputs import (StreamOutput, check_folder, display_available, finish_folder, image_output_name,
                      unique_name)
from .predictor import Frame, ImageFailure, ImagePoses, Predictor, build_frames
from .sources import CameraSource, ImageSource, Source, open_sources

log = logging.getLogger(__name__)


@dataclass
class StreamSummary:
    """One video or camera: frames posed, persons found, processing speed and the files written."""

    name: str
    frames: int
    persons: int
    seconds: float
    results_path: Path
    video_path: Path | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunSummary:
    """What ``run_inputs`` did. ``failures`` lists the images that were skipped and why."""

    artifact: str
    runner: str
    images: int
    persons: int
    failures: list[ImageFailure]
    results_path: Path | None            # results.json (None when no image file was given)
    drawn: int
    seconds: float                        # wall time on the images (load, boxes, crops, model, decode, draw)
    model_seconds: float                  # of which inside runner.infer
    out_dir: Path = Path(".")
    streams: list[StreamSummary] = field(default_factory=list)
    interrupted: bool = False             # ended by Ctrl-C (results so far were written)
    attempted: int | None = None          # images read before the run ended (all of them unless interrupted)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        """The summary as JSON (``run --json``)."""
        return {"artifact": self.artifact, "runner": self.runner, "out_dir": str(self.out_dir), "images": self.images,
                "persons": self.persons, "failed": [{"path": str(f.path), "error": f.error} for f in self.failures],
                "results": str(self.results_path) if self.results_path else None, "annotated_images": self.drawn,
                "seconds": round(self.seconds, 3), "model_seconds": round(self.model_seconds, 3),
                "streams": [{"name": v.name, "frames": v.frames, "persons": v.persons, "fps": round(v.fps, 2),
                             "results": str(v.results_path), "video": str(v.video_path) if v.video_path else None}
                            for v in self.streams],
                "processed": None if self.attempted is None else self.attempted - len(self.failures),
                "interrupted": self.interrupted}

    def format_lines(self, out_dir: str | Path | None = None) -> list[str]:
        """The end-of-run summary for the terminal."""
        out_dir = out_dir or self.out_dir
        lines = []
        if self.results_path is not None:
            done = (self.images if self.attempted is None else self.attempted) - len(self.failures)
            image_persons = self.persons - sum(s.persons for s in self.streams)
            lines.append(f"{self.images} image(s): {done} processed, {len(self.failures)} failed; {image_persons} "
                         f"person(s); {self.seconds:.2f} s (model {self.model_seconds:.2f} s) [{self.runner}]")
            lines.append(f"results: {self.results_path}"
                         + (f"; {self.drawn} annotated image(s) in {out_dir}" if self.drawn else ""))
        for s in self.streams:
            video = f"{s.video_path}, " if s.video_path is not None else ""
            lines.append(f"{s.name}: {s.frames} frame(s), {s.persons} person(s), {s.fps:.1f} frames/s "
                         f"[{self.runner}] -> {video}{s.results_path}")
        if self.interrupted:
            lines.append("stopped by Ctrl-C; the results up to that point are written")
        return lines


@dataclass
class _Plan:
    """What a run reads and writes, settled (and checked) before any model loads."""

    out: Path
    images: ImageSource | None
    ids: dict[Path, int]
    image_names: list[str]                # annotated image names, one per image
    streams: list[Source]
    stream_outs: list[StreamOutput]
    protected: Inputs                     # every file the run reads: never an output
    targets: list[str]                    # every file the run will write into ``out``
    show: bool


def _plan(artifact: str | Path, inputs: list[str | Path], out_dir: str | Path | None, boxes: BoxSpec,
          output: OutputSpec) -> _Plan:
    """Open the inputs, give every output its name and check them all (one-line errors) before any model loads."""
    from ..artifacts import next_run_dir

    sources = open_sources(inputs)
    images = next((s for s in sources if isinstance(s, ImageSource)), None)
    streams = [s for s in sources if not isinstance(s, ImageSource)]
    if not sources:
        raise InputImageError(f"no images or videos found in {', '.join(map(str, inputs)) or 'the inputs'}; pass "
                              f"image or video files, folders, glob patterns or a camera index")
    if boxes.boxes is not None and streams:
        raise GtptError(f"--boxes matches image files by name and cannot box video or camera frames "
                        f"({streams[0].name}); use --detector")
    ids: dict[Path, int] = {}
    if images is not None:
        ids = assign_image_ids(images.paths) if boxes.ann is None else ann_image_ids(boxes.ann, images.paths)
        images = ImageSource([p for p in images.paths if p in ids])
    out = Path(out_dir) if out_dir is not None else next_run_dir()
    show = bool(output.show if output.show is not None else any(isinstance(s, CameraSource) for s in streams)
                and display_available())
    taken: set[str] = {"results.json"}
    image_names = [image_output_name(p, taken) for p in images.paths] if images else []
    # Every file the run reads: no output may be one of them (with or without --force), checked now and again when
    # each output gets its name.
    protected = Inputs([*(images.paths if images else []), *(getattr(s, "path", None) for s in streams),
                        artifact if not str(artifact).startswith(("triton://", "http://", "https://")) else None,
                        boxes.ann, boxes.detector, boxes.boxes if boxes.boxes not in (None, "gt") else None])
    stream_outs = [StreamOutput(out, unique_name(s.name, ".json", taken)[:-len(".json")], getattr(s, "what", s.name),
                                float(getattr(s, "fps", 30.0)),
                                output.draw and not (show and isinstance(s, CameraSource)), protected)
                   for s in streams]
    targets = (["results.json"] if images else []) + (image_names if output.draw else []) + [
        n for so in stream_outs for n in ([so.results_path.name] + ([so.video_path.name] if so.draw else []))]
    return _Plan(out, images, ids, image_names, streams, stream_outs, protected, targets, show)


def run_inputs(artifact: str | Path, inputs: Iterable[str | Path], out_dir: str | Path | None = None,
               runner: RunnerSpec = RunnerSpec(), boxes: BoxSpec = BoxSpec(), output: OutputSpec = OutputSpec(),
               progress: bool = False) -> RunSummary:
    """Pose on image files, folders, glob patterns, video files and cameras (``"0"``); see the module docstring.

    Args:
        out_dir: None: the first free ``runs/run``, ``runs/run2``, ...; an existing run folder needs
            ``output.force`` (which removes that run's files once this one completes, see
            :func:`outputs.check_folder`).
        runner: where and how the pose artifact runs (device, provider, threads, batch, flip).
        boxes: the person boxes (``"gt"`` of ``ann`` or a detection JSON, images only; or a detector on its own
            device; neither: the whole image is one person, logged as a warning). ``boxes.ann`` also gives the
            image ids by file name (so ``evaluate ann results.json`` works).
        output: drawing, the keypoint threshold, the live window for cameras, ``force``.
        progress: progress bars on stderr.

    Undecodable / missing images are skipped and listed in the summary. Ctrl-C ends the run cleanly: what was
    processed is written.
    """
    from ..artifacts import remove_folders

    plan = _plan(artifact, list(inputs), out_dir, boxes, output)
    source = open_boxes(boxes)
    earlier, created = check_folder(plan.out, plan.targets, output.force, inputs=plan.protected)
    try:   # whatever ends the run early (an error, a failed model load), a folder it created and left empty goes
        return _Run(plan, output, source, progress).work(artifact, runner, earlier)
    except BaseException:
        remove_folders(created)
        raise


class _Run:
    """The work of one run: the images (one set, committed at the end), then each stream (written as it goes)."""

    def __init__(self, plan: _Plan, output: OutputSpec, source: BoxSource, progress: bool) -> None:
        from ..artifacts import ArtifactSet
        from .draw import DEFAULT_KPT_THR

        self.plan, self.output, self.source, self.progress = plan, output, source, progress
        self.thr = DEFAULT_KPT_THR if output.kpt_thr is None else output.kpt_thr
        self.poses: list[ImagePoses] = []
        self.failures: list[ImageFailure] = []
        self.streams: list[StreamSummary] = []
        self.drawn: list[str] = []
        self.interrupted = False
        # The annotated images and results.json commit as one set once the images are done (results.json last): an
        # image run that fails leaves no new annotated image and no results.json of other images. Ctrl-C ends the
        # images early and commits the set of those done so far (as streams, which write as they go, keep theirs).
        # force=True: existing targets were checked (and refused without --force) above; inputs never.
        self.image_set = ArtifactSet(force=True, inputs=plan.protected)

    def _bar(self, total: int | None, unit: str, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, disable=not self.progress, file=sys.stderr, desc=desc)

    def _draw(self, predictor: Predictor, result: ImagePoses) -> np.ndarray:
        from .draw import draw_poses

        return draw_poses(result.image, result.keypoints, predictor.dataset, result.boxes, self.thr,
                          result.box_scores)

    def work(self, artifact: str | Path, runner: RunnerSpec, earlier: list[str]) -> RunSummary:
        from tqdm.contrib.logging import logging_redirect_tqdm

        from .core import open_predictor

        plan = self.plan
        log.info("writing to %s", plan.out)
        t0 = time.perf_counter()
        image_seconds = image_model = 0.0
        keep = self.output.draw or plan.show
        with open_predictor(artifact, runner, keep_images=keep) as predictor, logging_redirect_tqdm():
            try:
                if plan.images is not None:
                    self.images(predictor)
                image_seconds, image_model = time.perf_counter() - t0, float(sum(predictor.runner.times))
                for src, so in zip(plan.streams, plan.stream_outs):
                    if self.interrupted:      # Ctrl-C during the images: the streams were not started
                        break
                    self.stream(predictor, runner, src, so)
            except KeyboardInterrupt:
                if plan.images is not None and not image_seconds:  # while committing the images: not all kept
                    self.image_set.discard()
                    raise
                self.interrupted = True
            except BaseException:
                for so in plan.stream_outs:
                    so.close(keep=False)
                raise
            finally:
                if plan.show:
                    cv2.destroyAllWindows()
            started = plan.stream_outs[:len(self.streams)]
            for so in started:
                so.close()
            description = predictor.runner.description
        # Ctrl-C: the manifest lists what this run wrote, so the earlier run's files it did not replace go (no
        # results.json beside annotated images of another run)
        written = plan.targets if not self.interrupted else (["results.json"] if plan.images else []) + self.drawn + [
            n for so in started for n in ([so.results_path.name] + ([so.video_path.name] if so.draw else []))]
        finish_folder(plan.out, written, earlier)
        persons = sum(len(p.keypoints) for p in self.poses) + sum(s.persons for s in self.streams)
        return RunSummary(str(artifact), description, len(plan.images or []), persons, self.failures,
                          plan.out / "results.json" if plan.images is not None else None, len(self.drawn),
                          image_seconds, image_model, plan.out, self.streams, self.interrupted,
                          len(self.poses) + len(self.failures))

    def images(self, predictor: Predictor) -> None:
        """Every image -> poses (drawn when asked); results.json and the annotated images commit as one set."""
        from .draw import encode_image

        plan = self.plan
        assert plan.images is not None
        bar = self._bar(len(plan.images), "img", "pose")
        frames = build_frames(plan.images, self.source, lambda f: plan.ids[f.path])  # type: ignore[index]
        try:
            for result, name in zip(predictor.predict_frames(frames), plan.image_names):
                bar.update(1)
                if isinstance(result, ImageFailure):
                    log.debug("skipped %s", result.error)  # listed once, in the summary
                    self.failures.append(result)
                    continue
                if self.output.draw and result.image is not None:
                    out = plan.out / name
                    self.image_set.write_bytes(out, encode_image(self._draw(predictor, result), name))  # full disk
                    self.drawn.append(name)
                result.image = None
                self.poses.append(result)
        except KeyboardInterrupt:  # the results so far are written, as the --help promises
            self.interrupted = True
        except BaseException:      # a failure: the image set commits as a whole or not at all
            self.image_set.discard()
            raise
        finally:
            bar.close()
        self.image_set.write_json(plan.out / "results.json",
                                  coco_records(self.poses, predictor.runner.meta.num_keypoints))
        self.image_set.commit()

    def stream(self, predictor: Predictor, runner: RunnerSpec, src: Source, so: StreamOutput) -> None:
        """One video or camera -> its per-frame results (and annotated video or live window), written as it goes."""
        show = self.plan.show
        timestamps: dict[int, float | None] = {}
        t_stream = time.perf_counter()
        bar = self._bar(len(src) or None, "frame", src.name)
        # A camera is shown live: batching crops across frames would hold each frame back until a batch fills, so a
        # dynamic-batch model runs one crop per call there (unless --batch says otherwise). Read ahead by one frame
        # only: the next frame decodes while this one is posed, no extra delay.
        if isinstance(src, CameraSource) and predictor.runner.static_batch is None and runner.batch is None:
            predictor = Predictor(predictor.runner, flip=runner.flip, batch=1, keep_images=True, prefetch=1)
        try:
            for result in predictor.predict_frames(_stream_frames(src, self.source, timestamps)):
                if isinstance(result, ImageFailure):   # the box source refused a frame: the stream stops here
                    raise InputImageError(result.error)
                bar.update(1)
                canvas = self._draw(predictor, result) if (so.draw or show) and result.image is not None else None
                so.add(result.image_id, timestamps.pop(result.image_id, None), result.keypoints, result.boxes,
                       result.box_scores, canvas if so.draw else None)
                if show and canvas is not None:
                    cv2.imshow(src.name, canvas)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):  # Esc / q closes the window
                        break
        finally:
            bar.close()
            self.streams.append(StreamSummary(so.name, len(so.frames), so.persons, time.perf_counter() - t_stream,
                                              so.results_path, so.video_path if so.draw else None))


def _stream_frames(src: Source, boxes: BoxSource,
                   timestamps: dict[int, float | None]) -> Iterator[Frame | ImageFailure]:
    """A video's or camera's frames -> predictor frames (id: the frame index), recording each timestamp."""
    return build_frames(src, boxes, timestamps=timestamps)
