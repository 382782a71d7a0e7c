"""What a benchmark ran on: CPU model and the instruction-set flags that decide CPU kernel speed, GPUs, load
average, library versions and the idle-thread policy. Read from /proc, ``nvidia-smi`` and already-imported modules
only (no torch import: a benchmark of ONNX files must not pay for it). No torch import.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from ..threads import ort_allows_spinning

#: flags that change which CPU kernels ONNX Runtime / oneDNN pick (INT8 speed needs VNNI; AMX on Sapphire Rapids)
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
               "amx_int8", "amx_bf16", "asimd", "sve")


@dataclass
class Machine:
    """The machine and the process's thread settings. ``load_average``: (1, 5, 15) minute averages."""

    cpu: str
    flags: list[str]
    logical_cpus: int
    gpus: list[str]
    load_average: tuple[float, float, float]
    omp_wait_policy: str
    ort_spinning: bool
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def header(self) -> str:
        flags = ", ".join(self.flags) or "none of " + "/".join(SPEED_FLAGS[:4])
        gpu = "; ".join(self.gpus) or "no GPU"
        load = " ".join(f"{v:.2f}" for v in self.load_average)
        spin = "spinning" if self.ort_spinning else "passive"
        return (f"{self.cpu} ({self.logical_cpus} logical CPUs; {flags}); {gpu}; load average {load}; "
                f"idle threads: OMP_WAIT_POLICY={self.omp_wait_policy}, ORT {spin}")


def machine_line(machine: Machine, load_end: tuple[float, float, float]) -> str:
    """The header line every benchmark report starts with: the machine at the start, the load at the end."""
    return f"machine: {machine.header()} (end: {' '.join(f'{v:.2f}' for v in load_end)})"


def report_dict(report: Any) -> dict[str, Any]:
    """A benchmark report dataclass as JSON, its ``machine`` in :meth:`Machine.to_dict` form."""
    d = asdict(report)
    d["machine"] = report.machine.to_dict()
    return d


def load_average() -> tuple[float, float, float]:
    """(1, 5, 15) minute load averages (NaN where the system has none)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return tuple(round(v, 2) for v in load)  # type: ignore[return-value]


def cpu_model_and_flags(cpuinfo: str | None = None) -> tuple[str, list[str]]:
    """(model name, the SPEED_FLAGS present) from /proc/cpuinfo text (read when None); generic on other systems."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model or platform.processor() or platform.machine(), [f for f in SPEED_FLAGS if f in flags]


def gpu_names() -> list[str]:
    """NVIDIA GPUs as ``nvidia-smi`` lists them (empty without the tool or a GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "onnxruntime", "torch", "tensorrt", "cv2"):
        module = sys.modules.get(name)  # only what the benchmark imported anyway
        if module is not None:
            out[name] = str(getattr(module, "__version__", "?"))
    return out


def describe_machine() -> Machine:
    """The current machine, load average and thread policy (call it at the start and the end of a benchmark)."""
    cpu, flags = cpu_model_and_flags()
    return Machine(cpu=cpu, flags=flags, logical_cpus=os.cpu_count() or 0, gpus=gpu_names(),
                   load_average=load_average(),
                   omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset (library default: spinning)"),
                   ort_spinning=ort_allows_spinning(), versions=_versions())
