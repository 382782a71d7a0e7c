"""Triton backend: a pose model served by Triton Inference Server, ``triton://HOST:PORT/NAME`` (HTTP).

The model's ``config.pbtxt`` (written by ``gtpt-deploy triton``) carries the artifact's whole ModelMeta as the
``gtpt_meta`` parameter, so the runner configures itself from the server like :class:`OrtRunner` does from the
file. Batches larger than the model's ``max_batch_size`` are split into several requests. One HTTP connection per
runner; runners are not thread-safe - use one per client thread (:func:`run_clients` does).
No torch import; tritonclient only when a runner is activated.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..errors import ArtifactError, GtptError, MissingDependencyError
from ..metadata import ModelMeta
from .base import Runner

_URL = re.compile(r"^triton://(?P<host>[^/:]+):(?P<port>\d+)/(?P<name>[^/]+)(?:/(?P<version>\d+))?/?$")


def parse_url(url: str) -> tuple[str, str, str]:
    """``triton://HOST:PORT/NAME[/VERSION]`` -> ("HOST:PORT", NAME, VERSION or ""); GtptError otherwise."""
    m = _URL.match(url)
    if not m:
        raise GtptError(f"expected a Triton model address like triton://127.0.0.1:8000/gtpt_pose, got '{url}'")
    if not 1 <= int(m["port"]) <= 65535:
        raise GtptError(f"expected a TCP port 1-65535 in the Triton address, got {int(m['port'])} in '{url}' "
                        f"(Triton's HTTP port is 8000 by default)")
    return f"{m['host']}:{m['port']}", m["name"], m["version"] or ""


