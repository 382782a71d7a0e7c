"""The calibration stage: FP32 ONNX + COCO person crops -> Q/DQ INT8 ONNX, ranges JSON and TensorRT legacy cache.

``calibrate_int8`` composes the pieces: which persons calibrate and which measure (``calib.data``), crops
(``runtime.crops``), ranges (collected, or reused when the manifest matches and ``ranges.check_ranges`` accepts them),
the recipe (``calib.int8``) measured against FP32 by default and widened by ``calib.budget``'s layer search when the
lower confidence bound of its ΔAP (``calib.noise``) misses the budget, the CPU fusion check for the ``cpu`` target,
metadata, and atomic writes. Nothing is written when any step fails. No torch import.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..artifacts import ArtifactSet, Inputs, calib_paths, check_outputs, int8_path, sha256_file
from ..coco import load_annotations
from ..errors import ArtifactError, GtptError
from ..eval.validate import DEFAULT_BUDGETS, check_layouts
from ..export.fp16 import open_fp32_source
from ..metadata import write_onnx_meta
from ..runtime.crops import person_crops
from ..runtime.images import IMAGE_SUFFIXES
from . import budget as budget_mod
from .data import default_num, images_sha256, split_persons
from .fusion import FusionReport, cpu_fusion
from .int8 import Int8Recipe, collect_ranges, method_options, quantized_nodes, required_tensors
from .noise import ApBound
from .ranges import Manifest, Ranges, check_ranges, check_reusable, from_ort, read_ranges, to_ort, trt_cache_text

log = logging.getLogger(__name__)
#: The default AP budget: validate's INT8 budget, taken from the one place that defines it.
INT8_BUDGET: float = DEFAULT_BUDGETS["int8"]


def persons_to_resolve(max_ap_drop: float | None) -> int:
    """Persons a measured set needs before one person lost (OKS-NMS, a missed keypoint set) moves AP by no more
    than the budget: ceil(1 / budget) (200 for 0.005); 0 without a budget."""
    return 0 if not max_ap_drop else math.ceil(1 / max_ap_drop - 1e-9)


@dataclass(frozen=True)
class Measurement:
    """Where ΔAP and argmax agreement were measured: ``eval_ann`` (a file of its own) or ``held_out`` (persons of
    the calibration file left out of calibration: their annotation ids, the split seed)."""

    source: str
    ann: str
    persons: int
    held_out_ids: tuple[Any, ...] = ()
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ann": self.ann, "persons": self.persons,
                "held_out_annotation_ids": list(self.held_out_ids), "seed": self.seed}

    def describe(self) -> str:
        if self.source == "held_out":
            return (f"{self.persons} persons of {Path(self.ann).name} held out from calibration (seed {self.seed}; "
                    f"their annotation ids are in --json and the file's gtpt.extra.int8.eval)")
        return f"{self.persons} persons of {Path(self.ann).name}"


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_int8` wrote and measured (AP in 0-1, on ``measured``'s persons)."""

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
    measured: Measurement | None = None
    max_ap_drop: float | None = None
    available: int = 0                    # usable persons for calibration (crops were taken from these)
    outside_boxes: int = 0                # person boxes skipped: entirely outside their image
    reused_from: Path | None = None       # the ranges file reused (None: computed now)
    bound: ApBound | None = None          # ΔAP's one-sided lower confidence bound (calib.noise)

    @property
    def delta_ap(self) -> float | None:
        return None if self.fp32_ap is None or self.int8_ap is None else self.int8_ap - self.fp32_ap

    @property
    def search_engaged(self) -> bool:
        """The default recipe missed the budget and the layer search ran."""
        return len(self.steps) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "source": str(self.source), "ranges": str(self.ranges_path),
                "trt_cache": str(self.cache_path), "reused_ranges": self.reused_ranges,
                "reused_from": None if self.reused_from is None else str(self.reused_from),
                "recipe": self.recipe.to_dict(), "quantized_layers": self.quantized_layers,
                "weight_layers": self.weight_layers, "crops": self.crops, "available_persons": self.available,
                "outside_boxes": self.outside_boxes, "manifest_sha256": self.manifest_sha256,
                "fp32_AP": self.fp32_ap, "int8_AP": self.int8_ap, "delta_AP": self.delta_ap,
                "delta_AP_lower_bound": None if self.bound is None else self.bound.lower,
                "bound": None if self.bound is None else self.bound.to_dict(),
                "argmax_agreement": self.argmax_agreement,
                "eval": None if self.measured is None else {
                    **self.measured.to_dict(), "persons_to_resolve_budget": persons_to_resolve(self.max_ap_drop)},
                "max_ap_drop": self.max_ap_drop, "budget_search": self.search_engaged,
                "steps": [s.to_dict() for s in self.steps],
                "fusion": self.fusion.to_dict() if self.fusion else None, "seconds": self.seconds,
                "bytes": self.bytes}

    def format_report(self) -> str:
        r = self.recipe
        reuse = f" (reused from {self.reused_from}: same model, data and method)" if self.reused_from else ""
        lines = [f"int8 ({r.target}, {r.method}) -> {self.output} ({self.bytes / 1e6:.1f} MB)",
                 f"  quantized {self.quantized_layers} of {self.weight_layers} weight layers; float groups: "
                 f"{', '.join(r.float_groups) or 'none'}",
                 f"  calibrated on {self.crops} crops of the {self.available} usable persons left for calibration"
                 + (f" ({len(self.measured.held_out_ids)} more held out to measure)"
                    if self.measured is not None and self.measured.held_out_ids else "")
                 + (f"; {self.outside_boxes} box(es) outside their image skipped" if self.outside_boxes else ""),
                 f"  ranges: {self.ranges_path}{reuse}; TensorRT legacy cache: {self.cache_path}"]
        if self.delta_ap is not None and self.measured is not None:
            b = self.bound
            budget = "no budget (--max-ap-drop none)" if self.max_ap_drop is None else \
                f"budget: bound >= -{self.max_ap_drop:g}, " + (
                    f"met after the layer search ({len(self.steps) - 1} step(s))" if self.search_engaged
                    else "met by the default recipe")
            lines.append(f"  measured on {self.measured.describe()}")
            lines.append(f"  AP FP32 {self.fp32_ap:.4f} -> INT8 {self.int8_ap:.4f}: ΔAP {self.delta_ap:+.4f}"
                         + ("" if b is None else f", {b.confidence:.0%} lower bound {b.lower:+.4f} on {b.persons} "
                                                 f"persons")
                         + f", argmax agreement {self.argmax_agreement:.4f}; {budget}")
            few = self.measured.persons < persons_to_resolve(self.max_ap_drop)
            if few and self.max_ap_drop is not None:
                lines.append(f"  note: one person lost or found moves AP by ~{1 / self.measured.persons:.3f} on "
                             f"{self.measured.persons} persons, more than the budget: the bound covers the noise these "
                             f"persons show, not a loss none of them shows; --eval-ann with >= "
                             f"{persons_to_resolve(self.max_ap_drop)} persons of your data resolves the budget")
        if self.fusion is not None:
            lines.append("  " + self.fusion.format())
        lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class CalibrateOptions:
    """Everything ``calibrate_int8`` takes beyond the model and the calibration data (the CLI's options).

    Attributes:
        num: calibration crops (seeded selection); None: every usable person of the calibration pool, at most 512.
            More than the pool holds is an error.
        method: minmax / entropy / percentile.
        target: ``tensorrt`` (symmetric int8, zero points 0) or ``cpu`` (uint8 activations, fused by ONNX Runtime).
        max_ap_drop: AP budget (0-1; default: ``validate``'s INT8 budget), met when the one-sided lower confidence
            bound of ΔAP (``calib.noise``) is >= -max_ap_drop; otherwise the layer search (``calib.budget``) keeps
            sensitive groups float. None: measure only.
        eval_ann/eval_images: where ΔAP and argmax agreement vs FP32 are measured; default: a seeded third of the
            usable persons of ``ann`` (at most 512), held out from calibration (``calib.data``).
        output: default ``<name>_int8.onnx`` (tensorrt) / ``<name>_int8cpu.onnx`` (cpu) beside the source; ranges
            and cache go to ``calib/``, named after the output.
        force: replace existing outputs (and recompute this output's mismatching ranges).
        ranges: a ranges JSON to reuse (must match model, data and method; checked by ``ranges.check_ranges``).
        seed: crop selection, held-out split and bootstrap seed. threads: ONNX Runtime threads for measuring.
    """

    num: int | None = None
    method: str = "minmax"
    target: str = "tensorrt"
    max_ap_drop: float | None = INT8_BUDGET
    eval_ann: str | os.PathLike[str] | None = None
    eval_images: str | os.PathLike[str] | None = None
    output: str | os.PathLike[str] | None = None
    force: bool = False
    ranges: str | os.PathLike[str] | None = None
    seed: int = 0
    threads: int | None = None

    def check(self) -> None:
        """One-line errors for option values no run can use (before anything is read)."""
        if self.max_ap_drop is not None and not (0 <= self.max_ap_drop <= 1):       # also refuses NaN
            raise GtptError(f"--max-ap-drop must be a 0-1 AP difference (0.005 = half an AP point) or 'none', got "
                            f"{self.max_ap_drop}")
        if (self.eval_ann is None) != (self.eval_images is None):
            raise GtptError("--eval-ann and --eval-images go together; pass both or neither")


