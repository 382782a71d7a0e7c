"""Stage: torch checkpoint -> verified ONNX (``onnx``), graph facts and simplification (``graph``)."""

from .onnx import ExportResult, ParityCase, export_onnx, expected_topk

__all__ = ["ExportResult", "ParityCase", "export_onnx", "expected_topk"]
