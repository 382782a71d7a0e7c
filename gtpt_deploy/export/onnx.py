"""Checkpoint -> simplified, self-describing ONNX with static top-k, verified against PyTorch before it is kept.

``export_onnx`` is one plain function with a typed result (:class:`ExportResult`). Steps: load the checkpoint
(variant detected from the tensors), trace with the TorchScript exporter, check the graph (opset as written, constant
TopK k = the config's table, static shapes, no ScatterND / Einsum, no constant outside float16), simplify (onnxsim,
else onnxslim, else none, each verified numerically), write ``gtpt.*`` metadata, ``onnx.checker`` full check, then
ONNX Runtime vs PyTorch on real person crops and random inputs. Only a graph that passes every step is written
(atomically), together with a JSON report next to it; on any failure nothing is left behind.

Why the legacy exporter (``dynamo=False``): in torch 2.13 the dynamo exporter needs ``onnxscript`` (not a dependency
here) and, asked for opset 17, writes ``Split(num_outputs=...)`` - an opset-18 attribute - under an opset-17 header,
which ONNX Runtime rejects as an invalid model. The TorchScript exporter writes exactly the requested opset.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..artifacts import ArtifactSet, check_outputs, checkpoint_stem, onnx_path, sha256_file, sidecar_path
from ..errors import ExportError
from ..eval.compare import batches_of
from ..metadata import ModelMeta, write_onnx_meta
from ..threads import apply_thread_policy
from .parity import (MAX_ABS_DIFF, N_RANDOM, TIE_RTOL, NearTie, ParityCase, TieAwareParity, describe_near_ties,
                     stage_names)
from .samples import load_samples

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17                      # TensorRT 10 and 11 parse it; LayerNormalization is one node from 17 on
SUPPORTED_OPSETS = range(17, 21)        # 20 = the TorchScript exporter's maximum in torch 2.13
DYNAMIC_CHECK_BATCHES = (1, 3, 8)
EXPORTER = "torch.onnx TorchScript (dynamo=False)"
# Largest static batch. Export traces a batch of this size and the parity check runs it in PyTorch and ONNX Runtime:
# the input alone is 0.59 MB per crop (3x256x192 float32), so 1024 crops are 0.6 GB before any activation, and
# 100000 asked for ~59 GB. No backend gains from more: TensorRT and ONNX Runtime saturate far below 1024 crops.
MAX_BATCH = 1024


@dataclass
class ExportResult:
    """Everything ``export_onnx`` did and measured; ``to_dict()`` is the JSON sidecar."""

    onnx_path: Path
    report_path: Path
    variant: str
    batch: int | None                       # None: dynamic batch
    opset: int
    exporter: str
    simplifier: str
    simplify_notes: list[str]
    nodes_exported: int
    nodes_final: int
    op_counts: dict[str, int]
    topk_k: tuple[int, ...]
    parity: list[ParityCase]
    seconds: dict[str, float]
    meta: ModelMeta
    onnx_sha256: str = ""
    sample_images: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.parity)

    @property
    def argmax_agreement(self) -> float:
        return min(c.argmax_agreement for c in self.parity)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["onnx_path"], d["report_path"] = str(self.onnx_path), str(self.report_path)
        d["parity"] = [{**asdict(c), "passed": c.passed} for c in self.parity]
        d["max_abs_diff"], d["argmax_agreement"] = self.max_abs_diff, self.argmax_agreement
        d["near_ties"] = [{"inputs": c.inputs, "batch": c.batch, **asdict(t)} for c in self.parity
                          for t in c.near_ties]
        d["tolerance"] = {"max_abs_diff": MAX_ABS_DIFF, "argmax_agreement": 1.0, "tie_rtol": TIE_RTOL}
        return d

    def format_report(self) -> str:
        """A few lines for the terminal."""
        batch = "dynamic" if self.batch is None else str(self.batch)
        notes = f" ({'; '.join(self.simplify_notes)})" if self.simplify_notes else ""
        kept = f"not simplified{notes}" if self.simplifier == "none" else f"{self.nodes_final} after {self.simplifier}{notes}"
        lines = [
            f"exported {self.variant} (batch {batch}, opset {self.opset}) -> {self.onnx_path}",
            f"  graph: {self.nodes_exported} nodes exported, {kept}; TopK k = {list(self.topk_k)}",
        ]
        for c in self.parity:
            redrawn = f", {c.redrawn} random inputs redrawn" if c.redrawn else ""
            strict = (f"max |diff| {c.max_abs_diff:.2e}, argmax agreement {c.argmax_agreement * 100:.2f}% "
                      f"({c.samples} samples{redrawn})") if c.samples else f"no sample kept the same tokens{redrawn}"
            lines.append(f"  parity vs PyTorch, {c.inputs:<10} b{c.batch}: {strict}")
            if c.near_ties:
                lines.append(f"    {describe_near_ties(c.near_ties)}")
        s = self.seconds
        lines.append(f"  time: export {s['export']:.1f} s, simplify {s['simplify']:.1f} s, checks {s['check']:.1f} s, "
                     f"parity {s['parity']:.1f} s, total {s['total']:.1f} s")
        lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)


def export_onnx(checkpoint: str | os.PathLike[str], model: str | None = None,
                output: str | os.PathLike[str] | None = None, batch: int | None = None, dynamic_batch: bool = False,
                opset: int = DEFAULT_OPSET, simplify: bool = True, force: bool = False,
                samples: str | os.PathLike[str] | None = None) -> ExportResult:
    """Export a GTPT checkpoint to ONNX (input ``images`` float32 (B,3,256,192) -> ``simcc_x`` (B,K,384),
    ``simcc_y`` (B,K,512)) and keep it only if it passes every check.

    ``model`` is detected from the checkpoint when omitted (and must match it when given). ``batch`` is the static
    batch size (default 1); ``dynamic_batch`` makes dim 0 symbolic instead (then leave ``batch`` unset). ``output``
    defaults to ``export/<checkpoint name>_b<N>.onnx`` (``_bdyn``; see ``artifacts.checkpoint_stem``) under the
    working directory. ``samples``: real person
    crops for the parity check, see :func:`load_samples` (default: the demo COCO images and boxes shipped in the
    package).
    Raises a ``GtptError`` subclass (one-line message) on any user error or failed check; nothing is written then.
    """
    t_start = time.perf_counter()
    apply_thread_policy()                       # before torch starts OpenMP (see threads.py)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"unsupported opset {opset}: expected {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} "
                          f"(17 is accepted by TensorRT 10 and 11); pass --opset {DEFAULT_OPSET}")
    if dynamic_batch and batch is not None:
        raise ExportError(f"both a static batch ({batch}) and a dynamic batch were requested; "
                          f"pass either --batch N or --dynamic-batch")
    if batch is not None and batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}; pass --batch 1 or --dynamic-batch")
    if batch is not None and batch > MAX_BATCH:
        raise ExportError(f"batch must be <= {MAX_BATCH}, got {batch}: the export traces and checks one batch of that "
                          f"size (0.59 MB of input per crop, {batch * 0.59 / 1024:.1f} GB before activations); pass "
                          f"a smaller --batch or --dynamic-batch")
    static_batch = None if dynamic_batch else (batch or 1)
    if output is not None and Path(output).suffix.lower() != ".onnx":
        raise ExportError(f"--output must name an .onnx file, got '{Path(output).name}'; the report is written "
                          f"next to it as {Path(output).stem}.json")

    from ..models import create_model, get_config

    if model is not None:
        get_config(model)                       # unknown name -> UnknownModelError listing the valid ones
    net = create_model(model, checkpoint)       # missing / unreadable / other variant -> CheckpointError
    out = Path(output) if output is not None else onnx_path(checkpoint_stem(checkpoint), static_batch)
    report = sidecar_path(out)
    created = _missing_parents(out)
    try:
        inputs = [Path(checkpoint)] + ([Path(samples)] if samples is not None else [])
        check_outputs((out, report), force, inputs=inputs)
        return _export(net, Path(checkpoint), out, report, static_batch, opset, simplify, samples, t_start, force)
    except BaseException:
        for d in created:                       # leave no empty folder behind either
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    for parent in path.absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing                              # deepest first


def _export(net: Any, checkpoint: Path, out: Path, report: Path, batch: int | None, opset: int, simplify: bool,
            samples: str | os.PathLike[str] | None, t_start: float, force: bool = False) -> ExportResult:
    import onnx

    from .graph import graph_facts, infer_shapes, simplify_model

    cfg = net.cfg
    seconds: dict[str, float] = {}
    real, names = load_samples(samples, cfg.image_size)         # a bad --samples fails before the slow part
    t = time.perf_counter()
    raw = _torch_export(net, batch, opset)
    seconds["export"] = time.perf_counter() - t

    rand = np.random.default_rng(0).standard_normal((N_RANDOM, 3, *cfg.image_size)).astype(np.float32)
    t = time.perf_counter()
    if simplify:
        graph, simp = simplify_model(raw, batches_of(rand, batch or 1)[0])
    else:
        from .graph import SimplifyReport

        graph, simp = raw, SimplifyReport("none", len(raw.graph.node), len(raw.graph.node), ["--no-simplify"])
    seconds["simplify"] = time.perf_counter() - t

    t = time.perf_counter()
    graph = infer_shapes(graph)                 # fresh value_info: the exporter's can be stale
    facts = graph_facts(graph, dynamic_batch=batch is None)
    problems = facts.problems(opset, expected_topk(cfg), require_static=simp.simplifier != "none")
    notes = list(simp.notes)
    if facts.non_static and simp.simplifier == "none":
        notes.append(f"{len(facts.non_static)} tensor shapes are not static in the unsimplified graph")
    if problems:
        raise ExportError(f"the exported graph failed its checks: {'; '.join(problems)}; nothing was written")
    meta = ModelMeta.for_config(cfg, batch, source_sha256=sha256_file(checkpoint), versions=_versions())
    meta = replace(meta, extra={"opset": opset, "exporter": EXPORTER,
                                "simplifier": simp.simplifier, "inputs": ["images"], "outputs": ["simcc_x", "simcc_y"]})
    write_onnx_meta(graph, meta)
    graph.doc_string = f"GTPT {cfg.name} exported by gtpt-deploy {__version__}"
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the exported graph ({str(e).splitlines()[0][:200]}); "
                          f"nothing was written") from None
    payload = graph.SerializeToString()
    seconds["check"] = time.perf_counter() - t

    t = time.perf_counter()
    parity = check_parity(net, payload, real, rand, batch)
    seconds["parity"] = time.perf_counter() - t
    failed = [c for c in parity if not c.passed]
    if failed:
        raise ExportError(f"ONNX Runtime disagrees with PyTorch on {failed[0].failure()}; nothing was written - "
                          f"try --no-simplify or report it")

    seconds["total"] = time.perf_counter() - t_start
    result = ExportResult(
        onnx_path=out, report_path=report, variant=cfg.name, batch=batch, opset=facts.opset,
        exporter=EXPORTER, simplifier=simp.simplifier, simplify_notes=notes,
        nodes_exported=simp.nodes_before, nodes_final=facts.nodes, op_counts=facts.op_counts, topk_k=facts.topk_k,
        parity=parity, seconds={k: round(v, 3) for k, v in seconds.items()}, meta=meta,
        onnx_sha256=hashlib.sha256(payload).hexdigest(), sample_images=names,
    )
    # Model and report commit as a unit: both are written to temporaries in the destination folder first (a full
    # disk fails here and leaves the old pair untouched), then renamed - the model last, so an .onnx on disk always
    # has its report. Without --force the rename refuses a name another export created meanwhile.
    with ArtifactSet(force=force) as files:
        files.write_json(report, result.to_dict())
        files.write_bytes(out, payload)
    log.debug("wrote %s (%d nodes, max |diff| %.2e)", out, facts.nodes, result.max_abs_diff)
    return result


def expected_topk(cfg: Any) -> list[int]:
    """TopK k values the graph must hold: one TopK per step, or one per group when the groups' k differ."""
    ks: list[int] = []
    for step in ("plain", "transition", "group"):
        values = tuple(cfg.k_table[step])
        ks.extend(values[:1] if len(set(values)) == 1 else values)
    return ks


