"""Fuzz the detector configuration reader (issue 21 #14) with a few hundred hand-edited pipeline.json / deploy.json
files: values replaced by junk at random places, keys dropped, truncated and random bytes. The only acceptable
outcomes are a configuration whose pre-processing of two images gives finite inputs of bounded size, or a one-line
GtptError (never a traceback, never a multi-gigabyte allocation)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from gtpt_deploy.errors import GtptError
from gtpt_deploy.runtime.detect import preprocess
from gtpt_deploy.runtime.detector_config import MAX_INPUT_SIDE, load_detector_config
from test_detector_config import _pipeline

JUNK: list[Any] = [None, 0, -1, 1, 3, True, 1e9, 40000, [40000, 40000], [0, 0], [-5, 640], [640], [640, 640, 3],
                   [1.5, 2.5], "640", "", [], {}, [0, 0, 0], [float("nan")] * 3, [float("inf"), 1, 1], float("nan"),
                   float("-inf"), [None, None, None], ["a", "b", "c"], {"img": "x"}, {"img": [float("nan")] * 3},
                   [[1, 2], [3, 4]], "Resize", {"type": "Resize"}, {"transforms": 5}]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a JSON value."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, rng: np.random.Generator) -> Any:
    """One to three random edits: replace a value with junk, or drop a key / list item."""
    doc = copy.deepcopy(doc)
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return JUNK[int(rng.integers(len(JUNK)))]
        path = paths[int(rng.integers(len(paths)))]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(JUNK[int(rng.integers(len(JUNK)))])
    return doc


def _outcome(folder: Path) -> str:
    try:
        cfg = load_detector_config(folder / "end2end.onnx", (None, None))
        for shape in ((48, 64, 3), (480, 300, 3)):
            x, (fx, fy) = preprocess(np.full(shape, 77, np.uint8), cfg)
            assert x.dtype == np.float32 and max(x.shape[2:]) <= MAX_INPUT_SIDE, (cfg, x.shape)
            assert np.isfinite(x).all() and fx > 0 and fy > 0, cfg
    except GtptError as e:
        assert str(e).strip() and "\n" not in str(e), str(e)
        return "error"
    return "loaded"


def test_fuzz_detector_pipeline_and_deploy_json(tmp_path):
    rng = np.random.default_rng(21)
    base = _pipeline()
    deploy = {"version": "1.3.1", "task": "Detector", "models": [{"name": "rtmdet", "net": "end2end.onnx"}]}
    text = json.dumps(base).encode()
    cases: list[tuple[bytes, bytes]] = []
    for _ in range(220):
        cases.append((json.dumps(_mutate(base, rng)).encode(), json.dumps(deploy).encode()))
    for _ in range(40):
        cases.append((text, json.dumps(_mutate(deploy, rng)).encode()))
    for cut in np.unique(np.linspace(1, len(text) - 1, 30).astype(int)):
        cases.append((text[:cut], json.dumps(deploy).encode()))
    for size in (1, 16, 300):
        cases.append((rng.integers(0, 256, size, dtype=np.uint8).tobytes(), b"\xff\xfe"))
    folder = tmp_path / "det"
    folder.mkdir()
    (folder / "end2end.onnx").write_bytes(b"")          # only its name and folder are read here
    outcomes = {"error": 0, "loaded": 0}
    for pipeline, dep in cases:
        (folder / "pipeline.json").write_bytes(pipeline)
        (folder / "deploy.json").write_bytes(dep)
        outcomes[_outcome(folder)] += 1
    # Both outcomes happen: the junk is refused, and edits that keep a sane pipeline (a dropped Pad) still load.
    assert outcomes["error"] >= 150 and outcomes["loaded"] >= 20, outcomes
