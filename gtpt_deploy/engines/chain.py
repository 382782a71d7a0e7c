"""The precision chain, once for every caller: export -> (FP16 conversion | INT8 calibration) [-> build].

:func:`export_chain` is what ``gtpt-deploy export --precision``, ``gtpt-deploy build CHECKPOINT`` and the demo run:
export a checkpoint to FP32 ONNX, then write its FP16 and / or INT8 forms beside it. :func:`build_from_checkpoint`
adds the TensorRT build (``yolo export format=engine`` in one command). The intermediate ONNX files are kept: they
are the portable artifacts, and the INT8 Q/DQ file *is* the calibration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..artifacts import precision_path
from ..runtime.options import CalibSpec as CalibData
from ..errors import ArtifactExistsError, GtptError
from ..tensorrt import cuda_mem
from ..tensorrt.api import load_tensorrt
from .build import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB, build_engine
from .report import EngineResult

PRECISIONS = ("fp32", "fp16", "int8")
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ExportSpec:
    """How the checkpoint is exported (``export_onnx``'s options; None: its default)."""

    model: str | None = None                 # variant name; detected from the checkpoint when None
    output: PathLike | None = None           # default export/<checkpoint name>_b<N>.onnx
    batch: int | None = None                 # static batch (default 1)
    dynamic_batch: bool = False              # symbolic batch dimension instead
    opset: int | None = None                 # default: export's DEFAULT_OPSET
    simplify: bool = True
    samples: PathLike | None = None          # person crops for the parity check


@dataclass(frozen=True)
class CalibSpec(CalibData):
    """The INT8 stage (``calibrate_int8``): the crops of ``runtime.options.CalibSpec`` (GT person boxes of ``ann`` /
    ``images``, ``num`` of them; None: every usable person, at most 512), the one definition the CLI's option group
    builds too, plus how this stage runs."""

    threads: int | None = None
    measure_only: bool = False               # True: no AP budget (max_ap_drop=None), measure the default recipe


@dataclass
class ChainResult:
    """The FP32 export and, per reduced precision in the order asked, the stage's result (``Fp16Result`` /
    ``CalibrationResult``, each with ``.output``, ``.to_dict()``, ``.format_report()``)."""

    export: Any                               # export.ExportResult
    reduced: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx(self) -> Path:
        """The last file of the chain: the last reduced precision's ONNX, else the FP32 export."""
        return Path(list(self.reduced.values())[-1].output) if self.reduced else Path(self.export.onnx_path)


class StageExistsError(ArtifactExistsError):
    """An output of one chain stage exists (same message and ``path`` as the stage's own error). ``stage``:
    ``export`` or the precision whose stage refused; ``source``: the FP32 ONNX that stage reduces (None for export).
    """

    def __init__(self, error: ArtifactExistsError, stage: str, source: Path | None = None) -> None:
        super().__init__(str(error), path=error.path)
        self.stage, self.source = stage, source


def reduced(precision: str) -> list[str]:
    """The reduced precisions ``export_chain`` makes for a ``--precision`` choice (none for fp32)."""
    return [] if precision == "fp32" else [precision]


def export_chain(checkpoint: PathLike, precisions: Sequence[str] = (), export: ExportSpec = ExportSpec(),
                 calib: CalibSpec | None = None, *, force: bool = False,
                 report: Callable[[str], None] | None = None,
                 on_result: Callable[[Any], None] | None = None) -> ChainResult:
    """``export_onnx`` -> for each of ``precisions`` (``fp16`` / ``int8``, in that order as given) its stage on the
    FP32 file: ``convert_fp16`` or ``calibrate_int8`` (``calib`` required). Each result goes to ``on_result`` as
    soon as it exists (the demo prints it between the stages); ``report`` receives calibration's progress lines
    (None: calibration's default, the log). Raises :class:`StageExistsError` for an output in the way (``force``
    overwrites); other GtptErrors as the stages raise them.
    """
    from ..export import export_onnx

    unknown = [p for p in precisions if p not in ("fp16", "int8")]
    if unknown or ("int8" in precisions and calib is None):
        raise GtptError(f"expected reduced precisions fp16 / int8 (int8 with calibration data), got {list(precisions)}")
    options = {k: v for k, v in vars(export).items() if not (k == "opset" and v is None)}
    try:
        exported = export_onnx(checkpoint, force=force, **options)
    except ArtifactExistsError as e:
        raise StageExistsError(e, "export") from e
    result = ChainResult(exported)
    if on_result is not None:
        on_result(exported)
    source = Path(exported.onnx_path)
    for precision in precisions:
        try:
            made = _reduce(source, precision, calib, force, report)
        except ArtifactExistsError as e:
            raise StageExistsError(e, precision, source) from e
        result.reduced[precision] = made
        if on_result is not None:
            on_result(made)
    return result


def _reduce(source: Path, precision: str, calib: CalibSpec | None, force: bool,
            report: Callable[[str], None] | None) -> Any:
    """One precision stage on the FP32 ``source``; only the options a caller set reach the stage (its defaults
    stay the stage's own)."""
    if precision == "fp16":
        from ..export.fp16 import convert_fp16

        return convert_fp16(source, force=force)
    from ..calib import calibrate_int8

    assert calib is not None
    extra: dict[str, Any] = {} if report is None else {"report": report}
    if calib.threads is not None:
        extra["threads"] = calib.threads
    if calib.measure_only:
        extra["max_ap_drop"] = None
    return calibrate_int8(source, calib.ann, calib.images, num=calib.num, force=force, **extra)


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


@dataclass(frozen=True)
class CheckpointBuild:
    """``build_from_checkpoint``'s options (the keywords of the Python API, typed)."""

    calib_ann: PathLike | None = None         # int8: COCO keypoint file whose GT person boxes calibrate
    calib_images: PathLike | None = None      # int8: its image folder
    calib_num: int | None = None              # int8: calibration crops (None: all usable person boxes)
    batch: int | None = None                  # static export batch (default 1)
    dynamic_batch: tuple[int, int, int] | None = None   # MIN, OPT, MAX: dynamic export and profile
    workspace_gib: float = DEFAULT_WORKSPACE_GIB
    timing_cache: PathLike | None = None
    opt_level: int = DEFAULT_OPT_LEVEL
    gpu: int = 0
    output: PathLike | None = None            # the engine (intermediates keep their default places)
    force: bool = False
    progress: bool = True

    def check(self, precision: str) -> None:
        """One line for options that contradict each other, before TensorRT or the export starts."""
        if precision not in PRECISIONS:
            raise GtptError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        if precision == "int8" and (self.calib_ann is None or self.calib_images is None):
            raise GtptError("--precision int8 needs calibration crops: pass --calib-ann COCO_KEYPOINTS.json and "
                            "--calib-images IMAGE_FOLDER")
        if precision != "int8" and (self.calib_ann is not None or self.calib_images is not None):
            raise GtptError(f"--calib-ann / --calib-images are only used with --precision int8, got --precision "
                            f"{precision}")
        if self.batch is not None and self.dynamic_batch is not None:
            raise GtptError("pass either --batch N or --dynamic-batch MIN,OPT,MAX, not both")


def build_from_checkpoint(checkpoint: PathLike, precision: str = "fp32", options: CheckpointBuild | None = None,
                          **keywords: Any) -> EngineResult:
    """:func:`export_chain` (static ``batch``, default 1, or dynamic for ``dynamic_batch``) -> ``build_engine``.

    ``options`` (or the same names as keywords, see :class:`CheckpointBuild`). The intermediate ONNX files go to
    their default places (``export/...``) and are kept: they are the portable artifacts (the INT8 Q/DQ file *is*
    the calibration). ``calib_ann`` / ``calib_images`` are required for int8; ``calib_num`` crops of them are used.
    """
    o = replace(options or CheckpointBuild(), **keywords)
    o.check(precision)
    # TensorRT and the GPU are checked before the export: no minutes of work that cannot end in an engine
    load_tensorrt()
    cuda_mem.open_gpu(o.gpu)

    spec = ExportSpec(batch=None if o.dynamic_batch else (o.batch or 1), dynamic_batch=o.dynamic_batch is not None)
    calib = None
    if precision == "int8" and o.calib_ann is not None and o.calib_images is not None:   # check() made sure
        calib = CalibSpec(o.calib_ann, o.calib_images, o.calib_num)
    try:
        chain = export_chain(checkpoint, reduced(precision), spec, calib, force=o.force)
    except StageExistsError as e:
        if e.stage == "export":
            raise _intermediate_exists(Path(str(e.path or "export/?.json")).with_suffix(".onnx"), precision) from None
        raise _intermediate_exists(precision_path(e.source, precision), "fp32") from None  # type: ignore[arg-type]
    return build_engine(chain.onnx, dynamic_batch=o.dynamic_batch, workspace_gib=o.workspace_gib,
                        timing_cache=o.timing_cache, opt_level=o.opt_level, gpu=o.gpu, output=o.output, force=o.force,
                        progress=o.progress)