def _torch_export(net: Any, batch: int | None, opset: int) -> Any:
    import onnx
    import torch

    example = torch.zeros(batch or 2, 3, *net.cfg.image_size)
    dynamic = {n: {0: "batch"} for n in ("images", "simcc_x", "simcc_y")} if batch is None else None
    # Into memory, not a file: a killed export then leaves no stray graph in $TMPDIR (GTPT graphs are tens of MB,
    # far below protobuf's 2 GB limit that would need external data files).
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings about shape-derived Python ints and the exporter's deprecation notice: expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buf, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["simcc_x", "simcc_y"], dynamic_axes=dynamic,
                          do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def check_parity(net: Any, onnx_model: bytes, real: np.ndarray, rand: np.ndarray,
                 batch: int | None) -> list[ParityCase]:
    """Tie-aware ONNX Runtime vs PyTorch eager parity (:mod:`.parity`) on ``real`` crops and ``rand`` inputs
    (float32 (N,3,256,192) each), in batches of ``batch`` (static) or of 1, 3 and 8 (``batch=None``: dynamic).
    Random inputs that hit a near-tie are replaced by further seeded draws."""
    import onnx

    from ..runners import create_runner

    cases = []
    with create_runner(net) as torch_runner:
        parity = TieAwareParity(torch_runner, onnx.load_from_string(onnx_model), stage_names(net.cfg))
        for label, data in (("real crops", real), ("random", rand)):
            if not len(data):
                continue
            for b in ((batch,) if batch is not None else DYNAMIC_CHECK_BATCHES):
                cases.append(parity.case(label, data, b, redraw=label == "random"))
    return cases


def _versions() -> dict[str, str]:
    import onnx
    import torch

    versions = {"gtpt_deploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__}
    for name in ("onnxruntime", "onnxsim", "onnxslim"):
        try:
            versions[name] = str(__import__(name).__version__)
        except Exception:  # optional: recorded only when importable
            pass
    return versions


__all__ = ["ExportResult", "NearTie", "ParityCase", "export_onnx", "expected_topk", "check_parity"]
