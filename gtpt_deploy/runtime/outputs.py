"""Where a run writes: the output folder (never mixed with an earlier run's files), annotated images, annotated
videos with per-frame results, and the live window. No torch import.

A run folder holds a manifest (``artifacts.MANIFEST``) listing the files the run writes there, so ``--force``
removes exactly the previous run's files (annotated images of inputs that are not in this run included) and never
anything else the user keeps in that folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from ..artifacts import (Inputs, atomic_path, check_outputs, make_folders, read_manifest, remove_previous_run,
                         write_manifest)
from ..coco import rescore
from ..errors import ArtifactExistsError, OutputPathError

log = logging.getLogger(__name__)

WRITABLE_IMAGES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # annotated images keep these
VIDEO_SUFFIX, VIDEO_FOURCC = ".mp4", "mp4v"  # MPEG-4 Part 2: what opencv-python(-headless)'s FFmpeg always writes


def unique_name(stem: str, suffix: str, taken: set[str]) -> str:
    """``stem + suffix``, made unique (``a.jpg``, ``a_2.jpg``) against ``taken`` (case-insensitive); records it."""
    name, i = stem + suffix, 1
    while name.lower() in taken:
        i += 1
        name = f"{stem}_{i}{suffix}"
    taken.add(name.lower())
    return name


def image_output_name(path: Path, taken: set[str]) -> str:
    """Annotated-image file name of an input image: its own name (PNG for formats cv2 does not write)."""
    return unique_name(path.stem, path.suffix if path.suffix.lower() in WRITABLE_IMAGES else ".png", taken)


def check_folder(out_dir: Path, targets: list[str], force: bool,
                 inputs: Inputs | Iterable[str | os.PathLike[str] | None] = ()) -> tuple[list[str], list[Path]]:
    """Check, before any work, that a run may write ``targets`` (file names) into ``out_dir``; create the folder.

    Refused: a folder holding an earlier run (its manifest) or any existing target without ``force``, and - even
    with ``force`` - a target that is one of the ``inputs`` (images, videos, the model, annotation and box files:
    an input file is never overwritten). Returns (the earlier run's files, which :func:`finish_folder` removes once
    this run has completed; the folders created, for :func:`artifacts.remove_folders` when the run fails).
    """
    earlier = read_manifest(out_dir) if out_dir.is_dir() else []
    if earlier and not force:
        raise ArtifactExistsError(f"output folder {out_dir} already exists with an earlier run's {len(earlier)} "
                                  f"file(s); pass --force to replace them or choose another --out")
    check_outputs([out_dir / name for name in targets], force, inputs=inputs, option="--out")
    return earlier, make_folders(out_dir, "--out")


def finish_folder(out_dir: Path, targets: list[str], earlier: list[str]) -> list[str]:
    """After a completed run: delete the earlier run's files this one did not replace (other files stay) and write
    this run's manifest. Returns the names removed."""
    removed = remove_previous_run(out_dir, keep=set(targets)) if earlier else []
    write_manifest(out_dir, targets)
    return removed


def display_available() -> bool:
    """Whether a live window can be shown: a display server and an OpenCV build with a GUI (the headless wheel
    has none)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("gtpt-deploy", cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


def person_records(keypoints: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray) -> list[dict[str, Any]]:
    """One frame's persons as JSON: ``bbox`` xywh, ``box_score``, ``score`` (official rescoring), ``keypoints``
    K x [x, y, confidence]. No OKS NMS: a video frame keeps every detected person, in box order."""
    scores = rescore(keypoints, box_scores) if len(keypoints) else np.zeros(0)
    return [{"bbox": [round(float(v), 2) for v in b], "box_score": round(float(s), 4), "score": round(float(r), 4),
             "keypoints": np.round(k.astype(np.float64), 3).tolist()}
            for k, b, s, r in zip(keypoints, boxes, box_scores, scores)]


@dataclass
class StreamOutput:
    """A video's or camera's outputs: ``<name>.mp4`` (annotated, when drawing) and ``<name>.json``
    (``{"source", "fps", "frames": [{"frame", "timestamp", "persons": [...]}, ...]}``)."""

    folder: Path
    name: str                 # output stem
    source: str
    fps: float
    draw: bool
    inputs: Inputs = field(default_factory=Inputs)   # checked again when the files get their names
    frames: list[dict[str, Any]] = field(default_factory=list)
    persons: int = 0
    _writer: Any = None

    @property
    def video_path(self) -> Path:
        return self.folder / (self.name + VIDEO_SUFFIX)

    @property
    def _part_path(self) -> Path:  # written here, renamed on close: no half-written video under the final name
        # the temporaries' naming (owner pid): a killed run's partial video is removed by the next start
        return self.folder / f".{self.name}{VIDEO_SUFFIX}.{os.getpid()}.part.tmp{VIDEO_SUFFIX}"

    @property
    def results_path(self) -> Path:
        return self.folder / (self.name + ".json")

    def add(self, index: int, timestamp: float | None, keypoints: np.ndarray, boxes: np.ndarray,
            box_scores: np.ndarray, canvas: np.ndarray | None) -> None:
        """Record one frame's poses and append its annotated image to the video."""
        persons = person_records(keypoints, boxes, box_scores)
        self.persons += len(persons)
        self.frames.append({"frame": index, "timestamp": timestamp, "persons": persons})
        if canvas is None:
            return
        if self._writer is None:
            h, w = canvas.shape[:2]
            self._writer = cv2.VideoWriter(str(self._part_path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps,
                                           (w, h))
            if not self._writer.isOpened():
                raise OutputPathError(f"cannot write video {self.video_path} with OpenCV's {VIDEO_FOURCC} codec; "
                                      f"pass --no-draw to write results only")
        self._writer.write(canvas)

    def close(self, keep: bool = True) -> None:
        """Finish the video and write the per-frame results (also after Ctrl-C: what was seen is kept);
        ``keep=False`` (a failed run) removes the partial video instead."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if keep:
                try:
                    self.inputs.check(self.video_path, "--out")   # e.g. the clip itself, --out its folder
                except BaseException:
                    self._part_path.unlink(missing_ok=True)
                    raise
                os.replace(self._part_path, self.video_path)
        self._part_path.unlink(missing_ok=True)
        if not keep:
            return
        with atomic_path(self.results_path, inputs=self.inputs) as tmp:
            tmp.write_text(json.dumps({"source": self.source, "fps": self.fps, "frames": self.frames}) + "\n")

