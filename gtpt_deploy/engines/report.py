"""What a build produced and how to reproduce it: :class:`EngineResult` (= the JSON sidecar), the per-layer precision
summary from TensorRT's engine inspector, the equivalent ``trtexec`` command line and the build spinner."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..metadata import ModelMeta

SIDECAR_SCHEMA = 1


@dataclass(frozen=True)
class EngineProfile:
    """The optimization profile of the one input: batch sizes min <= opt <= max, the rest (3, H, W) fixed."""

    input_name: str
    min: int
    opt: int
    max: int
    chw: tuple[int, int, int]

    @property
    def static_batch(self) -> int | None:
        return self.max if self.min == self.max else None

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.chw)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input_name, "min": list(self.shape(self.min)), "opt": list(self.shape(self.opt)),
                "max": list(self.shape(self.max)), "static_batch": self.static_batch}


@dataclass
class EngineResult:
    """Everything ``build_engine`` did; :meth:`to_dict` is the JSON sidecar written beside the engine."""

    engine_path: Path
    sidecar_path: Path
    onnx_path: Path
    onnx_sha256: str
    engine_sha256: str
    engine_bytes: int
    tensorrt_version: str
    gpu: dict[str, Any]
    profile: EngineProfile
    meta: ModelMeta
    workspace_gib: float
    opt_level: int
    timing_cache: dict[str, Any]
    build_seconds: float
    layers: dict[str, Any] | None
    trtexec: str
    rebuild_command: str
    strongly_typed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SIDECAR_SCHEMA,
            "engine": self.engine_path.name, "engine_sha256": self.engine_sha256, "engine_bytes": self.engine_bytes,
            "tensorrt_version": self.tensorrt_version, "strongly_typed": self.strongly_typed, "gpu": self.gpu,
            "profile": self.profile.to_dict(),
            "precision": self.meta.precision, "recipe": dict(self.meta.extra),
            "onnx": {"path": str(self.onnx_path), "sha256": self.onnx_sha256},
            "model": self.meta.to_dict(),
            "build": {"seconds": round(self.build_seconds, 3), "workspace_gib": self.workspace_gib,
                      "opt_level": self.opt_level, "timing_cache": self.timing_cache},
            "layers": self.layers,
            "trtexec": self.trtexec, "rebuild_command": self.rebuild_command,
        }

    def format_report(self) -> str:
        p = self.profile
        batch = f"static batch {p.max}" if p.static_batch else f"dynamic batch {p.min}..{p.max} (opt {p.opt})"
        layers = ("layer precisions: " + ", ".join(f"{k} {v}" for k, v in self.layers["by_precision"].items())
                  if self.layers and self.layers.get("by_precision") else "layer precisions: not reported")
        tc = self.timing_cache
        state = "replaced: made elsewhere" if tc.get("rejected") else "reused" if tc["loaded_bytes"] else "created"
        cache = (f"timing cache {tc['path']} ({state}, "
                 f"{tc['saved_bytes']} bytes)" if tc.get("path") else "no timing cache")
        return "\n".join([
            f"built {self.meta.variant} {self.meta.precision} engine ({batch}) -> {self.engine_path}",
            f"  TensorRT {self.tensorrt_version} on {self.gpu['name']} (compute capability "
            f"{self.gpu['compute_capability']}), {self.build_seconds:.1f} s, {self.engine_bytes / 2**20:.1f} MiB",
            f"  {layers}; {cache}",
            f"  sidecar: {self.sidecar_path}",
            f"  same build with trtexec: {self.trtexec}",
            f"  check it: trtexec --loadEngine={shlex.quote(str(self.engine_path))}",
        ])


#: words TensorRT uses for a tensor's type in the inspector's JSON -> our precision names (10.x writes e.g. "Row
#: major linear FP16 format" under "Format/Datatype"; 11.x a separate "Datatype"; Polygraphy's inspector reads
#: "Float"/"FP32", "Half"/"FP16", "Int8", "BFloat16"/"BF16" from either)
DTYPE_WORDS = {"fp32": "FP32", "float": "FP32", "float32": "FP32", "fp16": "FP16", "half": "FP16", "float16": "FP16",
               "bf16": "BF16", "bfloat16": "BF16", "fp8": "FP8", "int8": "Int8", "int32": "Int32",
               "int64": "Int64", "bool": "Bool", "uint8": "UInt8", "int4": "Int4", "fp4": "FP4"}


def _tensor_precision(tensor: Any) -> str:
    """Precision of one tensor record of the inspector: 11.x "Datatype" first, then 10.x "Format/Datatype"."""
    if not isinstance(tensor, dict):
        return "other"
    for key in ("Datatype", "Format/Datatype"):
        words = str(tensor.get(key, "")).replace("/", " ").replace(",", " ").lower().split()
        found = next((DTYPE_WORDS[w] for w in words if w in DTYPE_WORDS), None)
        if found:
            return found
    return "other"


def layer_summary(engine_info: str) -> dict[str, Any] | None:
    """Per-layer precision counts from ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``.

    With ``ProfilingVerbosity.DETAILED`` every layer is an object whose ``Outputs`` carry the tensor type: on
    TensorRT 10.x as one ``"Format/Datatype"`` string such as ``"Row major linear FP16 format"``, on 11.x as separate
    ``"Format"`` and ``"Datatype"`` keys (and the engine's I/O list moved from ``"Bindings"`` to ``"I/O Tensors"``; not read here).
    A layer is counted under the precision of its first output. Layer names only (other verbosities) -> counts are
    left out. Unparseable text -> None.
    """
    try:
        data = json.loads(engine_info)
        layers = data.get("Layers", [])
    except (ValueError, AttributeError):
        return None
    counts: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        outputs = layer.get("Outputs") or []
        counts[_tensor_precision(outputs[0]) if outputs else "other"] += 1
    return {"count": len(layers), "by_precision": dict(sorted(counts.items(), key=lambda kv: -kv[1])) or None}


def trtexec_command(onnx: Path, engine: Path, profile: EngineProfile, workspace_gib: float, opt_level: int,
                    timing_cache: Path | None, typing_flag: str, dynamic_input: bool) -> str:
    """The trtexec line that builds the same engine (strongly typed, same profile, workspace, level, cache).

    trtexec's shape rules (samples/common/sampleEngines.cpp): a network whose inputs are all static refuses
    ``--minShapes/--optShapes/--maxShapes`` ("Static model does not take explicit shapes ..."), and a dynamic input
    without them gets its dynamic dimensions set to 1. So the shapes go in exactly when the ONNX input is dynamic
    (``dynamic_input``), even for a min == max profile (``build --batch 8`` of a dynamic-batch export).
    """
    def dims(b: int) -> str:
        return f"{profile.input_name}:" + "x".join(str(d) for d in profile.shape(b))
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    args += [typing_flag] if typing_flag else []
    if dynamic_input:
        args += [f"--minShapes={dims(profile.min)}", f"--optShapes={dims(profile.opt)}",
                 f"--maxShapes={dims(profile.max)}"]
    args += [f"--memPoolSize=workspace:{int(round(workspace_gib * 1024))}M", f"--builderOptimizationLevel={opt_level}",
             "--profilingVerbosity=detailed"]
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    return " ".join(shlex.quote(a) for a in args)


class Spinner:
    """A spinner with elapsed seconds on stderr while a blocking call runs in this thread.

    TensorRT's progress monitor reports next to nothing while it times tactics (most of a build), so there is no
    percentage to show - only that the build is alive and how long it has taken. Not a terminal: one line at the
    start and one at the end.
    """

    FRAMES = "|/-\\"

    def __init__(self, label: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.label, self.enabled, self.stream = label, enabled, stream or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seconds = 0.0

    def __enter__(self) -> "Spinner":
        self._t0 = time.perf_counter()
        if self.enabled and self.stream.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        elif self.enabled:
            print(f"{self.label} ...", file=self.stream, flush=True)
        return self

    def _spin(self) -> None:
        i = 0
        while not self._stop.wait(0.2):
            elapsed = time.perf_counter() - self._t0
            self.stream.write(f"\r{self.FRAMES[i % 4]} {self.label} ({elapsed:.0f} s)")
            self.stream.flush()
            i += 1

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[2K")
        if self.enabled:
            print(f"{self.label}: {'failed' if exc[0] else 'done'} after {self.seconds:.1f} s", file=self.stream,
                  flush=True)
