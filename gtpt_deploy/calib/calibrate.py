"""The calibration stage: FP32 ONNX + COCO person crops -> Q/DQ INT8 ONNX, ranges JSON and TensorRT legacy cache.

``calibrate_int8`` composes the pieces: crops (``runtime.crops``), ranges (collected, or reused when the manifest
matches), the recipe (``calib.int8``; with ``max_ap_drop`` chosen by ``calib.budget``), the CPU fusion check for the
``cpu`` target, metadata, and atomic writes. Nothing is written when any step fails. No torch import.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..artifacts import ArtifactSet, Inputs, calib_paths, check_outputs, sha256_file
from ..coco import load_annotations
from ..errors import GtptError
from ..export.fp16 import open_fp32_source
from ..metadata import write_onnx_meta
from ..runtime.crops import person_crops
from ..runtime.images import IMAGE_SUFFIXES
from . import budget as budget_mod
from .evalset import CropScore, score_crops, session_infer
from .fusion import FusionReport, cpu_fusion
from .int8 import Int8Recipe, collect_ranges, method_options, quantize, quantized_nodes
from .ranges import Manifest, Ranges, check_reusable, from_ort, read_ranges, to_ort, trt_cache_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_int8` wrote and measured (AP in 0-1; None when no evaluation set was scored)."""

    output: Path
    source: Path
    ranges_path: Path
    cache_path: Path
    reused_ranges: bool
    recipe: Int8Recipe
    quantized_layers: int
    weight_layers: int
    crops: int
    manifest_sha256: str
    fp32_ap: float | None
    int8_ap: float | None
    argmax_agreement: float | None
    steps: list[budget_mod.BudgetStep] = field(default_factory=list)
    fusion: FusionReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0

    @property
    def delta_ap(self) -> float | None:
        return None if self.fp32_ap is None or self.int8_ap is None else self.int8_ap - self.fp32_ap

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "source": str(self.source), "ranges": str(self.ranges_path),
                "trt_cache": str(self.cache_path), "reused_ranges": self.reused_ranges,
                "recipe": self.recipe.to_dict(), "quantized_layers": self.quantized_layers,
                "weight_layers": self.weight_layers, "crops": self.crops, "manifest_sha256": self.manifest_sha256,
                "fp32_AP": self.fp32_ap, "int8_AP": self.int8_ap, "delta_AP": self.delta_ap,
                "argmax_agreement": self.argmax_agreement, "steps": [s.to_dict() for s in self.steps],
                "fusion": self.fusion.to_dict() if self.fusion else None, "seconds": self.seconds,
                "bytes": self.bytes}

    def format_report(self) -> str:
        r = self.recipe
        lines = [f"int8 ({r.target}, {r.method}) -> {self.output} ({self.bytes / 1e6:.1f} MB)",
                 f"  quantized {self.quantized_layers} of {self.weight_layers} weight layers; float groups: "
                 f"{', '.join(r.float_groups) or 'none'}; {self.crops} calibration crops",
                 f"  ranges: {'reused ' if self.reused_ranges else ''}{self.ranges_path}"
                 + (" (same model, data and method)" if self.reused_ranges else "")
                 + f"; TensorRT legacy cache: {self.cache_path}"]
        if self.delta_ap is not None:
            lines.append(f"  AP FP32 {self.fp32_ap:.4f} -> INT8 {self.int8_ap:.4f} (ΔAP {self.delta_ap:+.4f}), "
                         f"argmax agreement {self.argmax_agreement:.4f}")
        if self.fusion is not None:
            lines.append("  " + self.fusion.format())
        lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def calibrate_int8(onnx_model: str | os.PathLike[str], ann: str | os.PathLike[str], images: str | os.PathLike[str],
                   num: int | None = 512, method: str = "minmax", target: str = "tensorrt", max_ap_drop: float | None = None,
                   eval_ann: str | os.PathLike[str] | None = None, eval_images: str | os.PathLike[str] | None = None,
                   output: str | os.PathLike[str] | None = None, force: bool = False,
                   ranges: str | os.PathLike[str] | None = None, seed: int = 0, threads: int | None = None,
                   report: Callable[[str], None] = log.info) -> CalibrationResult:
    """Calibrate a gtpt-deploy FP32 ONNX on ``num`` GT person crops of ``ann`` and write its Q/DQ INT8 form.

    Args:
        onnx_model: FP32 ``.onnx`` from ``gtpt-deploy export``. ann/images: COCO keypoint file and its images.
        num: crops (seeded selection; None: every usable person); more than the file has is an error. method: minmax / entropy / percentile.
        target: ``tensorrt`` (symmetric int8, zero points 0) or ``cpu`` (uint8 activations, fused by ONNX Runtime).
        max_ap_drop: AP budget (0-1) for the layer search; eval_ann/eval_images: its evaluation set (default: all
            crops of ``ann``). With only eval_ann, ΔAP of the default recipe is measured and recorded.
        output: default ``<name>_int8.onnx`` beside the source; ranges and cache go to ``calib/``.
        ranges: a ranges JSON to reuse (must match model, data and method).
        report: receives progress lines (the CLI prints them on stderr).

    Returns:
        :class:`CalibrationResult`. Raises GtptError subclasses (one line) on bad input or a missed budget.
    """
    t0 = time.perf_counter()
    recipe = Int8Recipe(target, method)
    if max_ap_drop is not None and max_ap_drop < 0:
        raise GtptError(f"--max-ap-drop must be >= 0 (AP in 0-1), got {max_ap_drop}")
    if (eval_ann is None) != (eval_images is None):
        raise GtptError("--eval-ann and --eval-images go together; pass both or neither")
    # every file this reads is protected from its outputs (images: the image files in the folders)
    inputs = Inputs([ann, images, eval_ann, eval_images, ranges], folder_suffixes=IMAGE_SUFFIXES)
    src, model, meta, out = open_fp32_source(onnx_model, output, force, "int8", "INT8 calibration", inputs=inputs)
    ranges_path, cache_path = calib_paths(out.with_name(src.name), method)

    crops = person_crops(ann, images, num=num, seed=seed, input_size=tuple(meta.input_size))
    manifest = Manifest(sha256_file(src), crops.manifest(), method, target, method_options(method))
    found, reused = _reusable(ranges, ranges_path, manifest, force)
    seconds: dict[str, float] = {}
    if found is None:
        t = time.perf_counter()
        report(f"calibrating on {len(crops)} crops ({method})")
        found = from_ort(collect_ranges(model, crops.crops, method), manifest)
        seconds["calibrate"] = time.perf_counter() - t
        # the folder; an existing file was refused or accepted above; never one of the inputs
        check_outputs((ranges_path, cache_path), True, inputs=inputs)
    else:
        report(f"reusing ranges {ranges if ranges is not None else ranges_path} (same model, data and method)")
    data = to_ort(found)

    t = time.perf_counter()
    fp32 = int8 = None
    steps: list[budget_mod.BudgetStep] = []
    if max_ap_drop is not None or eval_ann is not None:
        ea, ei = (eval_ann, eval_images) if eval_ann is not None else (ann, images)
        gt = load_annotations(ea)
        ecrops = person_crops(gt, ei, input_size=tuple(meta.input_size))
        if max_ap_drop is not None:
            res = budget_mod.search(model, data, recipe, ecrops, meta, gt, max_ap_drop, threads, report)
            recipe, qmodel, fp32, int8, steps = res.recipe, res.model, res.fp32, res.final, res.steps
        else:
            qmodel = quantize(model, data, recipe)
            fp32, int8 = (score_crops(session_infer(m, threads), ecrops, meta, gt) for m in (model, qmodel))
        seconds["evaluate"] = time.perf_counter() - t
    else:
        qmodel = quantize(model, data, recipe)
        seconds["quantize"] = time.perf_counter() - t
    fusion = cpu_fusion(qmodel) if target == "cpu" else None
    if fusion is not None and not fusion.ok:
        report(f"warning: {fusion.format()}")

    layers = quantized_nodes(model, recipe)
    agreement = int8.agreement(fp32).argmax_agreement if fp32 is not None and int8 is not None else None
    info = {**recipe.to_dict(), "quantized_layers": len(layers),
            "quantized_by_group": dict(Counter(w.group for w in layers)), "manifest_sha256": manifest.sha256(),
            "calibration": {"crops": len(crops), "ann_sha256": crops.ann_sha256, "seed": seed},
            "delta_AP": None if fp32 is None else int8.ap - fp32.ap,
            "eval": None if fp32 is None else {"ann": str(eval_ann or ann), "fp32_AP": fp32.ap, "int8_AP": int8.ap},
            "max_ap_drop": max_ap_drop, "tool": "onnxruntime.quantization.quantize_static (QDQ)"}
    if recipe.base == "fp16":   # INT8 + FP16 for TensorRT (calib/mixed.py)
        from .mixed import base_facts

        info["fp16_base"] = base_facts()
    write_onnx_meta(qmodel, replace(meta, precision="int8", parent_sha256=manifest.model_sha256,
                                    extra={**dict(meta.extra), "int8": info}))
    # One set, committed as export's is: ranges and cache first, the model (which marks the set complete) last;
    # any failure (full disk, a lost race for -o without --force) keeps none of them.
    with ArtifactSet(force=force, inputs=inputs) as files:
        if not reused:
            files.write_json(ranges_path, found.to_dict())
            files.write_bytes(cache_path, trt_cache_text(found).encode())
        files.write_bytes(out, qmodel.SerializeToString())
    seconds["total"] = time.perf_counter() - t0
    return CalibrationResult(out, src, Path(ranges) if ranges is not None else ranges_path, cache_path, reused,
                             recipe, len(layers), len(quantized_nodes(model, Int8Recipe(target, method, ()))),
                             len(crops), manifest.sha256(), _ap(fp32), _ap(int8), agreement, steps, fusion, seconds,
                             out.stat().st_size)


def _ap(score: CropScore | None) -> float | None:
    return None if score is None else score.ap


def _reusable(given: str | os.PathLike[str] | None, default: Path, manifest: Manifest,
              force: bool) -> tuple[Ranges | None, bool]:
    """(ranges to reuse or None, reused?). Explicit ranges must match; the default file is reused when it matches,
    replaced with ``force``, and otherwise refused (it belongs to other data, another model or method)."""
    if given is not None:
        r = read_ranges(given)
        check_reusable(r, manifest, str(given))
        return r, True
    if not default.exists():
        return None, False
    r = read_ranges(default)
    if not r.manifest.mismatch(manifest):
        return r, True
    if force:
        return None, False
    check_reusable(r, manifest, str(default))   # raises, naming the difference
    return None, False
