"""OpenVINO backend: the same gtpt-deploy ``.onnx`` files (FP32, FP16, INT8 Q/DQ) on Intel/AMD CPUs. No torch import.

OpenVINO reads our ONNX unchanged (TopK included) and executes Q/DQ files with integer kernels (VNNI / AMX). Its CPU
plugin picks bf16 by itself on CPUs with native bf16 (AVX512-BF16 / AMX), which changes the numbers; so the runner
always sets the inference precision explicitly and states it (and the CPU, and the threads) in its description:

* ``f32``: exact to ONNX Runtime (max |logit diff| ~1e-5 on GTPT-T), budget of the file's own precision;
* ``bf16``: float ops in bfloat16 (AMX / AVX512-BF16), ~1.7x faster than f32 on such CPUs; its own AP budget
  (``validate``'s ``bf16`` row, :data:`gtpt_deploy.eval.validate.DEFAULT_BUDGETS`).

``--provider openvino`` (no precision) picks bf16 where the CPU has native bf16 and f32 elsewhere, and says which
(description, ``validate``'s precision column): measured on GTPT-T/S/B (benchmarks/README.md), OpenVINO f32 is not
reliably faster than ONNX Runtime FP32 (0.7-1.35x) while bf16 is 2.3x at batch 8, so f32 would make the provider
pointless on the CPUs it is for. ``openvino:bf16``
asked explicitly on a CPU without native bf16 is refused with a one-line error, never emulated or silently run in
f32 (OpenVINO would emulate it slowly or ignore it, depending on the release).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, GtptError, MissingDependencyError
from ..metadata import ModelMeta
from .base import Runner, parse_device

log = logging.getLogger(__name__)

#: inference precisions the runner accepts -> OpenVINO's INFERENCE_PRECISION_HINT value
PRECISIONS = {"f32": "f32", "bf16": "bf16"}
#: ``--provider openvino`` without a suffix: bf16 where the CPU has it natively, else f32 (module docstring: why)
AUTO = "auto"


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", "Running ONNX models with OpenVINO") from None
    return openvino


def cpu_capabilities(core: Any) -> set[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. {"FP32", "INT8", "BF16"}): BF16 only where the CPU has
    native bf16 (AVX512-BF16 or AMX). The seam tests replace to fake another CPU."""
    return {str(c).upper() for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")}


def parse_openvino_provider(provider: str) -> str:
    """``openvino`` -> ``auto``; ``openvino:f32`` / ``openvino:bf16`` -> that precision. GtptError otherwise."""
    name, _, precision = provider.partition(":")
    if name != "openvino" or (precision and precision not in PRECISIONS):
        raise GtptError(f"expected --provider openvino, openvino:f32 or openvino:bf16, got '{provider}'")
    return precision or AUTO


def compile_for_cpu(model_path: str | Path, precision: str = AUTO, threads: int | None = None,
                    label: str | None = None, extra_outputs: list[str] | None = None) -> tuple[Any, Any, str, str]:
    """Read an ONNX file with OpenVINO and compile it for the CPU at ``precision`` (f32 / bf16 / auto);
    ``extra_outputs``: tensor names to add as outputs (the TopK indices for ``kept_tokens``).

    Returns:
        (the read ov.Model, the compiled model, the precision really compiled (f32 / bf16), the CPU's name).

    Raises:
        GtptError: bf16 asked on a CPU without native bf16, or OpenVINO compiled another precision than asked.
        ArtifactError: OpenVINO cannot read or compile the file.
    """
    ov = import_openvino()
    label = label or str(model_path)
    core = ov.Core()
    cpu = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    native_bf16 = "BF16" in cpu_capabilities(core)
    if precision == AUTO:
        precision = "bf16" if native_bf16 else "f32"
    elif precision == "bf16" and not native_bf16:
        raise GtptError(f"bf16 inference needs a CPU with native bf16 (AVX512-BF16 or AMX); {cpu} has none, so "
                        f"OpenVINO would emulate or ignore it: use --provider openvino:f32")
    try:
        model = core.read_model(str(model_path))
    except Exception as e:  # OpenVINO raises its own (RuntimeError-like) exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{label} is not an ONNX model OpenVINO can read ({first}); re-export it") from None
    if extra_outputs:
        model.add_outputs(list(extra_outputs))
    # LATENCY + one stream: one request at a time on all the threads, as ONNX Runtime's intra-op pool runs it
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                              "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, "CPU", config)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{label}: OpenVINO could not compile it for the CPU ({first})") from None
    used = compiled.get_property("INFERENCE_PRECISION_HINT")
    if used != getattr(ov.Type, PRECISIONS[precision]):  # the hint is a request; read what was compiled
        raise GtptError(f"{label}: asked OpenVINO for {precision} but it compiled {used}; use "
                        f"--provider openvino:f32")
    return model, compiled, precision, cpu


