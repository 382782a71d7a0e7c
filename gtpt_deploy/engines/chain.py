"""Checkpoint -> engine in one call: export -> (FP16 conversion | INT8 calibration) -> build, as plain functions
(``yolo export format=engine`` in one command). The intermediate ONNX files are kept: they are the portable
artifacts, and the INT8 Q/DQ file *is* the calibration."""

from __future__ import annotations

import os
from pathlib import Path

from ..artifacts import precision_path
from ..errors import ArtifactExistsError, GtptError
from ..tensorrt import cuda_mem
from ..tensorrt.api import load_tensorrt
from .build import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB, build_engine
from .report import EngineResult

PRECISIONS = ("fp32", "fp16", "int8")


def _intermediate_exists(existing: Path, precision: str) -> ArtifactExistsError:
    """Advice that works when an intermediate ONNX is in the way: the intermediates have fixed places (export/ in
    the current folder), so -o does not move them; --force remakes them, or the engine is built from that file."""
    steps = {"fp32": f"gtpt-deploy build {existing}",
             "fp16": f"gtpt-deploy fp16 {existing}, then gtpt-deploy build {precision_path(existing, 'fp16')}",
             "int8": f"gtpt-deploy calibrate {existing} --ann ... --images ..., then gtpt-deploy build "
                     f"{precision_path(existing, 'int8')}"}[precision]
    return ArtifactExistsError(f"intermediate {existing} already exists (intermediates go to their default place "
                               f"{existing.parent}, -o names only the engine); pass --force to remake the "
                               f"intermediates, or build from the existing file if it is this checkpoint's: "
                               f"{steps}", path=existing)


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

    try:
        exported = export_onnx(checkpoint, batch=None if dynamic_batch else (batch or 1),
                               dynamic_batch=dynamic_batch is not None, force=force)
    except ArtifactExistsError as e:
        raise _intermediate_exists(Path(str(e.path or "export/?.json")).with_suffix(".onnx"), precision) from None
    onnx = Path(exported.onnx_path)
    try:
        if precision == "fp16":
            onnx = convert_fp16(onnx, force=force).output
        elif precision == "int8":
            onnx = calibrate_int8(onnx, calib_ann, calib_images, num=calib_num, force=force).output
    except ArtifactExistsError:
        raise _intermediate_exists(precision_path(onnx, precision), "fp32") from None
    return build_engine(onnx, dynamic_batch=dynamic_batch, workspace_gib=workspace_gib, timing_cache=timing_cache,
                        opt_level=opt_level, gpu=gpu, output=output, force=force, progress=progress)
