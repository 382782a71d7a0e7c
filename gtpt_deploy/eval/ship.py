"""``bench --ship``: which file, on which CPU backend, to ship on this machine.

Every ``.onnx`` given (FP32 / FP16 / INT8) is timed with every CPU backend this machine has (ONNX Runtime; OpenVINO
f32, and bf16 where the CPU has native bf16), each in its own worker process (``bench``); with an annotation file,
each combination also gets its COCO AP delta against the first artifact under ONNX Runtime (FP32: the reference,
as ``validate`` does with its baseline) and the budget of the precision it computes in
(:data:`~gtpt_deploy.eval.validate.DEFAULT_BUDGETS`). The verdict is the fastest combination within its budget at
the largest batch. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import GtptError


@dataclass
class ShipVerdict:
    """The answer line: the fastest entry within budget at ``batch`` (None when nothing qualifies)."""

    batch: int
    label: str | None
    ms_per_crop: float | None
    reason: str

    def line(self) -> str:
        if self.label is None:
            return f"ship on this CPU (batch {self.batch}): nothing qualifies ({self.reason})"
        return f"ship on this CPU (batch {self.batch}): {self.label}, {self.ms_per_crop:.2f} ms/crop ({self.reason})"


def cpu_providers() -> list[str]:
    """The CPU backends of this machine for .onnx files, as ``--provider`` values: ``cpu`` (ONNX Runtime), then
    ``openvino:f32`` and ``openvino:bf16`` when the ``openvino`` package is installed (bf16 only with native bf16)."""
    out = ["cpu"]
    try:
        import openvino
    except ImportError:
        return out
    from ..runners.openvino import cpu_capabilities

    out.append("openvino:f32")
    if "BF16" in cpu_capabilities(openvino.Core()):
        out.append("openvino:bf16")
    return out


def ship_matrix(artifacts: Sequence[str | Path], providers: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(artifacts, providers) for ``bench``: each .onnx once per CPU backend, artifact-major. GtptError for other
    files (a checkpoint or an engine is not a CPU deployment file)."""
    providers = list(providers) if providers is not None else cpu_providers()
    for a in artifacts:
        if Path(a).suffix.lower() != ".onnx":
            raise GtptError(f"--ship compares .onnx files on this CPU's backends, got {Path(a).name}; pass the "
                            f"FP32 / FP16 / INT8 .onnx files of one model")
    pairs = [(str(a), p) for a in artifacts for p in providers]
    return [a for a, _ in pairs], [p for _, p in pairs]


def ap_deltas(labels: Sequence[str], artifacts: Sequence[str], providers: Sequence[str], ann: str | Path,
              images: str | Path, threads: int | None, batch: int | None,
              progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Per entry: {"AP", "delta_AP", "precision", "budget", "within_budget"} on ``ann``'s images with GT boxes and
    the flip test, each run as ``bench`` ran it; the first entry is the reference."""
    from ..coco import load_annotations, to_coco_results
    from ..runtime.boxes import CachedBoxes, GroundTruthBoxes
    from ..runtime.person_boxes import box_source
    from ..runtime.core import stack_poses
    from .metrics import evaluate
    from ..runners import create_runner, provider_for
    from .validate import DEFAULT_BUDGETS, DEFAULT_MAX_AP_DROP, predict_all

    gt = load_annotations(ann)
    images = Path(images)
    paths = [images / n for n in GroundTruthBoxes(gt).file_names]
    ids = {images / Path(im["file_name"]).name: int(im["id"]) for im in gt["images"] if "file_name" in im}
    source = CachedBoxes(box_source(boxes="gt", ann=gt))
    out: list[dict[str, Any]] = []
    base_ap = 0.0
    for i, (label, artifact, provider) in enumerate(zip(labels, artifacts, providers)):
        progress(f"AP of {label} on {Path(ann).name}")
        with create_runner(artifact, "cpu", provider=provider_for(artifact, provider), threads=threads) as runner:
            run = predict_all(runner, paths, source, ids, True, batch)
        precision = run.precision
        ap = float(evaluate(gt, to_coco_results(*stack_poses(run.poses, run.meta.num_keypoints))).AP)
        base_ap = ap if i == 0 else base_ap
        budget = 0.0 if i == 0 else DEFAULT_BUDGETS.get(precision, DEFAULT_MAX_AP_DROP)
        out.append({"AP": ap, "delta_AP": ap - base_ap, "precision": precision, "budget": budget,
                    "within_budget": ap - base_ap >= -budget - 1e-12})
    return out


def verdict(rows: Sequence[Any], accuracy: dict[str, dict[str, Any]] | None) -> ShipVerdict:
    """The fastest timed row (ms per crop) at the largest timed batch whose entry is within its AP budget."""
    timed = [r for r in rows if r.median_ms is not None]
    if not timed:
        return ShipVerdict(0, None, None, "no artifact was timed")
    batch = max(r.batch for r in timed)
    candidates = [r for r in timed if r.batch == batch]
    if accuracy is not None:
        candidates = [r for r in candidates if accuracy.get(r.label, {}).get("within_budget")]
        if not candidates:
            return ShipVerdict(batch, None, None, "every artifact is over its AP budget")
    best = min(candidates, key=lambda r: r.ms_per_crop)
    first = next(r for r in timed if r.batch == batch)
    speed = f"{first.median_ms / best.median_ms:.2f}x {first.label}"
    if accuracy is None:
        return ShipVerdict(batch, best.label, best.ms_per_crop, f"{speed}; AP not checked: pass --ann to hold each "
                                                                f"to its budget")
    acc = accuracy[best.label]
    return ShipVerdict(batch, best.label, best.ms_per_crop, f"{speed}; dAP {acc['delta_AP']:+.4f} within the "
                                                            f"{acc['precision']} budget {acc['budget']:.4f}")
