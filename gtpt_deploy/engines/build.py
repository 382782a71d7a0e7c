"""ONNX -> TensorRT engine: one plain function, :func:`build_engine`, with a typed result (:class:`EngineResult`).

Strongly typed networks only: the precision is the ONNX file's (FP32, the FP16-typed file, or the Q/DQ INT8 file),
never a builder flag - the only way TensorRT 11 builds, and the same engine on 10.x (see ``tensorrt/api.py``).
Steps: read the ONNX and its gtpt metadata -> decide the optimization profile -> parse (all parser errors in one
message) -> builder config (workspace pool, optimization level, detailed profiling verbosity for the inspector,
the profile, the persisted timing cache) -> ``build_serialized_network`` under a spinner -> write the plain plan
(no header bytes: it must load unchanged in trtexec, Triton and Polygraphy) and the JSON sidecar beside it,
atomically -> save the updated timing cache.

TensorRT calls used (10.x and 11.x Python API): Builder, Builder.create_network, OnnxParser.parse / num_errors /
get_error, Builder.create_builder_config, IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE),
builder_optimization_level, profiling_verbosity, Builder.create_optimization_profile, IOptimizationProfile.set_shape,
IBuilderConfig.add_optimization_profile, create_timing_cache / set_timing_cache / get_timing_cache,
ITimingCache.serialize, Builder.build_serialized_network, Runtime.deserialize_cuda_engine,
ICudaEngine.create_engine_inspector, IEngineInspector.get_engine_information(LayerInformationFormat.JSON).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
from pathlib import Path
from typing import Any

from ..artifacts import (ArtifactSet, Inputs, atomic_path, check_outputs, engine_path, engine_sidecar_path,
                         timing_cache_path)
from ..errors import ArtifactError, GtptError
from ..metadata import load_onnx, read_onnx_meta
from ..tensorrt import cuda_mem
from ..tensorrt.api import TensorRT, load_tensorrt
from .report import EngineProfile, EngineResult, Spinner, layer_summary, trtexec_command

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GIB = 4.0
DEFAULT_OPT_LEVEL = 3          # TensorRT's own default; 4-5 search longer, 0-2 build faster
MAX_PARSER_ERRORS_SHOWN = 3


class BuildError(GtptError):
    """TensorRT rejected the ONNX or could not build an engine from it."""


def _onnx_input(model_bytes: bytes, source: Path) -> tuple[str, int | None, tuple[int, int, int]]:
    """(input name, static batch or None, (C, H, W)) of the one graph input."""
    model = load_onnx(model_bytes, source=str(source))   # one line for a truncated / non-ONNX file
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ArtifactError(f"{source}: expected one image input, got {[i.name for i in inputs]}; "
                            f"make the ONNX with 'gtpt-deploy export'")
    dims = inputs[0].type.tensor_type.shape.dim
    chw = tuple(int(d.dim_value) for d in dims[1:])
    if len(dims) != 4 or any(v <= 0 for v in chw):
        raise ArtifactError(f"{source}: input {inputs[0].name} must be (B, 3, H, W) with static C, H, W")
    batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return inputs[0].name, batch, chw  # type: ignore[return-value]


def resolve_profile(name: str, onnx_batch: int | None, chw: tuple[int, int, int], batch: int | None,
                    dynamic_batch: tuple[int, int, int] | None, source: str) -> EngineProfile:
    """The optimization profile from the ONNX's batch and the options; refuses contradictions (no silent fixes)."""
    if batch is not None and dynamic_batch is not None:
        raise GtptError("pass either --batch N or --dynamic-batch MIN,OPT,MAX, not both")
    if onnx_batch is not None:
        if dynamic_batch is not None:
            raise GtptError(f"{source} has a static batch of {onnx_batch}, so it cannot get a dynamic profile; "
                            f"export it with --dynamic-batch, or leave out --dynamic-batch")
        if batch is not None and batch != onnx_batch:
            raise GtptError(f"{source} has a static batch of {onnx_batch}, got --batch {batch}; leave out --batch "
                            f"or export the model with --batch {batch}")
        return EngineProfile(name, onnx_batch, onnx_batch, onnx_batch, chw)
    if batch is not None:
        if batch < 1:
            raise GtptError(f"--batch must be at least 1, got {batch}")
        return EngineProfile(name, batch, batch, batch, chw)
    if dynamic_batch is None:
        raise GtptError(f"{source} has a dynamic batch: choose the engine's batch with --batch N (static) or "
                        f"--dynamic-batch MIN,OPT,MAX (e.g. 1,8,16)")
    lo, opt, hi = dynamic_batch
    if not 1 <= lo <= opt <= hi:
        raise GtptError(f"--dynamic-batch must satisfy 1 <= MIN <= OPT <= MAX, got {lo},{opt},{hi}")
    return EngineProfile(name, lo, opt, hi, chw)


