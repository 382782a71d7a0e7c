"""Where precision matters in a GTPT graph: the pruning score path, normalizations, gates, heads, weight layers.

FP16 conversion (``export.fp16``) keeps some of these regions in FP32, INT8 calibration (``calib``) keeps some of
them unquantized and groups the weight layers for the AP-budgeted search. Regions are found from the graph's
structure (what feeds TopK, which layers produce the outputs) and our exporter's stable module names (``to_qkv``,
``group_mask``, ``mlp_head``), so the same rules hold for every GTPT variant. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class WeightLayer:
    """A MatMul / Gemm / Conv node whose weight (input 1) is a constant.

    Attributes:
        node: node name; op: its op type.
        group: the unit the budget search switches as a whole: ``stem`` (convolutions before the transformer),
            ``patch_embed``, ``block00``.. (one per transformer block, in graph order), ``gates`` (group-mask MLP),
            ``head`` (the SimCC Linear layers that produce simcc_x / simcc_y).
    """

    node: str
    op: str
    group: str


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def constant_names(model: Any) -> set[str]:
    """Initializers and outputs of Constant nodes."""
    names = {i.name for i in model.graph.initializer}
    names.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    return names


def score_path(model: Any) -> list[str]:
    """Nodes from each TopK back to the attention-logit MatMul that feeds its pruning score, both included.

    These decide *which* tokens survive; reduced precision here changes the kept set, not just the values.
    """
    prod, consts = _producers(model), constant_names(model)
    found: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "TopK":
            continue
        stack = [node]
        while stack:
            n = stack.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            found.append(n.name)
            if n.op_type == "MatMul" and n is not node:   # the attention logits (q @ k^T): stop here
                continue
            stack.extend(prod[i] for i in n.input if i in prod and i not in consts)
    return found


def nodes_of(model: Any, op_types: Iterable[str]) -> list[str]:
    """Names of the nodes of the given op types, in graph order."""
    ops = set(op_types)
    return [n.name for n in model.graph.node if n.op_type in ops]


def weight_layers(model: Any) -> list[WeightLayer]:
    """Every weight layer with its group (see :class:`WeightLayer`), in graph order."""
    consts = constant_names(model)
    heads = set(_head_nodes(model))
    out: list[WeightLayer] = []
    block = -1
    for n in model.graph.node:
        if n.op_type not in WEIGHT_OPS or len(n.input) < 2 or n.input[1] not in consts:
            continue
        names = " ".join([n.name, *n.input])
        if n.name in heads:
            group = "head"
        elif "group_mask" in names:
            group = "gates"
        elif "to_qkv" in names:                  # each transformer block starts with its qkv projection
            block += 1
            group = f"block{block:02d}"
        elif block >= 0:
            group = f"block{block:02d}"
        elif n.op_type == "Conv" and "stem" not in names:
            group = "patch_embed"
        else:
            group = "stem"
        out.append(WeightLayer(n.name, n.op_type, group))
    return out


def _head_nodes(model: Any) -> list[str]:
    """Weight layers that reach a graph output without passing another weight layer (the SimCC heads)."""
    consts = constant_names(model)
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    heads = []
    for n in model.graph.node:
        if n.op_type not in WEIGHT_OPS or len(n.input) < 2 or n.input[1] not in consts:
            continue
        stack, seen, hit = list(n.output), set(), False
        while stack and not hit:
            t = stack.pop()
            if t in outputs:
                hit = True
            for c in consumers.get(t, []):
                if c.op_type in WEIGHT_OPS or c.name in seen:
                    continue
                seen.add(c.name)
                stack.extend(c.output)
        if hit:
            heads.append(n.name)
    return heads


def float_constant_range(model: Any) -> float:
    """Largest |value| over float32/float16 initializers and Constant nodes (0.0 when none)."""
    from onnx import TensorProto, numpy_helper

    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    best = 0.0
    for t in tensors:
        if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
            a = numpy_helper.to_array(t)
            if a.size:
                best = max(best, float(np.abs(a.astype(np.float64)).max()))
    return best
