"""Tie-aware parity of an exported graph with PyTorch: per sample and pruning stage, the kept-token sets first.

GTPT's pruning is a data-dependent top-k. Where PyTorch's own boundary gap (score of the k-th kept token minus the
best dropped one) is within float32 noise, PyTorch and ONNX Runtime may keep different tokens and every logit after
that stage differs - a property of the input, not a defect of the export. So each sample is classed by its kept
tokens (PyTorch's recorded ``topk_indices`` calls vs the graph's TopK index outputs, exposed on an in-memory copy):

* same sets at every stage (compared as image-token ids, :func:`token_ids`): the strict check (max |diff| <= 1e-4, 100 % argmax agreement) applies as-is;
* sets first differ at a stage whose boundary gap is <= ``TIE_RTOL`` x the row's largest |score|: a **near-tie**.
  It is reported (sample, stage, gap) and checked strictly on a copy of the graph that keeps PyTorch's tokens
  (``eval.tokens.forced_topk_inputs``), so every op but the selection itself is still verified. Random inputs that
  hit one are replaced by further seeded draws, so as many samples are strict-checked as-is as before;
* sets differ with a wider gap, or a stage keeps another number of tokens: a real mismatch, named by its stage.

The SimCC argmax has ties of its own: on random inputs the logits are flat, and two bins within 1e-5 of each other
swap under float noise. A sample with the same kept tokens and logits within MAX_ABS_DIFF whose only argmax
differences are between bins PyTorch scores within 2 x MAX_ABS_DIFF is an "output argmax" near-tie, treated alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..eval.compare import batches_of
from ..eval.tokens import token_ids
from ..onnx_io import image_input

MAX_ABS_DIFF = 1e-4                     # ONNX Runtime vs PyTorch, logits
# Near-tie tolerance of the top-k boundary gap, relative to the row's largest |score|: 128 float32 epsilons (128 *
# 2**-23 = 1.5e-5). Measured with benchmarks/parity_sweep.py and its noise option (12 real crops + 100 random inputs
# each): ONNX Runtime's kept top-k scores differ from PyTorch's by up to 17 eps x max|score| (GTPT-T COCO sample), 22
# eps (GTPT-T whole-body sample), 22 eps (random-weight GTPT-S), 37 eps (random-weight GTPT-B) - summation order in
# the MatMul / Softmax / ReduceSum kernels. Two scores each off by up to ~37 eps can swap when their gap is below ~74
# eps; 128 eps covers that with margin and stays ~1000x below the gaps a changed weight or a broken op leaves (a
# relative gap of 6e-3 in tests/test_parity_ties.py).
TIE_RTOL = 128 * 2.0 ** -23
N_RANDOM = 4
MAX_REDRAWS = 4                         # rounds of extra seeded random inputs drawn to replace near-ties


@dataclass(frozen=True)
class NearTie:
    """One sample whose kept tokens differ at a stage where PyTorch's top-k boundary gap is within ``TIE_RTOL``.

    ``gap``: PyTorch's score of the k-th kept token minus the best dropped one; ``score``: the row's largest |score|;
    ``forced_max_abs_diff`` / ``forced_argmax_agreement``: ONNX Runtime with PyTorch's kept tokens vs PyTorch."""

    sample: int
    stage: str
    gap: float
    score: float
    forced_max_abs_diff: float
    forced_argmax_agreement: float

    @property
    def passed(self) -> bool:
        return self.forced_max_abs_diff <= MAX_ABS_DIFF and self.forced_argmax_agreement == 1.0


@dataclass(frozen=True)
class ParityCase:
    """ONNX Runtime vs PyTorch on one set of inputs at one batch size.

    ``samples``, ``max_abs_diff``, ``argmax_agreement``: over the samples whose kept tokens agree at every stage
    (agreement counts (sample, keypoint, axis)). ``near_ties``: the samples that were not, see :class:`NearTie`;
    ``redrawn``: extra random inputs drawn to replace them; ``mismatch``: the first real kept-token mismatch."""

    inputs: str                 # "real crops" or "random"
    batch: int
    samples: int
    max_abs_diff: float
    argmax_agreement: float
    near_ties: tuple[NearTie, ...] = ()
    redrawn: int = 0
    mismatch: str | None = None

    @property
    def passed(self) -> bool:
        return (self.mismatch is None and self.max_abs_diff <= MAX_ABS_DIFF and self.argmax_agreement == 1.0
                and all(t.passed for t in self.near_ties))

    def failure(self) -> str:
        """Why this case failed, one clause (empty when it passed)."""
        where = f"{self.inputs} at batch {self.batch}"
        if self.mismatch:
            return f"{where}: {self.mismatch}"
        if self.max_abs_diff > MAX_ABS_DIFF or self.argmax_agreement < 1.0:
            return (f"{where}: max |diff| {self.max_abs_diff:.2e} (<= {MAX_ABS_DIFF:g} expected), argmax agreement "
                    f"{self.argmax_agreement * 100:.2f}% (100% expected) with the same kept tokens at every stage")
        for t in self.near_ties:
            if not t.passed:
                return (f"{where}: sample {t.sample} (a near-tie at stage '{t.stage}') still differs with PyTorch's "
                        f"kept tokens forced: max |diff| {t.forced_max_abs_diff:.2e}, argmax agreement "
                        f"{t.forced_argmax_agreement * 100:.2f}%")
        return ""