def build_engine(onnx_path: str | os.PathLike[str], batch: int | None = None,
                 dynamic_batch: tuple[int, int, int] | None = None, workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                 timing_cache: str | os.PathLike[str] | None = None, opt_level: int = DEFAULT_OPT_LEVEL, gpu: int = 0,
                 output: str | os.PathLike[str] | None = None, force: bool = False,
                 progress: bool = True) -> EngineResult:
    """Build a strongly typed TensorRT engine from a gtpt-deploy ONNX file.

    Args:
        onnx_path: FP32, FP16 or Q/DQ INT8 ONNX with gtpt metadata (input float32 (B, 3, H, W)).
        batch / dynamic_batch: static batch N, or (min, opt, max) for a dynamic-batch ONNX; a static-batch ONNX
            keeps its batch.
        workspace_gib: TensorRT workspace memory pool limit.
        timing_cache: file read before and written after the build (default ``timing.cache`` beside the engine).
        opt_level: builder optimization level 0-5.
        gpu: CUDA device index to build on.
        output: engine path (default ``engines/<variant>_b<N|dyn>_<precision>.engine``); the sidecar goes beside
            it as ``<name>.engine.json``.
        force: overwrite an existing engine / sidecar.
        progress: show the spinner on stderr.

    Raises a ``GtptError`` subclass (one line) for every user or environment error; nothing is written then.
    """
    src = Path(onnx_path)
    if not src.is_file():
        raise ArtifactError(f"ONNX model {src} does not exist; export one with 'gtpt-deploy export'")
    # TensorRT's bindings take integers only (pybind11 raises TypeError for 3.0): refuse before minutes of work
    if isinstance(opt_level, bool) or not isinstance(opt_level, int) or not 0 <= opt_level <= 5:
        raise GtptError(f"--opt-level must be an integer 0..5, got {opt_level!r}")
    if not isinstance(workspace_gib, (int, float)) or not workspace_gib > 0:
        raise GtptError(f"--workspace must be a positive number of GiB, got {workspace_gib}")
    model_bytes = src.read_bytes()
    meta = read_onnx_meta(model_bytes, source=str(src))
    name, onnx_batch, chw = _onnx_input(model_bytes, src)
    profile = resolve_profile(name, onnx_batch, chw, batch, dynamic_batch, src.name)
    _check_tensorrt_form(meta, src)
    out = Path(output) if output is not None else engine_path(meta.variant, profile.static_batch, meta.precision)
    side = engine_sidecar_path(out)
    if out.suffix.lower() not in (".engine", ".plan"):
        raise GtptError(f"engine output must end in .engine or .plan, got {out.name}")
    check_outputs((out, side), force, inputs=[src], option="-o")
    cache = Path(timing_cache) if timing_cache is not None else timing_cache_path(out)
    _check_timing_cache(cache, src, out, side)

    api = load_tensorrt()
    mem, gpu_info = cuda_mem.open_gpu(gpu)
    del mem  # only needed to select and describe the device; TensorRT allocates what it builds with
    plan, cache_info, seconds = _build(api, model_bytes, src, profile, workspace_gib, opt_level, cache, progress)

    result = EngineResult(
        engine_path=out, sidecar_path=side, onnx_path=src, onnx_sha256=hashlib.sha256(model_bytes).hexdigest(),
        engine_sha256=hashlib.sha256(plan).hexdigest(), engine_bytes=len(plan), tensorrt_version=api.version,
        gpu=gpu_info.to_dict(), profile=profile, meta=meta, workspace_gib=workspace_gib, opt_level=opt_level,
        timing_cache=cache_info, build_seconds=seconds, layers=_inspect(api, plan), strongly_typed=True,
        trtexec=trtexec_command(src, out, profile, workspace_gib, opt_level, cache, api.trtexec_typing_flag,
                                dynamic_input=onnx_batch is None),
        rebuild_command=_rebuild_command(src, out, profile, workspace_gib, opt_level, gpu))
    # the commit every artifact set uses: sidecar first, engine last; without --force a name that appeared while
    # this built (another build to the same -o) is not replaced and nothing of this build is kept
    with ArtifactSet(force=force, inputs=[src]) as files:
        files.write_json(side, result.to_dict())
        files.write_bytes(out, plan)
    return result


