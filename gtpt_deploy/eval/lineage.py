"""The one rule for what ``validate`` accepts as "the same model" as its baseline.

An AP budget alone cannot tell a converted model from another model that happens to score alike (a different
checkpoint validated against an INT8 file was "within the budget" at argmax agreement 0.59). So every candidate row
must also be the baseline's model, in one of two ways:

* **derived**: the hashes the files record link them: a ``.pth``'s own sha256, ``gtpt.source_sha256`` (the
  checkpoint an ONNX was exported from, kept through ``fp16`` / ``calibrate`` / ``build``), ``gtpt.parent_sha256``
  (the FP32 ONNX an FP16 / INT8 file was made from) and an engine sidecar's ``onnx.sha256``. Chain:
  pth -> onnx -> fp16 / int8 -> engine; two files exported from the same checkpoint are siblings (also derived);
* **agreeing**: otherwise (files without recorded hashes, another checkpoint) its decisions must agree with the
  baseline's: argmax agreement and, where both expose them, kept tokens at every pruning stage at or above the floor
  of its precision (:data:`AGREEMENT_FLOORS`).

A candidate that is the baseline itself (same path or same bytes) certifies nothing and is refused before any
inference. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import sha256_file
from ..errors import GtptError
from ..metadata import ModelMeta

# Floors (argmax agreement, smallest per-stage kept-token agreement) for a candidate that is not derived from the
# baseline, by the candidate's precision (INT8: and its target). Measured with the bundled sample checkpoint as
# baseline on the 57 shared COCO val images (GT boxes, flip; validate of its export, fp16 and calibrate --num 86):
# fp32 1.000 / 1.000, fp16 0.969 / 0.951, int8 tensorrt 0.843 / 0.659, int8 cpu 0.685 / 0.639. Each floor sits
# about 0.05-0.1 below its conversion; a sibling checkpoint (the sample with 5% weight noise, AP 0.783 vs 0.808)
# reaches 0.29-0.32 / 0.40 against every one of them, and the other checkpoint 0.59 against INT8 cpu.
# (Kept tokens were then compared by position; compared as token ids, conversions agree more: INT8 tensorrt
# 0.97-1.0, so these floors are conservative for them.) bf16 (OpenVINO running an FP32 file in bf16): measured argmax
# 0.82-0.86 and ~0.70 kept tokens at stages 2-3 on the COCO and whole-body samples, so it gets INT8 tensorrt's floors.
AGREEMENT_FLOORS: dict[str, tuple[float, float]] = {
    "fp32": (0.95, 0.95),
    "fp16": (0.90, 0.85),
    "bf16": (0.75, 0.55),
    "int8:tensorrt": (0.75, 0.55),
    "int8:cpu": (0.62, 0.55),
}


@dataclass(frozen=True)
class Provenance:
    """What an artifact records about where it came from (hex sha256 strings, '' when unknown).

    Attributes:
        sha256: the file's own bytes ('' for a served ``triton://`` model).
        checkpoint: the checkpoint it was exported from (a ``.pth``: its own sha256; else ``gtpt.source_sha256``).
        chain: every file it records being made from (checkpoint, FP32 ONNX, the ONNX of an engine).
    """

    sha256: str
    checkpoint: str
    chain: frozenset[str]


def provenance(artifact: str | Path, meta: ModelMeta | None) -> Provenance:
    """The :class:`Provenance` of ``artifact`` from its bytes, its metadata ``meta`` and (engines) its sidecar."""
    text = str(artifact)
    if text.startswith("triton://") or not Path(text).is_file():
        own = ""
    else:
        own = sha256_file(text)
    if Path(text).suffix.lower() in (".pth", ".pt"):
        return Provenance(own, own, frozenset())
    chain = {meta.source_sha256, meta.parent_sha256} if meta is not None else set()
    if own and Path(text).suffix.lower() in (".engine", ".plan"):
        from ..tensorrt.sidecar import read_engine_sidecar

        onnx = read_engine_sidecar(Path(text)).get("onnx")
        if isinstance(onnx, dict) and isinstance(onnx.get("sha256"), str):
            chain.add(onnx["sha256"])
    return Provenance(own, meta.source_sha256 if meta is not None else "", frozenset(chain - {""}))


def relation(base: Provenance, cand: Provenance) -> tuple[str, str]:
    """-> (kind, why): kind ``derived`` (the recorded hashes link the two files), ``other`` (both record their
    checkpoint and it differs) or ``unknown`` (nothing recorded links or separates them)."""
    if base.sha256 and base.sha256 in cand.chain:
        return "derived", f"made from the baseline (records its sha256 {base.sha256[:12]}..)"
    if cand.sha256 and cand.sha256 in base.chain:
        return "derived", f"the baseline was made from it (sha256 {cand.sha256[:12]}..)"
    if base.checkpoint and base.checkpoint == cand.checkpoint:
        return "derived", f"same source checkpoint (sha256 {base.checkpoint[:12]}..)"
    if base.checkpoint and cand.checkpoint:
        return "other", (f"another checkpoint (source sha256 {cand.checkpoint[:12]}.. vs the baseline's "
                         f"{base.checkpoint[:12]}..)")
    return "unknown", "no recorded hash links it to the baseline"


def floor_key(meta: ModelMeta | None, run_precision: str | None = None) -> str:
    """The :data:`AGREEMENT_FLOORS` key of a candidate: its precision (the one it ran in, when the backend computes
    in another, e.g. OpenVINO bf16), INT8 with its target (default tensorrt)."""
    if run_precision == "bf16":
        return "bf16"
    precision = meta.precision if meta is not None else "fp32"
    if precision == "int8":
        recipe = (meta.extra or {}).get("int8") if meta is not None else None
        target = recipe.get("target") if isinstance(recipe, dict) else None
        return f"int8:{target if target in ('tensorrt', 'cpu') else 'tensorrt'}"
    return precision if precision in AGREEMENT_FLOORS else "fp32"


def same_model(kind: str, why: str, key: str, argmax: float,
               kept_tokens: Sequence[float] | None) -> tuple[bool, str]:
    """The verdict on one candidate: derived, or agreeing above the floors of ``key`` -> (ok, one-line reason)."""
    if kind == "derived":
        return True, f"derived: {why}"
    floor_argmax, floor_tokens = AGREEMENT_FLOORS[key]
    tokens = min(kept_tokens) if kept_tokens else None
    short = [f"argmax agreement {argmax:.3f} < {floor_argmax} ({key} floor)"] if not argmax >= floor_argmax else []
    if tokens is not None and not tokens >= floor_tokens:
        short.append(f"kept-token agreement {tokens:.3f} < {floor_tokens} ({key} floor)")
    measured = f"argmax {argmax:.3f}" + (f", kept tokens >= {tokens:.3f}" if tokens is not None else "")
    if not short:
        return True, f"agrees ({measured}; floors {floor_argmax} / {floor_tokens}); {why}"
    return False, (f"not shown to be the baseline's model: {why}, and {' and '.join(short)}; validate it against "
                   f"the checkpoint it was made from")


def refuse_self_comparison(baseline: str | Path, candidates: Sequence[str | Path]) -> None:
    """GtptError when a candidate is the baseline itself (same path, or same bytes): it certifies nothing."""
    def key(a: Any) -> str:
        text = str(a)
        return text if text.startswith("triton://") else str(Path(text).resolve())

    base = key(baseline)
    base_sha = sha256_file(base) if Path(base).is_file() else ""
    for cand in candidates:
        same_path = key(cand) == base
        if same_path or (base_sha and Path(key(cand)).is_file() and sha256_file(key(cand)) == base_sha):
            how = "the same file" if same_path else "byte-identical"
            raise GtptError(f"candidate {cand} is {how} as the baseline {baseline}: validating a model against "
                            f"itself certifies nothing; pass the checkpoint (or FP32 ONNX) it was made from as "
                            f"BASELINE")
