"""The GTPT variants as data: what ``gtpt-deploy models`` prints, without importing torch or building a model.

Counting parameters and MACs builds each model and traces it under torch's FLOP counter (6-10 s for the six
variants), so the counts are computed once with :mod:`gtpt_deploy.models.summary` and stored here.
``tests/test_models.py`` rebuilds every variant from the registry (``models.gtpt.VARIANTS``) and checks each field
of this table against it, so the two cannot drift apart. No torch import.
"""

from __future__ import annotations

from typing import Any

# name -> (keypoints, input (H, W), parameters of the inference branch, MACs of one crop, k table, description)
_VARIANTS: dict[str, tuple[int, tuple[int, int], int, int, dict[str, tuple[int, ...]], str]] = {
    "gtpt_t_coco": (17, (256, 192), 2405632, 775909376,
                    {"plain": (179,), "transition": (76, 76, 76), "group": (25, 25, 25)}, "GTPT-T, COCO 17 keypoints"),
    "gtpt_s_coco": (17, (256, 192), 5479008, 1795049472,
                    {"plain": (179,), "transition": (76, 76, 76), "group": (25, 25, 25)}, "GTPT-S, COCO 17 keypoints"),
    "gtpt_b_coco": (17, (256, 192), 8367904, 3815663616,
                    {"plain": (179,), "transition": (76, 76, 76), "group": (25, 25, 25)}, "GTPT-B, COCO 17 keypoints"),
    "gtpt_t_wholebody": (133, (256, 192), 2421120, 991493632,
                         {"plain": (179,), "transition": (60, 86, 122), "group": (8, 34, 70)},
                         "GTPT-T, COCO-WholeBody 133 keypoints"),
    "gtpt_s_wholebody": (133, (256, 192), 5502240, 2234080512,
                         {"plain": (179,), "transition": (60, 86, 122), "group": (8, 34, 70)},
                         "GTPT-S, COCO-WholeBody 133 keypoints"),
    "gtpt_b_wholebody": (133, (256, 192), 8391136, 4254694656,
                         {"plain": (179,), "transition": (60, 86, 122), "group": (8, 34, 70)},
                         "GTPT-B, COCO-WholeBody 133 keypoints"),
}


def variant_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per variant, in registry order: name, keypoints, input_size [H, W], params (exact),
    params_m, macs (exact), gmacs (3 decimals), k_table, description."""
    rows = []
    for name, (k, size, params, macs, k_table, desc) in _VARIANTS.items():
        rows.append({"name": name, "keypoints": k, "input_size": list(size), "params": params,
                     "params_m": round(params / 1e6, 3), "macs": macs, "gmacs": round(macs / 1e9, 3),
                     "k_table": {step: list(ks) for step, ks in k_table.items()}, "description": desc})
    return rows