def _check_timing_cache(cache: Path, src: Path, out: Path, side: Path) -> None:
    """The timing cache is read and then rewritten: it must not be the ONNX (by identity), the engine or its
    sidecar; an existing file that TensorRT cannot read is refused in :func:`_attach_timing_cache` before the build."""
    if cache.is_dir():
        raise GtptError(f"--timing-cache {cache} is a folder; pass a file name (e.g. {cache / 'timing.cache'})")
    Inputs([src]).check(cache, "--timing-cache")
    if cache.absolute() in (out.absolute(), side.absolute()) or (cache.exists() and Inputs([out, side]).holds(cache)):
        raise GtptError(f"--timing-cache {cache} is this build's engine or sidecar; choose another --timing-cache")


def _check_tensorrt_form(meta: Any, src: Path) -> None:
    """An INT8 file calibrated for the CPU (uint8 activations, zero point 128, fused by ONNX Runtime) cannot be parsed
    by TensorRT, whose ONNX parser takes symmetric Q/DQ only; say so before TensorRT is even loaded."""
    int8 = dict(meta.extra).get("int8") if meta.precision == "int8" else None
    if isinstance(int8, dict) and int8.get("target") == "cpu":
        raise BuildError(f"{src.name} is the CPU form of INT8 (uint8 activations with zero point 128, fused by ONNX "
                         f"Runtime); TensorRT takes symmetric Q/DQ only: calibrate the FP32 model with "
                         f"'gtpt-deploy calibrate ... --target tensorrt' and build that file")


def _build(api: TensorRT, model_bytes: bytes, src: Path, profile: EngineProfile, workspace_gib: float,
           opt_level: int, cache_path: Path, progress: bool) -> tuple[bytes, dict[str, Any], float]:
    """Parse and build -> (serialized plan, timing cache facts for the sidecar, build seconds)."""
    trt = api.trt
    logger = api.logger()
    mark = logger.mark()
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        shown = "; ".join(f"node {e.node()}: {str(e.desc()).strip()}" for e in errors[:MAX_PARSER_ERRORS_SHOWN])
        more = f" (+{len(errors) - MAX_PARSER_ERRORS_SHOWN} more)" if len(errors) > MAX_PARSER_ERRORS_SHOWN else ""
        raise BuildError(f"TensorRT {api.version}'s ONNX parser rejected {src.name}: {len(errors)} error(s): "
                         f"{shown or 'no details'}{more}; re-export with 'gtpt-deploy export' (opset 17)")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = int(opt_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions for the inspector summary
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(profile.input_name, profile.shape(profile.min), profile.shape(profile.opt),
                          profile.shape(profile.max))
    if config.add_optimization_profile(opt_profile) < 0:
        raise BuildError(f"TensorRT rejected the optimization profile {profile.to_dict()} for {src.name}")

    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    cache, cache_info = _attach_timing_cache(config, blob, cache_path, api.version)

    with Spinner(f"building {src.name} with TensorRT {api.version}", enabled=progress) as spin:
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        errors = logger.errors_since(mark)
        why = "; ".join(errors[-2:]) if errors else "no error reported"
        raise BuildError(f"TensorRT {api.version} could not build an engine from {src.name} ({why}); try a larger "
                         f"--workspace, or check the model with trtexec --onnx={shlex.quote(str(src))}")
    data = bytes(plan)

    updated = config.get_timing_cache() if cache is not None else None
    saved = bytes(updated.serialize()) if updated is not None else b""
    if saved:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_path, inputs=[src]) as tmp:
            tmp.write_bytes(saved)
    cache_info["saved_bytes"] = len(saved)
    del cache  # TensorRT: the cache must outlive the build (it has); config holds its own reference until here
    return data, cache_info, spin.seconds


