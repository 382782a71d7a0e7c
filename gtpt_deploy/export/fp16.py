"""FP32 ONNX -> FP16-typed ONNX with FP32 islands, float32 inputs/outputs, and its recipe in the metadata.

TensorRT 11 has no FP16 builder flag: the precision must be in the file (design.md §5). The conversion itself is ONNX
Runtime's kept converter (``onnxruntime.transformers.float16``); this module only chooses what stays FP32, checks the
result and writes it. The default islands were chosen by measurement on the COCO and whole-body samples
(ΔAP, argmax agreement, pixel drift and per-stage kept-token agreement; numbers in the issue 9 closing note).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import ArtifactSet, Inputs, check_outputs, precision_path, sha256_file
from ..errors import ArtifactError, ExportError
from ..metadata import ModelMeta, load_onnx, read_onnx_meta, write_onnx_meta
from . import regions

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
#: FP32 islands of the default recipe (region names, see :func:`island_nodes`). The score path decides which tokens
#: survive; Softmax (exp) is the classic FP16 underflow place. Measured on the COCO sample (val 137 / train 86 persons)
#: and the whole-body sample: this recipe lost 0.0007 / 0.0001 / 0.0000 AP. Adding LayerNorm or the gate Sigmoid
#: changed neither argmax agreement (~0.97) nor kept-token agreement, but moved COCO-val ΔAP to -0.0019 (a handful of
#: keypoints; the sets are small), so they stay FP16; no overflow was seen. Pass islands=... to keep more in FP32.
DEFAULT_ISLANDS = ("score_path", "Softmax")
ISLAND_CHOICES = ("score_path", "LayerNormalization", "Softmax", "Sigmoid", "head", "gates")


@dataclass(frozen=True)
class Fp16Result:
    """What :func:`convert_fp16` wrote.

    Attributes:
        output: the FP16 ONNX file; source: the FP32 file it came from (None for an in-memory model).
        islands: region name -> number of nodes kept in FP32; fp32_nodes: all of them.
        nodes: nodes in the converted graph; max_constant: largest |float constant| after conversion.
        bytes: file size; seconds: conversion time (load to written).
    """

    output: Path
    source: Path | None
    islands: dict[str, int]
    fp32_nodes: int
    nodes: int
    max_constant: float
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output"], d["source"] = str(self.output), (str(self.source) if self.source else None)
        return d

    def format_report(self) -> str:
        isl = ", ".join(f"{k} {v}" for k, v in self.islands.items())
        return (f"fp16 -> {self.output} ({self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s)\n"
                f"  FP32 islands: {isl} ({self.fp32_nodes} of {self.nodes} nodes); "
                f"max |constant| {self.max_constant:.4g}")


def island_nodes(model: Any, islands: Sequence[str] = DEFAULT_ISLANDS) -> dict[str, list[str]]:
    """Region name -> node names to keep in FP32 (``score_path``, op types, ``head``, ``gates``)."""
    out: dict[str, list[str]] = {}
    layers = regions.weight_layers(model)
    for name in islands:
        if name == "score_path":
            out[name] = regions.score_path(model)
        elif name in ("head", "gates"):
            out[name] = [w.node for w in layers if w.group == name]
        elif name in ISLAND_CHOICES:
            out[name] = regions.nodes_of(model, [name])
        else:
            raise ExportError(f"unknown FP32 island '{name}': expected one of {', '.join(ISLAND_CHOICES)}")
    return out


def check_reducible(model: Any, meta: ModelMeta, source: str, action: str) -> None:
    """Refuse a model that is already reduced-precision (by metadata or by content), naming what it is."""
    from onnx import TensorProto

    if meta.precision != "fp32":
        raise ArtifactError(f"{source} is already {meta.precision} (gtpt.precision); {action} needs the FP32 export "
                            f"- pass the FP32 .onnx it was made from")
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise ArtifactError(f"{source} already holds QuantizeLinear/DequantizeLinear nodes (int8) although its "
                            f"metadata says fp32; {action} needs the FP32 export")
    if any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer):
        raise ArtifactError(f"{source} already holds float16 weights although its metadata says fp32; "
                            f"{action} needs the FP32 export")


def open_fp32_source(onnx_model: str | os.PathLike[str], output: str | os.PathLike[str] | None, force: bool,
                     precision: str, action: str,
                     inputs: Inputs | None = None) -> tuple[Path, Any, ModelMeta, Path]:
    """The checks every precision stage starts with -> (source path, its ModelProto, its metadata, output path).

    The source must be a gtpt-deploy FP32 ONNX (not already reduced; ArtifactError, one line, for a file that is no
    ONNX model); the output defaults to ``<name>_<precision>.onnx`` beside it, is never the source or one of the
    other ``inputs`` (annotation file, image folder: :class:`artifacts.Inputs`, which gets the source added), and
    must be writable (``force``).
    """
    src = Path(onnx_model)
    if not src.is_file():
        raise ArtifactError(f"ONNX model {src} does not exist; pass the FP32 .onnx written by 'gtpt-deploy export'")
    model = load_onnx(src)
    meta = read_onnx_meta(model, source=str(src))
    check_reducible(model, meta, str(src), action)
    out = Path(output) if output is not None else precision_path(src, precision)
    check_outputs([out], force, inputs=(inputs if inputs is not None else Inputs()).add(src), option="-o")
    return src, model, meta, out


def to_fp16(model: Any, islands: Sequence[str] = DEFAULT_ISLANDS) -> tuple[Any, dict[str, list[str]]]:
    """In memory: FP32 ``onnx.ModelProto`` -> (FP16 copy with float32 I/O, island node names by region)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    keep = island_nodes(model, islands)
    blocked = sorted({n for names in keep.values() for n in names})
    # TopK and Range are in the converter's default op block list; keep them there (TopK is float-only in
    # some providers' FP16 kernels and its indices must not change).
    fp16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked,
                                    max_finite_val=FP16_MAX, disable_shape_infer=False)
    return fp16, keep


