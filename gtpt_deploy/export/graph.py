"""ONNX-level helpers for the exporter: graph facts and checks, simplification with fallback, ORT sessions.

Nothing here imports torch. The checks encode what TensorRT and FP16 conversion need from our graph
(design notes §4.5 / spec §3): concrete shapes, constant-k TopK, no ScatterND / Einsum, no constant outside
the float16 range.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ..errors import ExportError

log = logging.getLogger(__name__)

FORBIDDEN_OPS = ("ScatterND", "Einsum")
FP16_MAX = 65504.0
# Simplified vs unsimplified graph (both in ONNX Runtime): anything above this is a changed result, not round-off.
SIMPLIFY_TOL = 1e-5


@dataclass(frozen=True)
class GraphFacts:
    """What a graph contains, as checked before an export is kept."""

    opset: int
    nodes: int
    op_counts: dict[str, int]
    topk_k: tuple[int, ...]                    # in graph order; -1 for a k that is not a constant
    non_static: tuple[str, ...]                # "tensor: dims" for tensors whose shape is not as required
    forbidden: tuple[str, ...]                 # ops from FORBIDDEN_OPS found in the graph
    max_float_constant: float                  # largest |value| over float initializers / Constant nodes

    def problems(self, expected_opset: int, expected_k: Sequence[int], require_static: bool = True) -> list[str]:
        """Human-readable violations (empty when the graph is fine).

        ``require_static=False`` for an unsimplified graph: the exporter's shape arithmetic (Shape -> Slice for
        ``chunk``) is only folded by a simplifier, so ONNX shape inference alone cannot make every shape concrete.
        """
        out = []
        if self.opset != expected_opset:
            out.append(f"opset {self.opset} written, {expected_opset} requested")
        if sorted(self.topk_k) != sorted(expected_k):
            out.append(f"TopK k values {list(self.topk_k)}, expected {list(expected_k)} (constant)")
        if self.non_static and require_static:
            out.append(f"{len(self.non_static)} tensor(s) without a static shape, e.g. {self.non_static[0]}")
        if self.forbidden:
            out.append(f"forbidden op(s) {', '.join(self.forbidden)}")
        if self.max_float_constant > FP16_MAX:
            out.append(f"a constant of magnitude {self.max_float_constant:.4g} (> {FP16_MAX:g}, the float16 range)")
        return out


def default_opset(model: onnx.ModelProto) -> int:
    """The opset version of the default ONNX domain as written in the file."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict ONNX shape inference (with data propagation) from scratch: stale ``value_info`` is dropped first.

    Raises ExportError naming the failing node when inference finds an inconsistency.
    """
    clean = onnx.ModelProto()
    clean.CopyFrom(model)
    del clean.graph.value_info[:]
    try:
        return shape_inference.infer_shapes(clean, check_type=True, strict_mode=True, data_prop=True)
    except shape_inference.InferenceError as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ExportError(f"ONNX shape inference failed on the exported graph ({first}); this is a bug, "
                          f"please report it with the checkpoint's variant") from None


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    values[n.output[0]] = numpy_helper.to_array(a.t)
    return values


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim]


def graph_facts(model: onnx.ModelProto, dynamic_batch: bool) -> GraphFacts:
    """Facts about ``model`` after strict shape inference.

    Static batch: every tensor must have concrete dims. Dynamic batch: only dim 0 of a tensor may be symbolic
    (1-D shape tensors and flattened batch*N rows included).
    """
    inferred = infer_shapes(model)
    consts = _constants(model)
    typed = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    non_static = []
    for n in inferred.graph.node:
        for name in n.output:
            vi = typed.get(name)
            if vi is None or not vi.type.tensor_type.HasField("shape"):
                non_static.append(f"{name}: unknown")
                continue
            dims = _dims(vi)
            loose = [i for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
            if loose and (not dynamic_batch or loose != [0]):
                non_static.append(f"{name}: {dims}")
    topk = []
    for n in model.graph.node:
        if n.op_type == "TopK":
            k = consts.get(n.input[1]) if len(n.input) > 1 else None
            topk.append(int(k.reshape(-1)[0]) if k is not None else -1)
    floats = [float(np.abs(v).max()) for v in consts.values() if v.dtype.kind == "f" and v.size]
    counts = Counter(n.op_type for n in model.graph.node)
    return GraphFacts(
        opset=default_opset(model), nodes=len(model.graph.node), op_counts=dict(counts.most_common()),
        topk_k=tuple(topk), non_static=tuple(non_static),
        forbidden=tuple(op for op in FORBIDDEN_OPS if counts.get(op)),
        max_float_constant=max(floats, default=0.0),
    )


# ----------------------------------------------------------------------------------------------- ONNX Runtime
def ort_session(model: onnx.ModelProto | bytes | str, threads: int | None = None) -> Any:
    """A CPU ONNX Runtime session (the CPU provider is checked: onnxruntime-gpu falls back silently)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("verifying an ONNX export needs onnxruntime, which is not installed; "
                          "pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    if "CPUExecutionProvider" not in sess.get_providers():
        raise ExportError(f"ONNX Runtime offers {sess.get_providers()}, not the CPU provider; "
                          f"install the 'onnxruntime' package")
    return sess


def run_ort(sess: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """images float32 (B,3,H,W) -> (simcc_x (B,K,Wx), simcc_y (B,K,Hy))."""
    x, y = sess.run(["simcc_x", "simcc_y"], {"images": np.ascontiguousarray(images, dtype=np.float32)})
    return x, y


# ----------------------------------------------------------------------------------------------- simplification
@dataclass
class SimplifyReport:
    """Which simplifier produced the final graph and why."""

    simplifier: str                                  # "onnxsim", "onnxslim" or "none"
    nodes_before: int
    nodes_after: int
    notes: list[str] = field(default_factory=list)   # what failed on the way (empty when onnxsim just worked)
    max_abs_change: float = 0.0                      # simplified vs unsimplified outputs in ONNX Runtime


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxsim import simplify

    out = model
    # The exporter's value_info can be stale (a rank-0 shape on a keepdims ReduceSum) and onnxsim then stops folding
    # the shape arithmetic below it. Each pass starts from clean shapes and frees more (GTPT-T: 1791 -> 642 -> 562
    # -> 526 nodes, no Shape op left); repeat until a pass removes nothing.
    for _ in range(6):
        clean = onnx.ModelProto()
        clean.CopyFrom(out)
        del clean.graph.value_info[:]
        new, ok = simplify(clean)
        if not ok:
            raise RuntimeError("onnxsim's own check failed")
        done = len(new.graph.node) >= len(out.graph.node)
        out = new
        if done:
            break
    return out


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    clean = onnx.ModelProto()
    clean.CopyFrom(model)
    del clean.graph.value_info[:]
    return onnxslim.slim(clean)


def simplify_model(model: onnx.ModelProto, probe: np.ndarray,
                   simplifiers: Sequence[tuple[str, Callable[[onnx.ModelProto], onnx.ModelProto]]] | None = None,
                   ) -> tuple[onnx.ModelProto, SimplifyReport]:
    """Simplify with onnxsim, else onnxslim, else keep ``model``; a result must reproduce the original's outputs.

    ``probe`` (B,3,H,W) float32 inputs are run through the unsimplified and the simplified graph in ONNX Runtime;
    a simplifier that raises, or changes any logit by more than SIMPLIFY_TOL, is skipped with a note.
    """
    simplifiers = simplifiers if simplifiers is not None else (("onnxsim", _onnxsim), ("onnxslim", _onnxslim))
    before = len(model.graph.node)
    reference = run_ort(ort_session(model), probe)
    notes: list[str] = []
    for name, fn in simplifiers:
        try:
            candidate = fn(model)
            outputs = run_ort(ort_session(candidate), probe)
        except ImportError:
            notes.append(f"{name} is not installed")
            continue
        except Exception as e:  # a simplifier crash must not fail the export: the fallback decides
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            notes.append(f"{name} failed ({type(e).__name__}: {first})")
            continue
        change = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference))
        if not change <= SIMPLIFY_TOL:
            notes.append(f"{name} changed the outputs by {change:.2e} (> {SIMPLIFY_TOL:g})")
            continue
        for note in notes:
            log.warning("simplify: %s; used %s instead", note, name)
        return candidate, SimplifyReport(name, before, len(candidate.graph.node), notes, change)
    for note in notes:
        log.warning("simplify: %s", note)
    log.warning("simplify: keeping the unsimplified graph")
    return model, SimplifyReport("none", before, before, notes)
