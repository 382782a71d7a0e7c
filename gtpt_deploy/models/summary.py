"""Parameter and MAC counts of the variants: the counter that produced (and in tests re-checks) the numbers stored
in :data:`.variants.COUNTS`; ``gtpt-deploy models`` itself prints the stored numbers and never imports this."""

from __future__ import annotations

import math
from typing import Any

from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch
from torch.utils.flop_counter import FlopCounterMode

from .gtpt import GTPT


def count_params(model: torch.nn.Module) -> int:
    """All parameters of the inference branch (fixed positional table included, as in the spec's counts)."""
    return sum(p.numel() for p in model.parameters())


def _norm_flops(x_shape: torch.Size, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # thop's convention for affine BatchNorm / LayerNorm: 2 ops per element for the normalization, x2 for the
    # affine part = 4 MACs = 8 FLOPs per input element. Registering it keeps our totals comparable with the paper.
    return 8 * math.prod(x_shape)


_NORM_OPS = {torch.ops.aten._native_batch_norm_legit_no_training: _norm_flops,
             torch.ops.aten.native_batch_norm: _norm_flops,
             torch.ops.aten.native_layer_norm: _norm_flops}


def count_macs(model: GTPT) -> int:
    """Multiply-accumulates of one (1,3,H,W) forward, by torch's FLOP counter.

    Counts convolutions, linear layers and the attention matmuls (torch's formulas, a multiply-add = 2 FLOPs) plus
    the affine normalizations with thop's formula (4 MACs per element), which is what the paper's numbers use.
    Elementwise ops, softmax and top-k are not counted.
    """
    h, w = model.cfg.image_size
    x = torch.zeros(1, 3, h, w)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_NORM_OPS) as counter:
        model(x)
    return counter.get_total_flops() // 2

