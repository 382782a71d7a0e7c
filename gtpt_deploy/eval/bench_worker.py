"""One benchmarked artifact in a process of its own, driven one call at a time by ``bench``.

Why: backends, and the bench's own work (cropping with OpenCV, imports), leave state in the process that slows the
next backend down. In one process, ONNX Runtime's GTPT-T median at batch 1, 1 thread was 25.3 ms beside
``torch.compile`` against 19.0 ms in a bench without it (issue 20); in fresh workers it is 19-20 ms either way
(benchmarks/README.md), so a single-process bench understated ONNX Runtime by up to a third. Each artifact here lives in a fresh
``spawn`` process (no state inherited from the parent either); the parent sends one request at a time and waits for
the answer, so exactly one artifact computes at any moment and the rounds stay interleaved (A B C A B C ...).

Protocol (parent -> worker, answers worker -> parent over a ``multiprocessing`` pipe):
``("batch", x)`` keep float32 (B, 3, H, W) crops -> ``None``; ``("infer", n)`` n calls on them -> their times (s,
the runner's own per-call times); ``("close",)`` -> exit. Every answer is ``("ok", value)`` or ``("error", message)``.
No torch import here (a worker imports what its artifact's backend needs).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GtptError


@dataclass
class Opened:
    """What a worker reports after activating its runner."""

    description: str
    input_size: tuple[int, int]
    static_batch: int | None
    load_s: float
    pid: int


def _open_runner(entry: Any, threads: int | None) -> Any:
    from ..runners import create_runner

    options: dict[str, Any] = {"threads": threads}
    for key in ("backend", "device", "provider"):
        if getattr(entry, key) is not None:
            options[key] = getattr(entry, key)
    return create_runner(entry.artifact, **options)


def _error(e: BaseException) -> tuple[str, str]:
    if isinstance(e, GtptError):
        return "error", str(e)
    return "error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def serve(conn: Any, entry: Any, threads: int | None) -> None:
    """The worker process: activate the runner, answer requests until ``close`` (or the parent goes away)."""
    try:
        t0 = time.perf_counter()
        runner = _open_runner(entry, threads)
        runner.activate()
        size = (int(runner.meta.input_size[0]), int(runner.meta.input_size[1]))
        conn.send(("ok", Opened(runner.description, size, runner.static_batch, time.perf_counter() - t0,
                                os.getpid())))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(_error(e))
        return
    x = None
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            try:
                if msg[0] == "batch":
                    x = msg[1]
                    conn.send(("ok", None))
                elif msg[0] == "infer":
                    times = []
                    for _ in range(int(msg[1])):
                        runner.infer(x)
                        times.append(runner.times[-1])
                    conn.send(("ok", times))
                else:
                    return
            except Exception as e:  # noqa: BLE001
                conn.send(_error(e))
    finally:
        runner.deactivate()


class WorkerProcess:
    """The parent's handle of one worker: :meth:`open`, :meth:`set_batch`, :meth:`infer`, :meth:`close`."""

    def __init__(self, entry: Any, threads: int | None) -> None:
        self.label = entry.label
        ctx = multiprocessing.get_context("spawn")  # fork would copy the parent's (possibly torch-laden) state
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child, entry, threads), daemon=True,
                                 name=f"bench {entry.label}")
        self._proc.start()
        child.close()

    def _ask(self, *msg: Any) -> Any:
        try:
            if msg:
                self._conn.send(msg)
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._proc.join(5)
            raise GtptError(f"the bench worker for {self.label} exited unexpectedly (exit code "
                            f"{self._proc.exitcode}); run the artifact alone with `gtpt-deploy run` to see why") \
                from None
        if status != "ok":
            raise GtptError(value)
        return value

    def open(self) -> Opened:
        """Wait for the worker's runner to be active (its load time included)."""
        return self._ask()

    def set_batch(self, x: np.ndarray) -> None:
        self._ask("batch", x)

    def infer(self, n: int = 1) -> list[float]:
        """``n`` calls on the current batch -> their times in seconds."""
        return self._ask("infer", n)

    def close(self) -> None:
        try:
            self._conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():  # a hung backend must not keep bench from returning
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()


def start_worker(entry: Any, threads: int | None) -> WorkerProcess:
    """A worker process for ``entry`` (a :class:`~gtpt_deploy.eval.bench.BenchEntry`); :meth:`WorkerProcess.open`
    waits for it. The seam tests replace with an in-process fake."""
    return WorkerProcess(entry, threads)
