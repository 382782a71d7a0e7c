"""``bench --concurrency``: client-side throughput and latency of one artifact under 1, 4, 16 ... concurrent clients.

Made for served models (``triton://HOST:PORT/NAME``), where the server batches requests across clients; any artifact
works (each client thread opens its own runner). Bounded: a fixed number of requests per level. No torch import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import GtptError
from ..runners import create_runner
from ..runners.triton import concurrent_infer
from ..runtime.crops import person_crops
from .machine import Machine, describe_machine, load_average, machine_line, report_dict

DEMO_ANN = Path(__file__).resolve().parents[2] / "demo" / "person_keypoints_demo.json"


@dataclass(frozen=True)
class ConcurrencyRow:
    """One concurrency level: ``requests`` requests of ``batch`` crops from ``clients`` threads."""

    clients: int
    requests: int
    batch: int
    seconds: float
    crops_per_s: float
    p50_ms: float
    p90_ms: float


@dataclass(frozen=True)
class ConcurrencyReport:
    artifact: str
    runner: str
    rows: list[ConcurrencyRow]
    machine: Machine
    load_average_end: tuple[float, float, float]

    def to_dict(self) -> dict:
        return report_dict(self)

    def format_lines(self) -> list[str]:
        """The table: one line per concurrency level."""
        lines = [machine_line(self.machine, self.load_average_end), f"{self.artifact} [{self.runner}], client-side, {self.rows[0].batch if self.rows else 1} crop(s) "
                 f"per request", f"{'clients':>7} {'requests':>8} {'crops/s':>8} {'p50 ms':>8} {'p90 ms':>8}"]
        lines += [f"{r.clients:>7} {r.requests:>8} {r.crops_per_s:8.1f} {r.p50_ms:8.1f} {r.p90_ms:8.1f}"
                  for r in self.rows]
        return lines


def bench_concurrency(artifact: str | Path, levels: Sequence[int] = (1, 4, 16), requests: int = 48,
                      batch: int = 1, threads: int | None = None, ann: str | Path | None = None,
                      images: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> ConcurrencyReport:
    """``requests`` requests of ``batch`` real person crops at each concurrency level in ``levels``.

    Each client thread has its own runner (for ``triton://`` its own HTTP connection); latencies are per request,
    throughput is crops over the level's wall time.
    """
    if not levels or min(levels) < 1 or requests < 1:
        raise GtptError(f"--concurrency expects client counts >= 1 like 1,4,16, got {list(levels)}")
    ann = Path(ann) if ann is not None else DEMO_ANN
    crops = person_crops(ann, Path(images) if images is not None else ann.parent / "images").crops

    def make() -> object:
        return create_runner(artifact, threads=threads)

    with make() as probe:  # fail fast (server down, wrong name) and learn the runner's description
        probe.infer(crops[:batch] if len(crops) >= batch else np.resize(crops, (batch, *crops.shape[1:])))
        runner = probe.description
    machine = describe_machine()
    rows = []
    for clients in levels:
        t0 = time.perf_counter()
        lat = np.asarray(concurrent_infer(make, crops, clients, requests, batch)) * 1000.0
        dt = time.perf_counter() - t0
        rows.append(ConcurrencyRow(clients, requests, batch, round(dt, 3), requests * batch / dt,
                                   float(np.percentile(lat, 50)), float(np.percentile(lat, 90))))
        if progress:
            progress(f"{clients} client(s): {rows[-1].crops_per_s:.1f} crops/s")
    return ConcurrencyReport(str(artifact), runner, rows, machine, load_average())
