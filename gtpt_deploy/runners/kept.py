"""The TopK index tensors of an exported GTPT graph: which tokens each pruning stage keeps.

Shared by the backends that run ONNX graphs (ONNX Runtime, OpenVINO) for their ``kept_tokens`` option, and by
export's tie-aware parity. No torch import; ``onnx`` is imported when a graph is rewritten.
"""

from __future__ import annotations

from typing import Any


def topk_index_names(model: Any) -> list[str]:
    """Names of the int64 index outputs of the TopK nodes of ``model`` (``onnx.ModelProto``), one per pruning stage,
    in graph (= stage) order."""
    return [n.output[1] for n in model.graph.node if n.op_type == "TopK" and len(n.output) > 1]


def topk_index_outputs(model: Any) -> tuple[Any, list[str]]:
    """A copy of ``model`` (``onnx.ModelProto``) whose TopK index tensors are graph outputs too (the file is
    untouched).

    Returns:
        (copy, names): names of the int64 index tensors, one per pruning stage, in graph (= stage) order.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = topk_index_names(out)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    return out, names
