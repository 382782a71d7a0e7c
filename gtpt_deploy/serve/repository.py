"""Write a Triton model repository from artifacts: ``<repo>/<name>/config.pbtxt`` and ``<repo>/<name>/1/model.*``.

* ``.onnx`` (dynamic batch) -> ``platform: "onnxruntime_onnx"`` (NVIDIA's containers), or with
  ``backend="python"`` the Python-backend model (:mod:`.python_model`, ONNX Runtime inside) that serves on any
  Triton, CPU-only included; or with ``backend="openvino"`` Triton's OpenVINO backend (CPU instances);
* ``.engine`` / ``.plan`` -> ``platform: "tensorrt_plan"`` on GPU instances, batching from the engine's profile
  (which must start at batch 1) and the TensorRT version from its sidecar in the config's parameters and the
  repository README;
* ``pipeline=True`` adds ``gtpt_pipeline`` (:mod:`.pipeline_model`): image bytes in, persons out.

Everything comes from the artifact's own metadata (:func:`~gtpt_deploy.metadata.read_onnx_meta`, the engine
sidecar, read by :func:`~gtpt_deploy.tensorrt.sidecar.read_engine_sidecar` like the runner does). The repository is
built in a temporary folder beside ``repo`` and put in place only when complete (:mod:`.commit`): nothing
half-written on failure, and ``force`` replaces only what an earlier write's manifest lists. No torch import.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ArtifactError, GtptError
from ..metadata import ModelMeta, read_onnx_meta
from ..tensorrt.sidecar import read_engine_sidecar
from . import config as cfg
from .commit import MANIFEST, check_target, commit_repository

HERE = Path(__file__).resolve().parent
EXPORT_HINT = "gtpt-deploy export --checkpoint CKPT --dynamic-batch"


@dataclass
class ModelEntry:
    """One model written into the repository."""

    name: str
    platform: str                          # onnxruntime_onnx / tensorrt_plan / python / python-pipeline
    artifact: str
    max_batch: int
    files: list[str] = field(default_factory=list)
    tensorrt_version: str | None = None


@dataclass
class RepositoryReport:
    repo: Path
    models: list[ModelEntry]

    def to_dict(self) -> dict[str, Any]:
        return {"repo": str(self.repo), "models": [asdict(m) for m in self.models]}

    def format_lines(self) -> list[str]:
        lines = [f"model repository {self.repo}:"]
        for m in self.models:
            trt = f", TensorRT {m.tensorrt_version}" if m.tensorrt_version else ""
            lines.append(f"  {m.name}: {m.platform}, max batch {m.max_batch}{trt} ({', '.join(m.files)})")
        return lines


@dataclass
class _Plan:
    """What one artifact becomes: its metadata, tensor names, the file to copy and the config's parameters."""

    artifact: Path
    meta: ModelMeta
    io: cfg.PoseIO
    platform: str
    model_file: str
    max_batch: int
    tensorrt_version: str | None = None
    static_batch: int | None = None        # a static batch-1 engine: max_batch_size 0, the batch in the dims


def default_name(artifact: Path) -> str:
    """The model name for an artifact: its file stem with characters Triton dislikes replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", artifact.stem).lstrip(".-") or "gtpt_pose"


def plan_onnx(path: Path, max_batch: int, backend: str) -> _Plan:
    """A dynamic-batch gtpt-deploy ONNX -> its plan; a static batch is refused with the export command."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(e).__name__}); pass an exported .onnx") \
            from None
    meta = read_onnx_meta(model, source=str(path))
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise ArtifactError(f"{path.name}: expected one image input, got {[i.name for i in graph_inputs]}")
    dim0 = graph_inputs[0].type.tensor_type.shape.dim[0]
    if dim0.HasField("dim_value"):
        raise GtptError(f"{path.name} has a static batch of {dim0.dim_value}, but Triton's dynamic batching needs a "
                        f"dynamic batch dimension; re-export it with '{EXPORT_HINT}'")
    outputs = tuple(o.name for o in model.graph.output)
    names = ("simcc_x", "simcc_y") if {"simcc_x", "simcc_y"} <= set(outputs) else outputs[:2]
    io = cfg.PoseIO.of(meta, graph_inputs[0].name, names)  # type: ignore[arg-type]
    platform = {"python": "python", "openvino": "openvino"}.get(backend, "onnxruntime_onnx")
    return _Plan(path, meta, io, platform, "model.onnx", max_batch)


