"""Checkpoint reading: every official format loads to the same function; bad input gets one clear error."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from gtpt_deploy.errors import CheckpointError, UnknownModelError
from gtpt_deploy.models import create_model, read_checkpoint, save_checkpoint
from gtpt_fixtures import FIXTURES, rebuild_official_state_dict


@pytest.fixture(scope="module")
def official(shared) -> OrderedDict:
    """The seed-0 official-format state dict of GTPT-T COCO (both branches, mask buffers, no prefix)."""
    return OrderedDict(rebuild_official_state_dict("gtpt_t_human"))


@pytest.fixture(scope="module")
def reference_output(shared) -> torch.Tensor:
    return torch.load(FIXTURES / "gtpt_t_human_seed0_io.pt", weights_only=True)["pred_x"]


@pytest.fixture(scope="module")
def fixture_input(shared) -> torch.Tensor:
    return torch.load(FIXTURES / "gtpt_t_human_seed0_io.pt", weights_only=True)["input"]


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


FORMATS = {
    "plain state dict (model_best.pth)": lambda sd: sd,
    "checkpoint.pth: state_dict with module. prefix": lambda sd: {
        "epoch": 3, "model": "pose_gtpt_t_human", "perf": 0.5,
        "state_dict": OrderedDict(("module." + k, v) for k, v in sd.items()), "best_state_dict": sd},
    "best_state_dict only": lambda sd: {"best_state_dict": sd, "epoch": 1},
    "mmpose-style model entry": lambda sd: {"model": sd, "meta": {"note": "x"}},
    "EMA branch only": lambda sd: OrderedDict((k, v) for k, v in sd.items() if k.startswith("ema_")),
    "EMA only, without mask buffers or BN counters": lambda sd: OrderedDict(
        (k, v) for k, v in sd.items() if k.startswith("ema_") and not k.endswith((".mask", "num_batches_tracked"))),
    "float16 storage": lambda sd: OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items()),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_official_format_loads_the_ema_branch(fmt, official, reference_output, fixture_input, tmp_path):
    path = _save(FORMATS[fmt](official), tmp_path / "ckpt.pth")
    model = create_model(checkpoint=path)
    assert model.cfg.name == "gtpt_t_coco"
    with torch.no_grad():
        x, _ = model(fixture_input)
    tol = 0.05 if "float16" in fmt else 1e-4
    assert (x - reference_output).abs().max().item() <= tol


def test_our_own_format_round_trips(official, fixture_input, tmp_path):
    model = create_model(checkpoint=_save(official, tmp_path / "official.pth"))
    ours = tmp_path / "ours.pth"
    save_checkpoint(model, ours, meta={"what": "test"})
    state, meta = read_checkpoint(ours)
    assert meta == {"what": "test"}
    assert all(k.startswith("ema_") for k in state)
    again = create_model("gtpt_t_coco", checkpoint=ours)
    with torch.no_grad():
        assert torch.equal(model(fixture_input)[0], again(fixture_input)[0])
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temporary file"


def test_student_only_checkpoint_is_used_with_a_warning(official, caplog, tmp_path):
    student = OrderedDict((k, v) for k, v in official.items() if not k.startswith("ema_"))
    model = create_model(checkpoint=_save(student, tmp_path / "student.pth"))
    assert model.cfg.name == "gtpt_t_coco"
    assert "student weights" in caplog.text


# ---------------------------------------------------------------------------------------------- bad input
def _error(**kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        create_model(**kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_weights_of_another_variant_name_the_right_one(official, tmp_path):
    message = _error(name="gtpt_s_coco", checkpoint=_save(official, tmp_path / "t.pth"))
    assert "holds gtpt_t_coco weights" in message and "--model gtpt_t_coco" in message


def test_missing_keys_are_listed(official, tmp_path):
    broken = OrderedDict((k, v) for k, v in official.items() if ".layers.2." not in k)
    message = _error(checkpoint=_save(broken, tmp_path / "missing.pth"))
    assert "missing key(s)" in message and "ema_features.transformer.layers.2" in message


def test_unexpected_keys_are_listed(official, tmp_path):
    extra = OrderedDict(official)
    extra["ema_features.surprise.weight"] = torch.zeros(3)
    message = _error(checkpoint=_save(extra, tmp_path / "extra.pth"))
    assert "unexpected key(s)" in message and "ema_features.surprise.weight" in message


def test_wrong_shape_is_reported(official, tmp_path):
    bad = OrderedDict(official)
    bad["ema_mlp_head_x.1.weight"] = torch.zeros(100, 128)
    message = _error(checkpoint=_save(bad, tmp_path / "shape.pth"))
    assert "ema_mlp_head_x.1.weight" in message and "(384, 128)" in message


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    assert "not a" in _error(checkpoint=junk)


def test_truncated_checkpoint(official, tmp_path):
    full = _save(official, tmp_path / "full.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "truncated" in _error(checkpoint=cut)


def test_missing_file(tmp_path):
    assert "does not exist" in _error(checkpoint=tmp_path / "nope.pth")


def test_a_non_gtpt_state_dict(tmp_path):
    message = _error(checkpoint=_save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth"))
    assert "no GTPT weights" in message


class _Payload:
    """Unpickling this would run os.system; weights_only must refuse it before anything executes."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_arbitrary_pickle_is_refused_never_executed(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": _Payload(marker)}, tmp_path / "evil2.pth")
    for path in (evil, tmp_path / "evil2.pth"):
        message = _error(checkpoint=path)
        assert "refusing" in message or "not a" in message
    assert not marker.exists(), "a pickled payload was executed"


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(UnknownModelError, match="gtpt_t_coco, gtpt_s_coco"):
        create_model("gtpt_xl_coco")
