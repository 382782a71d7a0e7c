"""INT8 + FP16 for TensorRT: the Q/DQ INT8 file with every float op outside the FP32 islands typed FP16.

A strongly typed TensorRT network (the only kind 11.x builds) runs each tensor in the type the ONNX declares. A Q/DQ
file that is FP32 outside its quantized layers therefore runs its stem, patch embedding, LayerNorm, Softmax, the
attention MatMuls and the heads in FP32 on the GPU. This module gives the unquantized rest the FP16 recipe of
``export/fp16.py`` (same islands, same converter, float32 graph inputs/outputs), in the form TensorRT fuses:

* opset 19, where ``QuantizeLinear`` / ``DequantizeLinear`` take float16 scales and ``DequantizeLinear`` outputs the
  scale's type (ONNX operator spec, opset 19). TensorRT's ONNX parser takes float, half and bfloat16 scales
  (onnx-tensorrt ``onnxOpImporters.cpp``, QuantDequantLinearHelper) and its strongly typed Q/DQ layers output
  the scale type, so ``DQ(fp16 scale) -> MatMul/Gemm/Conv(fp16)`` needs no Cast between DQ and the layer - the
  pattern TensorRT's Q/DQ fusion matches. NVIDIA's ModelOpt ONNX quantization writes the same form for its
  fp16 "high precision" type (FP16 scales, opset >= 19) instead of Casts around float32 Q/DQ.
* Q/DQ pairs whose only consumers are FP32-island nodes keep float32 scales, so an island gets a float32 DQ output
  directly (no fp16 round trip before an FP32 op).

The FP32-based Q/DQ file (``--target cpu``, and what ONNX Runtime's integer kernels fuse) is untouched. No torch.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ExportError
from ..export.fp16 import DEFAULT_ISLANDS, FP16_MAX, island_nodes

#: opset of the INT8 + FP16 file: float16 Q/DQ scales exist from opset 19 on
QDQ_FP16_OPSET = 19
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _island_qdq(model: Any, island: set[str]) -> set[str]:
    """Q/DQ nodes that only feed island nodes (directly, or a Q through such DQs) -> names to keep float32."""
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep = {n.name for n in model.graph.node if n.op_type == "DequantizeLinear"
            and consumers.get(n.output[0]) and all(c.name in island for c in consumers[n.output[0]])}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and consumers.get(n.output[0]) \
                and all(c.name in keep for c in consumers[n.output[0]]):
            keep.add(n.name)
    return keep


def float32_ops(model: Any, allowed: set[str]) -> list[str]:
    """Nodes outside ``allowed`` that compute in float32 -> their names (Casts excluded: they convert, and the
    float32 graph inputs/outputs are kept by design). A node computes in float32 when an output is float32, or,
    for Q/DQ, when its scale is float32 (a QuantizeLinear's output is int8 whatever its input)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {v.name: v.type.tensor_type.elem_type
            for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    elem.update({t.name: t.data_type for t in model.graph.initializer})
    bad = []
    for n in model.graph.node:
        if n.name in allowed or n.op_type == "Cast":
            continue
        if n.op_type in QDQ:
            if elem.get(n.input[1]) == TensorProto.FLOAT:
                bad.append(n.name)
        elif any(elem.get(o) == TensorProto.FLOAT for o in n.output):
            bad.append(n.name)
    return bad


def base_facts(islands: Sequence[str] = DEFAULT_ISLANDS) -> dict[str, Any]:
    """What the metadata records about the FP16 base (``gtpt.extra["int8"]["fp16_base"]``)."""
    return {"opset": QDQ_FP16_OPSET, "island_regions": list(islands), "qdq_scale_dtype": "float16",
            "converter": "onnxruntime.transformers.float16", "keep_io_types": True}


def to_int8_fp16(qmodel: Any, fp32_model: Any, islands: Sequence[str] = DEFAULT_ISLANDS) -> tuple[Any, dict]:
    """FP32-based Q/DQ ``qmodel`` (made from ``fp32_model``) -> (INT8 + FP16 ``ModelProto``, recipe facts).

    Node names of ``fp32_model`` survive quantization, so the islands are found on the FP32 graph (where the
    region finders know the patterns) and blocked by name. Raises ExportError when a float32 op is left outside
    the islands or a constant does not fit float16.
    """
    from onnx import version_converter
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ..export import regions

    keep = island_nodes(fp32_model, islands)
    island = {n for names in keep.values() for n in names}
    fp32_qdq = _island_qdq(qmodel, island)
    blocked = island | fp32_qdq
    opset = next((o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx")), 0)
    q19 = version_converter.convert_version(qmodel, QDQ_FP16_OPSET) if opset < QDQ_FP16_OPSET else qmodel
    mixed = convert_float_to_float16(q19, keep_io_types=True, node_block_list=sorted(blocked),
                                     max_finite_val=FP16_MAX, disable_shape_infer=False)
    biggest = regions.float_constant_range(mixed)
    if biggest > FP16_MAX:
        raise ExportError(f"INT8 + FP16 graph has a constant of magnitude {biggest:.4g} (> {FP16_MAX:g}); re-export "
                          f"the FP32 model with a current gtpt-deploy")
    # the converter's own Casts (named after the node they serve) are allowed, as are the blocked nodes
    left = float32_ops(mixed, blocked)
    if left:
        raise ExportError(f"INT8 + FP16 conversion left {len(left)} float32 op(s) outside the FP32 islands "
                          f"(e.g. {', '.join(left[:3])}); this graph pattern needs a region in export/regions.py")
    info = {"base": "fp16", "opset": QDQ_FP16_OPSET, "island_regions": list(islands),
            "islands": {k: len(v) for k, v in keep.items()}, "fp32_qdq_nodes": len(fp32_qdq),
            "converter": "onnxruntime.transformers.float16", "keep_io_types": True, "qdq_scale_dtype": "float16"}
    return mixed, info
