"""``validate``'s result: one row per artifact and the report with its JSON form and terminal table.

The table prints each artifact's name and runner on one line and its numbers under the header on the next, so it
fits :data:`TABLE_WIDTH` columns for COCO and whole-body alike (long names or reasons wrap; nothing is cut).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: the terminal table's widest line (columns) for usual names and runners; long ones wrap, nothing is cut
TABLE_WIDTH = 120


@dataclass(frozen=True)
class ValidationRow:
    """One artifact's result. The baseline row has delta 0, agreement 1 and displacement 0."""

    artifact: str
    runner: str
    metrics: dict[str, Any]         # evaluate --json's keys: AP, AP50, AP75, APm, APl, AR (whole-body: per part)
    AP: float                       # the headline AP, 0-1 (whole-body: all 133 points)
    delta_AP: float                 # AP - baseline AP (0-1)
    argmax_agreement: float         # fraction of keypoints with the baseline's argmax bins in x and y
    mean_disp_px: float             # keypoint displacement vs the baseline, image pixels
    max_disp_px: float
    within_budget: bool             # delta_AP >= -max_ap_drop (always True for the baseline); see also ``passed``
    model_ms_per_crop: float        # mean runner time per crop (flip test: both passes)
    precision: str = "fp32"         # the precision it ran in: gtpt.precision, or bf16 (OpenVINO bf16 run)
    budget: float = 0.0             # the AP drop allowed for this row (0-1)
    kept_tokens: tuple[float, ...] | None = None   # per pruning stage: fraction of the baseline's kept tokens kept
    lineage: str = "baseline"       # derived / other / unknown: what the recorded hashes say (eval/lineage.py)
    same_model: bool = True         # derived from the baseline, or agreeing with it above its precision's floors
    reason: str = ""                # why same_model is what it is (one line)

    @property
    def passed(self) -> bool:
        """Within the AP budget and the baseline's model."""
        return self.within_budget and self.same_model

    def to_dict(self) -> dict[str, object]:
        """The row as JSON: ``evaluate --json``'s keys at the top level, then the agreement columns."""
        d = asdict(self)
        metrics = d.pop("metrics")
        d.pop("AP")
        return {"artifact": d.pop("artifact"), "runner": d.pop("runner"), **metrics, **d, "passed": self.passed}

    @property
    def headline(self) -> dict[str, float]:
        """AP, AP50, AP75, AR of the headline metrics (whole-body: the ``wholebody`` part)."""
        return self.metrics.get("wholebody", self.metrics)


@dataclass(frozen=True)
class ValidationReport:
    rows: list[ValidationRow]       # baseline first
    max_ap_drop: float
    boxes: str
    images: int
    persons: int

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict[str, object]:
        return {"rows": [r.to_dict() for r in self.rows], "max_ap_drop": self.max_ap_drop, "boxes": self.boxes,
                "images": self.images, "persons": self.persons, "passed": self.passed}

    def format_table(self, width: int = TABLE_WIDTH) -> str:
        """The terminal table, at most ``width`` columns for COCO and whole-body alike: per artifact (baseline
        first) a line with its name and runner, then its numbers under the header (and, for a candidate that is
        not the baseline's model, why); then the verdict. ``to_dict`` holds the same values."""
        names = [Path(r.artifact).name + (" (base)" if i == 0 else "" if r.passed else " FAIL")
                 for i, r in enumerate(self.rows)]
        header = (f"  {'AP':>5} {'AP50':>5} {'AP75':>5} {'AR':>5} {'prec':>4} {'dAP':>7} {'budget':>6} {'argmax':>6} "
                  f"{'mean px':>7} {'max px':>7} {'model':>7}  kept tokens/stage")
        lines = ["AP columns: COCO keypoint AP, 0-1; each artifact: its name and runner, then its numbers", header,
                 "-" * len(header)]
        for name, r in zip(names, self.rows):
            h = r.headline
            tokens = " ".join(f"{t:.3f}" for t in r.kept_tokens) if r.kept_tokens is not None else "-"
            lines += _wrapped(f"{name}  {r.runner}", width)
            lines.append(f"  {h['AP']:5.3f} {h['AP50']:5.3f} {h['AP75']:5.3f} {h['AR']:5.3f} {r.precision:>4} "
                         f"{r.delta_AP:+7.4f} {r.budget:6.4f} {r.argmax_agreement:6.4f} {r.mean_disp_px:7.3f} "
                         f"{r.max_disp_px:7.3f} {_model(r):>7}  {tokens}")
            if not r.same_model:
                lines += _wrapped(f"  {name}: {r.reason}", width)
        if self.passed:
            verdict = "within the budget (AP drop <= the row's budget, 0-1 AP), every candidate the baseline's model"
        else:
            verdict = "OVER the budget (AP drop <= the row's budget, 0-1 AP) or not the baseline's model"
        lines += _wrapped(f"boxes: {self.boxes}; {self.images} images, {self.persons} persons", width) + [verdict]
        return "\n".join(lines)


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` columns (continuations indented four spaces); nothing dropped."""
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False) \
        or [text]


def _model(row: ValidationRow) -> str:
    """The table's model column: how a row is the baseline's model (or NOT)."""
    if row.lineage == "baseline":
        return "base"
    return ("derived" if row.lineage == "derived" else "agrees") if row.same_model else "NOT"
