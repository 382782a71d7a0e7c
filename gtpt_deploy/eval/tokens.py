"""Pruning-aware parity: which tokens survive each top-k pruning stage, and how often two runners agree on them.

Reduced precision can change *which* tokens a GTPT keeps; the logits may still look close while the model attends to
other parts of the person. For ONNX artifacts the TopK index tensors are added as extra outputs of an in-memory copy
of the graph (the file is untouched). No torch import.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


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


def topk_index_outputs(model: Any) -> tuple[Any, list[str]]:
    """A copy of ``model`` (``onnx.ModelProto``) whose TopK index tensors are graph outputs too.

    Returns:
        (copy, names): names of the int64 index tensors, one per pruning stage, in graph (= stage) order.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = [n.output[1] for n in out.graph.node if n.op_type == "TopK" and len(n.output) > 1]
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    return out, names


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


def kept_tokens(artifact: Any, crops: np.ndarray, threads: int | None = None,
                provider: str | None = None) -> list[np.ndarray] | None:
    """Kept token indices per stage of an artifact on float32 (N, 3, H, W) crops (no flip).

    ``.onnx`` (path or ``onnx.ModelProto``): a copy with the TopK indices as outputs, run on the CPU by ONNX Runtime,
    or by OpenVINO at its precision when ``provider`` is ``openvino[:f32|:bf16]`` (bf16 may keep other tokens, so
    the row must show the backend that produced its AP); ``.pth`` / ``.pt``: the PyTorch model with its top-k calls
    recorded. None for artifacts that cannot expose them (engines).
    """
    from pathlib import Path

    suffix = Path(artifact).suffix.lower() if isinstance(artifact, (str, Path)) else ".onnx"
    if suffix in (".pth", ".pt"):
        from ..models import create_model
        from ..models.tokens import record_kept_tokens

        return record_kept_tokens(create_model(checkpoint=artifact), crops)
    if suffix != ".onnx":
        return None
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(artifact)) if isinstance(artifact, (str, Path)) else artifact
    copy, names = topk_index_outputs(model)
    if not names:
        return None
    if provider is not None and provider.startswith("openvino"):
        return _openvino_indices(copy, names, crops, provider, threads)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = static or 16
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for s in range(0, len(crops), step):
        chunk = np.ascontiguousarray(crops[s:s + step], np.float32)
        n = len(chunk)
        if static and n < static:
            chunk = np.concatenate((chunk, np.zeros((static - n, *chunk.shape[1:]), np.float32)))
        for store, idx in zip(parts, session.run(names, {inp.name: chunk})):
            store.append(idx[:n])
    return [np.concatenate(p) for p in parts]


def _openvino_indices(copy: Any, names: list[str], crops: np.ndarray, provider: str,
                      threads: int | None) -> list[np.ndarray]:
    """The TopK index outputs of ``copy`` compiled by OpenVINO as the runner compiles it (one call per 16 crops)."""
    import tempfile
    from pathlib import Path

    import onnx

    from ..runners.openvino import compile_for_cpu, parse_openvino_provider

    with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads ONNX from a file
        path = Path(tmp) / "with_topk_indices.onnx"
        onnx.save(copy, str(path))
        model, compiled, _, _ = compile_for_cpu(path, parse_openvino_provider(provider), threads)
    static = model.inputs[0].get_partial_shape()[0]
    step = static.get_length() if static.is_static else 16
    request = compiled.create_infer_request()
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for s in range(0, len(crops), step):
        chunk = np.ascontiguousarray(crops[s:s + step], np.float32)
        n = len(chunk)
        if n < step and static.is_static:
            chunk = np.concatenate((chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)))
        result = request.infer({0: chunk})
        for store, name in zip(parts, names):
            store.append(np.array(result[compiled.output(name)])[:n])
    return [np.concatenate(p) for p in parts]


def with_kept_tokens(rows: list[Any], gt: dict, images: Any, threads: int | None = None,
                     providers: Sequence[str | None] | None = None) -> list[Any]:
    """``validate`` rows with ``kept_tokens`` filled: per-stage agreement of each artifact's kept tokens with the
    baseline's (first row) on the GT person crops of ``gt``, each run by the backend of its row (``providers``, one
    per row: the ``--provider`` it ran with, None for the default). Rows stay as they are when the baseline exposes
    no token indices or the file has no person crops."""
    from dataclasses import replace

    from ..errors import GtptError
    from ..runtime.crops import person_crops

    try:
        crops = person_crops(gt, images).crops
    except GtptError:
        return rows
    providers = list(providers) if providers is not None else [None] * len(rows)
    base = kept_tokens(rows[0].artifact, crops, threads, providers[0])
    if base is None:
        return rows
    out = [replace(rows[0], kept_tokens=tuple(1.0 for _ in base))]
    for row, provider in zip(rows[1:], providers[1:]):
        cand = kept_tokens(row.artifact, crops, threads, provider)
        same = cand is not None and [c.shape for c in cand] == [b.shape for b in base]
        out.append(replace(row, kept_tokens=kept_token_agreement(base, cand) if same else None))
    return out
