"""Where frames come from: image files, folders, glob patterns, video files and cameras. No torch import.

``open_sources(inputs)`` turns the command line's inputs into a list of sources; each source iterates
:class:`SourceFrame` objects (a name, a frame index, a timestamp and a BGR image), so the run loop treats a photo, a video
frame and a camera frame alike. Image files are grouped into one :class:`ImageSource` (they share ``results.json``);
every video and camera is a source of its own (its own annotated video and per-frame results).
"""

from __future__ import annotations

import abc
import glob
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputImageError
from .images import IMAGE_SUFFIXES, load_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = set("*?[")
DEFAULT_FPS = 30.0  # containers that do not state a frame rate (CAP_PROP_FPS 0)


@dataclass
class SourceFrame:
    """One image to run on.

    Attributes:
        name: the image's file name, or ``<video stem>`` / ``camera<N>`` for frames of a stream.
        index: frame index within its source (0-based; the position in the list for images).
        timestamp: seconds since the start of the video / camera stream; None for image files.
        image: uint8 (H, W, 3) BGR, or None when it could not be read (then ``error`` says why).
        path: the image file (None for video and camera frames).
        error: one-line reason when ``image`` is None.
    """

    name: str
    index: int
    timestamp: float | None
    image: np.ndarray | None
    path: Path | None = None
    error: str | None = None


class ImageSource:
    """Image files (missing or undecodable ones come out as frames with an ``error``)."""

    kind = "images"

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.name = "images"

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[SourceFrame]:
        for i, path in enumerate(self.paths):
            try:
                image = load_image(path)
            except InputImageError as e:
                yield SourceFrame(path.name, i, None, None, path, str(e))
            else:
                yield SourceFrame(path.name, i, None, image, path)


class _Capture(abc.ABC):
    """Frames of a ``cv2.VideoCapture`` (a file or a camera), released when the iteration ends."""

    kind = "video"

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what
        self.fps = DEFAULT_FPS
        self.frames: int | None = None          # known frame count (files), None for cameras
        self.size: tuple[int, int] | None = None  # (W, H) as the container states it
        self._cap: cv2.VideoCapture | None = None  # opened by the constructor: errors surface before any output

    @abc.abstractmethod
    def _open(self) -> cv2.VideoCapture:
        """Open the capture (a file or a camera); subclasses say which."""

    def _timestamp(self, cap: cv2.VideoCapture, index: int, t0: float) -> float:
        return index / self.fps

    def __len__(self) -> int:
        return self.frames or 0

    def __iter__(self) -> Iterator[SourceFrame]:
        cap, self._cap = self._cap or self._open(), None
        t0 = time.monotonic()
        try:
            index = 0
            while True:
                ok, image = cap.read()
                if not ok or image is None:
                    break
                yield SourceFrame(self.name, index, round(self._timestamp(cap, index, t0), 6), image)
                index += 1
        finally:
            cap.release()


class VideoSource(_Capture):
    """The frames of a video file, with their presentation timestamps (seconds)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.stem, str(path))
        self.path = path
        self._cap = cap = self._open()
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else DEFAULT_FPS
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frames = count if count > 0 else None
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _open(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise InputImageError(f"{self.path}: no such file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise InputImageError(f"{self.path}: not a decodable video; expected a file OpenCV's FFmpeg reads "
                                  f"(MP4, AVI, MKV, MOV, WebM)")
        return cap

    def _timestamp(self, cap: cv2.VideoCapture, index: int, t0: float) -> float:
        # The container's timestamp of the frame just read; index/fps when the backend does not report one.
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if index == 0 or ms > 0 else index / self.fps


class CameraSource(_Capture):
    """A camera by index (``run ARTIFACT 0``); timestamps are seconds since the stream opened. Endless."""

    def __init__(self, index: int) -> None:
        super().__init__(f"camera{index}", f"camera {index}")
        self.index = index
        self._cap = self._open()

    def _open(self) -> cv2.VideoCapture:
        # OpenCV logs a warning per backend it tries; the one-line error below says it better.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            cap = cv2.VideoCapture(self.index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            cap.release()
            raise InputImageError(f"camera {self.index} cannot be opened (none attached, or in use); pass another "
                                  f"index, or image / video files")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else DEFAULT_FPS
        return cap

    def _timestamp(self, cap: cv2.VideoCapture, index: int, t0: float) -> float:
        return time.monotonic() - t0


Source = ImageSource | VideoSource | CameraSource


def _classify(path: Path) -> str:
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "other"


def open_sources(inputs: Iterable[str | Path]) -> list[Source]:
    """Command-line inputs -> sources, in input order (all image files first joined into one ImageSource).

    * a bare integer that is not a file (``0``): that camera;
    * a URL (``rtsp://``, ``https://``): refused with a one-line error (download the file first);
    * a folder: its image and video files (by suffix), sorted, not recursive;
    * a glob pattern (``'clips/*.mp4'``, quoted so the shell leaves it): the matching files, sorted;
    * a video file (by suffix): a VideoSource; anything else: an image path (a missing one fails when read).
    """
    images: list[Path] = []
    streams: list[Source] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if _URL.match(text):
            raise InputImageError(f"{text}: URLs are not read directly; download the file first (curl -LO URL) and "
                                  f"pass its path, or pass a camera index such as 0")
        if text.isdigit() and not path.exists():
            streams.append(CameraSource(int(text)))
            continue
        if path.is_dir():
            members = sorted(f for f in path.iterdir() if f.is_file() and _classify(f) != "other")
        elif not path.exists() and _GLOB_CHARS & set(text):
            members = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            members = [m for m in members if _classify(m) != "other"]
            if not members:
                raise InputImageError(f"pattern {text} matches no image or video file; check the pattern (quote it "
                                      f"so the shell does not expand it)")
        else:
            members = [path]
        for m in members:
            if _classify(m) == "video":
                streams.append(VideoSource(m))
            else:
                images.append(m)
    return ([ImageSource(images)] if images else []) + streams
