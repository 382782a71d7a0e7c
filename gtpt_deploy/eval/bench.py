"""``bench``: latency and throughput of any artifacts side by side, on the same real person crops.

Every artifact (a ``.pth`` in PyTorch eager and optionally ``torch.compile``, ``.onnx`` FP32/FP16/INT8 in ONNX
Runtime or OpenVINO, ``.engine`` in TensorRT: whatever ``create_runner`` opens) is activated once, each in its own
worker process (eval/bench_worker.py: one backend's threads and allocator state cannot slow another's, as
torch.compile did to ONNX Runtime); then, per batch size, each runs ``warmup`` calls and ``rounds`` interleaved
rounds (A B C A B C ...), one call per artifact per round and one artifact computing at a time, so a slow drift of a
shared machine hits all of them alike. Times are the runners' own per-call times (backend call only).
No torch import here (the workers import what their backend needs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..bundled import DEMO_ANN
from ..errors import GtptError
from ..runners import backends_for
from ..runners.base import check_batch_size
from ..threads import apply_thread_policy
from . import bench_worker
from .machine import Machine, describe_machine, load_average, machine_line, report_dict

#: bundled crops (six CC BY COCO images with their annotations) used when no annotation file is given


@dataclass
class BenchEntry:
    """One thing to time: an artifact, the backend that runs it (None: its default) and where."""

    artifact: str
    backend: str | None = None
    device: str | None = None
    provider: str | None = None

    @property
    def label(self) -> str:
        where = [v for v in (self.backend, self.provider) if v]  # runner choices tell rows of one file apart
        return Path(self.artifact).name + "".join(f" [{v}]" for v in where)


#: said before torch.compile's first call at a batch size, which compiles silently for a minute or two on a CPU
COMPILE_NOTE = " (torch.compile compiles on this first call: about 1-2 min on a CPU, no output meanwhile)"
#: how artifacts are kept from disturbing each other (the report header states it)
ISOLATION = "each artifact in its own worker process (spawned fresh), one call at a time, rounds interleaved"


@dataclass
class BenchRow:
    """One artifact at one batch size. Times in milliseconds per call of ``batch`` crops.

    ``vs_first``: the first artifact's median / this median at the same batch (>1: faster than the first).
    ``first_call_ms``: the first warm-up call (includes compilation for torch.compile, lazy init elsewhere).
    ``skipped``: why this batch was not timed (e.g. an ONNX file with another static batch); times are then None.
    ``pid``: the worker process that ran the artifact (each artifact has its own).
    """

    label: str
    artifact: str
    runner: str
    batch: int
    runs: int = 0
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    ms_per_crop: float | None = None
    crops_per_s: float | None = None
    vs_first: float | None = None
    first_call_ms: float | None = None
    load_s: float | None = None
    skipped: str | None = None
    pid: int | None = None


@dataclass
class BenchReport:
    """What ``bench`` measured: rows per (artifact, batch) in input order, and the conditions."""

    rows: list[BenchRow]
    machine: Machine
    load_average_end: tuple[float, float, float]
    threads: int | None
    rounds: int
    warmup: int
    batches: list[int]
    crops: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    isolation: str = ISOLATION
    accuracy: dict[str, dict[str, Any]] | None = None   # --ship with --ann: per label AP, delta_AP, budget, ...
    verdict: str | None = None                          # --ship: which artifact to ship on this CPU

    def to_dict(self) -> dict[str, Any]:
        return report_dict(self)

    def format_lines(self) -> list[str]:
        """A header (machine, load, policy, crops) and one table line per row."""
        lines = [machine_line(self.machine, self.load_average_end),
                 f"threads {self.threads or 'backend default'}; {self.rounds} interleaved rounds after "
                 f"{self.warmup} warm-up calls; crops: {self.crops.get('source', '?')} ({self.crops.get('count')} "
                 f"persons)", f"isolation: {self.isolation}"]
        lines += [f"note: {n}" for n in self.notes]
        width = max([len(r.label) for r in self.rows] + [8])
        head = (f"{'artifact':<{width}}  {'batch':>5}  {'median ms':>9}  {'p90 ms':>8}  {'min ms':>8}  "
                f"{'ms/crop':>8}  {'crops/s':>8}  {'x first':>7}  {'1st call':>9}")
        lines += [head, "-" * len(head)]
        for r in self.rows:
            if r.skipped:
                lines.append(f"{r.label:<{width}}  {r.batch:>5}  skipped: {r.skipped}")
                continue
            ratio = f"{r.vs_first:.2f}x" if r.vs_first is not None else "-"
            first = f"{r.first_call_ms / 1e3:.1f} s" if (r.first_call_ms or 0) >= 1e3 else f"{r.first_call_ms:.0f} ms"
            lines.append(f"{r.label:<{width}}  {r.batch:>5}  {r.median_ms:9.2f}  {r.p90_ms:8.2f}  {r.min_ms:8.2f}  "
                         f"{r.ms_per_crop:8.2f}  {r.crops_per_s:8.1f}  {ratio:>7}  {first:>9}")
        runners = {r.label: r.runner for r in self.rows if r.runner}
        lines += [f"  {label}: {desc}" for label, desc in runners.items()]
        if self.accuracy:
            first = next(iter(self.accuracy))
            lines.append(f"COCO AP (GT boxes, flip test) vs {first}:")
            lines += [f"  {label}: AP {a['AP']:.4f}  dAP {a['delta_AP']:+.4f}  {a['precision']} budget "
                      f"{a['budget']:.4f}  {'ok' if a['within_budget'] else 'OVER'}"
                      for label, a in self.accuracy.items()]
        if self.verdict:
            lines.append(self.verdict)
        return lines


def _per_artifact(value: str | Sequence[str | None] | None, n: int, name: str) -> list[str | None]:
    """One value for all artifacts, or one per artifact."""
    if value is None or isinstance(value, str):
        return [value] * n
    values = list(value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise GtptError(f"expected one {name} for all artifacts or one per artifact ({n}), got {len(values)}; "
                        f"repeat --{name} once per artifact, in the same order")
    return values


def bench_entries(artifacts: Sequence[str | Path], torch_compile: bool = False,
                  device: str | Sequence[str | None] | None = None,
                  provider: str | Sequence[str | None] | None = None) -> list[BenchEntry]:
    """Artifacts -> what to time: each with its default backend, and with ``torch_compile`` also every artifact
    that ``torch.compile`` can run (checkpoints), right after its eager entry."""
    if not artifacts:
        raise GtptError("expected at least one artifact (.pth, .onnx or .engine) to benchmark, got none")
    devices = _per_artifact(device, len(artifacts), "device")
    providers = _per_artifact(provider, len(artifacts), "provider")
    out = []
    for path, dev, prov in zip(map(str, artifacts), devices, providers):
        out.append(BenchEntry(path, None, dev, prov))
        if torch_compile and "torch.compile" in backends_for(path):
            out.append(BenchEntry(path, "torch.compile", dev, prov))
    return out


def tile_crops(crops: np.ndarray, batch: int) -> np.ndarray:
    """float32 (N, 3, H, W) -> exactly ``batch`` crops (the first ones, repeated in order when N < batch)."""
    reps = -(-batch // len(crops))
    return np.ascontiguousarray(np.concatenate([crops] * reps)[:batch]) if reps > 1 else crops[:batch].copy()


def apply_policy(spin: bool | None) -> list[str]:
    """Set the idle-thread policy for this benchmark (the environment the workers inherit, and this process);
    notes when it may not reach a library already started here (pipeline mode runs in this process)."""
    if spin is None:
        apply_thread_policy()
        return []
    before = apply_thread_policy("ACTIVE" if spin else "PASSIVE")
    if "torch" in sys.modules:
        return [f"torch was imported before the policy was set: OpenMP may keep its earlier wait policy "
                f"(set OMP_WAIT_POLICY={before} in the environment to be sure)"]
    return []


def bench(artifacts: Sequence[str | Path], batches: Sequence[int] = (1, 8), threads: int | None = None,
          rounds: int = 20, warmup: int = 3, device: str | Sequence[str | None] | None = None,
          provider: str | Sequence[str | None] | None = None, torch_compile: bool = False,
          spin: bool | None = None, ann: str | Path | None = None, images: str | Path | None = None,
          num_crops: int | None = None, progress: Callable[[str], None] | None = None,
          ship: bool = False) -> BenchReport:
    """Time artifacts side by side on the same person crops.

    Args:
        artifacts: ``.pth`` / ``.onnx`` / ``.engine`` files (anything ``create_runner`` opens).
        batches: crops per call; a static-batch artifact is timed only at its own batch (other rows say skipped).
        threads: CPU threads of every backend (None: each backend's default).
        rounds, warmup: interleaved timed rounds (one call per artifact each) and untimed calls per batch before.
        device, provider: one for all artifacts or one per artifact (None: the backend's default).
        torch_compile: also time ``torch.compile`` (inductor, freezing) of every checkpoint.
        spin: idle-thread policy: True spinning, False passive, None the process's (passive unless
            ``OMP_WAIT_POLICY`` says otherwise). Set before any runner starts.
        ann, images: COCO keypoint file whose GT person boxes give the crops (default: the bundled demo) and its
            image folder (default: ``images/`` beside it); num_crops: how many (None: all, tiled up to the batch).
        progress: called with one line per step (the CLI prints them to stderr).
        ship: answer "which file do I ship on this CPU": every .onnx with every CPU backend here (eval/ship.py;
            ``provider`` and ``torch_compile`` do not apply), each with its AP delta and budget when ``ann`` is
            given, and a verdict: the fastest within budget at the largest batch.
    """
    from ..runtime.crops import person_crops

    say = progress or (lambda _line: None)
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1:
        raise GtptError(f"expected batch sizes >= 1, got {list(batches)}")
    for b in batches:
        check_batch_size(b)                      # before any runner is opened or any crop tiled
    if rounds < 1 or warmup < 0:
        raise GtptError(f"expected --rounds >= 1 and --warmup >= 0, got {rounds} and {warmup}")
    if ship:
        from .ship import ship_matrix

        if torch_compile or provider is not None:
            raise GtptError("--ship picks the CPU backends itself; leave out --provider and --torch-compile")
        artifacts, provider = ship_matrix(artifacts)
    entries = bench_entries(artifacts, torch_compile, device, provider)
    apply_policy(spin)  # its note about an already-imported torch does not apply: the workers start fresh
    notes: list[str] = []
    machine = describe_machine()
    ann_given = ann is not None
    ann = Path(ann) if ann is not None else DEMO_ANN
    images = Path(images) if images is not None else ann.parent / "images"
    crop_sets: dict[tuple[int, int], np.ndarray] = {}
    crop_info: dict[str, Any] = {}

    workers: list[Any] = []
    opened = []
    try:
        for entry in entries:
            say(f"loading {entry.label} (own worker process)")
            worker = bench_worker.start_worker(entry, threads)
            workers.append(worker)
            info = worker.open()
            size = tuple(info.input_size)
            if size not in crop_sets:
                pc = person_crops(ann, images, num=num_crops, input_size=size)
                crop_sets[size] = pc.crops
                crop_info = {"source": str(ann), "count": len(pc), "ann_sha256": pc.ann_sha256,
                             "image_ids": sorted({int(i) for i in pc.image_ids})}
            opened.append((entry, worker, info))
        rows = _time_all(opened, crop_sets, batches, rounds, warmup, say)
    finally:
        for worker in workers:
            worker.close()
    accuracy, verdict = None, None
    if ship:
        from .ship import ap_deltas, verdict as pick

        if ann_given:
            labels = [e.label for e in entries]
            found = ap_deltas(labels, [e.artifact for e in entries], [e.provider for e in entries], ann, images,
                              threads, max(batches), say)
            accuracy = dict(zip(labels, found))
        verdict = pick(rows, accuracy).line()
    end = load_average()
    return BenchReport(rows=rows, machine=machine, load_average_end=end, threads=threads, rounds=rounds,
                       warmup=warmup, batches=batches, crops=crop_info, notes=notes, accuracy=accuracy,
                       verdict=verdict)


def _time_all(opened: list, crop_sets: dict, batches: list[int], rounds: int, warmup: int,
              say: Callable[[str], None]) -> list[BenchRow]:
    """opened: (entry, worker, bench_worker.Opened) per artifact -> rows per (artifact, batch)."""
    rows: dict[tuple[int, int], BenchRow] = {}
    for b in batches:
        active = []
        for i, (entry, worker, info) in enumerate(opened):
            row = BenchRow(entry.label, entry.artifact, info.description, b, load_s=round(info.load_s, 3),
                           pid=info.pid)
            rows[i, b] = row
            if info.static_batch is not None and info.static_batch != b:
                row.skipped = f"static batch {info.static_batch}"
                continue
            worker.set_batch(tile_crops(crop_sets[tuple(info.input_size)], b))
            say(f"batch {b}: warming up {entry.label}" + (COMPILE_NOTE if entry.backend == "torch.compile" else ""))
            # the first call is always made (and reported): compile / lazy init
            row.first_call_ms = round(worker.infer(max(warmup, 1))[0] * 1e3, 3)
            active.append((worker, []))
        say(f"batch {b}: {rounds} interleaved rounds over {len(active)} artifact(s)")
        for _ in range(rounds):
            for worker, times in active:
                times.extend(worker.infer(1))
        it = iter(active)
        for i in range(len(opened)):
            row = rows[i, b]
            if row.skipped:
                continue
            _, times = next(it)
            ms = np.asarray(times) * 1e3
            row.runs, row.median_ms = len(ms), float(np.median(ms))
            row.p90_ms, row.min_ms = float(np.percentile(ms, 90)), float(ms.min())
            row.ms_per_crop, row.crops_per_s = row.median_ms / b, 1e3 * b / row.median_ms
        first = rows[0, b]
        for i in range(len(opened)):
            row = rows[i, b]
            if not row.skipped and not first.skipped:
                row.vs_first = first.median_ms / row.median_ms  # type: ignore[operator]
    return [rows[i, b] for i in range(len(opened)) for b in batches]
