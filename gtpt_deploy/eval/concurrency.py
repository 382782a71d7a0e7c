"""``bench --concurrency``: client-side throughput and latency of one artifact under 1, 4, 16 ... concurrent clients.

Made for served models (``triton://HOST:PORT/NAME``), where the server batches requests across clients; any artifact
works (each client thread opens its own runner). Bounded: a fixed number of requests per level. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bundled import DEMO_ANN
from ..errors import GtptError
from ..runners import create_runner
from ..runners.triton import run_clients
from ..runtime.crops import person_crops
from .machine import Machine, describe_machine, load_average, machine_line, report_dict

# Most concurrent clients per level. Each client is a thread of this one Python process with its own runner (an ONNX
# Runtime session with its own thread pool, or an HTTP connection), all open at once during a level: well before a
# few hundred the load generator itself (GIL, session memory: 64 GTPT-T ONNX Runtime clients peak at 2.1 GB) is what
# gets measured, not the server, and 100000 never finished opening. 64 clients already keep a dynamic-batching
# queue of the usual max batch (8-32) full. For more, use a dedicated load generator (Triton's perf_analyzer).
MAX_CLIENTS = 64
# Timed requests each client sends at least, so every counted client really takes part (48 requests shared by 64
# clients would leave 16 of them idle).
MIN_REQUESTS_PER_CLIENT = 2


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
    """``requests`` requests (at least ``MIN_REQUESTS_PER_CLIENT`` per client) of ``batch`` real person crops at each
    concurrency level in ``levels`` (1..``MAX_CLIENTS`` clients).

    Each client thread has its own runner (for ``triton://`` its own HTTP connection), opened before the level's
    clock starts; latencies are per request, throughput is crops over the level's wall time.
    """
    if not levels or min(levels) < 1 or max(levels) > MAX_CLIENTS:
        why = (f"above {MAX_CLIENTS} this one process measures itself; use Triton's perf_analyzer for more" if levels
               and max(levels) > MAX_CLIENTS else "each level needs at least one client")
        raise GtptError(f"--concurrency expects numbers of concurrent clients from 1 to {MAX_CLIENTS} like 1,4,16, "
                        f"got {','.join(map(str, levels)) or 'none'}; {why}")
    if requests < 1:
        raise GtptError(f"expected at least 1 request per level, got {requests}")
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
        n = max(requests, MIN_REQUESTS_PER_CLIENT * clients)
        if progress:
            progress(f"{clients} client(s): opening {clients} runner(s), then {n} timed request(s)")
        latencies, dt = run_clients(make, crops, clients, n, batch)
        lat = np.asarray(latencies) * 1000.0
        rows.append(ConcurrencyRow(clients, n, batch, round(dt, 3), n * batch / dt,
                                   float(np.percentile(lat, 50)), float(np.percentile(lat, 90))))
        if progress:
            progress(f"{clients} client(s): {rows[-1].crops_per_s:.1f} crops/s")
    return ConcurrencyReport(str(artifact), runner, rows, machine, load_average())
