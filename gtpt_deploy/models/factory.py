"""``create_model``: a registered variant (or the one a checkpoint's tensor shapes name) -> a GTPT in eval mode."""

from __future__ import annotations

import os

from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch

from ..errors import CheckpointError, GtptError
from .checkpoint import detect_variant, load_into, read_checkpoint
from .gtpt import GTPT
from .variants import VARIANTS, get_config


def create_model(name: str | None = None, checkpoint: str | os.PathLike[str] | None = None,
                 device: str | torch.device = "cpu") -> GTPT:
    """Build a GTPT variant in eval mode, optionally loading a checkpoint.

    ``forward(images)`` takes float32 (B,3,256,192) normalized RGB crops and returns raw SimCC logits
    ``(simcc_x (B,K,384), simcc_y (B,K,512))`` of the inference (EMA) branch. With ``name=None`` the variant is
    detected from the checkpoint's tensor shapes; with both, they must agree.
    """
    if name is None and checkpoint is None:
        raise GtptError(f"pass a model name ({', '.join(VARIANTS)}) or a checkpoint")
    cfg = get_config(name) if name is not None else None
    state = None
    if checkpoint is not None:
        state, _ = read_checkpoint(checkpoint)
        found = detect_variant(state)
        if cfg is not None and cfg.name != found:
            raise CheckpointError(f"{checkpoint} holds {found} weights, not {cfg.name}; use --model {found} "
                                  f"(or leave out --model to detect the variant)")
        cfg = VARIANTS[found]
    assert cfg is not None
    model = GTPT(cfg)
    if state is not None:
        load_into(model, state, checkpoint)  # type: ignore[arg-type]
    return model.eval().to(_device(device))


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GtptError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    return dev