def convert_fp16(onnx_model: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                 force: bool = False, islands: Sequence[str] = DEFAULT_ISLANDS) -> Fp16Result:
    """Convert a gtpt-deploy FP32 ONNX file to FP16 (weights float16, float32 graph inputs/outputs, FP32 islands).

    Args:
        onnx_model: FP32 ``.onnx`` written by ``gtpt-deploy export`` (its metadata is required).
        output: default ``<name>_fp16.onnx`` beside the source; never the source itself.
        force: overwrite an existing output.
        islands: regions kept in FP32 (default :data:`DEFAULT_ISLANDS`).

    Returns:
        :class:`Fp16Result`. Raises ArtifactError for a file without gtpt metadata or already reduced precision,
        ExportError when the result has a constant outside ±65504; nothing is written then.
    """
    t0 = time.perf_counter()
    src, model, meta, out = open_fp32_source(onnx_model, output, force, "fp16", "FP16 conversion")

    fp16, keep = to_fp16(model, islands)
    biggest = regions.float_constant_range(fp16)
    if biggest > FP16_MAX:
        raise ExportError(f"FP16 graph has a constant of magnitude {biggest:.4g} (> {FP16_MAX:g}); re-export the "
                          f"FP32 model with a current gtpt-deploy (fill values must stay inside the float16 range)")
    counts = {k: len(v) for k, v in keep.items()}
    fp32_nodes = len({n for v in keep.values() for n in v})
    recipe = {"islands": counts, "island_regions": list(islands), "converter": "onnxruntime.transformers.float16",
              "keep_io_types": True}
    write_onnx_meta(fp16, replace(meta, precision="fp16", parent_sha256=sha256_file(src),
                                  extra={**dict(meta.extra), "fp16": recipe}))
    # the commit every artifact uses: without --force, a file that appeared meanwhile (another fp16 to the same
    # -o) is not replaced and this conversion fails instead
    with ArtifactSet(force=force, inputs=[src]) as files:
        files.write_bytes(out, fp16.SerializeToString())
    seconds = time.perf_counter() - t0
    log.debug("fp16: %d of %d nodes kept in FP32", fp32_nodes, len(fp16.graph.node))
    return Fp16Result(out, src, counts, fp32_nodes, len(fp16.graph.node), biggest, out.stat().st_size, seconds)