class OpenVinoRunner(Runner):
    """OpenVINO CPU inference of an exported GTPT ``.onnx`` (static or dynamic batch, as the file says).

    Args:
        model: ``.onnx`` written by ``export_onnx`` / ``fp16`` / ``calibrate`` (its ``gtpt.*`` metadata configures
            the runner).
        device: ``cpu`` only (OpenVINO's GPU plugin is for Intel GPUs; NVIDIA GPUs use TensorRT).
        precision: ``f32`` or ``bf16`` inference precision of the float ops; ``auto`` / None: bf16 where the CPU
            has native bf16, else f32. ``provider``: the same as ``openvino[:f32|:bf16]`` (the CLI's form).
        threads: inference threads (None: OpenVINO's default, one per physical core).
        kept_tokens: also return the TopK index tensors (:meth:`infer_kept`), added as outputs of the read model.
    """

    backend = "openvino"

    def __init__(self, model: str | Path, device: str = "cpu", precision: str | None = None,
                 threads: int | None = None, provider: str | None = None, kept_tokens: bool = False) -> None:
        super().__init__(str(model), kept_tokens)
        if parse_device(device)[0] != "cpu":
            raise GtptError(f"OpenVINO runs ONNX files on the CPU here, got --device {device}; use --device cpu, or "
                            f"--provider cuda / tensorrt (ONNX Runtime) or an .engine for NVIDIA GPUs")
        if provider is not None:
            precision = parse_openvino_provider(provider) if precision is None else precision
        self.requested = precision or AUTO
        if self.requested not in (*PRECISIONS, AUTO):
            raise GtptError(f"OpenVINO inference precisions are {', '.join(PRECISIONS)} or {AUTO}, got "
                            f"'{self.requested}'")
        self.precision = self.requested  # resolved (auto -> f32 / bf16) at each activation
        self.threads = threads
        self._path = Path(model)
        self._compiled: Any = None
        self._request: Any = None
        self._cpu = "CPU"
        self._version = "?"

    @classmethod
    def peek_meta(cls, source: str) -> ModelMeta:
        from .ort import OrtRunner

        return OrtRunner.peek_meta(source)  # the same gtpt.* metadata_props of the same file

    def _activate(self) -> tuple[ModelMeta, int | None]:
        ov = import_openvino()
        if not self._path.is_file():
            raise ArtifactError(f"ONNX model {self._path} does not exist; pass the path of an exported .onnx file")
        meta = self.peek_meta(str(self._path))
        self._version = str(getattr(ov, "__version__", "?")).split("-")[0]
        self._kept: list[str] = []
        if self.kept_tokens:   # names in ONNX graph order (= stage order), which OpenVINO's op order need not keep
            from ..metadata import load_onnx
            from .kept import topk_index_names

            self._kept = topk_index_names(load_onnx(self._path, source=self.source))
        model, compiled, self.precision, self._cpu = compile_for_cpu(self._path, self.requested, self.threads,
                                                                     self.source, self._kept)
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
            raise ArtifactError(f"{self.source}: expected one NCHW input, got "
                                f"{[str(i.get_partial_shape()) for i in model.inputs]}; is this a GTPT pose model?")
        shape = model.inputs[0].get_partial_shape()
        hw = [shape[2].get_length() if shape[2].is_static else None, shape[3].get_length() if shape[3].is_static
              else None]
        if hw != [int(v) for v in meta.input_size]:
            raise ArtifactError(f"{self.source}: input is {shape} but the metadata says {tuple(meta.input_size)}; "
                                f"re-export the model")
        static_batch = shape[0].get_length() if shape[0].is_static else None
        names = [n for out in model.outputs for n in out.get_names()]
        if not {"simcc_x", "simcc_y"} <= set(names):
            raise ArtifactError(f"{self.source}: expected outputs simcc_x and simcc_y, got {names}")
        self._compiled = compiled
        self._request = self._compiled.create_infer_request()
        self._outputs = [self._compiled.output("simcc_x"), self._compiled.output("simcc_y")]
        return meta, static_batch

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            result = self._request.infer({0: batch})
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"{self.source}: OpenVINO failed on a batch of shape {batch.shape} ({first}); "
                                f"re-export it, or use its static batch") from e
        # copies: the request's output buffers are overwritten by the next call
        return np.array(result[self._outputs[0]]), np.array(result[self._outputs[1]])

    def _infer_kept(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
        x, y = self._infer(batch)
        if not self._kept:
            return x, y, None
        result = self._request.results  # the same call's outputs, still in the request's buffers
        return x, y, [np.array(result[self._compiled.output(name)]) for name in self._kept]

    def _deactivate(self) -> None:
        self._request = None
        self._compiled = None

    @property
    def run_precision(self) -> str:
        """What the numbers are computed in: ``bf16`` for a float file at bf16, else the file's precision."""
        file_precision = self.meta.precision
        return "bf16" if self.precision == "bf16" and file_precision in ("fp32", "fp16") else file_precision

    @property
    def description(self) -> str:
        if self._compiled is None:
            return self.backend
        threads = self._compiled.get_property("INFERENCE_NUM_THREADS")
        return f"openvino {self._version} [CPU {self.precision}, {threads} threads, {self._cpu}]"
