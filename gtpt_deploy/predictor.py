"""Top-down pose on images: load -> person boxes -> crops -> batches (padded to a static batch) -> runner ->
SimCC decoding (official flip test) -> poses in image pixels.

Backend-agnostic: the runner is any :class:`~gtpt_deploy.runners.Runner`; pre- and post-processing are the shared
numpy functions of :mod:`transforms` and :mod:`codec`, so two backends fed the same boxes see identical crops.
No torch import.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Union

import cv2
import numpy as np

from . import codec
from .boxes import Boxes, BoxSource, WholeImageBoxes
from .errors import GtptError, InputImageError
from .keypoints import DatasetInfo, dataset_for, flip_permutation
from .runners.base import Runner
from .transforms import box_to_center_scale, crop_and_normalize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm")
DEFAULT_BATCH = 8
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # annotated images keep these formats
# The official reader: always 3-channel 8-bit BGR (grayscale is replicated, alpha dropped, 16-bit scaled by 1/256),
# EXIF orientation ignored (COCO annotations are in stored-pixel coordinates).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3) BGR, as ``cv2.imread(IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION)``.

    Grayscale, RGBA and 16-bit files are converted; raises InputImageError for a missing or undecodable file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: also works for non-ASCII paths
    except FileNotFoundError:
        raise InputImageError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise InputImageError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from None
    image = cv2.imdecode(data, IMREAD_FLAGS) if data.size else None
    if image is None:
        raise InputImageError(f"{path}: not a decodable image ({data.size} bytes); expected JPEG, PNG, BMP, TIFF "
                              f"or WebP")
    if image.ndim == 2:  # defensive: codecs that ignore IMREAD_COLOR
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else cv2.convertScaleAbs(image)
    return image[..., :3] if image.shape[2] > 3 else image


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files and folders -> image paths. Folders: their image files (by suffix), sorted, not recursive.

    Paths that do not exist are kept (they fail, and are reported, when loaded).
    """
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


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
    """

    def __init__(self, runner: Runner, flip: bool = True, batch: int | None = None,
                 keep_images: bool = False) -> None:
        static = runner.static_batch
        if batch is not None and batch < 1:
            raise GtptError(f"--batch must be at least 1, got {batch}")
        if static is not None and batch is not None and batch != static:
            raise GtptError(f"{Path(runner.source).name} has a static batch of {static}, got --batch {batch}; "
                            f"leave out --batch or export the model with --batch {batch}")
        self.runner = runner
        self.batch = static or batch or DEFAULT_BATCH
        self.pad = static is not None
        self.flip = flip
        self.keep_images = keep_images
        meta = runner.meta
        self.input_size = (int(meta.input_size[0]), int(meta.input_size[1]))
        self.split_ratio = float(meta.split_ratio)
        self.dataset: DatasetInfo = dataset_for(meta.num_keypoints)
        # The artifact's own pairs, not the dataset default.
        self.flip_index = flip_permutation(meta.flip_pairs, meta.num_keypoints)
        self.padded_crops = 0

    # ------------------------------------------------------------------ crops -> logits
    def infer_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """float32 (N, 3, H, W) -> raw (x, y) logits and, with flip, those of the flipped crops; chunked + padded."""
        xs, ys, fxs, fys = [], [], [], []
        for start in range(0, len(crops), self.batch):
            chunk = crops[start:start + self.batch]
            n = len(chunk)
            if self.pad and n < self.batch:
                chunk = np.concatenate((chunk, np.zeros((self.batch - n, *chunk.shape[1:]), np.float32)))
                self.padded_crops += self.batch - n
            x, y = self.runner.infer(chunk)
            xs.append(x[:n])
            ys.append(y[:n])
            if self.flip:
                fx, fy = self.runner.infer(np.ascontiguousarray(chunk[..., ::-1]))  # width flip, as input.flip(3)
                fxs.append(fx[:n])
                fys.append(fy[:n])
        cat = np.concatenate
        return cat(xs), cat(ys), (cat(fxs) if self.flip else None), (cat(fys) if self.flip else None)

    def decode(self, x: np.ndarray, y: np.ndarray, fx: np.ndarray | None, fy: np.ndarray | None,
               centers: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits -> (keypoints (N, K, 3) in image pixels, argmax bins (N, K, 2))."""
        flipped = codec.flip_back(fx, fy, self.flip_index) if fx is not None else None
        coords, conf = codec.decode(x, y, self.split_ratio, flipped)
        xy = codec.to_image(coords, centers, scales, self.input_size)
        bins = np.rint(coords * self.split_ratio).astype(np.int32)
        return np.concatenate((xy, conf[..., None]), axis=-1), bins

    # ------------------------------------------------------------------ images -> poses (streaming)
    def predict(self, paths: Iterable[Path], boxes: BoxSource | None = None,
                image_ids: dict[Path, int] | None = None) -> Iterator[Prediction]:
        """Yield one :class:`ImagePoses` or :class:`ImageFailure` per path, in input order.

        Crops of consecutive images share batches; an image is yielded once all its crops have run.
        Image ids: ``image_ids[path]``, else the box source's id (ground truth / COCO file name), else the
        1-based position in ``paths``.
        """
        boxes = boxes or WholeImageBoxes()
        pending: deque[_Pending] = deque()
        crops: list[np.ndarray] = []
        n_crops = 0
        for pos, path in enumerate(paths, 1):
            try:
                poses, image_crops = self._prepare(Path(path), pos, boxes, image_ids)
            except InputImageError as e:
                pending.append(_Pending(ImageFailure(Path(path), str(e)), 0))
            else:
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

    def _prepare(self, path: Path, pos: int, source: BoxSource,
                 image_ids: dict[Path, int] | None) -> tuple[ImagePoses, np.ndarray]:
        image = load_image(path)
        b: Boxes = source(path, image)
        image_id = (image_ids or {}).get(path)
        if image_id is None:
            image_id = source.image_id(path)
        centers, scales = box_to_center_scale(b.xywh, self.input_size)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        crops = crop_and_normalize(rgb, centers.reshape(-1, 2), scales.reshape(-1, 2), self.input_size)
        k = self.dataset.num_keypoints
        poses = ImagePoses(path=path, image_id=int(image_id if image_id is not None else pos),
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
                p.result.keypoints, p.result.bins = self.decode(x, y, fx, fy, p.result.centers, p.result.scales)
                p.parts = []
        if row != len(crops):  # a bug in the bookkeeping, not a user error
            raise RuntimeError(f"crop bookkeeping mismatch: {row} of {len(crops)} rows handed out")

    @staticmethod
    def _emit_ready(pending: deque[_Pending]) -> Iterator[Prediction]:
        while pending and pending[0].owed == 0:
            yield pending.popleft().result


# ---------------------------------------------------------------------------------------------- the run stage

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
    from .boxes import image_id_from_name

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

    from .artifacts import check_writable, write_json
    from .boxes import box_source
    from .draw import DEFAULT_KPT_THR, draw_poses
    from .evaluate import to_coco_results
    from .runners import create_runner

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
