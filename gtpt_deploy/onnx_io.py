"""The one reader of an ONNX graph's image input, for every stage that probes an ONNX model (the builder's
profile, the Triton repository's batching check, calibration's static batch, export's parity session). The ONNX
Runtime runner checks its own session's inputs (``runners/ort.py``). No onnx import: it reads the proto's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ArtifactError

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class GraphInput:
    """A graph input: its name and its dims as declared, each a value (int), a symbolic name (str) or None
    (neither). A pose model's image input is ``float32 (B, 3, H, W)``."""

    name: str
    dims: tuple[int | str | None, ...]

    @property
    def batch(self) -> int | None:
        """The static batch (dim 0 as a positive value), None for a symbolic / unknown dim 0."""
        d = self.dims[0] if self.dims else None
        return d if isinstance(d, int) and d > 0 else None


def graph_inputs(model: "onnx.ModelProto") -> list[GraphInput]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out), in graph order."""
    inits = {t.name for t in model.graph.initializer}
    return [GraphInput(i.name, tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                     for d in i.type.tensor_type.shape.dim))
            for i in model.graph.input if i.name not in inits]


def image_input(model: "onnx.ModelProto", source: str, hint: str = "") -> GraphInput:
    """The one image input of a gtpt-deploy ONNX graph. ArtifactError ``"{source}: expected one image input, got
    [names]{hint}"`` when the graph has none or several (``hint``: what to do, e.g. ``"; re-export it"``)."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ArtifactError(f"{source}: expected one image input, got {[i.name for i in inputs]}{hint}")
    return inputs[0]
