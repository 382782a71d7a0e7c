"""Activation ranges of a calibration run: JSON with a manifest, reuse rules, and the TensorRT legacy cache.

The ranges JSON is the portable record of a calibration (tensor -> calibrated min/max and amax) plus a manifest of
what produced it (model sha256, annotation sha256, image ids, crop count, seed, method, target). Ranges are reused
only when the model hash, the data manifest and the method all match - never silently for other data or another
model. The legacy TensorRT calibration cache (for ``trtexec --calib`` on TensorRT <= 10) is written from the same
ranges: a header line, then ``<tensor>: <scale>`` per tensor, the scale ``amax / 127`` as the 8 hex digits of its
IEEE float32 bit pattern (big-endian, as TensorRT's calibrators write it). TensorRT's ONNX parser names its tensors
after the ONNX tensor names, so the names are used as they are.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..artifacts import atomic_path, write_json
from ..errors import ArtifactError

RANGES_FORMAT = "gtpt-deploy.ranges/1"
TRT_CACHE_HEADER = "TRT-8600-EntropyCalibration2"
INT8_MAX = 127.0


@dataclass(frozen=True)
class Manifest:
    """What a set of ranges was computed from. ``data`` is ``PersonCrops.manifest()`` (annotation sha256, image
    ids, crop count, available boxes, seed)."""

    model_sha256: str
    data: Mapping[str, Any]
    method: str
    target: str
    options: Mapping[str, Any] = field(default_factory=dict)   # method options (e.g. percentile)

    def to_dict(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "data": dict(self.data), "method": self.method,
                "target": self.target, "options": dict(self.options)}

    def sha256(self) -> str:
        """Hash of the canonical JSON of the manifest (recorded in the INT8 model's metadata)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def mismatch(self, other: "Manifest") -> list[str]:
        """What makes ranges computed for ``self`` unusable for ``other`` (empty: reusable). The target is not
        compared: the same min/max serve the symmetric and the uint8 form."""
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
        manifest = Manifest(m["model_sha256"], m["data"], m["method"], m["target"], m.get("options", {}))
        tensors = {k: (float(v["min"]), float(v["max"])) for k, v in data["tensors"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: ranges file is incomplete ({type(e).__name__}: {e}); re-run calibration") from None
    return Ranges(manifest, tensors)


def check_reusable(ranges: Ranges, wanted: Manifest, source: str) -> None:
    """Raise ArtifactError naming every difference when ``ranges`` were not computed for ``wanted``."""
    problems = ranges.manifest.mismatch(wanted)
    if problems:
        raise ArtifactError(f"ranges {source} were computed for another {'; '.join(problems)}; "
                            f"re-run calibration without reusing them (or pass --force to replace them)")


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
