"""INT8 recipes: collect activation ranges on person crops and write explicit Q/DQ, with ONNX Runtime's own tools.

Two targets (design.md §5):

* ``tensorrt``: symmetric int8 activations and per-channel symmetric int8 weights (all zero points 0, TensorRT's
  requirement); Q/DQ only on the inputs of weight layers (MatMul/Gemm/Conv with a constant weight), so attention
  matmuls, LayerNorm, Softmax, the pruning score -> TopK path and the gates stay float.
* ``cpu``: the uint8-activation / int8-weight (U8S8) form ONNX Runtime fuses into integer kernels on x86.

Base precision (``Int8Recipe.base``) of everything that is not quantized: ``fp16`` for ``tensorrt`` (INT8 + FP16,
``calib.mixed``: a strongly typed TensorRT network runs each op in the ONNX's type, so an FP32 base would run the
unquantized rest in FP32), ``fp32`` for ``cpu`` (ONNX Runtime's integer kernels on x86 want float32 around them).

Weight-layer *groups* (``export.regions``) can be kept float as a whole: the default recipe keeps the gates, and the
AP-budgeted search (``calib.budget``) adds the most sensitive groups. No torch import.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..runtime.batching import pad_batch
from ..scratch import scratch_dir
from ..errors import GtptError
from ..export import regions
from ..onnx_io import image_input

TARGETS = ("tensorrt", "cpu")
BASES = ("fp16", "fp32")
METHODS = ("minmax", "entropy", "percentile")
#: Weight-layer groups kept float by default. The group gates decide which token groups count (design.md §5). The
#: rest was measured (minmax): quantizing the convolutional stem dropped argmax agreement with FP32 from 0.79 to 0.65
#: and doubled the mean drift (COCO sample), and the patch embedding was the most sensitive group of the whole-body
#: sample (ΔAP -0.0060 with it quantized, 0.0000 float). Both are a few layers of the input side.
DEFAULT_FLOAT_GROUPS: tuple[str, ...] = ("gates", "stem", "patch_embed")
PERCENTILE = 99.999
ENTROPY_BINS = 2048
CALIB_BATCH = 8


@dataclass(frozen=True)
class Int8Recipe:
    """How a model is quantized. ``float_groups``: weight-layer groups left unquantized."""

    target: str = "tensorrt"
    method: str = "minmax"
    float_groups: tuple[str, ...] = DEFAULT_FLOAT_GROUPS
    per_channel: bool = True
    base: str | None = None   # None: the target's (fp16 for tensorrt, fp32 for cpu)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise GtptError(f"--target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        if self.method not in METHODS:
            raise GtptError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.base is None:
            object.__setattr__(self, "base", "fp16" if self.target == "tensorrt" else "fp32")
        if self.base not in BASES or (self.target == "cpu" and self.base != "fp32"):
            raise GtptError(f"INT8 base precision must be one of {', '.join(BASES)} (fp32 only for --target cpu), "
                            f"got '{self.base}' for --target {self.target}")

    def with_float(self, groups: Sequence[str]) -> "Int8Recipe":
        keep = tuple(dict.fromkeys([*self.float_groups, *groups]))
        return replace(self, float_groups=keep)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def method_options(method: str) -> dict[str, Any]:
    """ONNX Runtime calibrator options of a method (recorded in the manifest). Entropy: TensorRT's 2048 histogram
    bins; ORT's default (128 bins for 128 quantized bins) leaves one candidate threshold, i.e. plain minmax."""
    if method == "percentile":
        return {"percentile": PERCENTILE}
    return {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128} if method == "entropy" else {}


def _ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


