"""AP-budgeted mixed precision: keep the most sensitive weight-layer groups float until ΔAP vs FP32 fits the budget.

1. Score the FP32 model and the full recipe on the evaluation crops (COCO AP, flip test, GT boxes).
2. If the recipe misses the budget, rank the quantized groups by sensitivity: each group quantized *alone*, the
   KL divergence of its SimCC distributions from FP32's on the evaluation crops (no flip, no COCOeval: cheap).
3. Move groups to float, most sensitive first, scoring AP after each step, until ΔAP <= budget. The most conservative
   INT8 recipe still quantizes one group (the least sensitive); if that misses the budget too, the search fails.

Groups are transformer blocks / stages (``export.regions``), not nodes, so a search costs a few dozen forward passes
of the evaluation crops. No torch import.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import GtptError
from .evalset import CropScore, score_crops, session_infer
from .int8 import Int8Recipe, quantize, quantized_nodes

log = logging.getLogger(__name__)


class BudgetError(GtptError):
    """Even the most conservative INT8 recipe misses the AP budget (nothing was written)."""


@dataclass(frozen=True)
class BudgetStep:
    float_groups: tuple[str, ...]
    ap: float
    delta_ap: float                  # ap - fp32 ap (0-1)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"float_groups": list(self.float_groups), "AP": self.ap, "delta_AP": self.delta_ap,
                "seconds": self.seconds}


@dataclass(frozen=True)
class BudgetResult:
    """The search's outcome: the chosen recipe and its quantized model, the FP32 and final scores, every step."""

    recipe: Int8Recipe
    model: Any
    fp32: CropScore
    final: CropScore
    steps: list[BudgetStep]
    sensitivity: dict[str, float] = field(default_factory=dict)   # group -> KL (empty when not needed)


def _kl(base: tuple[np.ndarray, np.ndarray], cand: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean KL(base || cand) of the softmaxed SimCC logits, x and y together."""
    total = 0.0
    for b, c in zip(base, cand):
        b = b - b.max(-1, keepdims=True)
        c = c - c.max(-1, keepdims=True)
        lp = b - np.log(np.exp(b).sum(-1, keepdims=True))
        lq = c - np.log(np.exp(c).sum(-1, keepdims=True))
        total += float((np.exp(lp) * (lp - lq)).sum(-1).mean())
    return total


def _logits(infer: Callable, crops: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(infer(np.ascontiguousarray(crops[s:s + batch])) for s in range(0, len(crops), batch)))
    return np.concatenate(xs), np.concatenate(ys)


def search(model: Any, tensors_data: Any, recipe: Int8Recipe, crops: Any, meta: Any, gt: dict, max_ap_drop: float,
           threads: int | None = None, report: Callable[[str], None] = log.info,
           scorer: Callable[[Any], CropScore] | None = None) -> BudgetResult:
    """Find the recipe with the fewest float groups (in sensitivity order) whose ΔAP vs FP32 is within
    ``max_ap_drop`` (0-1 AP) on ``crops`` (``PersonCrops`` of ``gt``). ``report`` receives one line per step;
    ``scorer`` (ModelProto -> CropScore) defaults to COCO AP on ``crops`` with the flip test.

    Raises:
        BudgetError: the most conservative recipe (one group quantized) still misses the budget.
    """
    t0 = time.perf_counter()
    score = scorer or (lambda m: score_crops(session_infer(m, threads), crops, meta, gt))
    fp32 = score(model)
    report(f"budget: FP32 AP {fp32.ap:.4f} on {len(crops)} crops; budget ΔAP >= -{max_ap_drop:g}")
    steps: list[BudgetStep] = []

    def attempt(r: Int8Recipe) -> tuple[Any, CropScore]:
        t = time.perf_counter()
        q = quantize(model, tensors_data, r)
        s = score(q)
        steps.append(BudgetStep(r.float_groups, s.ap, s.ap - fp32.ap, time.perf_counter() - t))
        report(f"budget: float groups [{', '.join(r.float_groups) or '-'}]: AP {s.ap:.4f}, ΔAP {s.ap - fp32.ap:+.4f} "
               f"({steps[-1].seconds:.1f} s)")
        return q, s

    q, s = attempt(recipe)
    if fp32.ap - s.ap <= max_ap_drop + 1e-12:
        return BudgetResult(recipe, q, fp32, s, steps)

    groups = list(dict.fromkeys(w.group for w in quantized_nodes(model, recipe)))
    # the ranking below runs one quantization + inference pass per group with nothing to report until the end
    # (a minute or more on a CPU): say what is coming
    report(f"budget: ranking {len(groups)} weight-layer groups by sensitivity (each quantized alone and run on "
           f"{len(crops)} crops; no output until done)")
    base_logits = _logits(session_infer(model, threads), crops.crops)
    sens: dict[str, float] = {}
    for g in groups:      # each group quantized alone: its own damage, independent of the others
        alone = recipe.with_float(tuple(x for x in groups if x != g))
        sens[g] = _kl(base_logits, _logits(session_infer(quantize(model, tensors_data, alone), threads), crops.crops))
    order = sorted(groups, key=lambda g: -sens[g])
    report("budget: sensitivity (KL vs FP32, each group alone): "
           + ", ".join(f"{g} {sens[g]:.3g}" for g in order) + f" ({time.perf_counter() - t0:.1f} s so far)")
    for i in range(1, len(order)):             # keep at least one group quantized
        r = recipe.with_float(order[:i])
        q, s = attempt(r)
        if fp32.ap - s.ap <= max_ap_drop + 1e-12:
            return BudgetResult(r, q, fp32, s, steps, sens)
    raise BudgetError(f"no INT8 recipe within the AP budget: even with every group but '{order[-1]}' float, ΔAP is "
                      f"{steps[-1].delta_ap:+.4f} (budget -{max_ap_drop:g}); raise --max-ap-drop, calibrate with "
                      f"more crops or another --method, or use FP16")