def profile_batches(profile: Any) -> tuple[int, int] | None:
    """(min, max) batch of the sidecar's optimization profile ``{"min": [B, 3, H, W], ..., "max": [...]}``."""
    if not isinstance(profile, dict):
        return None
    out = []
    for key in ("min", "max"):
        v = profile.get(key)
        v = v[0] if isinstance(v, list) and v else v
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return None
        out.append(v)
    return out[0], out[1]


def plan_engine(path: Path, max_batch: int | None) -> _Plan:
    """A TensorRT engine -> its plan, from its sidecar (the one reader, :func:`tensorrt.sidecar.read_engine_sidecar`).

    The profile decides the batching: a dynamic profile from batch 1 gets dynamic batching up to ``max_batch``
    (default: the profile's max); a static batch-1 profile gets ``max_batch_size: 0`` with the batch in the dims;
    a profile whose minimum is above 1 is refused - Triton's batcher forms any batch from 1 up, and every batch
    below the profile's minimum would fail at inference. The input name is the profile's ``input``.
    """
    side = read_engine_sidecar(path)
    meta = ModelMeta.from_dict(side["model"], source=str(path))
    batches = profile_batches(side.get("profile"))
    if batches is None:
        raise ArtifactError(f"{path.name}: its sidecar has no readable optimization profile (min/max input "
                            f"shapes); rebuild the engine with 'gtpt-deploy build'")
    low, top = batches
    rebuild = "rebuild it with 'gtpt-deploy build MODEL_bdyn.onnx --dynamic-batch 1,8,16'"
    if low > 1:
        kind = f"a static batch of {low}" if low == top else f"a profile from batch {low} to {top}"
        raise GtptError(f"{path.name} has {kind}, but Triton sends it any batch from 1 up (dynamic batching, "
                        f"partial batches) and every batch below {low} would fail; {rebuild}")
    if max_batch is not None and max_batch > top:
        raise GtptError(f"{path.name}'s profile allows batches up to {top}, got --max-batch {max_batch}; pass "
                        f"--max-batch {top} or {rebuild.replace('rebuild it', 'rebuild the engine')}")
    profile = side["profile"]
    input_name = profile.get("input") if isinstance(profile.get("input"), str) and profile.get("input") else None
    if input_name is None:
        raise ArtifactError(f"{path.name}: its sidecar's profile names no input tensor; rebuild the engine with "
                            f"'gtpt-deploy build'")
    io = cfg.PoseIO.of(meta, input_name)
    version = side.get("tensorrt_version")
    static = 1 if top == 1 else None
    return _Plan(path, meta, io, "tensorrt_plan", "model.plan", top if max_batch is None else max_batch,
                 str(version) if version else None, static)


