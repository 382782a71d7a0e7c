"""The GTPT variants as pure data: the frozen config, the registry of the six released variants, and the
parameter / MAC counts that ``gtpt-deploy models`` prints. No torch import, so a runtime-only install reads it.

This is the one source of variant facts: :mod:`.gtpt` builds a model from a :class:`GTPTConfig`, and
:func:`variant_rows` derives the table from the same configs. Counting parameters and MACs builds each model and
traces it under torch's FLOP counter (6-10 s for the six variants), so only those two numbers are stored here;
``tests/test_variant_table.py`` recounts them with :mod:`.summary` so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UnknownModelError

# Whole-body dense keypoint tokens per group: face 68 (group 0), two hands 2x21 (group 1), two feet 2x3 (group 2).
DENSE_PER_GROUP = (68, 42, 6)
# The ImageNet normalization every variant was trained with, applied after scaling pixels to [0, 1] (RGB order).
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class GTPTConfig:
    """Hyper-parameters of one variant. Everything else (token counts, k values) is derived from these."""

    name: str
    wholebody: bool
    backbone: str            # "lite" (T, S) or "unet" (B)
    stem_channels: int       # C_bb, channels of the stride-4 feature map
    dim: int                 # D
    keep_rates: tuple[float, float, float, float]
    heads: int = 8
    plain_layers: int = 6
    group_layers: int = 6
    mlp_ratio: int = 3
    image_size: tuple[int, int] = (256, 192)      # (H, W)
    patch_size: tuple[int, int] = (4, 3)          # (rows, cols) on the stride-4 map
    split_ratio: float = 2.0
    description: str = field(default="", compare=False)

    @property
    def num_keypoints(self) -> int:
        return 133 if self.wholebody else 17

    @property
    def num_patches(self) -> int:
        h, w = self.image_size
        return (h // 4 // self.patch_size[0]) * (w // 4 // self.patch_size[1])

    @property
    def simcc_bins(self) -> tuple[int, int]:
        """(x bins, y bins) = (W * split, H * split)."""
        return int(self.image_size[1] * self.split_ratio), int(self.image_size[0] * self.split_ratio)

    @property
    def k_table(self) -> dict[str, tuple[int, ...]]:
        """Image tokens kept by each pruning step (per group for the two group steps).

        plain layer 3: int(N*r1); transition: int(N*r2) per group (whole-body: minus the group's dense tokens);
        group layer 3: int(N*r3) likewise.
        """
        n = self.num_patches
        dense = DENSE_PER_GROUP if self.wholebody else (0, 0, 0)
        plain = int(n * self.keep_rates[1])
        return {
            "plain": (plain,),
            "transition": tuple(int(n * self.keep_rates[2]) - d for d in dense),
            "group": tuple(int(n * self.keep_rates[3]) - d for d in dense),
        }


def _cfg(name: str, size: str, wholebody: bool, desc: str) -> GTPTConfig:
    backbone, channels, dim = {"t": ("lite", 128, 128), "s": ("lite", 256, 192), "b": ("unet", 256, 192)}[size]
    rates = (1.0, 0.7, 0.5, 0.3) if wholebody else (1.0, 0.7, 0.3, 0.1)
    return GTPTConfig(name, wholebody, backbone, channels, dim, rates, description=desc)


VARIANTS: dict[str, GTPTConfig] = {
    c.name: c for c in (
        _cfg("gtpt_t_coco", "t", False, "GTPT-T, COCO 17 keypoints"),
        _cfg("gtpt_s_coco", "s", False, "GTPT-S, COCO 17 keypoints"),
        _cfg("gtpt_b_coco", "b", False, "GTPT-B, COCO 17 keypoints"),
        _cfg("gtpt_t_wholebody", "t", True, "GTPT-T, COCO-WholeBody 133 keypoints"),
        _cfg("gtpt_s_wholebody", "s", True, "GTPT-S, COCO-WholeBody 133 keypoints"),
        _cfg("gtpt_b_wholebody", "b", True, "GTPT-B, COCO-WholeBody 133 keypoints"),
    )
}

# name -> (parameters of the inference branch, MACs of one (1,3,256,192) crop), counted by models.summary
COUNTS: dict[str, tuple[int, int]] = {
    "gtpt_t_coco": (2405632, 775909376),
    "gtpt_s_coco": (5479008, 1795049472),
    "gtpt_b_coco": (8367904, 3815663616),
    "gtpt_t_wholebody": (2421120, 991493632),
    "gtpt_s_wholebody": (5502240, 2234080512),
    "gtpt_b_wholebody": (8391136, 4254694656),
}


def get_config(name: str) -> GTPTConfig:
    """The config of a registered variant; UnknownModelError (listing the valid names) otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model '{name}'; valid names: {', '.join(VARIANTS)}") from None


def variant_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per variant, in registry order: name, keypoints, input_size [H, W], params (exact),
    params_m, macs (exact), gmacs (3 decimals), k_table, description."""
    rows = []
    for name, cfg in VARIANTS.items():
        params, macs = COUNTS[name]
        rows.append({"name": name, "keypoints": cfg.num_keypoints, "input_size": list(cfg.image_size),
                     "params": params, "params_m": round(params / 1e6, 3), "macs": macs,
                     "gmacs": round(macs / 1e9, 3), "k_table": {step: list(ks) for step, ks in cfg.k_table.items()},
                     "description": cfg.description})
    return rows