@dataclass(frozen=True)
class _Data:
    """The calibration and measurement crops of one run, and the manifest that identifies the ranges' data."""

    crops: Any
    ecrops: Any
    egt: dict
    split: Any
    measured: Measurement
    manifest: Manifest


def _data(src: Path, meta: Any, ann: Any, images: Any, o: CalibrateOptions,
          report: Callable[[str], None]) -> _Data:
    """Everything about the data, checked before the first calibration pass: layouts, ids, the split, --num."""
    gt = load_annotations(ann)
    egt = load_annotations(o.eval_ann) if o.eval_ann is not None else None
    split = split_persons(gt, str(ann), hold_out=egt is None, seed=o.seed)
    check_layouts([src], egt if egt is not None else gt, o.eval_ann if o.eval_ann is not None else ann)
    if split.outside:
        report(f"warning: {split.outside} person box(es) of {ann} lie entirely outside their image; skipped")
    count = default_num(split, o.num, str(ann), egt is not None)
    crops = person_crops(split.calib, images, num=count, seed=o.seed, input_size=tuple(meta.input_size))
    if egt is not None:
        ecrops = person_crops(egt, o.eval_images, input_size=tuple(meta.input_size))
        measured = Measurement("eval_ann", str(o.eval_ann), len(ecrops))
    else:
        egt = split.held_out
        ecrops = person_crops(egt, images, input_size=tuple(meta.input_size))
        measured = Measurement("held_out", str(ann), len(ecrops), split.held_out_ids, o.seed)
    data_manifest = {**crops.manifest(), "ann_sha256": sha256_file(ann), "persons_sha256": crops.ann_sha256,
                     "held_out_annotation_ids": list(split.held_out_ids),
                     "images_sha256": images_sha256(images, crops.file_names)}
    manifest = Manifest(sha256_file(src), data_manifest, o.method, method_options(o.method))
    return _Data(crops, ecrops, egt, split, measured, manifest)


