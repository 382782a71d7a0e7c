"""What an artifact says about itself: the model metadata written into ONNX ``metadata_props`` and engine sidecars.

Runners configure pre/post-processing from this alone, so nobody has to remember which variant, normalization or
split ratio a file was made with. No torch import: ONNX-Runtime-only installs read it too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .errors import ArtifactError
from .keypoints import dataset_for
from .transforms import MEAN_RGB, STD_RGB

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

    @classmethod
    def for_config(cls, cfg: Any, batch: int | None, source_sha256: str = "",
                   versions: Mapping[str, str] | None = None, precision: str = "fp32") -> "ModelMeta":
        """Build from a ``GTPTConfig`` (duck-typed to avoid importing torch here)."""
        ds = dataset_for(cfg.num_keypoints)
        return cls(
            variant=cfg.name, num_keypoints=cfg.num_keypoints, keypoint_names=ds.keypoint_names,
            flip_pairs=ds.flip_pairs, input_size=tuple(cfg.image_size), mean=tuple(float(v) for v in MEAN_RGB),
            std=tuple(float(v) for v in STD_RGB), color_order="RGB", split_ratio=float(cfg.split_ratio),
            k_table={k: tuple(v) for k, v in cfg.k_table.items()}, batch=batch, precision=precision,
            source_sha256=source_sha256, versions=dict(versions or {}),
        )

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
                                f"export it with 'gtpt-deploy export' or pass the variant explicitly")
        raw = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        try:
            values = {k: json.loads(raw[k]) for k in cls.__dataclass_fields__ if k in raw}
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{source} has corrupt gtpt-deploy metadata ({e}); re-export it") from None
        values["keypoint_names"] = tuple(values.get("keypoint_names", ()))
        values["flip_pairs"] = tuple(tuple(p) for p in values.get("flip_pairs", ()))
        values["input_size"] = tuple(values["input_size"])
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        values["k_table"] = {k: tuple(v) for k, v in values.get("k_table", {}).items()}
        return cls(**values)
