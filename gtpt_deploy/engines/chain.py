"""Checkpoint -> engine in one call: export -> (FP16 conversion | INT8 calibration) -> build, as plain functions.

The precision stages live in their own packages (``export/fp16.py``, ``calib/int8.py``); they are looked up here by
name so that a build without one of them says so in one line instead of failing on an import.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import GtptError
from ..runners import cuda_mem
from ..runners.trt_api import load_tensorrt
from .build import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB, build_engine
from .report import EngineResult

PRECISIONS = ("fp32", "fp16", "int8")
# precision -> (module, function) that turns the FP32 ONNX into that precision's ONNX
PRECISION_STAGES = {
    "fp16": ("gtpt_deploy.export.fp16", "convert_fp16"),
    "int8": ("gtpt_deploy.calib.int8", "calibrate_int8"),
}


def precision_stage(precision: str) -> Callable[..., Any] | None:
    """The function that makes ``precision``'s ONNX from the FP32 one (None for fp32); one-line error if absent."""
    if precision not in PRECISIONS:
        raise GtptError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp32":
        return None
    module, func = PRECISION_STAGES[precision]
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        raise GtptError(f"--precision {precision} is not available in this gtpt-deploy ({module}.{func} is "
                        f"missing); build from an existing {precision.upper()} ONNX instead: "
                        f"gtpt-deploy build MODEL_{precision}.onnx") from None


def stage_output(result: Any) -> Path:
    """The ONNX path a stage returned: a path, or a result object with ``onnx_path`` / ``output`` / ``path``."""
    if isinstance(result, (str, os.PathLike)):
        return Path(result)
    for attr in ("onnx_path", "output", "path"):
        if getattr(result, attr, None) is not None:
            return Path(getattr(result, attr))
    raise TypeError(f"cannot find the ONNX path in {type(result).__name__}")


def build_from_checkpoint(checkpoint: str | os.PathLike[str], precision: str = "fp32", *,
                          calib_ann: str | os.PathLike[str] | None = None,
                          calib_images: str | os.PathLike[str] | None = None, batch: int | None = None,
                          dynamic_batch: tuple[int, int, int] | None = None,
                          workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                          timing_cache: str | os.PathLike[str] | None = None, opt_level: int = DEFAULT_OPT_LEVEL,
                          gpu: int = 0, output: str | os.PathLike[str] | None = None, force: bool = False,
                          progress: bool = True) -> EngineResult:
    """``export_onnx`` (static ``batch``, default 1, or dynamic for ``dynamic_batch``) -> precision stage -> build.

    The intermediate ONNX files go to their default places (``export/...``) and are kept: they are the portable
    artifacts (the INT8 Q/DQ file *is* the calibration). ``calib_ann`` / ``calib_images`` are required for int8.
    """
    stage = precision_stage(precision)          # fail before the (slow) export when the stage is missing
    if precision == "int8" and (calib_ann is None or calib_images is None):
        raise GtptError("--precision int8 needs calibration crops: pass --calib-ann COCO_KEYPOINTS.json and "
                        "--calib-images IMAGE_FOLDER")
    if precision != "int8" and (calib_ann is not None or calib_images is not None):
        raise GtptError(f"--calib-ann / --calib-images are only used with --precision int8, got --precision "
                        f"{precision}")
    if batch is not None and dynamic_batch is not None:
        raise GtptError("pass either --batch N or --dynamic-batch MIN,OPT,MAX, not both")

    # TensorRT and the GPU are checked before the export: no minutes of work that cannot end in an engine
    load_tensorrt()
    cuda_mem.open_gpu(gpu)

    from ..export import export_onnx

    exported = export_onnx(checkpoint, batch=None if dynamic_batch else (batch or 1),
                           dynamic_batch=dynamic_batch is not None, force=force)
    onnx = Path(exported.onnx_path)
    if precision == "fp16":
        onnx = stage_output(stage(onnx, force=force))  # type: ignore[misc]
    elif precision == "int8":
        onnx = stage_output(stage(onnx, ann=calib_ann, images=calib_images, force=force))  # type: ignore[misc]
    return build_engine(onnx, dynamic_batch=dynamic_batch, workspace_gib=workspace_gib, timing_cache=timing_cache,
                        opt_level=opt_level, gpu=gpu, output=output, force=force, progress=progress)