class _Reader:
    """ONNX Runtime CalibrationDataReader over crops, in batches the model accepts (its static batch, if any)."""

    def __init__(self, input_name: str, crops: np.ndarray, batch: int, pad: bool) -> None:
        self.input_name, self.crops, self.batch, self.pad, self.pos = input_name, crops, batch, pad, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.crops):
            return None
        chunk = self.crops[self.pos:self.pos + self.batch]
        self.pos += self.batch
        # Every batch full (wrapping around to the first crops): a static batch needs it, and ORT's histogram
        # calibrators (entropy, percentile) stack the batches, so their shapes must agree. Repeated crops do not
        # change min/max; zeros would.
        chunk = pad_batch(chunk, self.batch, fill=self.crops)
        return {self.input_name: np.ascontiguousarray(chunk, np.float32)}

    def rewind(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return -(-len(self.crops) // self.batch)


@contextlib.contextmanager
def _quiet_ort_advice() -> Any:
    """ORT's quantizer logs 'Please consider pre-processing...' on the root logger for every call; our graphs are
    already simplified with shapes inferred, so the advice is noise in the CLI's output."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-processing before quantization" not in record.getMessage() and \
                "run pre-processing" not in record.getMessage()

    root, f = logging.getLogger(), _Drop()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def collect_ranges(model: Any, crops: np.ndarray, method: str) -> Any:
    """Run the FP32 ``model`` over ``crops`` (float32 (N, 3, H, W)) and calibrate the inputs and outputs of its
    weight layers -> ONNX Runtime ``TensorsData`` (min/max per tensor, by ``method``)."""
    import onnx
    from onnxruntime.quantization.calibrate import create_calibrator

    opts = method_options(method)
    image = image_input(model, "FP32 model")
    static = image.batch
    reader = _Reader(image.name, crops, static or CALIB_BATCH, static is not None)
    with scratch_dir("calib") as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(model, str(src))
        with _quiet_ort_advice():
            calibrator = create_calibrator(src, list(regions.WEIGHT_OPS),
                                           augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=_ort_method(method), extra_options=opts)
        # ORT's histogram calibrators print progress on stdout; keep stdout for --json (one object)
        with contextlib.redirect_stdout(sys.stderr):
            calibrator.collect_data(reader)
            data = calibrator.compute_data()
        del calibrator
    return data


def quantized_nodes(model: Any, recipe: Int8Recipe) -> list[regions.WeightLayer]:
    """The weight layers ``recipe`` quantizes (all weight layers minus its float groups)."""
    return [w for w in regions.weight_layers(model) if w.group not in recipe.float_groups]


def required_tensors(model: Any) -> list[str]:
    """Activation tensors a recipe may quantize: the input and output of every weight layer (the tensorrt form uses
    the inputs, the cpu form both, the budget search any layer). A subset of what :func:`collect_ranges` records
    (it also records the attention matmuls), so ranges must cover at least these to be usable for this model."""
    consts = regions.constant_names(model)
    out: dict[str, None] = {}
    for n in model.graph.node:        # regions.weight_layers' criterion (by node, as names may be empty)
        if n.op_type not in regions.WEIGHT_OPS or len(n.input) < 2 or n.input[1] not in consts:
            continue
        out.setdefault(n.input[0], None)
        out.setdefault(n.output[0], None)
    return list(out)


def quantize(model: Any, tensors_data: Any, recipe: Int8Recipe) -> Any:
    """FP32 ``onnx.ModelProto`` + ranges -> Q/DQ ``onnx.ModelProto`` (ONNX Runtime ``quantize_static``, QDQ format),
    with an FP16 base (opset 19, float16 Q/DQ scales) when ``recipe.base`` is ``fp16``."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    nodes = [w.node for w in quantized_nodes(model, recipe)]
    if not nodes:
        raise GtptError("the recipe keeps every weight layer float: nothing to quantize")
    trt = recipe.target == "tensorrt"
    extra: dict[str, Any] = {
        # TensorRT: zero points 0 for activations and weights; CPU: uint8 activations keep their zero point.
        "ActivationSymmetric": trt, "WeightSymmetric": True,
        # Only MatMuls with a constant B are weight layers; attention matmuls stay float (design.md §5).
        "MatMulConstBOnly": True,
    }
    if trt:
        # Q/DQ on the inputs of weight layers only (TensorRT fuses the output side itself), and float biases:
        # TensorRT's Q/DQ take int8/fp8/int4, not the int32 a quantized bias would need.
        extra.update(OpTypesToExcludeOutputQuantization=list(regions.WEIGHT_OPS), QuantizeBias=False)
    # cpu: outputs stay quantized, as ONNX Runtime fuses Q->op->Q chains into QLinearConv / QLinearMatMul / QGemm.
    with scratch_dir("quant") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(tensors_data, cache)   # cached ranges: quantize_static skips its own calibration
        out, src = Path(tmp) / "int8.onnx", Path(tmp) / "fp32.onnx"
        # a path, not the ModelProto: ORT 1.32 re-saves an in-memory model with external data it cannot reload
        onnx.save(model, str(src))
        with _quiet_ort_advice():
            quantize_static(src, out, None, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(regions.WEIGHT_OPS), per_channel=recipe.per_channel,
                            activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_quantize=nodes, calibrate_method=_ort_method(recipe.method),
                            calibration_cache_path=cache, extra_options=extra)
        qmodel = onnx.load(str(out))
    if recipe.base == "fp16":   # INT8 + FP16 (calib/mixed.py); every evaluation of the recipe sees this file
        from .mixed import to_int8_fp16

        qmodel, _info = to_int8_fp16(qmodel, model)
    return qmodel

