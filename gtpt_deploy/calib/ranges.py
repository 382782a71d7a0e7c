"""Activation ranges of a calibration run: JSON with a manifest, reuse rules, and the TensorRT legacy cache.

The ranges JSON is the portable record of a calibration (tensor -> calibrated min/max and amax) plus a manifest of
what produced it. Ranges depend on three things and the manifest keys on exactly those: the FP32 model (its sha256),
the calibration crops (annotation sha256, the persons held out, image ids and the sha256 of every image file's bytes,
crop count, seed) and the method (with its options). They do NOT depend on the target: ``collect_ranges`` records the
same tensors (inputs and outputs of every weight-op node) whatever the target, and both targets quantize a subset of
them (tensorrt: weight-layer inputs; cpu: inputs and outputs), so ranges of one target serve the other. Ranges are
reused only when the manifest matches - never silently for other data or another model - and every set, read or
computed, passes :func:`check_ranges` (the one place that says what a usable range is). The legacy TensorRT
calibration cache (for ``trtexec --calib`` on TensorRT <= 10) is written from the same ranges: a header line, then ``<tensor>: <scale>`` per tensor, the scale ``amax / 127`` as the 8 hex digits of its
IEEE float32 bit pattern (big-endian, as TensorRT's calibrators write it). TensorRT's ONNX parser names its tensors
after the ONNX tensor names, so the names are used as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..artifacts import atomic_path, write_json
from ..errors import ArtifactError

RANGES_FORMAT = "gtpt-deploy.ranges/1"
TRT_CACHE_HEADER = "TRT-8600-EntropyCalibration2"
INT8_MAX = 127.0
#: Plausible |range| of one activation tensor. Measured on the GTPT-T sample (minmax, 86 crops, 202 tensors): amax from
#: 0.072 (a Softmax output) to 102. Below 1e-6 the int8 step (amax / 127) is under 1e-8 and ONNX Runtime warns per
#: tensor (a hand-edited 1e-30 printed 8577 lines); above 1e4 every value under amax / 254 (40) rounds to 0 - both give
#: models of AP 0. A tensor that is constant zero on the crops would be refused too; no GTPT tensor is.
AMAX_MIN, AMAX_MAX = 1e-6, 1e4


@dataclass(frozen=True)
class Manifest:
    """What a set of ranges was computed from (and all it depends on). ``data`` identifies the crops
    (``calib.data.crops_manifest``: annotation sha256, held-out persons, image ids, image bytes sha256, crop count,
    available boxes, seed). No target: the ranges are the same for both (module docstring)."""

    model_sha256: str
    data: Mapping[str, Any]
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)   # method options (e.g. percentile)

    def to_dict(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "data": dict(self.data), "method": self.method,
                "options": dict(self.options)}

    def sha256(self) -> str:
        """Hash of the canonical JSON of the manifest (recorded in the INT8 model's metadata)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def mismatch(self, other: "Manifest") -> list[str]:
        """What makes ranges computed for ``self`` unusable for ``other`` (empty: reusable)."""
        out = []
        if self.model_sha256 != other.model_sha256:
            out.append(f"model sha256 {self.model_sha256[:12]}.. vs {other.model_sha256[:12]}..")
        if dict(self.data) != dict(other.data):
            diff = sorted(k for k in set(self.data) | set(other.data) if self.data.get(k) != other.data.get(k))
            out.append(f"calibration data ({', '.join(diff)} differ)")
        if self.method != other.method or dict(self.options) != dict(other.options):
            out.append(f"method {self.method} {dict(self.options) or ''} vs {other.method} {dict(other.options) or ''}")
        return out


@dataclass(frozen=True)
class Ranges:
    """tensor name -> (min, max) calibrated on the manifest's data."""

    manifest: Manifest
    tensors: Mapping[str, tuple[float, float]]

    def amax(self, name: str) -> float:
        lo, hi = self.tensors[name]
        return max(abs(lo), abs(hi))

    def to_dict(self) -> dict[str, Any]:
        return {"format": RANGES_FORMAT, "manifest": self.manifest.to_dict(),
                "tensors": {k: {"min": lo, "max": hi, "amax": max(abs(lo), abs(hi))}
                            for k, (lo, hi) in self.tensors.items()}}


def write_ranges(path: Path, ranges: Ranges) -> None:
    write_json(path, ranges.to_dict())


def read_ranges(path: str | Path) -> Ranges:
    """Read a ranges JSON written by :func:`write_ranges`; ArtifactError for anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"ranges file {path} does not exist; pass a .ranges.json written by "
                            f"'gtpt-deploy calibrate'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"ranges file {path} is not readable JSON ({type(e).__name__}); re-run calibration") from None
    if not isinstance(data, dict) or data.get("format") != RANGES_FORMAT:
        raise ArtifactError(f"{path}: expected a gtpt-deploy ranges file (format {RANGES_FORMAT}), got "
                            f"{data.get('format') if isinstance(data, dict) else type(data).__name__}; re-run calibration")
    try:
        m = data["manifest"]
        if not all(isinstance(v, dict) for v in (m, m["data"], m.get("options", {}), data["tensors"])):
            raise TypeError("manifest, manifest.data, manifest.options and tensors must be JSON objects")
        manifest = Manifest(str(m["model_sha256"]), m["data"], str(m["method"]), m.get("options", {}))
        tensors = {k: (_number(v["min"]), _number(v["max"])) for k, v in data["tensors"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: ranges file is incomplete ({type(e).__name__}: {e}); re-run calibration") from None
    ranges = Ranges(manifest, tensors)
    check_ranges(ranges, str(path))
    return ranges


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"expected a number, got {type(v).__name__}")
    return float(v)


def check_ranges(ranges: Ranges, source: str, required: Iterable[str] = (), computed: bool = False) -> None:
    """The one check of a set of ranges (read from a file or just computed): at least one tensor, every name a
    non-empty string, every (min, max) finite with min <= max and amax in [AMAX_MIN, AMAX_MAX], and every tensor of
    ``required`` (what the model's weight layers need) present. ArtifactError naming the file, the tensor and what to
    do; ``computed``: the ranges came from the model itself (a NaN there means the FP32 model produces NaN)."""
    fix = ("check that the FP32 model gives finite outputs on the calibration images (gtpt-deploy validate)" if computed
           else "delete the file or re-run calibrate without --ranges to recompute it (hand-edited ranges are not "
                "usable)")
    if not ranges.tensors:
        raise ArtifactError(f"{source}: expected activation ranges, found no tensors; {fix}")
    for name, (lo, hi) in ranges.tensors.items():
        what = None
        if not isinstance(name, str) or not name.strip():
            what = "an empty tensor name"
        elif not (math.isfinite(lo) and math.isfinite(hi)):
            what = "a non-finite range"
        elif lo > hi:
            what = "an inverted range (min > max)"
        elif not AMAX_MIN <= max(abs(lo), abs(hi)) <= AMAX_MAX:
            what = f"|range| outside [{AMAX_MIN:g}, {AMAX_MAX:g}]"
        if what is not None:
            raise ArtifactError(f"{source}: tensor '{name}' has {what} [{lo:g}, {hi:g}]; {fix}")
    missing = [t for t in required if t not in ranges.tensors]
    if missing:
        raise ArtifactError(f"{source}: expected ranges for every weight-layer tensor of the model, found none for "
                            f"'{missing[0]}' ({len(missing)} missing; renamed or removed keys?); {fix}")


def check_reusable(ranges: Ranges, wanted: Manifest, source: str, required: Iterable[str] = ()) -> None:
    """Raise ArtifactError naming every difference when ``ranges`` were not computed for ``wanted``, or when they
    lack a tensor of ``required`` (see :func:`check_ranges`)."""
    problems = ranges.manifest.mismatch(wanted)
    if problems:
        raise ArtifactError(f"ranges {source} were computed for another {'; '.join(problems)}; "
                            f"re-run calibration without reusing them (or pass --force to replace them)")
    check_ranges(ranges, source, required)


def scale_hex(amax: float) -> str:
    """TensorRT cache value: ``amax / 127`` as float32, its bit pattern as 8 hex digits (big-endian)."""
    return struct.pack(">f", amax / INT8_MAX).hex()


def trt_cache_text(ranges: Ranges, tensors: list[str] | None = None, header: str = TRT_CACHE_HEADER) -> str:
    """The legacy calibration cache text for ``tensors`` (default: every tensor in ``ranges``)."""
    names = tensors if tensors is not None else list(ranges.tensors)
    lines = [header] + [f"{name}: {scale_hex(ranges.amax(name))}" for name in names if ranges.amax(name) > 0]
    return "\n".join(lines) + "\n"


def write_trt_cache(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def to_ort(ranges: Ranges) -> Any:
    """-> ONNX Runtime ``TensorsData`` (what ``quantize_static`` quantizes with)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[ranges.manifest.method]
    return TensorsData(method, {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                for k, (lo, hi) in ranges.tensors.items()})


def from_ort(data: Any, manifest: Manifest) -> Ranges:
    """ONNX Runtime ``TensorsData`` -> :class:`Ranges` (float min/max per tensor)."""
    import numpy as np

    tensors = {}
    for name, td in data.items():
        lo, hi = td.range_value                 # numpy scalars or (1,) arrays, depending on the calibrator
        tensors[name] = (float(np.min(lo)), float(np.max(hi)))
    return Ranges(manifest, tensors)
