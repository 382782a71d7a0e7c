"""Does ONNX Runtime's CPU provider run the quantized weight layers as integer kernels?

A Q/DQ file only *describes* int8; ONNX Runtime fuses ``DequantizeLinear -> MatMul/Gemm/Conv`` into QLinearMatMul /
QGemm / QLinearConv / MatMulIntegerToFloat when the pattern fits its kernels (uint8 activations on x86). What it does
not fuse stays a DequantizeLinear feeding a float op: correct, but slower than FP32. The optimized graph that the
session writes (``SessionOptions.optimized_model_filepath``) shows which happened. No torch import.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..scratch import scratch_dir

INTEGER_OPS = ("QLinearMatMul", "QGemm", "QLinearConv", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
               "MatMulInteger", "ConvInteger", "QAttention")
FLOAT_WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "FusedMatMul", "FusedGemm", "FusedConv", "NchwcConv")


@dataclass(frozen=True)
class FusionReport:
    """Integer kernels and DequantizeLinear->float weight ops left in ONNX Runtime's optimized CPU graph.

    Attributes:
        integer_ops: op type -> count of integer (quantized) kernels.
        unfused: names of float weight ops whose weight input still comes from a DequantizeLinear.
    """

    integer_ops: dict[str, int]
    unfused: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.unfused

    def to_dict(self) -> dict[str, Any]:
        return {"integer_ops": dict(self.integer_ops), "unfused": list(self.unfused), "ok": self.ok}

    def format(self) -> str:
        ints = ", ".join(f"{k} {v}" for k, v in sorted(self.integer_ops.items())) or "none"
        tail = "all quantized weight layers fused" if self.ok else \
            f"{len(self.unfused)} left as DequantizeLinear -> float op (e.g. {self.unfused[0]})"
        return f"ONNX Runtime CPU graph: integer kernels {ints}; {tail}"


def cpu_fusion(qmodel: Any, threads: int = 1) -> FusionReport:
    """Optimize ``qmodel`` (Q/DQ ``onnx.ModelProto``) with ONNX Runtime's CPU provider at the default level and
    inspect the graph it would run."""
    import onnx
    import onnxruntime as ort

    with scratch_dir("fusion") as tmp:
        out = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(out)
        ort.InferenceSession(qmodel.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(out))
    prod = {o: n for n in optimized.graph.node for o in n.output}
    consts = {i.name for i in optimized.graph.initializer}
    counts: Counter[str] = Counter()
    unfused = []
    for n in optimized.graph.node:
        if n.op_type in INTEGER_OPS:
            counts[n.op_type] += 1
        elif n.op_type in FLOAT_WEIGHT_OPS:
            w = prod.get(n.input[1]) if len(n.input) > 1 else None
            if w is not None and w.op_type == "DequantizeLinear" and w.input[0] in consts:   # a weight, not q/k/v
                unfused.append(n.name or n.output[0])
    return FusionReport(dict(counts), tuple(unfused))
