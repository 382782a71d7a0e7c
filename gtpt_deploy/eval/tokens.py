"""Pruning-aware parity: which tokens survive each top-k pruning stage, and how often two runners agree on them.

Reduced precision can change *which* tokens a GTPT keeps; the logits may still look close while the model attends to
other parts of the person. For ONNX artifacts the TopK index tensors are added as extra outputs of an in-memory copy
of the graph (the file is untouched). No torch import.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


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


def kept_token_agreement(base: Sequence[np.ndarray], cand: Sequence[np.ndarray]) -> tuple[float, ...]:
    """Per stage: the mean fraction of the baseline's kept tokens that the candidate keeps too.

    Args:
        base, cand: one int array per stage, (N, ..., k) token indices of N crops (order within k ignored).

    Returns:
        One fraction in [0, 1] per stage (1.0 = the same token sets in every crop).
    """
    if len(base) != len(cand):
        raise ValueError(f"kept_token_agreement: {len(base)} baseline stages vs {len(cand)} candidate stages")
    fractions = []
    for b, c in zip(base, cand):
        b2 = np.asarray(b).reshape(-1, np.asarray(b).shape[-1])
        c2 = np.asarray(c).reshape(-1, np.asarray(c).shape[-1])
        if b2.shape != c2.shape:
            raise ValueError(f"kept_token_agreement: index shapes {b2.shape} vs {c2.shape}")
        same = [len(np.intersect1d(x, y, assume_unique=True)) / max(len(x), 1) for x, y in zip(b2, c2)]
        fractions.append(float(np.mean(same)) if same else 1.0)
    return tuple(fractions)
