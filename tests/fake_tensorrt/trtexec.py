"""trtexec's command-line rules, applied to the line a build records (no trtexec here: this checks the line).

Checked against NVIDIA/TensorRT ``samples/common/sampleOptions.cpp`` (option parsing: ``--minShapes=name:AxBxC``,
missing min/opt/max filled from the given ones) and ``samples/common/sampleEngines.cpp`` (``setupNetworkAndConfig``):

* a network whose inputs are all static refuses explicit shapes: "Static model does not take explicit shapes since
  the shape of inference tensors will be determined by the model itself" (the build fails);
* a dynamic input without shapes gets its dynamic dimensions set to 1 (a warning), i.e. another profile;
* options trtexec does not know end the run ("Unknown option").
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

KNOWN = {"--onnx", "--saveEngine", "--stronglyTyped", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize",
         "--builderOptimizationLevel", "--profilingVerbosity", "--timingCacheFile", "--loadEngine", "--fp16",
         "--int8", "--shapes", "--verbose"}


class TrtexecError(Exception):
    """What trtexec would print before exiting non-zero."""


def _shape(spec: str) -> tuple[str, list[int]]:
    name, _, dims = spec.rpartition(":")
    return name.strip("'"), [int(d) for d in dims.split("x")]


def check_command(line: str) -> dict[str, Any]:
    """Parse a recorded ``trtexec ...`` line as trtexec would -> {"onnx", "engine", "profile" (name -> [min, opt,
    max]), "strongly_typed", "options"}; TrtexecError for what trtexec refuses."""
    import onnx

    args = shlex.split(line)
    if not args or args[0] != "trtexec":
        raise TrtexecError(f"not a trtexec command: {line[:40]}")
    opts: dict[str, str] = {}
    for a in args[1:]:
        key, _, value = a.partition("=")
        if key not in KNOWN:
            raise TrtexecError(f"Unknown option: {a}")
        if key in opts:
            raise TrtexecError(f"Multiple {key} without --profile are not allowed.")
        opts[key] = value
    if "--onnx" not in opts:
        raise TrtexecError("Model missing or format not recognized")
    model = onnx.load(opts["--onnx"])
    inits = {t.name for t in model.graph.initializer}
    inputs = {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
              for v in model.graph.input if v.name not in inits}
    given = {k: _shape(opts[k]) for k in ("--minShapes", "--optShapes", "--maxShapes") if k in opts}
    dynamic = any(-1 in dims for dims in inputs.values())
    if not dynamic and given:
        raise TrtexecError("Static model does not take explicit shapes since the shape of inference tensors will be "
                           "determined by the model itself")
    profile: dict[str, list[list[int]]] = {}
    for name, dims in inputs.items():
        if -1 not in dims:
            continue
        shapes = {k: s for k, (n, s) in given.items() if n == name}
        if not shapes:  # trtexec: "If no shape is provided, set dynamic dimensions to 1"
            ones = [1 if d == -1 else d for d in dims]
            profile[name] = [ones, ones, ones]
            continue
        first = next(iter(shapes.values()))
        profile[name] = [shapes.get(k, shapes.get("--optShapes", first)) for k in
                         ("--minShapes", "--optShapes", "--maxShapes")]
        for s in profile[name]:
            if len(s) != len(dims) or any(d != -1 and d != v for d, v in zip(dims, s)):
                raise TrtexecError(f"shape {s} of {name} does not fit the network's {dims}")
    return {"onnx": Path(opts["--onnx"]), "engine": opts.get("--saveEngine"), "profile": profile,
            "strongly_typed": "--stronglyTyped" in opts, "options": opts}
