"""Checkpoint -> engine in one call: export -> (FP16 conversion | INT8 calibration) -> build, as plain functions
(``yolo export format=engine`` in one command). The intermediate ONNX files are kept: they are the portable
artifacts, and the INT8 Q/DQ file *is* the calibration."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import GtptError
from ..runners import cuda_mem
from ..runners.trt_api import load_tensorrt
from .build import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB, build_engine
from .report import EngineResult

PRECISIONS = ("fp32", "fp16", "int8")


def build_from_checkpoint(checkpoint: str | os.PathLike[str], precision: str = "fp32", *,
                          calib_ann: str | os.PathLike[str] | None = None,
                          calib_images: str | os.PathLike[str] | None = None, calib_num: int | None = None,
                          batch: int | None = None,
                          dynamic_batch: tuple[int, int, int] | None = None,
                          workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                          timing_cache: str | os.PathLike[str] | None = None, opt_level: int = DEFAULT_OPT_LEVEL,
                          gpu: int = 0, output: str | os.PathLike[str] | None = None, force: bool = False,
                          progress: bool = True) -> EngineResult:
    """``export_onnx`` (static ``batch``, default 1, or dynamic for ``dynamic_batch``) -> precision stage -> build.

    The intermediate ONNX files go to their default places (``export/...``) and are kept: they are the portable
    artifacts (the INT8 Q/DQ file *is* the calibration). ``calib_ann`` / ``calib_images`` are required for int8;
    ``calib_num`` crops of them are used (None: all usable person boxes).
    """
    if precision not in PRECISIONS:
        raise GtptError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
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

    from ..calib import calibrate_int8
    from ..export import export_onnx
    from ..export.fp16 import convert_fp16

    exported = export_onnx(checkpoint, batch=None if dynamic_batch else (batch or 1),
                           dynamic_batch=dynamic_batch is not None, force=force)
    onnx = Path(exported.onnx_path)
    if precision == "fp16":
        onnx = convert_fp16(onnx, force=force).output
    elif precision == "int8":
        onnx = calibrate_int8(onnx, calib_ann, calib_images, num=calib_num, force=force).output
    return build_engine(onnx, dynamic_batch=dynamic_batch, workspace_gib=workspace_gib, timing_cache=timing_cache,
                        opt_level=opt_level, gpu=gpu, output=output, force=force, progress=progress)