def calibrate_int8(onnx_model: str | os.PathLike[str], ann: str | os.PathLike[str], images: str | os.PathLike[str],
                   options: CalibrateOptions | None = None, report: Callable[[str], None] = log.info,
                   **kwargs: Any) -> CalibrationResult:
    """Calibrate a gtpt-deploy FP32 ONNX on GT person crops of ``ann``, write its Q/DQ INT8 form, and measure it.

    Args:
        onnx_model: FP32 ``.onnx`` from ``gtpt-deploy export``. ann/images: COCO keypoint file and its images.
        options: a :class:`CalibrateOptions`; ``kwargs`` are its fields by name (``num=64, target="cpu"``), on top.
        report: receives progress lines (the CLI prints them on stderr).

    Returns:
        :class:`CalibrationResult`. Raises GtptError subclasses (one line) on bad input or a missed budget.
    """
    t0 = time.perf_counter()
    o = replace(options or CalibrateOptions(), **kwargs)
    o.check()
    recipe = Int8Recipe(o.target, o.method)
    # every file this reads is protected from its outputs (images: the image files in the folders)
    inputs = Inputs([ann, images, o.eval_ann, o.eval_images, o.ranges], folder_suffixes=IMAGE_SUFFIXES)
    src, model, meta, out = open_fp32_source(onnx_model, o.output or int8_path(Path(onnx_model), o.target), o.force,
                                             "int8", "INT8 calibration", inputs=inputs)
    ranges_path, cache_path = calib_paths(out, o.method)
    d = _data(src, meta, ann, images, o, report)
    need = required_tensors(model)
    found, reused_from = _reusable(o.ranges, ranges_path, d.manifest, o.force, need)
    own = reused_from is not None and reused_from.resolve() == ranges_path.resolve()   # reused this output's file
    same_cache = own and found is not None and cache_path.is_file() and cache_path.read_text() == trt_cache_text(found)
    # the files this will write: replaced only with --force, never one of the inputs (checked before minutes of work)
    check_outputs([] if same_cache else [cache_path] if own else [ranges_path, cache_path], o.force, inputs=inputs)
    seconds: dict[str, float] = {}
    if found is None:
        t = time.perf_counter()
        report(f"calibrating on {len(d.crops)} crops of the {d.split.pool} usable persons left for calibration "
               f"({o.method})" + (f"; {len(d.split.held_out_ids)} more held out to measure ΔAP"
                                  if d.split.held_out_ids else ""))
        found = from_ort(collect_ranges(model, d.crops.crops, o.method), d.manifest)
        check_ranges(found, f"ranges computed from {src.name}", need, computed=True)
        seconds["calibrate"] = time.perf_counter() - t
    else:
        report(f"reusing ranges {reused_from} (same model, data and method)")

    t = time.perf_counter()
    judge = budget_mod.bootstrap_judge(d.ecrops, d.egt, o.seed)
    res = budget_mod.measure(model, to_ort(found), recipe, d.ecrops, meta, d.egt, o.threads, judge) \
        if o.max_ap_drop is None else \
        budget_mod.search(model, to_ort(found), recipe, d.ecrops, meta, d.egt, o.max_ap_drop, o.threads, report,
                          judge=judge)
    seconds["measure"] = time.perf_counter() - t
    fusion = cpu_fusion(res.model) if o.target == "cpu" else None
    if fusion is not None and not fusion.ok:
        report(f"warning: {fusion.format()}")
    layers = quantized_nodes(model, res.recipe)
    _stamp(res, meta, d, o, len(layers), Counter(w.group for w in layers))
    # One set, committed as export's is: ranges and cache first, the model (which marks the set complete) last;
    # any failure (full disk, a lost race for -o without --force) keeps none of them. This output's own ranges
    # (and an identical cache) reused unchanged are not rewritten.
    with ArtifactSet(force=o.force, inputs=inputs) as files:
        if not own:
            files.write_json(ranges_path, found.to_dict())
        if not same_cache:
            files.write_bytes(cache_path, trt_cache_text(found).encode())
        files.write_bytes(out, res.model.SerializeToString())
    seconds["total"] = time.perf_counter() - t0
    return CalibrationResult(out, src, ranges_path, cache_path, reused_from is not None, res.recipe, len(layers),
                             len(quantized_nodes(model, Int8Recipe(o.target, o.method, ()))), len(d.crops),
                             d.manifest.sha256(), res.fp32.ap, res.final.ap,
                             res.final.agreement(res.fp32).argmax_agreement, res.steps, fusion, seconds,
                             out.stat().st_size, d.measured, o.max_ap_drop, d.split.pool, d.split.outside,
                             reused_from, res.bound)


