"""What an artifact says about itself: the model metadata written into ONNX ``metadata_props`` and engine sidecars.

Runners configure pre/post-processing from this alone, so nobody has to remember which variant, normalization or
split ratio a file was made with. This module is the one read/write path for it:

* ONNX: :func:`read_onnx_meta` / :func:`write_onnx_meta` (``gtpt.<field>`` entries of ``metadata_props``);
* JSON (engine sidecars, reports): :meth:`ModelMeta.to_dict` / :meth:`ModelMeta.from_dict`.

No torch import (and onnx only inside the ONNX functions): ONNX-Runtime-only installs read it too.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ArtifactError
from .keypoints import dataset_for
from .models.variants import MEAN_RGB, STD_RGB

if TYPE_CHECKING:  # pragma: no cover
    import onnx

PREFIX = "gtpt."
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelMeta:
    """Self-description of an exported GTPT model."""

    variant: str
    num_keypoints: int
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    input_size: tuple[int, int]                  # (H, W)
    mean: tuple[float, ...]                      # applied after scaling pixels to [0, 1]
    std: tuple[float, ...]
    color_order: str                             # channel order the model expects: "RGB"
    split_ratio: float
    k_table: Mapping[str, tuple[int, ...]]
    batch: int | None                            # None: dynamic batch
    precision: str = "fp32"
    source_sha256: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)   # stage-specific facts (calibration set, ...)
    # sha256 of the file this one was made from when that is not the checkpoint (fp16 / int8: the FP32 ONNX), so that
    # pth -> onnx -> fp16 / int8 -> engine can be followed back (eval/lineage.py); '' for an export
    parent_sha256: str = ""

    def __post_init__(self) -> None:
        """Refuse values no runner can use (hand-edited metadata): ValueError naming the field."""
        k = self.num_keypoints
        if not _is_int(k) or k < 1:
            raise ValueError(f"num_keypoints must be a positive integer, got {k!r}")
        if self.keypoint_names and len(self.keypoint_names) != k:
            raise ValueError(f"keypoint_names lists {len(self.keypoint_names)} names for {k} keypoints")
        used: set[int] = set()
        for pair in self.flip_pairs:
            if len(pair) != 2 or not all(_is_int(i) and 0 <= i < k for i in pair) or pair[0] == pair[1] \
                    or used & set(pair):
                raise ValueError(f"flip pair {list(pair)} is not two distinct, unused keypoint indices in 0..{k - 1}")
            used.update(pair)
        if len(self.input_size) != 2 or not all(_is_int(v) and v > 0 for v in self.input_size):
            raise ValueError(f"input_size must be two positive integers (H, W), got {list(self.input_size)}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(_is_finite(v) for v in (*self.mean, *self.std)) \
                or min(self.std) <= 0:
            raise ValueError(f"mean / std must be 3 finite numbers each (std > 0), got {list(self.mean)} / "
                             f"{list(self.std)}")
        if not _is_finite(self.split_ratio) or self.split_ratio <= 0:
            raise ValueError(f"split_ratio must be a positive number, got {self.split_ratio!r}")
        if self.batch is not None and (not _is_int(self.batch) or self.batch < 1):
            raise ValueError(f"batch must be a positive integer or null (dynamic), got {self.batch!r}")

    @classmethod
    def for_config(cls, cfg: Any, batch: int | None, source_sha256: str = "",
                   versions: Mapping[str, str] | None = None, precision: str = "fp32") -> "ModelMeta":
        """Build from a :class:`~gtpt_deploy.models.variants.GTPTConfig` (or anything with its fields)."""
        ds = dataset_for(cfg.num_keypoints)
        return cls(
            variant=cfg.name, num_keypoints=cfg.num_keypoints, keypoint_names=ds.keypoint_names,
            flip_pairs=ds.flip_pairs, input_size=tuple(cfg.image_size), mean=_float32(MEAN_RGB),
            std=_float32(STD_RGB), color_order="RGB", split_ratio=float(cfg.split_ratio),
            k_table={k: tuple(v) for k, v in cfg.k_table.items()}, batch=batch, precision=precision,
            source_sha256=source_sha256, versions=dict(versions or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """-> a JSON-ready dict (lists for tuples), with ``schema_version``; inverse of :meth:`from_dict`."""
        return {**json.loads(json.dumps(asdict(self))), "schema_version": SCHEMA_VERSION}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model") -> "ModelMeta":
        """From :meth:`to_dict`'s form (e.g. an engine sidecar's ``"model"``); ArtifactError when incomplete."""
        if not isinstance(data, Mapping) or "variant" not in data:
            raise ArtifactError(f"{source}: expected gtpt-deploy model metadata (with 'variant'), got "
                                f"{type(data).__name__ if not isinstance(data, Mapping) else sorted(data)[:5]}; "
                                f"rebuild the artifact with gtpt-deploy")
        return cls._from_values({k: v for k, v in data.items() if k in cls.__dataclass_fields__}, source)

    def to_props(self) -> dict[str, str]:
        """-> ONNX metadata_props: one ``gtpt.<field>`` entry per field, values JSON-encoded strings."""
        props = {f"{PREFIX}{k}": json.dumps(v) for k, v in asdict(self).items()}
        props[f"{PREFIX}schema_version"] = str(SCHEMA_VERSION)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMeta":
        """Inverse of :meth:`to_props`; ArtifactError when the file was not written by gtpt-deploy."""
        if f"{PREFIX}variant" not in props:
            raise ArtifactError(f"{source} has no gtpt-deploy metadata ('{PREFIX}variant' missing); "
                                f"make the ONNX with 'gtpt-deploy export' from its checkpoint")
        raw = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        try:
            values = {k: json.loads(raw[k]) for k in cls.__dataclass_fields__ if k in raw}
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{source} has corrupt gtpt-deploy metadata ({e}); re-export it") from None
        return cls._from_values(values, source)

    @classmethod
    def _from_values(cls, values: dict[str, Any], source: str) -> "ModelMeta":
        """Decoded JSON values -> ModelMeta, tuples restored; ArtifactError for a missing or mistyped field."""
        v = dict(values)
        try:
            v["keypoint_names"] = tuple(v.get("keypoint_names", ()))
            v["flip_pairs"] = tuple(tuple(p) for p in v.get("flip_pairs", ()))
            v["input_size"] = tuple(v["input_size"])
            v["mean"], v["std"] = tuple(v["mean"]), tuple(v["std"])
            v["k_table"] = {k: tuple(t) for k, t in v.get("k_table", {}).items()}
            return cls(**v)
        except (KeyError, TypeError, ValueError) as e:
            what = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            raise ArtifactError(f"{source}: gtpt-deploy metadata is incomplete or mistyped ({what}); "
                                f"re-export the artifact instead of editing its metadata") from None


def _float32(values: tuple[float, ...]) -> tuple[float, ...]:
    """The float32 values the crops are normalized with (runtime/transforms.py), as Python floats: what every
    artifact has recorded since the first export (0.485 -> 0.48500001430511475), so metadata stays byte-identical."""
    return tuple(struct.unpack(f"{len(values)}f", struct.pack(f"{len(values)}f", *values)))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_onnx(model: "str | Path | bytes", source: str | None = None) -> "onnx.ModelProto":
    """An ONNX file (path) or serialized bytes -> ModelProto (external data not loaded). ArtifactError, one line,
    for anything that is no ONNX model (a truncated file, a text file named .onnx): the one check every stage that
    reads an ONNX file uses."""
    import onnx

    name = source or (str(model) if isinstance(model, (str, Path)) else "ONNX model")
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_from_string(bytes(model))
        return onnx.load(str(model), load_external_data=False)
    except OSError as e:
        raise ArtifactError(f"cannot read {name}: {e.strerror or e}; pass an existing .onnx file") from None
    except Exception as e:  # protobuf's DecodeError, ValueError, ... depending on the damage: not a model file
        raise ArtifactError(f"{name} is not a loadable ONNX model ({type(e).__name__}); re-export it") from None


def read_onnx_meta(model: "onnx.ModelProto | str | Path | bytes", source: str | None = None) -> ModelMeta:
    """The ``ModelMeta`` of an ONNX model given as a ModelProto, serialized bytes or a path."""
    if isinstance(model, (str, Path, bytes, bytearray)):
        source = source or (str(model) if isinstance(model, (str, Path)) else None)
        model = load_onnx(model, source=source)
    return ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, source=source or "ONNX model")


def write_onnx_meta(model: "onnx.ModelProto", meta: ModelMeta) -> None:
    """Write ``meta`` into ``model.metadata_props`` in place, replacing earlier ``gtpt.*`` values; onnxsim's per-pass
    bookkeeping (``onnxsim.*``) is dropped, other tools' entries are kept."""
    props = meta.to_props()
    keep = [(p.key, p.value) for p in model.metadata_props
            if not p.key.startswith(PREFIX) and not p.key.startswith("onnxsim.")]
    del model.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
