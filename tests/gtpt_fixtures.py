"""Test helpers: shared-data location, the seed-0 fixture checkpoint rebuild and a small ONNX export.

The rebuild rule is the one in ``$GTPT_SHARED/fixtures/gtpt_reference/README.md``: it reproduces the official-format
checkpoint ``<model>_seed0.pth`` (random but deterministic weights, EMA and student branches) bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("GTPT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures" / "gtpt_reference"
COCO_VAL = SHARED / "data" / "coco_val2017_pose"
COCO_VAL_ANN = COCO_VAL / "person_keypoints_val2017_subset.json"
PEOPLE = SHARED / "data" / "people_photos_pypi"
DETECTOR = SHARED / "data" / "models" / "rtmdet_nano_person" / "end2end.onnx"


def rebuild_official_state_dict(model: str = "gtpt_t_human") -> dict:
    """The official-format state dict of fixture ``model`` (e.g. ``gtpt_t_human``), rebuilt from its key list."""
    import torch

    keys = json.loads((FIXTURES / "state_dict_keys.json").read_text())[model]
    const = np.load(FIXTURES / f"{model}_constants.npz")
    torch.manual_seed(0)
    sd = {}
    for k, shape, _ in keys:
        last = k.rsplit(".", 1)[-1]
        if last in ("pos_embedding", "mask"):
            sd[k] = torch.from_numpy(const[k])
        elif last == "num_batches_tracked":
            sd[k] = torch.zeros((), dtype=torch.int64)
        elif last.endswith("_token"):
            sd[k] = torch.randn(shape) * 0.5
        elif last == "weight" and len(shape) >= 2:
            sd[k] = torch.randn(shape) / math.sqrt(math.prod(shape[1:]))
        elif last == "weight":
            sd[k] = 1.0 + 0.1 * torch.randn(shape)
        elif last == "bias":
            sd[k] = 0.1 * torch.randn(shape)
        elif last == "running_mean":
            sd[k] = 0.1 * torch.randn(shape)
        elif last == "running_var":
            sd[k] = 0.5 + torch.rand(shape)
        else:
            raise KeyError(k)
    return sd


def write_seed0_checkpoint(path: Path, model: str = "gtpt_t_human") -> Path:
    """Write the rebuilt official-format checkpoint (plain state dict, both branches) to ``path``."""
    import torch

    torch.save(rebuild_official_state_dict(model), path)
    return path


def export_test_onnx(checkpoint: Path, output: Path, batch: int | None = 1) -> Path:
    """ONNX of ``checkpoint`` with gtpt metadata: ``export_onnx`` when it exists, else a plain legacy export."""
    import torch

    try:
        from gtpt_deploy.export import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        # one torch thread: on the shared 2-core machine a busy neighbour makes 2 OpenMP threads ~10x slower
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = export_onnx(checkpoint=checkpoint, output=output, batch=batch, dynamic_batch=batch is None)
        finally:
            torch.set_num_threads(saved)
        return Path(result.onnx_path)
    import onnx

    from gtpt_deploy.metadata import ModelMeta, write_onnx_meta
    from gtpt_deploy.models import create_model

    model = create_model(checkpoint=checkpoint)
    x = torch.zeros(batch or 2, 3, *model.cfg.image_size)
    dyn = {"images": {0: "batch"}, "simcc_x": {0: "batch"}, "simcc_y": {0: "batch"}} if batch is None else None
    torch.onnx.export(model, (x,), str(output), dynamo=False, opset_version=17, input_names=["images"],
                      output_names=["simcc_x", "simcc_y"], dynamic_axes=dyn)
    m = onnx.load(str(output))
    write_onnx_meta(m, ModelMeta.for_config(model.cfg, batch))
    onnx.save(m, str(output))
    return output


def write_fake_pose_onnx(path: Path, batch: int | None = None, num_keypoints: int = 17, bins: tuple[int, int] = (384, 512),
                         meta: bool = True, seed: int = 0) -> Path:
    """A tiny GTPT-shaped ONNX (no transformer): images (B,3,256,192) -> simcc_x (B,K,Wx), simcc_y (B,K,Wy).

    Logits are a fixed linear map of a 4x3 average pool of the image, so they depend on the input (and flip) but
    run in microseconds. ``bins`` lets a test make a file whose outputs contradict its metadata.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from gtpt_deploy.metadata import ModelMeta, write_onnx_meta
    from gtpt_deploy.models.variants import VARIANTS

    rng = np.random.default_rng(seed)
    k, (wx, wy) = num_keypoints, bins
    feat = 3 * 4 * 3
    inits = [
        numpy_helper.from_array(rng.standard_normal((feat, k * wx)).astype(np.float32), "wx"),
        numpy_helper.from_array(rng.standard_normal((feat, k * wy)).astype(np.float32), "wy"),
        numpy_helper.from_array(np.array([-1, k, wx], np.int64), "shape_x"),
        numpy_helper.from_array(np.array([-1, k, wy], np.int64), "shape_y"),
        numpy_helper.from_array(np.array([0, feat], np.int64), "shape_f"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[64, 64], strides=[64, 64]),
        helper.make_node("Reshape", ["pooled", "shape_f"], ["feat"]),
        helper.make_node("MatMul", ["feat", "wx"], ["fx"]),
        helper.make_node("MatMul", ["feat", "wy"], ["fy"]),
        helper.make_node("Reshape", ["fx", "shape_x"], ["simcc_x"]),
        helper.make_node("Reshape", ["fy", "shape_y"], ["simcc_y"]),
    ]
    b = batch if batch is not None else "batch"
    graph = helper.make_graph(
        nodes, "fake_gtpt", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, 256, 192])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [b, k, wx]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [b, k, wy])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta:
        cfg = VARIANTS["gtpt_t_coco" if num_keypoints == 17 else "gtpt_t_wholebody"]
        write_onnx_meta(model, ModelMeta.for_config(cfg, batch))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def invoke_cli(args: list) -> object:
    """``gtpt-deploy ARGS`` through click's test runner (paths may be Path objects)."""
    from click.testing import CliRunner

    from gtpt_deploy.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, code: int = 2) -> str:
    """The single ``error: ...`` line of a failed CLI result (after any progress bar), checking exit code and that no
    traceback was printed."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = [ln[ln.index("error: "):] for ln in res.stderr.splitlines() if "error: " in ln]
    assert len(lines) == 1, res.output
    return lines[0]


def another_writer_first(monkeypatch, module, name: str, path: Path, data: bytes) -> None:
    """Make ``module.name`` first write ``data`` to ``path``, then do its work: another writer to the same output
    that commits while this one is still working (both passed the up-front check)."""
    real = getattr(module, name)

    def finish_while_the_other_finishes(*a, **k):
        Path(path).write_bytes(data)
        return real(*a, **k)

    monkeypatch.setattr(module, name, finish_while_the_other_finishes)
