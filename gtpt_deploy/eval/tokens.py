"""Pruning-aware parity: which tokens survive each top-k pruning stage, and how often two runners agree on them.

Reduced precision can change *which* tokens a GTPT keeps; the logits may still look close while the model attends to
other parts of the person. The indices come from the runners (``create_runner(..., kept_tokens=True)``, e.g. the
TopK index tensors as extra outputs of an in-memory copy of an ONNX graph) through the Predictor, so this module
never branches on the backend. No torch import.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..runners.kept import topk_index_outputs  # noqa: F401 - re-exported: export's parity and tests use it here


# Pruning stages of the GTPT variants in TopK order, by count (see export.parity.stage_names): COCO has one TopK per
# step, whole-body one per keypoint group for the two group steps (their k differ).
GTPT_STAGES = {3: ("plain", "transition", "group"),
               7: ("plain", "transition0", "transition1", "transition2", "group0", "group1", "group2")}


def token_ids(kept: Sequence[np.ndarray], stages: Sequence[str] | None = None) -> list[np.ndarray]:
    """Kept indices per stage -> the kept tokens' positions among the 256 image tokens, per stage.

    A stage's indices point into the token sequence its parent stage kept, in the parent's (score-sorted) order;
    two runtimes that keep the same set there in another order give different indices for the same tokens. Parents:
    ``plain`` for the transition stages, ``transitionN`` / ``transition`` for ``groupN`` / ``group``. ``stages``:
    the stage names (``export.parity.stage_names``); None = GTPT's by the stage count (3: COCO, 7: whole-body).
    """
    stages = stages if stages is not None else GTPT_STAGES[len(kept)]
    ids: dict[str, np.ndarray] = {}
    out = []
    for name, idx in zip(stages, kept):
        idx = np.asarray(idx)
        parent = None if name == "plain" else ids.get("plain") if name.startswith("transition") else \
            ids.get(name.replace("group", "transition"))
        if parent is None:
            mapped = idx
        else:
            if parent.ndim < idx.ndim:                  # COCO transition: 3 groups pick from one plain sequence
                parent = np.broadcast_to(parent[:, None], (*idx.shape[:-1], parent.shape[-1]))
            mapped = np.take_along_axis(parent, idx, axis=-1)
        ids[name] = mapped
        out.append(mapped)
    return out


def forced_topk_inputs(model: Any) -> tuple[Any, list[str]]:
    """A copy of ``model`` whose pruning stages keep the tokens they are given instead of the ones TopK picks.

    Every consumer of a TopK index tensor reads a new int64 graph input instead (the TopK nodes become dead and
    ONNX Runtime drops them). Fed with PyTorch's recorded indices, the copy checks every op of the graph but the
    selection itself - export uses it on near-tie inputs, where the two runtimes may legitimately keep different
    tokens.

    Returns:
        (copy, names): the new inputs, one per pruning stage in graph order, each (B, ..., k) int64.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    stages = [n.output[1] for n in out.graph.node if n.op_type == "TopK" and len(n.output) > 1]
    names = [f"kept_tokens_{i}" for i in range(len(stages))]
    rename = dict(zip(stages, names))
    for node in out.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for o in out.graph.output:
        if o.name in rename:
            raise ValueError(f"forced_topk_inputs: TopK indices {o.name} are a graph output; pass the model itself")
    out.graph.input.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None) for n in names)
    return out, names


def kept_token_agreement(base: Sequence[np.ndarray], cand: Sequence[np.ndarray]) -> tuple[float, ...]:
    """Per stage: the mean fraction of the baseline's kept tokens that the candidate keeps too.

    Args:
        base, cand: one int array per stage, (N, ..., k) token indices of N crops (order within k ignored; with
            GTPT's 3 or 7 stages compared as image-token ids, :func:`token_ids`).

    Returns:
        One fraction in [0, 1] per stage (1.0 = the same token sets in every crop).
    """
    if len(base) != len(cand):
        raise ValueError(f"kept_token_agreement: {len(base)} baseline stages vs {len(cand)} candidate stages")
    same_shapes = [np.shape(b) for b in base] == [np.shape(c) for c in cand]
    if len(base) in GTPT_STAGES and same_shapes:
        # GTPT's stages index their parent's score-sorted sequence: compare image-token ids, not positions
        base, cand = token_ids(base), token_ids(cand)
    fractions = []
    for b, c in zip(base, cand):
        b2 = np.asarray(b).reshape(-1, np.asarray(b).shape[-1])
        c2 = np.asarray(c).reshape(-1, np.asarray(c).shape[-1])
        if b2.shape != c2.shape:
            raise ValueError(f"kept_token_agreement: index shapes {b2.shape} vs {c2.shape}")
        same = [len(np.intersect1d(x, y, assume_unique=True)) / max(len(x), 1) for x, y in zip(b2, c2)]
        fractions.append(float(np.mean(same)) if same else 1.0)
    return tuple(fractions)


def kept_tokens(artifact: Any, crops: np.ndarray, threads: int | None = None, provider: str | None = None,
                device: str | None = None) -> list[np.ndarray] | None:
    """Kept token indices per stage of an artifact on float32 (N, 3, H, W) crops (no flip).

    The artifact's runner with ``kept_tokens=True`` (``.onnx`` by ONNX Runtime, or OpenVINO for
    ``provider="openvino[:f32|:bf16]"``, which may keep other tokens at bf16; ``.pth`` by PyTorch) behind the
    Predictor's batching. None for artifacts that cannot expose them (engines).
    """
    from ..runners import create_runner, provider_for
    from ..runtime.predictor import Predictor

    with create_runner(artifact, device, provider=provider_for(artifact, provider), threads=threads,
                       kept_tokens=True) as runner:
        predictor = Predictor(runner, flip=False, prefetch=0)
        predictor.infer_crops(np.ascontiguousarray(crops, np.float32))
        return predictor.kept_tokens()


def with_kept_tokens(rows: list[Any], kept: Sequence[Sequence[np.ndarray] | None]) -> list[Any]:
    """``validate`` rows with ``kept_tokens`` filled: per-stage agreement of each artifact's kept tokens (``kept``,
    one entry per row, recorded on the same crops: ``Predictor.kept_tokens``) with the baseline's (first row).
    Rows stay as they are when the baseline exposes no token indices (or there were no crops); a candidate that
    exposes none, or other shapes, gets None."""
    from dataclasses import replace

    base = kept[0] if kept else None
    if base is None:
        return rows
    out = [replace(rows[0], kept_tokens=tuple(1.0 for _ in base))]
    for row, cand in zip(rows[1:], kept[1:]):
        same = cand is not None and [c.shape for c in cand] == [b.shape for b in base]
        out.append(replace(row, kept_tokens=kept_token_agreement(base, cand) if same else None))
    return out
