"""Write a Triton model repository from artifacts: ``<repo>/<name>/config.pbtxt`` and ``<repo>/<name>/1/model.*``.

* ``.onnx`` (dynamic batch) -> ``platform: "onnxruntime_onnx"`` (NVIDIA's containers), or with
  ``backend="python"`` the Python-backend model (:mod:`.python_model`, ONNX Runtime inside) that serves on any
  Triton, CPU-only included;
* ``.engine`` / ``.plan`` -> ``platform: "tensorrt_plan"``, ``max_batch_size`` within the engine's profile and the
  TensorRT version from its sidecar in the config's parameters and the repository README;
* ``pipeline=True`` adds ``gtpt_pipeline`` (:mod:`.pipeline_model`): image bytes in, persons out.

Everything comes from the artifact's own metadata (:func:`~gtpt_deploy.metadata.read_onnx_meta`, the engine
sidecar). The repository is built in a temporary folder beside ``repo`` and renamed into place only when complete:
nothing half-written on failure. No torch import.
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

from ..errors import ArtifactError, ArtifactExistsError, GtptError
from ..metadata import ModelMeta, read_onnx_meta
from . import config as cfg

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
    platform = "python" if backend == "python" else "onnxruntime_onnx"
    return _Plan(path, meta, io, platform, "model.onnx", max_batch)


def read_engine_sidecar(engine: Path) -> dict[str, Any]:
    """The engine's JSON sidecar (``foo.engine.json``, else ``foo.json``) as a dict; ArtifactError when missing."""
    for side in (engine.with_name(engine.name + ".json"), engine.with_suffix(".json")):
        if side.is_file():
            try:
                data = json.loads(side.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ArtifactError(f"{side} is not readable JSON ({type(e).__name__}); rebuild the engine") from None
            if isinstance(data, dict) and "model" in data:
                return data
    raise ArtifactError(f"{engine.name} has no gtpt-deploy sidecar ({engine.name}.json with the model metadata, "
                        f"TensorRT version and profile) beside it; build engines with gtpt-deploy and keep both files")


def profile_max_batch(profile: Any) -> int | None:
    """Largest batch of an optimization profile given as {"max": B or shape}, [min, opt, max] shapes, or B."""
    top = profile.get("max") if isinstance(profile, dict) else (profile[-1] if isinstance(profile, list) and
                                                                profile else profile)
    if isinstance(top, list) and top:
        top = top[0]
    return int(top) if isinstance(top, (int, float)) and not isinstance(top, bool) else None


def plan_engine(path: Path, max_batch: int) -> _Plan:
    """A TensorRT engine -> its plan: ``max_batch`` must fit the profile; the TensorRT version is recorded."""
    side = read_engine_sidecar(path)
    meta = ModelMeta.from_dict(side["model"], source=str(path))
    top = profile_max_batch(side.get("profile")) or (meta.batch if meta.batch else None)
    if top is None:
        raise ArtifactError(f"{path.name}: its sidecar has no optimization profile (max batch); rebuild the engine")
    if max_batch > top:
        raise GtptError(f"{path.name}'s profile allows batches up to {top}, got --max-batch {max_batch}; pass "
                        f"--max-batch {top} or rebuild the engine with a larger profile")
    io = cfg.PoseIO.of(meta, str(side.get("input_name", "images")))
    version = side.get("tensorrt_version")
    return _Plan(path, meta, io, "tensorrt_plan", "model.plan", max_batch, str(version) if version else None)


def write_repository(artifacts: Sequence[str | Path], repo: str | Path, name: str | None = None, max_batch: int = 8,
                     instances: int = 1, kind: str = "cpu", backend: str = "onnxruntime", pipeline: bool = False,
                     detector: str | Path | None = None, force: bool = False) -> RepositoryReport:
    """Write a Triton model repository for ``artifacts`` into ``repo``; see the module docstring.

    ``backend``: ``onnxruntime`` (native platform of each file) or ``python`` (ONNX only). ``pipeline`` adds
    ``gtpt_pipeline`` over the first artifact's model, with ``detector`` (an ONNX with dets/labels outputs).
    Raises GtptError subclasses (one line) for bad input; nothing is written then.
    """
    paths = [Path(a) for a in artifacts]
    repo = Path(repo)
    if not paths:
        raise GtptError("expected at least one artifact (.onnx or .engine), got none")
    if name is not None and len(paths) > 1:
        raise GtptError(f"--name names one model, got {len(paths)} artifacts; leave it out (names come from the "
                        f"file names) or write one repository per artifact")
    if max_batch < 1:
        raise GtptError(f"--max-batch must be at least 1, got {max_batch}")
    if backend not in ("onnxruntime", "python"):
        raise GtptError(f"--backend must be onnxruntime or python, got '{backend}'")
    if pipeline and detector is None:
        raise GtptError("--pipeline needs --detector (a person detector ONNX with dets/labels outputs)")
    if detector is not None and not pipeline:
        raise GtptError("--detector is used by the pipeline model only; add --pipeline or leave out --detector")
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
    if repo.exists() and not force:
        raise ArtifactExistsError(f"repository {repo} already exists; pass --force to replace it or choose another "
                                  f"--repo")
    plans = []
    for p in paths:
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            plans.append(plan_onnx(p, max_batch, backend))
        elif suffix in (".engine", ".plan"):
            if backend == "python":
                raise GtptError(f"{p.name}: the Python-backend model runs ONNX Runtime; pass the .onnx the engine "
                                f"was built from, or leave out --backend python")
            plans.append(plan_engine(p, max_batch))
        else:
            raise ArtifactError(f"cannot serve {p.name}: expected .onnx or .engine/.plan, got '{suffix or 'none'}'")
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", dir=repo.parent))
    umask = os.umask(0)  # mkdtemp makes 0700; the repository gets the permissions of any new folder
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        entries = [_write_model(tmp, n, plan, instances, kind) for n, plan in zip(names, plans)]
        if pipeline:
            entries.append(_write_pipeline(tmp, names[0], plans[0], Path(detector), max_batch))  # type: ignore[arg-type]
        (tmp / "README.md").write_text(_readme(entries))
        _swap_into_place(tmp, repo)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RepositoryReport(repo, entries)


def _write_model(root: Path, name: str, plan: _Plan, instances: int, kind: str) -> ModelEntry:
    version = root / name / "1"
    version.mkdir(parents=True)
    # the whole ModelMeta travels in the config: a TritonRunner configures the pre/post-processing from it
    params = {"gtpt_meta": json.dumps(plan.meta.to_dict(), separators=(",", ":"))}
    if plan.platform == "python":
        params.update(onnx_file=plan.model_file, device=kind)
        config = cfg.pose_config(name, plan.io, backend="python", max_batch=plan.max_batch, instances=instances,
                                 kind=kind, parameters=params)
        shutil.copyfile(HERE / "python_model.py", version / "model.py")
        files = ["model.py", plan.model_file]
    else:
        if plan.tensorrt_version:
            params["tensorrt_version"] = plan.tensorrt_version
        config = cfg.pose_config(name, plan.io, platform=plan.platform, max_batch=plan.max_batch,
                                 instances=instances, kind=kind, model_file=plan.model_file, parameters=params)
        files = [plan.model_file]
    shutil.copyfile(plan.artifact, version / plan.model_file)
    (root / name / "config.pbtxt").write_text(cfg.render(config))
    return ModelEntry(name, plan.platform, str(plan.artifact), plan.max_batch, files, plan.tensorrt_version)


def _write_pipeline(root: Path, pose_name: str, plan: _Plan, detector: Path, max_batch: int) -> ModelEntry:
    version = root / cfg.PIPELINE_NAME / "1"
    version.mkdir(parents=True)
    params = {"pose_model": pose_name, "pose_input": plan.io.input_name, "pose_outputs": ",".join(plan.io.output_names),
              "meta_file": "pose_meta.json", "detector_file": "detector.onnx", "batch": str(max_batch),
              "flip": "true", "box_thr": "0.3"}
    config = cfg.pipeline_config(cfg.PIPELINE_NAME, plan.meta, parameters=params)
    shutil.copyfile(HERE / "pipeline_model.py", version / "model.py")
    shutil.copyfile(detector, version / "detector.onnx")
    (version / "pose_meta.json").write_text(json.dumps(plan.meta.to_dict(), indent=2) + "\n")
    (root / cfg.PIPELINE_NAME / "config.pbtxt").write_text(cfg.render(config))
    return ModelEntry(cfg.PIPELINE_NAME, "python-pipeline", str(detector), 0,
                      ["model.py", "detector.onnx", "pose_meta.json"])


def _swap_into_place(tmp: Path, repo: Path) -> None:
    """Rename the finished ``tmp`` onto ``repo``; an old repository is moved aside first and removed after."""
    old = None
    if repo.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{repo.name}.old.", dir=repo.parent))
        os.replace(repo, old / repo.name)
    try:
        os.replace(tmp, repo)
    except OSError:
        if old is not None:  # put the old repository back
            os.replace(old / repo.name, repo)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _readme(entries: list[ModelEntry]) -> str:
    lines = ["# Triton model repository (written by gtpt-deploy triton)", "",
             "| model | platform | max batch | TensorRT | from |", "| --- | --- | --- | --- | --- |"]
    for m in entries:
        lines.append(f"| {m.name} | {m.platform} | {m.max_batch} | {m.tensorrt_version or '-'} | "
                     f"{Path(m.artifact).name} |")
    if any(m.tensorrt_version for m in entries):
        lines += ["", "TensorRT plans load only with the TensorRT version that built them: serve them with the "
                      "Triton container release that ships that version (see the table above)."]
    return "\n".join(lines) + "\n"
