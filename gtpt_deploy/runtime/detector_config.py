"""A person detector's pre-processing, read from mmdeploy's ``pipeline.json`` / ``deploy.json`` beside its ONNX.

mmdeploy writes the SDK description of an export next to ``end2end.onnx``: ``deploy.json`` (task, model file) and
``pipeline.json`` (the transforms: ``Resize``, ``Pad``, ``Normalize``). Reading them makes any RTMDet / YOLOX
person-detector export work with its own input size, normalization, colour order and padding. The semantics follow
the SDK's C++ transforms (``csrc/mmdeploy/preprocess/transform/{resize,pad,normalize}.cpp``): ``size`` is
``[height, width]`` (an int means square); ``keep_ratio`` scales by ``min(long/max(h, w), short/min(h, w))`` and
rounds ``int(x * s + 0.5)``; ``Pad`` pads bottom/right to ``size``, to a square, or to a multiple of
``size_divisor``, with the first ``pad_val``; ``Normalize`` defaults to ``to_rgb: true``.
Without these files the ONNX's declared input shape is used with the mmdet RTMDet defaults below. No torch import.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArtifactError

# mmdet RTMDet defaults (its data_preprocessor): BGR mean/std, no RGB conversion, pad 114, 640x640 test size.
DEFAULT_MEAN = (103.53, 116.28, 123.675)
DEFAULT_STD = (57.375, 57.12, 58.395)
DEFAULT_SIZE = (640, 640)
DEFAULT_PAD = 114.0
# Largest network input side accepted. Published detector test scales stop at 1536 (RTMDet 640, YOLOX 640,
# YOLOv5-P6 1280, DINO 1333); a 4096x4096 float32 input is already 201 MB and each pre-processing copy as much again.
# A hand-edited [40000, 40000] would ask for ~19 GB per copy and get the process killed by the kernel, with no message.
MAX_INPUT_SIDE = 4096
# Transforms that do not change the pixels the network sees (loading, packing, collecting).
_PASSIVE = {"LoadImageFromFile", "LoadAnnotations", "DefaultFormatBundle", "Collect", "ImageToTensor",
            "PackDetInputs", "RandomFlip", "Lift"}


@dataclass(frozen=True)
class DetectorConfig:
    """How an image becomes the detector's input (all sizes (H, W) in pixels).

    Attributes:
        resize: target size of ``Resize``; None when the image goes in at its own size.
        keep_ratio: scale both sides by one factor (mmdet ``keep_ratio``) instead of stretching.
        pad_size: fixed size to pad to (bottom/right); None for none.
        pad_to_square: pad to a square of the longer side.
        size_divisor: pad each side up to a multiple of this (1: none).
        pad_value: value of the padded pixels (before normalization).
        mean, std: per-channel normalization in the channel order the network gets.
        to_rgb: convert BGR to RGB before normalizing.
        input_name: the ONNX input fed (from pipeline.json's ``input_map``; None: the only input).
        source: where the settings came from (for messages).
    """

    resize: tuple[int, int] | None = DEFAULT_SIZE
    keep_ratio: bool = True
    pad_size: tuple[int, int] | None = DEFAULT_SIZE
    pad_to_square: bool = False
    size_divisor: int = 1
    pad_value: float = DEFAULT_PAD
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    to_rgb: bool = False
    input_name: str | None = None
    source: str = "defaults"

    def __post_init__(self) -> None:
        # The one place a detector configuration is checked, whichever way it was made (pipeline.json, ONNX shape,
        # defaults, a caller's own): absurd sizes would be allocated before anything else could fail, and a zero or
        # non-finite normalization turns every input into inf/NaN, which the detector answers with "0 persons".
        where = self.source
        for name, size in (("Resize size", self.resize), ("Pad size", self.pad_size)):
            if size is not None:
                _check_sides(size, f"{where}: {name}")
        if not 1 <= self.size_divisor <= MAX_INPUT_SIDE:
            raise ArtifactError(f"{where}: Pad size_divisor must be 1..{MAX_INPUT_SIDE}, got {self.size_divisor}; "
                                f"fix the pipeline.json (mmdet uses 32)")
        if not math.isfinite(self.pad_value):
            raise ArtifactError(f"{where}: Pad pad_val must be a finite pixel value, got {self.pad_value}; "
                                f"fix the pipeline.json (mmdet uses 114 or 0)")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ArtifactError(f"{where}: Normalize needs 3 'mean' and 3 'std' values, got mean {self.mean} and "
                                f"std {self.std}")
        if not all(math.isfinite(v) for v in self.mean):
            raise ArtifactError(f"{where}: Normalize mean must be finite, got {list(self.mean)}; "
                                f"fix the pipeline.json (RTMDet: {list(DEFAULT_MEAN)})")
        if not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ArtifactError(f"{where}: Normalize std must be finite and > 0 (pixels are divided by it), got "
                                f"{list(self.std)}; fix the pipeline.json (RTMDet: {list(DEFAULT_STD)})")

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The network input (H, W) for an (h, w) image; ArtifactError when a side would exceed MAX_INPUT_SIDE
        (pad_to_square or size_divisor without Resize follow the image, so only the image decides)."""
        rh, rw = resized_size(self, h, w)
        if self.pad_to_square:
            out = max(rh, rw), max(rh, rw)
        elif self.pad_size is not None:
            out = self.pad_size
        else:
            d = self.size_divisor
            out = -(-rh // d) * d, -(-rw // d) * d
        if max(out) > MAX_INPUT_SIDE:
            raise ArtifactError(f"{self.source} makes a {out[0]}x{out[1]} detector input from a {h}x{w} image, "
                                f"over the {MAX_INPUT_SIDE}-pixel side this tool accepts; add a Resize to the "
                                f"pipeline.json (detectors are trained at 320-1536)")
        return out


def _check_sides(size: tuple[int, int], where: str) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INPUT_SIDE for v in size):
        raise ArtifactError(f"{where} must be [height, width] with each side 1..{MAX_INPUT_SIDE}, got {list(size)}; "
                            f"fix the pipeline.json (detectors are trained at 320-1536)")


def resized_size(cfg: DetectorConfig, h: int, w: int) -> tuple[int, int]:
    """(H, W) after ``Resize`` (mmdeploy SDK arithmetic)."""
    if cfg.resize is None:
        return h, w
    th, tw = cfg.resize
    if not cfg.keep_ratio:
        return th, tw
    long_edge, short_edge = max(th, tw), min(th, tw)
    s = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _size(value: Any, where: str) -> tuple[int, int]:
    if _is_int(value):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ArtifactError(f"{where}: expected 'size' as an integer or [height, width], got {value!r}; "
                        f"fix the pipeline.json or remove it to use the ONNX's input shape")


def _number(value: Any, what: str, where: str) -> float:
    """A JSON number as float (bools and strings refused: float("nan") and float(True) would pass silently)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ArtifactError(f"{where}: expected a number for {what}, got {value!r}; fix the pipeline.json")


def _pad_value(value: Any, where: str) -> float:
    if isinstance(value, dict):
        value = value.get("img", DEFAULT_PAD)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else DEFAULT_PAD
    return _number(value, "Pad pad_val", where)


def _transforms(pipeline: dict, where: str) -> tuple[list[dict], str | None]:
    """The Preprocess transforms (nested lists flattened) and the Net task's input name."""
    inner = pipeline.get("pipeline") if isinstance(pipeline, dict) else None
    tasks = inner.get("tasks") if isinstance(inner, dict) else None
    if not isinstance(tasks, list):
        raise ArtifactError(f"{where}: expected mmdeploy's {{'pipeline': {{'tasks': [...]}}}}, found no task list; "
                            f"pass the pipeline.json mmdeploy wrote with the ONNX, or remove it")
    transforms: list[dict] = []
    input_name = None
    for task in tasks:
        if not isinstance(task, dict):
            continue
        if task.get("module") == "Transform":
            listed = task.get("transforms") or []
            stack = list(listed) if isinstance(listed, list) else []
            while stack:
                t = stack.pop(0)
                if isinstance(t, dict) and isinstance(t.get("transforms"), list):  # MultiScaleFlipAug & co.
                    stack[:0] = t["transforms"]
                elif isinstance(t, dict):
                    transforms.append(t)
        elif task.get("module") == "Net":
            input_map = task.get("input_map") or {}
            input_name = input_map.get("img") if isinstance(input_map, dict) else None
            if input_name is not None and not isinstance(input_name, str):
                raise ArtifactError(f"{where}: the Net task's input_map 'img' must name an ONNX input, got "
                                    f"{input_name!r}; fix the pipeline.json")
    return transforms, input_name


def parse_pipeline(pipeline: dict, where: str = "pipeline.json") -> DetectorConfig:
    """mmdeploy ``pipeline.json`` content -> :class:`DetectorConfig` (unknown geometric transforms are refused)."""
    transforms, input_name = _transforms(pipeline, where)
    resize = None
    keep_ratio = False
    pad_size: tuple[int, int] | None = None
    pad_to_square = False
    size_divisor = 1
    pad_value = 0.0
    mean, std, to_rgb = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False  # no Normalize: raw BGR pixel values
    for t in transforms:
        kind = t.get("type")
        if not isinstance(kind, str):
            raise ArtifactError(f"{where}: a transform without a 'type' name: {str(t)[:80]}; fix the pipeline.json")
        if kind == "Resize":
            if "size" not in t:
                raise ArtifactError(f"{where}: Resize has no 'size'; expected mmdeploy's [height, width]")
            resize = _size(t["size"], where)
            keep_ratio = bool(t.get("keep_ratio", False))
        elif kind == "Pad":
            if t.get("pad_to_square"):
                pad_to_square = True
            elif t.get("size") is not None:
                pad_size = _size(t["size"], where)
            elif _number(t.get("size_divisor", 1), "Pad size_divisor", where) > 1:
                size_divisor = t["size_divisor"]
                if not _is_int(size_divisor):
                    raise ArtifactError(f"{where}: Pad size_divisor must be an integer, got {size_divisor!r}")
            if "pad_val" in t:
                pad_value = _pad_value(t["pad_val"], where)
        elif kind == "Normalize":
            m, sd = t.get("mean"), t.get("std")
            if not isinstance(m, list) or not isinstance(sd, list) or len(m) != 3 or len(sd) != 3:
                raise ArtifactError(f"{where}: Normalize needs 3 'mean' and 3 'std' values, got mean {m!r} and "
                                    f"std {sd!r}; fix the pipeline.json")
            mean = tuple(_number(v, "Normalize mean", where) for v in m)  # type: ignore[assignment]
            std = tuple(_number(v, "Normalize std", where) for v in sd)   # type: ignore[assignment]
            to_rgb = bool(t.get("to_rgb", True))       # the SDK's default
        elif kind not in _PASSIVE:
            raise ArtifactError(f"{where}: transform '{kind}' is not supported (supported: Resize, Pad, Normalize); "
                                f"export the detector with a Resize + Pad + Normalize pipeline (RTMDet, YOLOX)")
    return DetectorConfig(resize, keep_ratio, pad_size, pad_to_square, size_divisor, pad_value, mean, std, to_rgb,
                          input_name, str(where))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read it as JSON ({e}); fix or remove it (it describes the detector "
                            f"beside it)") from None


def load_detector_config(onnx_path: str | Path, declared_hw: tuple[int | None, int | None]) -> DetectorConfig:
    """The pre-processing of the detector at ``onnx_path``.

    Args:
        onnx_path: the detector ONNX; ``pipeline.json`` / ``deploy.json`` are looked for in its folder.
        declared_hw: the (H, W) its input declares (None for a symbolic dimension).

    Returns:
        the pipeline.json settings if present; else a letterbox to the declared size (or 640x640 when dynamic)
        with RTMDet's normalization. Raises ArtifactError when the two disagree on a static input size.
    """
    onnx_path = Path(onnx_path)
    folder = onnx_path.parent
    deploy = folder / "deploy.json"
    if deploy.is_file():
        info = _read(deploy)
        task = info.get("task") if isinstance(info, dict) else None
        models = info.get("models") if isinstance(info, dict) else None
        nets = [m.get("net") for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        if task not in (None, "Detector"):
            raise ArtifactError(f"{deploy} describes a '{task}' model, not a detector; pass a person detector "
                                f"export (mmdeploy task 'Detector') as --detector")
        if nets and onnx_path.name not in nets:  # a different model's description: do not apply it
            return _from_onnx(declared_hw, f"{onnx_path.name} (deploy.json names {nets}, not this file)")
    pipeline = folder / "pipeline.json"
    if not pipeline.is_file():
        return _from_onnx(declared_hw, f"{onnx_path.name} input shape")
    cfg = parse_pipeline(_read(pipeline), str(pipeline))
    h, w = declared_hw
    if h is not None and w is not None:
        # What the pipeline makes of a landscape and a portrait image must fit the static input.
        for probe in ((480, 640), (640, 480)):
            got = cfg.output_size(*probe)
            if got != (h, w):
                raise ArtifactError(f"{onnx_path.name} declares a fixed {h}x{w} input, but {pipeline} makes "
                                    f"{got[0]}x{got[1]} inputs (Resize {cfg.resize}, Pad {cfg.pad_size}); "
                                    f"use the pipeline.json exported with this ONNX")
    return cfg


def _from_onnx(declared_hw: tuple[int | None, int | None], source: str) -> DetectorConfig:
    h, w = declared_hw
    size = (h, w) if h is not None and w is not None else DEFAULT_SIZE
    return DetectorConfig(resize=size, keep_ratio=True, pad_size=size, source=f"{source} + RTMDet defaults")
