"""Top-down pose on images: load -> person boxes -> crops -> batches (padded to a static batch) -> runner ->
SimCC decoding (official flip test) -> poses in image pixels.

Backend-agnostic: the runner is any :class:`~gtpt_deploy.runners.Runner`; pre- and post-processing are the shared
numpy functions of :mod:`transforms` and :mod:`codec`, so two backends fed the same boxes see identical crops.
No torch import.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

import cv2
import numpy as np

from . import codec
from .batching import infer_batched
from .boxes import Boxes, BoxSource, WholeImageBoxes
from ..errors import GtptError, InputImageError
from ..keypoints import DatasetInfo, dataset_for, flip_permutation
from ..runners.base import Runner
from .prefetch import prefetched
from .sources import ImageSource, SourceFrame
from .transforms import box_to_center_scale, crop_and_normalize

log = logging.getLogger(__name__)

DEFAULT_BATCH = 8
# Frames prepared ahead: enough to cover one pose call of a crowded image, small enough to bound memory.
DEFAULT_PREFETCH = 4


@dataclass
class ImagePoses:
    """The poses of one image. N persons, K keypoints.

    Attributes:
        keypoints: float32 (N, K, 3) x, y in image pixels and confidence.
        bins: int32 (N, K, 2) argmax SimCC bins (x, y) in the crop (for runner agreement).
        boxes, box_scores: the person boxes used, float32 (N, 4) xywh and (N,).
        centers, scales: float32 (N, 2) each, the crops (``box_to_center_scale``).
        image: the BGR image when the predictor keeps images (for drawing), else None.
    """

    path: Path
    image_id: int
    size: tuple[int, int]                 # (H, W)
    keypoints: np.ndarray
    bins: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    image: np.ndarray | None = None


@dataclass
class ImageFailure:
    """An input that could not be processed, and why (one line)."""

    path: Path
    error: str


Prediction = Union[ImagePoses, ImageFailure]


@dataclass
class Frame:
    """One decoded image to pose: uint8 (H, W, 3) BGR ``image`` with its person ``boxes``.

    ``path`` names it in results and drawings (a file, or e.g. ``video.mp4#000123`` for a video frame).
    """

    path: Path
    image: np.ndarray
    boxes: Boxes
    image_id: int


def build_frames(items: Iterable[SourceFrame], boxes: BoxSource,
                 image_id: Callable[[SourceFrame], int] = lambda f: f.index,
                 timestamps: dict[int, float | None] | None = None) -> Iterator[Frame | ImageFailure]:
    """The one frame builder: decoded source frames (images, video / camera frames, arrays) -> predictor frames
    with their person boxes, in order; an unreadable image or a box source error (InputImageError) becomes a failure.

    Args:
        items: :class:`~gtpt_deploy.runtime.sources.SourceFrame` s; one with a ``path`` is named by it, a stream
            frame ``<name>#<index:06d>``.
        boxes: called once per readable frame, in order, with (``path`` or ``Path(name)``, the BGR image).
        image_id: the frame's image id (default: its index in its source).
        timestamps: if given, receives ``image id -> timestamp`` of every frame built.
    """
    for f in items:
        path = f.path if f.path is not None else Path(f"{f.name}#{f.index:06d}")
        if f.image is None:
            yield ImageFailure(path, f.error or f"{path}: cannot read it")
            continue
        try:
            b = boxes(f.path if f.path is not None else Path(f.name), f.image)
        except InputImageError as e:
            yield ImageFailure(path, str(e))
            continue
        iid = int(image_id(f))
        if timestamps is not None:
            timestamps[iid] = f.timestamp
        yield Frame(path, f.image, b, iid)


def read_frames(paths: Iterable[str | Path], source: BoxSource,
                image_ids: dict[Path, int] | None = None) -> Iterator[Frame | ImageFailure]:
    """Image files -> :func:`build_frames`. Image ids: ``image_ids[path]``, else the box source's id, else the
    1-based position in ``paths``."""
    ids = image_ids or {}

    def image_id(f: SourceFrame) -> int:
        found = ids.get(f.path)  # type: ignore[arg-type]
        if found is None:
            found = source.image_id(f.path)  # type: ignore[arg-type]
        return found if found is not None else f.index + 1

    return build_frames(ImageSource([Path(p) for p in paths]), source, image_id)


@dataclass
class _Pending:
    result: Prediction
    owed: int                              # crops of this image whose logits have not arrived yet
    parts: list = field(default_factory=list)  # arrived (x, y, fx, fy) row blocks


class Predictor:
    """Runs an active runner over images; batching and padding to the runner's static batch happen here.

    Args:
        runner: an **active** runner (inside its ``with`` block).
        flip: official flip test (the flipped batch is run too; logits averaged before the softmax).
        batch: crops per runner call. Must equal the artifact's static batch if it has one (None: use it);
            default 8 for dynamic-batch artifacts.
        keep_images: attach the decoded image to each result (for drawing).
        prefetch: frames read and prepared ahead in a background thread (decode, person boxes, crops) while the
            pose model runs; 0 does everything in the calling thread. The reading thread pulls the input
            iterable (and so calls the box source) one item at a time, in order.
    """

    def __init__(self, runner: Runner, flip: bool = True, batch: int | None = None,
                 keep_images: bool = False, prefetch: int = DEFAULT_PREFETCH) -> None:
        static = runner.static_batch
        if batch is not None and batch < 1:
            raise GtptError(f"--batch must be at least 1, got {batch}")
        if static is not None and batch is not None and batch != static:
            # as run's --help says: a static batch is used as exported (one line, not a refusal)
            log.warning("--batch %d ignored: %s has a static batch of %d, used as exported", batch,
                        Path(str(runner.source)).name, static)
        self.runner = runner
        self.batch = static or batch or DEFAULT_BATCH
        self.static = static
        self.flip = flip
        # crops per chunk: a dynamic call holds a chunk and its flipped copies within `batch` rows
        self._chunk = max(1, self.batch // 2) if flip and static is None else self.batch
        self.keep_images = keep_images
        if prefetch < 0:
            raise GtptError(f"prefetch must be 0 (off) or more frames, got {prefetch}")
        self.prefetch = int(prefetch)
        meta = runner.meta
        self.input_size = (int(meta.input_size[0]), int(meta.input_size[1]))
        self.split_ratio = float(meta.split_ratio)
        self.dataset: DatasetInfo = dataset_for(meta.num_keypoints)
        # The artifact's own pairs, not the dataset default.
        self.flip_index = flip_permutation(meta.flip_pairs, meta.num_keypoints)
        self.padded_crops = 0  # zero rows added to fill static batches (flipped copies are rows too)
        # per runner call, the kept token indices of its crops (runner created with kept_tokens=True); None when
        # not recording, or once a call came back without them
        self._kept: list[list[np.ndarray]] | None = [] if runner.kept_tokens else None

    # ------------------------------------------------------------------ crops -> logits
    def infer_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """float32 (N, 3, H, W) -> raw (x, y) logits and, with flip, those of the flipped crops.

        ``batch`` is the most rows one runner call gets (an engine's profile or a server's max batch bounds it).
        Rows go to the runner in chunks of crops, each followed by its flipped copies: for a dynamic-batch artifact
        a chunk of batch/2 crops and its flips fill one call of ``batch`` rows; for a static batch B chunks of B
        crops make the row stream, cut into calls of B with only the last call zero-padded
        (:func:`~gtpt_deploy.runtime.batching.infer_batched`). Every backend we ship computes each row independently
        of its batch neighbours (ONNX Runtime CPU bit for bit, checked in tests), so the grouping changes speed, not
        results.
        """
        n = len(crops)
        size = self._chunk
        parts = []
        for start in range(0, n, size):
            chunk = crops[start:start + size]
            parts.append(chunk)
            if self.flip:
                parts.append(chunk[..., ::-1])  # width flip, as the official input.flip(3)
        rows = np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])
        call = self.static or self.batch  # dynamic: a chunk and its flipped copies share one call
        kept: list[list[np.ndarray] | None] = []   # per call, when the runner records kept tokens
        x, y, padded = infer_batched(self._infer_fn(kept), rows, call, static=self.static is not None)
        self.padded_crops += padded
        orig = self._original_rows(n)
        self._keep_tokens(kept, orig)
        if not self.flip:
            return x, y, None, None
        return x[orig], y[orig], x[~orig], y[~orig]

    def _original_rows(self, n: int) -> np.ndarray:
        """bool mask over the row stream of ``n`` crops: True for the crops themselves, False for their flipped
        copies; with flip the rows are [chunk_0, flipped chunk_0, chunk_1, flipped chunk_1, ...]."""
        if not self.flip:
            return np.ones(n, bool)
        orig = np.zeros(2 * n, bool)
        for start in range(0, n, self._chunk):
            orig[2 * start:2 * start + min(self._chunk, n - start)] = True
        return orig

    def _infer_fn(self, kept: list[list[np.ndarray] | None]) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        """``runner.infer``; when recording kept tokens, ``runner.infer_kept`` with each call's indices appended to
        ``kept`` (padding rows included: :meth:`_keep_tokens` drops them)."""
        if self._kept is None:
            return self.runner.infer

        def infer(piece: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x, y, k = self.runner.infer_kept(piece)
            kept.append(k)
            return x, y
        return infer

    def _keep_tokens(self, kept: list[list[np.ndarray] | None], orig: np.ndarray) -> None:
        """Store the kept tokens of the crops of one :meth:`infer_crops` (``kept``: per runner call; ``orig``: its
        :meth:`_original_rows`): not their flipped copies, not the padding of the last call."""
        if self._kept is None:
            return
        if any(k is None for k in kept):
            self._kept = None
            return
        rows = len(orig)
        self._kept.append([np.concatenate([k[i] for k in kept])[:rows][orig] for i in range(len(kept[0]))])

    def kept_tokens(self) -> list[np.ndarray] | None:
        """Which tokens each pruning stage kept for every crop run so far, in crop order (flipped copies and
        padding rows left out): one int64 (N, ..., k) array per stage (``Runner.infer_kept``); None unless the
        runner was created with ``kept_tokens=True`` and exposes them, or before any crop ran."""
        if not self._kept:
            return None
        return [np.concatenate(stage) for stage in zip(*self._kept)]

    def decode(self, x: np.ndarray, y: np.ndarray, fx: np.ndarray | None, fy: np.ndarray | None,
               centers: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits -> (keypoints (N, K, 3) in image pixels, argmax bins (N, K, 2))."""
        flipped = (fx, fy) if fx is not None and fy is not None else None
        return codec.decode_to_image(x, y, centers, scales, self.flip_index, flipped, self.split_ratio,
                                     self.input_size, with_bins=True)

    # ------------------------------------------------------------------ images -> poses (streaming)
    def predict_frames(self, frames: Iterable[Frame | ImageFailure]) -> Iterator[Prediction]:
        """The core: yield one :class:`ImagePoses` (or the :class:`ImageFailure` passed in) per item, in order.

        Works on decoded images, so video frames, benchmarks and library callers need no files. Crops of
        consecutive images share batches; an image is yielded once all its crops have run.
        """
        return self._predict(frames, self.prefetch)

    def _predict(self, frames: Iterable[Frame | ImageFailure], prefetch: int) -> Iterator[Prediction]:
        pending: deque[_Pending] = deque()
        crops: list[np.ndarray] = []
        n_crops = 0
        for poses, image_crops in self._prepared(frames, prefetch):
            pending.append(_Pending(poses, len(image_crops)))
            if len(image_crops):
                crops.append(image_crops)
                n_crops += len(image_crops)
            if n_crops >= self.batch:  # run whole batches now, keep the remainder for the next images
                full = n_crops // self.batch * self.batch
                allc = np.concatenate(crops)
                self._run(allc[:full], pending)
                crops, n_crops = ([allc[full:]] if full < len(allc) else []), len(allc) - full
            yield from self._emit_ready(pending)
        if n_crops:
            self._run(np.concatenate(crops), pending)
        yield from self._emit_ready(pending)

    def pose_image(self, image_bgr: np.ndarray, boxes: Boxes, image_id: int = 0,
                   name: str | Path = "image") -> ImagePoses:
        """Poses of the persons in ``boxes`` of one decoded uint8 (H, W, 3) BGR image."""
        result = next(self._predict([Frame(Path(name), image_bgr, boxes, int(image_id))], 0))  # no thread for one
        assert isinstance(result, ImagePoses)
        return result

    def predict(self, paths: Iterable[Path], boxes: BoxSource | None = None,
                image_ids: dict[Path, int] | None = None) -> Iterator[Prediction]:
        """Image files -> :meth:`predict_frames`: one :class:`ImagePoses` or :class:`ImageFailure` per path.

        Image ids: ``image_ids[path]``, else the box source's id (ground truth / COCO file name), else the
        1-based position in ``paths``. Missing or undecodable files become failures, the run goes on.
        """
        return self.predict_frames(read_frames(paths, boxes or WholeImageBoxes(), image_ids))

    def _prepared(self, frames: Iterable[Frame | ImageFailure],
                  prefetch: int) -> Iterator[tuple[Prediction, np.ndarray]]:
        """Frames -> (result shell, its crops float32 (N, 3, H, W)), in order; read ahead when ``prefetch``."""
        items = (self._prepare(f) for f in frames)
        return prefetched(items, prefetch) if prefetch else items

    def _prepare(self, frame: Frame | ImageFailure) -> tuple[Prediction, np.ndarray]:
        if isinstance(frame, ImageFailure):
            return frame, np.zeros((0, 3, *self.input_size), np.float32)
        image, b = frame.image, frame.boxes
        centers, scales = box_to_center_scale(b.xywh, self.input_size)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        crops = crop_and_normalize(rgb, centers.reshape(-1, 2), scales.reshape(-1, 2), self.input_size)
        k = self.dataset.num_keypoints
        poses = ImagePoses(path=frame.path, image_id=frame.image_id,
                           size=(int(image.shape[0]), int(image.shape[1])),
                           keypoints=np.zeros((0, k, 3), np.float32), bins=np.zeros((0, k, 2), np.int32),
                           boxes=b.xywh, box_scores=b.scores, centers=centers.reshape(-1, 2),
                           scales=scales.reshape(-1, 2), image=image if self.keep_images else None)
        return poses, crops

    def _run(self, crops: np.ndarray, pending: deque[_Pending]) -> None:
        """Infer ``crops`` and hand the rows, in order, to the pending images that own them (an image's crops
        may span two runs); an image whose last crop arrived is decoded."""
        outs = self.infer_crops(crops)
        row = 0
        for p in pending:
            if row == len(crops):
                break
            if p.owed == 0:
                continue
            take = min(p.owed, len(crops) - row)
            p.parts.append(tuple(o[row:row + take] if o is not None else None for o in outs))
            p.owed -= take
            row += take
            if p.owed == 0:
                x, y, fx, fy = (None if parts[0] is None else np.concatenate(parts) for parts in zip(*p.parts))
                assert isinstance(p.result, ImagePoses)
                if not all(np.isfinite(o).all() for o in (x, y, fx, fy) if o is not None):
                    # A broken artifact (NaN weights, FP16 overflow): this image fails; no NaN reaches results.
                    p.result = ImageFailure(p.result.path, f"{p.result.path}: the model returned NaN/Inf logits for "
                                                           f"its person crops; check the artifact (weights, precision)")
                else:
                    p.result.keypoints, p.result.bins = self.decode(x, y, fx, fy, p.result.centers, p.result.scales)
                p.parts = []
        if row != len(crops):  # a bug in the bookkeeping, not a user error
            raise RuntimeError(f"crop bookkeeping mismatch: {row} of {len(crops)} rows handed out")

    @staticmethod
    def _emit_ready(pending: deque[_Pending]) -> Iterator[Prediction]:
        while pending and pending[0].owed == 0:
            yield pending.popleft().result
