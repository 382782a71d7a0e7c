"""GTPT models: the variant registry, ``create_model`` and checkpoint I/O."""

from __future__ import annotations

import os

from ..errors import GtptError, MissingDependencyError, UnknownModelError

try:  # the one gate for torch: export, .pth runners and create_model all come through this package
    import torch
except ImportError as e:  # a runtime-only install (no [export] extra)
    # (`gtpt-deploy models` reads the stored variant table and needs no torch: not named here)
    raise MissingDependencyError("torch", "export", "Working with PyTorch checkpoints (export, .pth runners)") from e
from .checkpoint import detect_variant, load_into, read_checkpoint, save_checkpoint
from .gtpt import GTPT, VARIANTS, GTPTConfig

__all__ = ["GTPT", "GTPTConfig", "VARIANTS", "create_model", "get_config", "save_checkpoint", "read_checkpoint",
           "detect_variant"]


def get_config(name: str) -> GTPTConfig:
    """The config of a registered variant; UnknownModelError (listing the valid names) otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model '{name}'; valid names: {', '.join(VARIANTS)}") from None


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
            from ..errors import CheckpointError

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