class TritonRunner(Runner):
    """A Triton-served pose model behind the Runner contract.

    Args:
        url: ``triton://HOST:PORT/NAME[/VERSION]`` (Triton's HTTP port).
        device, threads: ignored (the server decides); accepted so every backend takes the same options.
        timeout: seconds for one request (network + queue + inference).
        kept_tokens: accepted like every backend's; the served model returns the two logits only (kept None).
    """

    backend = "triton"

    def __init__(self, url: str, device: str = "cpu", threads: int | None = None, timeout: float = 60.0,
                 kept_tokens: bool = False) -> None:
        super().__init__(url, kept_tokens)
        self.address, self.model, self.version = parse_url(url)
        self.timeout = float(timeout)
        self._client: Any = None
        self._max_batch = 0
        self._platform = ""

    def _activate(self) -> tuple[ModelMeta, int | None]:
        try:
            import tritonclient.http as th
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise MissingDependencyError("tritonclient", "triton", "Running a Triton-served model") from None
        self._th = th
        try:
            # the constructor resolves nothing yet, but a malformed address fails inside it (and in its __del__)
            client = th.InferenceServerClient(self.address, connection_timeout=self.timeout,
                                              network_timeout=self.timeout)
        except Exception as e:  # tritonclient raises plain exceptions from geventhttpclient / socket
            raise GtptError(f"cannot connect to a Triton server at {self.address} ({type(e).__name__}: {e}); check "
                            f"the address (triton://HOST:HTTP_PORT/NAME)") from None
        try:
            if not client.is_model_ready(self.model, self.version):
                raise GtptError(f"model '{self.model}' is not ready on the Triton server at {self.address}; check "
                                f"the server log, or load it (explicit model control)")
            config = client.get_model_config(self.model, self.version)
        except InferenceServerException as e:
            raise GtptError(f"Triton server at {self.address} answered: {e.message()}") from None
        except (OSError, ConnectionError) as e:
            raise GtptError(f"no Triton server at {self.address} ({type(e).__name__}: {e}); start it, or check the "
                            f"address (triton://HOST:HTTP_PORT/NAME)") from None
        raw = config.get("parameters", {}).get("gtpt_meta", {}).get("string_value")
        if not raw:
            raise ArtifactError(f"{self.source}: the model's config has no gtpt_meta parameter; write its "
                                f"repository with 'gtpt-deploy triton'")
        meta = ModelMeta.from_dict(json.loads(raw), source=self.source)
        self._input = config["input"][0]["name"]
        self._outputs = [o["name"] for o in config["output"]][:2]
        self._max_batch = int(config.get("max_batch_size", 0)) or 1
        self._platform = config.get("platform") or config.get("backend", "")
        self._client = client
        return meta, None

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th = self._th
        xs, ys = [], []
        for start in range(0, len(batch), self._max_batch):
            chunk = batch[start:start + self._max_batch]
            inp = th.InferInput(self._input, list(chunk.shape), "FP32")
            inp.set_data_from_numpy(chunk, binary_data=True)
            outs = [th.InferRequestedOutput(n, binary_data=True) for n in self._outputs]
            try:
                result = self._client.infer(self.model, [inp], model_version=self.version, outputs=outs)
            except Exception as e:  # InferenceServerException or a socket error
                msg = e.message() if hasattr(e, "message") else str(e)
                raise GtptError(f"{self.source}: inference of a batch of {len(chunk)} failed ({msg})") from None
            xs.append(result.as_numpy(self._outputs[0]))
            ys.append(result.as_numpy(self._outputs[1]))
        return (np.concatenate(xs), np.concatenate(ys)) if len(xs) > 1 else (xs[0], ys[0])

    def _deactivate(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    @property
    def max_batch(self) -> int:
        """The served model's ``max_batch_size`` (larger batches are split client-side)."""
        self.meta  # noqa: B018 - raises when not active
        return self._max_batch

    @property
    def description(self) -> str:
        return f"triton [{self.address} {self.model}, {self._platform}]" if self._client is not None else self.backend


def run_clients(make_runner: Callable[[], Runner], crops: np.ndarray, clients: int, requests: int,
                batch: int = 1) -> tuple[list[float], float]:
    """``clients`` threads, each with its own runner, send ``requests`` batches of ``batch`` crops in total.

    A small client-side load generator (bench --concurrency builds on it): crops are taken round-robin from
    ``crops`` float32 (N, 3, H, W). Every client opens its runner and makes one untimed call first; the clock starts
    only when all of them are ready (a barrier), so opening sessions or connections is never timed as throughput
    (200 clients opening their ONNX Runtime sessions inside the window showed 4.3 instead of 49 crops/s).

    Returns:
        (latencies, wall_s): each timed request's latency in seconds (completion order), and the seconds from the
        common start to the last request's completion (closing the runners not included). Bounded: exactly
        ``requests`` timed requests, then it returns.
    """
    if clients < 1 or requests < 1 or batch < 1:
        raise GtptError(f"expected clients, requests and batch >= 1, got {clients}, {requests} and {batch}")
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    start: list[float] = []
    done: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: start.append(time.perf_counter()))

    def rows(i: int) -> np.ndarray:
        return np.ascontiguousarray(crops[[(i * batch + j) % len(crops) for j in range(batch)]])

    def client() -> None:
        try:
            with make_runner() as runner:
                runner.infer(rows(0))  # untimed: lazy initialisation, the connection's first request
                barrier.wait()
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    t0 = time.perf_counter()
                    runner.infer(rows(i))
                    t1 = time.perf_counter()
                    with lock:
                        latencies.append(t1 - t0)
                        done.append(t1)
        except BaseException:
            barrier.abort()  # the others stop waiting; this client's error is the one raised below
            raise

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client) for _ in range(clients)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return latencies, max(done) - start[0]


def concurrent_infer(make_runner: Callable[[], Runner], crops: np.ndarray, clients: int, requests: int,
                     batch: int = 1) -> list[float]:
    """:func:`run_clients`' latencies (seconds, completion order) alone."""
    return run_clients(make_runner, crops, clients, requests, batch)[0]
