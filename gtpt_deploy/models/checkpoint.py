"""Checkpoint reading: every format the official code writes -> the state dict of our inference model.

Accepted: a plain state dict with both branches (``model_best.pth``, ``final_state.pth``); dicts holding it under
``state_dict`` / ``best_state_dict`` / ``model`` (``checkpoint.pth``, mmpose-style files); keys with a ``module.``
prefix (DataParallel); EMA-only dicts; and our own files (``save_checkpoint``). Files are read with
``torch.load(weights_only=True)``: nothing from the file is ever executed.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

from . import _torch  # noqa: F401  (first: names the [export] extra when torch is missing)
import torch

from ..errors import CheckpointError
from .variants import VARIANTS

log = logging.getLogger(__name__)

FORMAT = "gtpt-deploy"
FORMAT_VERSION = 1
_CONTAINER_KEYS = ("state_dict", "best_state_dict", "model")
_EMA_PREFIXES = ("ema_features.", "ema_mlp_head_x.", "ema_mlp_head_y.")
_STUDENT_PREFIXES = ("features.", "mlp_head_x.", "mlp_head_y.")
# Keys of the official model that carry no information for inference: the constant boolean group-attention mask
# (rebuilt implicitly) and BatchNorm's step counter.
_IGNORED_SUFFIXES = (".mask", ".num_batches_tracked")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``path`` safely -> (inference-branch state dict with ``ema_*`` keys, float32; metadata dict).

    Every way a file can fail to be a checkpoint (not a file, unsafe or garbled pickle, truncated archive,
    non-finite weights, no GTPT keys) raises a one-line CheckpointError.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass the path of the .pth file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the first non-allow-listed global it met ("... GLOBAL posix.system ..."); anything else is
        # a byte stream that is not a pickle of tensors at all.
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))
        if unsafe:
            raise CheckpointError(
                f"refusing to load {path}: it needs arbitrary unpickling ({unsafe.group(1)}), which could execute "
                f"code; re-save it as a plain state dict (torch.save(model.state_dict(), ...)) from a trusted "
                f"environment") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (unreadable pickle data); "
                              f"expected a .pth file saved by torch.save") from None
    except Exception as e:  # noqa: BLE001 - the reader boundary: see below
        # The weights-only unpickler meets arbitrary bytes here: a text file whose first byte happens to be a pickle
        # opcode ("hello", a URL) raises KeyError / IndexError, a GIF header struct.error, a truncated archive
        # RuntimeError / EOFError / BadZipFile. For a file none of them is a bug in this program, so all become
        # one user error naming what was found.
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint or is truncated "
                              f"({type(e).__name__}{': ' + first if first else ''}); expected a .pth file saved by "
                              f"torch.save - re-download or re-save it") from None
    state, meta = _unwrap(obj, path)
    branch = _inference_branch(state, path)
    _check_finite(branch, path)
    return branch, meta


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN / Inf weights at load: later they only show up as a baffling parity or AP failure."""
    bad = [(k, v) for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        k, v = bad[0]
        n = int((~torch.isfinite(v)).sum())
        raise CheckpointError(f"{path} holds non-finite weights: {n} NaN/Inf value(s) in {k}"
                              f"{f' and {len(bad) - 1} more tensor(s)' if len(bad) > 1 else ''}; expected finite "
                              f"weights - the training run diverged or the file is corrupt, use an earlier checkpoint")


def _unwrap(obj: Any, path: Path) -> tuple[Mapping[str, Any], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict; expected a dict of tensors")
    meta: dict[str, Any] = dict(obj.get("meta", {})) if isinstance(obj.get("meta"), Mapping) else {}
    for key in _CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            log.debug("using the '%s' entry of %s", key, path)
            return inner, meta
    return obj, meta


def _inference_branch(state: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    tensors = {(k[len("module."):] if k.startswith("module.") else k): v
               for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} contains no tensors; expected a GTPT state dict")
    ema = {k: v for k, v in tensors.items() if k.startswith(_EMA_PREFIXES)}
    if not ema:
        student = {k: v for k, v in tensors.items() if k.startswith(_STUDENT_PREFIXES)}
        if not student:
            raise CheckpointError(
                f"{path} has no GTPT weights (no 'ema_features.*' or 'features.*' keys; first keys: "
                f"{', '.join(list(tensors)[:3])}); expected an official GTPT or gtpt-deploy checkpoint")
        log.warning("%s has no EMA branch; using its student weights (features.*) as the inference branch", path)
        ema = {"ema_" + k: v for k, v in student.items()}
    return {k: (v.float() if v.is_floating_point() else v)
            for k, v in ema.items() if not k.endswith(_IGNORED_SUFFIXES)}


def detect_variant(state: Mapping[str, torch.Tensor]) -> str:
    """Registry name of the variant whose shapes ``state`` (ema_* keys) holds; CheckpointError if none fits."""
    try:
        dim = state["ema_features.keypoint_token"].shape[-1]
        stem_out = state["ema_features.patch2emb_norm.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"cannot identify the GTPT variant: key {e.args[0]} is missing") from None
    wholebody = "ema_features.fine_keypoint_token" in state
    unet = any(k.startswith("ema_features.stem.down_layer1.") for k in state)
    for name, cfg in VARIANTS.items():
        if (cfg.wholebody, cfg.backbone == "unet", cfg.dim, cfg.stem_channels) == (wholebody, unet, dim, stem_out):
            return name
    raise CheckpointError(f"no GTPT variant has these shapes (dim {dim}, stem channels {stem_out}, "
                          f"{'whole-body' if wholebody else 'COCO'}, {'U-' if unet else 'lite '}stem)")


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Strictly load ``state`` into ``model``: every inference key must be present with the right shape."""
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith(_IGNORED_SUFFIXES)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): "
                         f"{', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{path} does not fit {model.cfg.name}: {'; '.join(parts)}")
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{path} does not fit {model.cfg.name}: {k} has shape {tuple(state[k].shape)}, "
                              f"expected {tuple(expected[k].shape)}")
    model.load_state_dict(dict(state), strict=False)


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None,
                    half: bool = False) -> None:
    """Write the inference branch in the official key layout (``ema_*``) under ``state_dict`` with a ``meta`` dict.

    Loads with our reader and with the official code (``best_state_dict``/``state_dict`` containers and plain
    ``ema_*`` keys). ``half`` stores floating tensors as float16 (the reader upcasts).
    """
    from ..artifacts import atomic_path

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "variant": model.cfg.name,
               "meta": dict(meta or {}), "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
