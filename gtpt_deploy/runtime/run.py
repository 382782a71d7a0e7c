"""The run stage: an artifact on images, videos or a camera -> results and annotated copies.

Images -> ``results.json`` (COCO keypoint results, rescored + OKS NMS) and annotated images; each video or camera ->
``<name>.json`` (persons per frame, with frame index and timestamp) and an annotated ``<name>.mp4`` (or a live
window for a camera when a display exists). A thin loop around
:meth:`~gtpt_deploy.runtime.predictor.Predictor.predict_frames`. No torch import.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import GtptError, InputImageError
from .boxes import BoxSource, WholeImageBoxes, image_id_from_name
from .outputs import (StreamOutput, check_folder, display_available, finish_folder, image_output_name,
                      unique_name)
from .predictor import Frame, ImageFailure, ImagePoses, Predictor
from .sources import CameraSource, ImageSource, Source, open_sources

log = logging.getLogger(__name__)

WHOLE_IMAGE_NOTE = ("no --detector or --boxes: each whole image is used as one person box (fine for single-person "
                    "crops; pass --detector for photos and videos with several people)")


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


def _image_frames(src: ImageSource, boxes: BoxSource, ids: dict[Path, int]) -> Iterator[Frame | ImageFailure]:
    for f in src:
        assert f.path is not None
        if f.image is None:
            yield ImageFailure(f.path, f.error or "cannot read it")
            continue
        try:
            b = boxes(f.path, f.image)
        except InputImageError as e:
            yield ImageFailure(f.path, str(e))
            continue
        yield Frame(f.path, f.image, b, ids[f.path])


def _stream_frames(src: Source, boxes: BoxSource, timestamps: dict[int, float | None]) -> Iterator[Frame]:
    for f in src:
        assert f.image is not None
        timestamps[f.index] = f.timestamp
        yield Frame(Path(f"{f.name}#{f.index:06d}"), f.image, boxes(Path(f.name), f.image), f.index)


def run_inputs(artifact: str | Path, inputs: Iterable[str | Path], out_dir: str | Path | None = None,
               boxes: str | Path | None = None, detector: str | Path | None = None, flip: bool = True,
               batch: int | None = None, device: str | None = None, box_thr: float | None = None,
               kpt_thr: float | None = None, draw: bool = True, force: bool = False, progress: bool = False,
               threads: int | None = None, show: bool | None = None, provider: str | None = None,
               ann: str | Path | None = None, detector_device: str = "cpu",
               detector_threads: int | None = None) -> RunSummary:
    """Pose on image files, folders, glob patterns, video files and cameras (``"0"``); see the module docstring.

    Args:
        out_dir: None: the first free ``runs/run``, ``runs/run2``, ...; an existing run folder needs ``force``
            (which removes that run's files once this one completes, see :func:`outputs.check_folder`).
        boxes: ``"gt"`` (ground-truth boxes of ``ann``) or a COCO detection results JSON (images only);
            detector: a person detector ONNX; neither: the whole image is one person (logged as a warning).
        ann: COCO annotation file whose ``file_name``s give the image ids (so ``evaluate ann results.json`` works).
        show: live window for cameras (None: when a display exists; else an annotated video is written).
        device, provider, threads: where the pose artifact runs (device None: the artifact's default, ``cuda`` for
            an engine, else ``cpu``); detector_device / detector_threads: the detector's.

    Undecodable / missing images are skipped and listed in the summary. Ctrl-C ends the run cleanly: what was
    processed is written.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..artifacts import ArtifactSet, Inputs, next_run_dir, remove_folders
    from ..coco import to_coco_results
    from ..runners import create_runner
    from .draw import DEFAULT_KPT_THR, draw_poses, encode_image
    from .person_boxes import box_source

    inputs = list(inputs)
    sources = open_sources(inputs)
    images = next((s for s in sources if isinstance(s, ImageSource)), None)
    streams = [s for s in sources if not isinstance(s, ImageSource)]
    if not sources:
        raise InputImageError(f"no images or videos found in {', '.join(map(str, inputs)) or 'the inputs'}; pass "
                              f"image or video files, folders, glob patterns or a camera index")
    if boxes is not None and streams:
        raise GtptError(f"--boxes matches image files by name and cannot box video or camera frames "
                        f"({streams[0].name}); use --detector")
    if images is not None:
        ids = assign_image_ids(images.paths) if ann is None else ann_image_ids(ann, images.paths)
        images = ImageSource([p for p in images.paths if p in ids])
    out = Path(out_dir) if out_dir is not None else next_run_dir()
    show = bool(show if show is not None else any(isinstance(s, CameraSource) for s in streams)
                and display_available())
    taken: set[str] = {"results.json"}
    image_names = [image_output_name(p, taken) for p in images.paths] if images else []
    # Every file the run reads: no output may be one of them (with or without --force), checked now and again when
    # each output gets its name.
    protected = Inputs([*(images.paths if images else []), *(getattr(s, "path", None) for s in streams),
                        artifact if not str(artifact).startswith(("triton://", "http://", "https://")) else None,
                        ann, detector, boxes if boxes not in (None, "gt") else None])
    stream_outs = [StreamOutput(out, unique_name(s.name, ".json", taken)[:-len(".json")], getattr(s, "what", s.name),
                                float(getattr(s, "fps", 30.0)), draw and not (show and isinstance(s, CameraSource)),
                                protected)
                   for s in streams]
    targets = (["results.json"] if images else []) + (image_names if draw else []) + [
        n for so in stream_outs for n in ([so.results_path.name] + ([so.video_path.name] if so.draw else []))]
    source = box_source(boxes=boxes, detector=detector, ann=ann, score_thr=box_thr, device=detector_device,
                        threads=detector_threads)
    if isinstance(source, WholeImageBoxes):
        log.warning(WHOLE_IMAGE_NOTE)
    earlier, created = check_folder(out, targets, force, inputs=protected)

    # the work itself, as a function: whatever ends it early (an error, a failed model load), the folder this run
    # created is removed again when nothing was written into it
    def work() -> RunSummary:
        log.info("writing to %s", out)
        thr = DEFAULT_KPT_THR if kpt_thr is None else kpt_thr
        poses: list[ImagePoses] = []
        failures: list[ImageFailure] = []
        stream_summaries: list[StreamSummary] = []
        drawn_names: list[str] = []
        interrupted = False
        t0 = time.perf_counter()
        image_seconds = image_model = 0.0
        # The annotated images and results.json commit as one set once the images are done (results.json last): an
        # image run that fails leaves no new annotated image and no results.json of other images. Ctrl-C ends the
        # images early and commits the set of those done so far (as streams, which write as they go, keep theirs).
        # force=True: existing targets were checked (and refused without --force) above; inputs never.
        image_set = ArtifactSet(force=True, inputs=protected)
        with create_runner(artifact, device=device, provider=provider, threads=threads) as runner, \
                logging_redirect_tqdm():
            predictor = Predictor(runner, flip=flip, batch=batch, keep_images=draw or show)
            dataset = predictor.dataset
            try:
                if images is not None:
                    bar = tqdm(total=len(images), unit="img", disable=not progress, file=sys.stderr, desc="pose")
                    try:
                        for result, name in zip(predictor.predict_frames(_image_frames(images, source, ids)),
                                                image_names):
                            bar.update(1)
                            if isinstance(result, ImageFailure):
                                log.debug("skipped %s", result.error)  # listed once, in the summary
                                failures.append(result)
                                continue
                            if draw and result.image is not None:
                                canvas = draw_poses(result.image, result.keypoints, dataset, result.boxes, thr,
                                                    result.box_scores)
                                image_set.write_bytes(out / name, encode_image(canvas, name))  # full disk: one line
                                drawn_names.append(name)
                            result.image = None
                            poses.append(result)
                    except KeyboardInterrupt:  # the results so far are written, as the --help promises
                        interrupted = True
                    except BaseException:      # a failure: the image set commits as a whole or not at all
                        image_set.discard()
                        raise
                    finally:
                        bar.close()
                    image_set.write_json(out / "results.json", to_coco_results(
                        *stack_poses(poses, runner.meta.num_keypoints),
                        file_names={p.image_id: Path(p.path).name for p in poses}))
                    image_set.commit()
                image_seconds, image_model = time.perf_counter() - t0, float(sum(runner.times))
                for src, so in zip(streams, stream_outs):
                    if interrupted:      # Ctrl-C during the images: the streams were not started
                        break
                    timestamps: dict[int, float | None] = {}
                    t_stream = time.perf_counter()
                    bar = tqdm(total=len(src) or None, unit="frame", disable=not progress, file=sys.stderr,
                               desc=src.name)
                    # A camera is shown live: batching crops across frames would hold each frame back until a batch
                    # fills, so a dynamic-batch model runs one crop per call there (unless --batch says otherwise).
                    live = isinstance(src, CameraSource) and runner.static_batch is None and batch is None
                    # Read ahead by one frame only: the next frame decodes while this one is posed, no extra delay.
                    stream_predictor = Predictor(runner, flip=flip, batch=1, keep_images=True, prefetch=1) \
                        if live else predictor
                    try:
                        for result in stream_predictor.predict_frames(_stream_frames(src, source, timestamps)):
                            assert isinstance(result, ImagePoses)
                            bar.update(1)
                            canvas = None
                            if (so.draw or show) and result.image is not None:
                                canvas = draw_poses(result.image, result.keypoints, dataset, result.boxes, thr,
                                                    result.box_scores)
                            so.add(result.image_id, timestamps.pop(result.image_id, None), result.keypoints,
                                   result.boxes, result.box_scores, canvas if so.draw else None)
                            if show and canvas is not None:
                                cv2.imshow(src.name, canvas)
                                if cv2.waitKey(1) & 0xFF in (27, ord("q")):  # Esc / q closes the window
                                    break
                    finally:
                        bar.close()
                        stream_summaries.append(StreamSummary(so.name, len(so.frames), so.persons,
                                                              time.perf_counter() - t_stream, so.results_path,
                                                              so.video_path if so.draw else None))
            except KeyboardInterrupt:
                if images is not None and not image_seconds:  # while committing the images: not all kept
                    image_set.discard()
                    raise
                interrupted = True
            except BaseException:
                for so in stream_outs:
                    so.close(keep=False)
                raise
            finally:
                if show:
                    cv2.destroyAllWindows()
            started = stream_outs[:len(stream_summaries)]
            for so in started:
                so.close()
            description = runner.description
        # Ctrl-C: the manifest lists what this run wrote, so the earlier run's files it did not replace go (no
        # results.json beside annotated images of another run)
        written = targets if not interrupted else (["results.json"] if images else []) + drawn_names + [
            n for so in started for n in ([so.results_path.name] + ([so.video_path.name] if so.draw else []))]
        finish_folder(out, written, earlier)
        results_path = out / "results.json" if images is not None else None
        persons = sum(len(p.keypoints) for p in poses) + sum(s.persons for s in stream_summaries)
        return RunSummary(str(artifact), description, len(images or []), persons, failures, results_path,
                          len(drawn_names),
                          image_seconds, image_model, out, stream_summaries, interrupted,
                          len(poses) + len(failures))

    try:
        return work()
    except BaseException:
        remove_folders(created)              # a failed run leaves no empty runs/runN behind (only empty folders go)
        raise


def stack_poses(poses: list[ImagePoses], k: int) -> tuple[np.ndarray, ...]:
    """Per-image results -> (image_ids (N,), keypoints (N, K, 3), box_scores (N,), centers (N, 2), scales (N, 2))
    over all instances, in image order (the arguments of ``evaluate.to_coco_results``)."""
    def cat(arrays: list[np.ndarray], shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        return np.concatenate(arrays).reshape(shape) if arrays else np.zeros((0, *shape[1:]), dtype)

    return (cat([np.full(len(p.keypoints), p.image_id, np.int64) for p in poses], (-1,), np.int64),
            cat([p.keypoints for p in poses], (-1, k, 3)), cat([p.box_scores for p in poses], (-1,)),
            cat([p.centers for p in poses], (-1, 2)), cat([p.scales for p in poses], (-1, 2)))