BACKENDS = ("onnxruntime", "python", "openvino")
ACCELERATOR_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def write_repository(artifacts: Sequence[str | Path], repo: str | Path, name: str | None = None,
                     max_batch: int | None = None, instances: int = 1, kind: str | None = None,
                     backend: str = "onnxruntime", pipeline: bool = False, detector: str | Path | None = None,
                     force: bool = False, trt_accelerator: bool = False, warmup: bool = True,
                     python_runtime: str = "onnxruntime") -> RepositoryReport:
    """Write a Triton model repository for ``artifacts`` into ``repo``; see the module docstring.

    ``backend``: ``onnxruntime`` (native platform of each file), ``python`` (ONNX only) or ``openvino`` (Triton's
    OpenVINO backend, ONNX only). ``max_batch``: default 8 for ONNX, the profile's max for engines. ``kind``:
    ``cpu`` / ``gpu``; default ``gpu`` for engines (the TensorRT backend runs nothing else), ``cpu`` otherwise.
    ``trt_accelerator``: ONNX Runtime's TensorRT execution accelerator in the precision of the file (FP16 / INT8
    Q/DQ files then run in that precision on the GPU; needs ``kind="gpu"``). ``warmup``: one random batch at load.
    ``python_runtime``: what the Python-backend pose model runs the ONNX with, ``onnxruntime`` or ``openvino``
    (FP32, CPU instances only; the server's Python then needs the openvino package).
    ``pipeline`` adds ``gtpt_pipeline`` over the first artifact's model, with ``detector`` (an ONNX with
    dets/labels outputs); its CPU instances follow ``instances``.

    An existing ``repo`` is only replaced with ``force``, and then only what an earlier ``gtpt-deploy triton``
    wrote there (its manifest lists it) is removed; other content stays. Raises GtptError subclasses (one line)
    for bad input; nothing is written then.
    """
    paths = [Path(a) for a in artifacts]
    repo = Path(repo)
    if not paths:
        raise GtptError("expected at least one artifact (.onnx or .engine), got none")
    if name is not None and len(paths) > 1:
        raise GtptError(f"--name names one model, got {len(paths)} artifacts; leave it out (names come from the "
                        f"file names) or write one repository per artifact")
    if max_batch is not None and max_batch < 1:
        raise GtptError(f"--max-batch must be at least 1, got {max_batch}")
    if backend not in BACKENDS:
        raise GtptError(f"--backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if pipeline and detector is None:
        raise GtptError("--pipeline needs --detector (a person detector ONNX with dets/labels outputs)")
    if detector is not None and not pipeline:
        raise GtptError("--detector is used by the pipeline model only; add --pipeline or leave out --detector")
    if trt_accelerator and backend != "onnxruntime":
        raise GtptError(f"--trt-accelerator is ONNX Runtime's (platform onnxruntime_onnx); leave it out with "
                        f"--backend {backend}")
    if python_runtime not in ("onnxruntime", "openvino"):
        raise GtptError(f"--python-runtime must be onnxruntime or openvino, got '{python_runtime}'")
    if python_runtime != "onnxruntime" and backend != "python":
        raise GtptError(f"--python-runtime is the Python-backend model's; add --backend python (got --backend "
                        f"{backend})")
    if python_runtime == "openvino" and kind == "gpu":
        raise GtptError("--python-runtime openvino runs the model on the CPU; pass --kind cpu (or leave it out)")
    names = [cfg.check_name(name or default_name(p)) for p in paths]
    taken = names + ([cfg.PIPELINE_NAME] if pipeline else [])
    if len(set(taken)) != len(taken):
        raise GtptError(f"model names must be unique, got {taken}; rename the files or pass --name")
    inputs = [p.resolve() for p in paths + ([Path(detector)] if detector is not None else [])]
    for p in inputs:
        if not p.is_file():
            raise ArtifactError(f"{p} does not exist; pass an exported .onnx or a built .engine")
        if repo.resolve() in p.parents:
            raise GtptError(f"input {p} is inside the repository {repo}; write the repository somewhere else")
    previous = check_target(repo, force)
    plans = []
    for p in paths:
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            plans.append(plan_onnx(p, 8 if max_batch is None else max_batch, backend))
        elif suffix in (".engine", ".plan"):
            if backend != "onnxruntime":
                raise GtptError(f"{p.name}: --backend {backend} runs ONNX files; pass the .onnx the engine was "
                                f"built from, or leave out --backend")
            plans.append(plan_engine(p, max_batch))
        else:
            raise ArtifactError(f"cannot serve {p.name}: expected .onnx or .engine/.plan, got '{suffix or 'none'}'")
    kinds = [kind or ("gpu" if plan.platform == "tensorrt_plan" else "cpu") for plan in plans]
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", dir=repo.parent))
    umask = os.umask(0)  # mkdtemp makes 0700; the repository gets the permissions of any new folder
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        entries = [_write_model(tmp, n, plan, instances, k, trt_accelerator, warmup, python_runtime)
                   for n, plan, k in zip(names, plans, kinds)]
        if pipeline:
            entries.append(_write_pipeline(tmp, names[0], plans[0], Path(detector), plans[0].max_batch,  # type: ignore[arg-type]
                                           instances))
        (tmp / "README.md").write_text(_readme(entries))
        (tmp / MANIFEST).write_text(json.dumps({"written_by": "gtpt-deploy triton",
                                                "entries": sorted([e.name for e in entries] + ["README.md"])},
                                               indent=2) + "\n")
        commit_repository(tmp, repo, previous)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RepositoryReport(repo, entries)


def _write_model(root: Path, name: str, plan: _Plan, instances: int, kind: str, trt_accelerator: bool,
                 warmup: bool, python_runtime: str = "onnxruntime") -> ModelEntry:
    version = root / name / "1"
    version.mkdir(parents=True)
    # the whole ModelMeta travels in the config: a TritonRunner configures the pre/post-processing from it
    params = {"gtpt_meta": json.dumps(plan.meta.to_dict(), separators=(",", ":"))}
    common = dict(max_batch=plan.max_batch, instances=instances, kind=kind, warmup=warmup)
    if plan.platform == "python":
        params.update(onnx_file=plan.model_file, device=kind, runtime=python_runtime)
        if python_runtime == "openvino":
            params["inference_precision"] = "f32"  # bf16 changes the numbers: it needs its own validate budget
        config = cfg.pose_config(name, plan.io, backend="python", parameters=params, **common)  # type: ignore[arg-type]
        shutil.copyfile(HERE / "python_model.py", version / "model.py")
        files = ["model.py", plan.model_file]
    else:
        if plan.tensorrt_version:
            params["tensorrt_version"] = plan.tensorrt_version
        accelerator = None
        if trt_accelerator:
            accelerator = ACCELERATOR_PRECISION.get(plan.meta.precision, "FP32")
        backend = "openvino" if plan.platform == "openvino" else ""
        if backend:  # openvino_backend README "Latency mode": one stream per instance; the batcher gives throughput
            params.update(NUM_STREAMS="1", PERFORMANCE_HINT="LATENCY")
        platform = "" if backend else plan.platform
        config = cfg.pose_config(name, plan.io, platform=platform, backend=backend, model_file=plan.model_file,
                                 static_batch=plan.static_batch, accelerator=accelerator, parameters=params,
                                 **common)  # type: ignore[arg-type]
        files = [plan.model_file]
    shutil.copyfile(plan.artifact, version / plan.model_file)
    (root / name / "config.pbtxt").write_text(cfg.render(config))
    return ModelEntry(name, plan.platform, str(plan.artifact), plan.max_batch if plan.static_batch is None else 0,
                      files, plan.tensorrt_version)


def _write_pipeline(root: Path, pose_name: str, plan: _Plan, detector: Path, max_batch: int,
                    instances: int) -> ModelEntry:
    version = root / cfg.PIPELINE_NAME / "1"
    version.mkdir(parents=True)
    params = {"pose_model": pose_name, "pose_input": plan.io.input_name, "pose_outputs": ",".join(plan.io.output_names),
              "meta_file": "pose_meta.json", "detector_file": detector.name, "batch": str(max_batch),
              "flip": "true", "box_thr": "0.3"}
    config = cfg.pipeline_config(cfg.PIPELINE_NAME, plan.meta, max_batch=max_batch, instances=instances,
                                 parameters=params)
    shutil.copyfile(HERE / "pipeline_model.py", version / "model.py")
    # The detector keeps its name and its mmdeploy description (pipeline.json / deploy.json set its input size and
    # normalization, runtime/detector_config.py): without them the served detector would preprocess differently.
    files = ["model.py", detector.name, "pose_meta.json"]
    shutil.copyfile(detector, version / detector.name)
    for described in ("pipeline.json", "deploy.json"):
        if (detector.parent / described).is_file():
            shutil.copyfile(detector.parent / described, version / described)
            files.append(described)
    (version / "pose_meta.json").write_text(json.dumps(plan.meta.to_dict(), indent=2) + "\n")
    (root / cfg.PIPELINE_NAME / "config.pbtxt").write_text(cfg.render(config))
    return ModelEntry(cfg.PIPELINE_NAME, "python-pipeline", str(detector), max_batch, files)


def _readme(entries: list[ModelEntry]) -> str:
    lines = ["# Triton model repository (written by gtpt-deploy triton)", "",
             "| model | platform | max batch | TensorRT | from |", "| --- | --- | --- | --- | --- |"]
    for m in entries:
        lines.append(f"| {m.name} | {m.platform} | {m.max_batch} | {m.tensorrt_version or '-'} | "
                     f"{Path(m.artifact).name} |")
    if any(m.tensorrt_version for m in entries):
        lines += ["", "TensorRT plans load only with the TensorRT version that built them: serve them with the "
                      "Triton container release that ships that version (see the table above)."]
    lines += ["", "Serve it with `gtpt-deploy serve <this folder>` (CPU: a local Triton; GPU: prints the container "
                  "command)."]
    return "\n".join(lines) + "\n"