def _attach_timing_cache(config: Any, blob: bytes, path: Path, version: str) -> tuple[Any, dict[str, Any]]:
    """Create the timing cache from ``blob`` and attach it -> (cache or None, sidecar facts).

    TensorRT verifies a cache against the current GPU and version (NvInfer.h, IBuilderConfig::createTimingCache /
    setTimingCache). A blob it cannot read at all (``create_timing_cache`` -> None or an exception: not a timing
    cache, or another TensorRT version's) is refused here, before minutes of building, because the build would
    replace that file: it may be anything the user named by mistake. A readable cache of another GPU
    (``set_timing_cache(cache, ignore_mismatch=False)`` -> False) is certainly a timing cache: one warning, and a
    fresh cache replaces it after the build (ignore_mismatch=True risks wrong or slow tactics). When even a fresh
    cache cannot be made the build goes on without one.
    """
    info: dict[str, Any] = {"path": str(path), "loaded_bytes": len(blob), "saved_bytes": 0, "rejected": False}
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception:  # noqa: BLE001 - whatever the bindings raise for a foreign blob, it is not a cache
            cache = None
        if cache is None:
            raise ArtifactError(f"--timing-cache {path} is not a timing cache TensorRT {version} can read (another "
                                f"TensorRT version's cache, or another kind of file); delete it if it is an old "
                                f"cache, or name a new file (it is created)")
        if config.set_timing_cache(cache, False):
            return cache, info
        info.update(loaded_bytes=0, rejected=True)
        log.warning("timing cache %s was made on another GPU than this one and is not used; starting a fresh one "
                    "(it replaces the file after the build)", path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("TensorRT %s could not create a timing cache; building without one (%s is left as it is)",
                    version, path)
        return None, info
    return cache, info


def _inspect(api: TensorRT, plan: bytes) -> dict[str, Any] | None:
    """Per-layer precision summary of the built plan via the engine inspector; None when it is not available."""
    trt = api.trt
    # the runtime is kept in a local while the engine lives: TensorRT requires it to outlive the engine
    runtime = trt.Runtime(api.logger())
    try:
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            return None
        inspector = engine.create_engine_inspector()
        info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        del inspector, engine
    except (AttributeError, RuntimeError, TypeError) as e:  # an older binding without the inspector
        log.debug("engine inspector not available: %s", e)
        return None
    return layer_summary(info)


def _rebuild_command(src: Path, out: Path, profile: EngineProfile, workspace_gib: float, opt_level: int,
                     gpu: int) -> str:
    args = ["gtpt-deploy", "build", str(src)]
    if profile.static_batch is not None:
        args += ["--batch", str(profile.static_batch)]
    else:
        args += ["--dynamic-batch", f"{profile.min},{profile.opt},{profile.max}"]
    if workspace_gib != DEFAULT_WORKSPACE_GIB:
        args += ["--workspace", f"{workspace_gib:g}"]
    if opt_level != DEFAULT_OPT_LEVEL:
        args += ["--opt-level", str(opt_level)]
    if gpu:
        args += ["--gpu", str(gpu)]
    return " ".join(shlex.quote(a) for a in [*args, "-o", str(out), "--force"])