@dataclass
class _Sample:
    index: int
    max_abs_diff: float
    agree: int
    total: int
    tie: tuple[str, float, float] | None = None         # stage, gap, score
    mismatch: str | None = None
    forced: tuple[float, int] | None = None             # max |diff|, agreeing argmaxes with PyTorch's tokens


def stage_names(cfg: Any) -> list[str]:
    """Pruning stages in call (= TopK node) order: one per step, one per group where the groups' k differ."""
    names = []
    for step in ("plain", "transition", "group"):
        ks = tuple(cfg.k_table[step])
        names.extend([step] if len(set(ks)) == 1 else [f"{step}{g}" for g in range(len(ks))])
    return names


@dataclass
class TieAwareParity:
    """PyTorch (an active ``TorchRunner``) vs an ONNX graph (``onnx.ModelProto``) with their kept tokens compared.

    ``run(data, batch)`` classes every sample (see the module docstring); ``case(label, data, batch)`` aggregates."""

    torch_runner: Any
    graph: Any
    stages: Sequence[str]
    _session: Any = field(default=None, init=False)
    _forced: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        from ..eval.tokens import topk_index_outputs
        from ..runners.ort import make_session

        copy, self._index_names = topk_index_outputs(self.graph)
        self._session = make_session(copy.SerializeToString(), name="exported graph")
        self._input = image_input(copy, "exported graph").name

    def _forced_session(self) -> tuple[Any, list[str]]:
        """The session of the graph copy that keeps given tokens (built on the first near-tie) and its inputs."""
        if self._forced is None:
            from ..eval.tokens import forced_topk_inputs
            from ..runners.ort import make_session

            copy, names = forced_topk_inputs(self.graph)
            self._forced = (make_session(copy.SerializeToString(), name="exported graph (kept tokens forced)"), names)
        return self._forced

    def run(self, data: np.ndarray, batch: int) -> list[_Sample]:
        """One :class:`_Sample` per sample occurrence in batches of ``batch`` (the last filled by wrapping)."""
        from ..models.tokens import recording_topk

        out: list[_Sample] = []
        data = np.ascontiguousarray(data, np.float32)
        for rows in batches_of(np.arange(len(data)), batch):
            chunk = data[rows]
            with recording_topk() as calls:
                ref = self.torch_runner.infer(chunk)
            got = self._session.run(["simcc_x", "simcc_y", *self._index_names], {self._input: chunk})
            scores = [c[0].cpu().numpy() for c in calls]
            kept = [c[1].cpu().numpy().astype(np.int64) for c in calls]
            samples = [self._compare(int(i), j, ref, got[:2]) for j, i in enumerate(rows)]
            mine, theirs = kept, list(got[2:])
            if [k.shape for k in mine] == [k.shape for k in theirs] and len(mine) == len(self.stages):
                mine, theirs = token_ids(mine, self.stages), token_ids(theirs, self.stages)
            for j, s in enumerate(samples):
                s.tie, s.mismatch = self._classify(j, scores, mine, theirs)
                if s.tie is None and s.mismatch is None and s.agree < s.total and s.max_abs_diff <= MAX_ABS_DIFF:
                    s.tie = _argmax_tie(j, ref, got[:2])
                    if s.tie is not None:                # every other decision agrees (see _argmax_tie)
                        s.forced = (s.max_abs_diff, s.total)
            if any(s.tie and s.forced is None for s in samples):
                session, names = self._forced_session()
                forced = session.run(["simcc_x", "simcc_y"], {self._input: chunk, **dict(zip(names, kept))})
                for j, s in enumerate(samples):
                    if s.tie and s.forced is None:
                        f = self._compare(s.index, j, ref, forced)
                        s.forced = (f.max_abs_diff, f.agree)
            out.extend(samples)
        return out

    @staticmethod
    def _compare(index: int, j: int, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> _Sample:
        diff, agree, total = 0.0, 0, 0
        for r, c in zip(ref, got):
            diff = max(diff, float(np.abs(r[j].astype(np.float64) - c[j]).max()))
            agree += int((r[j].argmax(-1) == c[j].argmax(-1)).sum())
            total += r[j].shape[0]
        return _Sample(index, diff, agree, total)

    def _classify(self, j: int, scores: list[np.ndarray], kept: list[np.ndarray],
                  onnx_kept: list[np.ndarray]) -> tuple[tuple[str, float, float] | None, str | None]:
        """(near-tie, None), (None, mismatch message) or (None, None) for sample ``j`` of a batch."""
        if len(kept) != len(onnx_kept):
            return None, (f"PyTorch has {len(kept)} pruning stages, the graph {len(onnx_kept)} TopK nodes; "
                          f"re-export from an unmodified model")
        for s, (score, mine, theirs) in enumerate(zip(scores, kept, onnx_kept)):
            name = self.stages[s] if s < len(self.stages) else f"stage {s}"
            t = mine[j].reshape(-1, mine.shape[-1])
            o = theirs[j].reshape(-1, theirs.shape[-1])
            if t.shape != o.shape:
                return None, (f"kept tokens first differ at stage '{name}': PyTorch keeps {t.shape[-1]} tokens "
                              f"per row, the graph {o.shape[-1]} (a wrong top-k k)")
            rows = [r for r in range(len(t)) if set(t[r].tolist()) != set(o[r].tolist())]   # token ids: order-free
            if not rows:
                continue
            sc = score[j].reshape(-1, score.shape[-1]).astype(np.float64)
            gaps = [(_gap(sc[r], t.shape[-1]), float(np.abs(sc[r]).max()), r) for r in rows]
            gap, mag, r = max(gaps, key=lambda g: g[0] / max(g[1], 1e-30))   # the least tie-like differing row
            label = name if len(t) == 1 else f"{name} (keypoint group {r})"
            if gap <= TIE_RTOL * mag:
                return (label, gap, mag), None
            return None, (f"kept tokens first differ at stage '{label}', where PyTorch's top-k boundary gap "
                          f"{gap:.2e} (largest |score| {mag:.3g}) is no near-tie (tolerance "
                          f"{TIE_RTOL * mag:.1e}): the graph computes other pruning scores")
        return None, None

    def case(self, label: str, data: np.ndarray, batch: int, redraw: bool = False) -> ParityCase:
        """Aggregate :meth:`run`; ``redraw``: replace near-tie samples by extra seeded random inputs (at most
        ``MAX_REDRAWS`` rounds) so that as many samples as ``len(data)`` in batches of ``batch`` are strict-checked."""
        results = self.run(data, batch)
        target, redrawn, offset = len(results), 0, len(data)
        for round_ in range(1, MAX_REDRAWS + 1):
            clean = sum(1 for s in results if s.tie is None and s.mismatch is None)
            if not redraw or clean >= target or any(s.mismatch for s in results):
                break
            extra = np.random.default_rng([0, round_]).standard_normal((target - clean, *data.shape[1:]))
            more = self.run(extra.astype(np.float32), batch)
            for s in more:
                s.index += offset
            offset += len(extra)
            redrawn += len(extra)
            results += more
        return _aggregate(label, batch, results, redrawn)


def _argmax_tie(j: int, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> tuple[str, float, float] | None:
    """An output near-tie of sample ``j`` (same kept tokens, logits within MAX_ABS_DIFF): every SimCC argmax that
    differs does so between two bins whose PyTorch logits are within 2 x MAX_ABS_DIFF - a difference the strict
    check accepts on each logit can swap them. ("output argmax", widest such gap, largest |logit|), else None."""
    widest, mag = 0.0, 0.0
    for r, c in zip(ref, got):
        t, o = r[j].argmax(-1), c[j].argmax(-1)
        for kp in np.flatnonzero(t != o):
            gap = float(r[j][kp, t[kp]] - r[j][kp, o[kp]])
            if gap > 2 * MAX_ABS_DIFF:
                return None
            widest, mag = max(widest, gap), max(mag, float(np.abs(r[j][kp]).max()))
    return "output argmax", widest, mag


def describe_near_ties(ties: Sequence[NearTie]) -> str:
    """One line: how many near-ties, at which stages, the widest gap, and the check with PyTorch's tokens forced."""
    stages: dict[str, int] = {}
    for t in ties:
        stages[t.stage] = stages.get(t.stage, 0) + 1
    widest = max(ties, key=lambda t: t.gap / max(t.score, 1e-30))
    return (f"near-ties (other kept tokens where PyTorch's top-k gap <= {TIE_RTOL:.1e} x |score|, or other argmax "
            f"bins within {2 * MAX_ABS_DIFF:g}): {len(ties)} "
            f"samples, at {', '.join(f'{k} x{v}' for k, v in stages.items())}; widest gap {widest.gap:.1e} at score "
            f"{widest.score:.3g}; with PyTorch's kept tokens: max |diff| "
            f"{max(t.forced_max_abs_diff for t in ties):.2e}, argmax agreement "
            f"{min(t.forced_argmax_agreement for t in ties) * 100:.2f}%")


def _gap(row: np.ndarray, k: int) -> float:
    ordered = np.sort(row)[::-1]
    return float(ordered[k - 1] - ordered[k])


def _aggregate(label: str, batch: int, results: list[_Sample], redrawn: int) -> ParityCase:
    clean = [s for s in results if s.tie is None and s.mismatch is None]
    mismatch = next((f"sample {s.index}: {s.mismatch}" for s in results if s.mismatch), None)
    ties = tuple(NearTie(s.index, s.tie[0], s.tie[1], s.tie[2], s.forced[0], s.forced[1] / s.total)
                 for s in results if s.tie is not None and s.forced is not None)
    total = sum(s.total for s in clean)
    return ParityCase(label, batch, len(clean), max((s.max_abs_diff for s in clean), default=0.0),
                      sum(s.agree for s in clean) / total if total else 1.0, ties, redrawn, mismatch)