def _stamp(res: budget_mod.BudgetResult, meta: Any, d: _Data, o: CalibrateOptions, layers: int,
           by_group: Counter) -> None:
    """Write the INT8 metadata (recipe, data, measurement with its bound, search steps) into ``res.model``."""
    fp32, int8, recipe, steps = res.fp32, res.final, res.recipe, res.steps
    info = {**recipe.to_dict(), "quantized_layers": layers, "quantized_by_group": dict(by_group),
            "manifest_sha256": d.manifest.sha256(),
            "calibration": {"crops": len(d.crops), "available": d.split.pool,
                            "ann_sha256": d.manifest.data["ann_sha256"], "seed": o.seed,
                            "outside_boxes": d.split.outside},
            "delta_AP": int8.ap - fp32.ap, "delta_AP_lower_bound": res.bound.lower,
            "argmax_agreement": int8.agreement(fp32).argmax_agreement,
            "eval": {**d.measured.to_dict(), "fp32_AP": fp32.ap, "int8_AP": int8.ap, "bound": res.bound.to_dict()},
            "max_ap_drop": o.max_ap_drop, "budget_search": [s.to_dict() for s in steps] if len(steps) > 1 else None,
            "tool": "onnxruntime.quantization.quantize_static (QDQ)"}
    if recipe.base == "fp16":   # INT8 + FP16 for TensorRT (calib/mixed.py)
        from .mixed import base_facts

        info["fp16_base"] = base_facts()
    write_onnx_meta(res.model, replace(meta, precision="int8", parent_sha256=d.manifest.model_sha256,
                                       extra={**dict(meta.extra), "int8": info}))


def _reusable(given: str | os.PathLike[str] | None, default: Path, manifest: Manifest, force: bool,
              need: list[str]) -> tuple[Ranges | None, Path | None]:
    """(ranges to reuse or None, the file they come from). Explicit ranges must match and be valid; this output's own
    ranges file is reused when it matches, recomputed with ``force`` (saying why), and otherwise refused."""
    if given is not None:
        r = read_ranges(given)
        check_reusable(r, manifest, str(given), need)
        return r, Path(given)
    if not default.exists():
        return None, None
    try:
        r = read_ranges(default)
        check_reusable(r, manifest, str(default), need)
        return r, default
    except ArtifactError as e:
        if not force:
            raise
        log.warning("recomputing %s (--force): %s", default, str(e).split("; re-run")[0].split("; delete")[0])
        return None, None
