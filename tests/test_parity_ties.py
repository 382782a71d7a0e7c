"""Tie-aware export parity (issue 17): a correct export is never refused for a top-k tie, a wrong one still fails.

GTPT-T with random weights; the wrong graphs are built in memory (one changed weight, a wrong k) and checked with
``check_parity`` directly, on a few crops, to stay fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from gtpt_deploy.errors import ExportError
from gtpt_deploy.export.onnx import _torch_export, check_parity, export_onnx
from gtpt_deploy.export.parity import MAX_ABS_DIFF, TIE_RTOL, stage_names
from gtpt_deploy.export.samples import load_samples
from gtpt_deploy.models import create_model, save_checkpoint


def _tied(seed: int = 0) -> torch.nn.Module:
    """GTPT-T whose plain-stage pruning scores are all exactly 0: layer 3's queries are zeroed, so every attention
    logit of that layer is 0 and all 256 tokens tie. PyTorch and ONNX Runtime then break the tie differently
    (ONNX Runtime keeps the lowest indices), on every input."""
    torch.manual_seed(seed)
    net = create_model("gtpt_t_coco")
    with torch.no_grad():
        net.ema_features.transformer.layers[3][0].fn.fn.to_qkv.weight[:net.cfg.dim] = 0
    return net


@pytest.fixture(scope="module")
def tied_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tied")
    save_checkpoint(_tied(), folder / "tied.pth")
    return export_onnx(folder / "tied.pth", output=folder / "tied.onnx")


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    real, _ = load_samples(None, (256, 192))
    return real[:3], np.random.default_rng(0).standard_normal((2, 3, 256, 192)).astype(np.float32)


def test_exact_ties_pass_export_and_are_reported(tied_export):
    r = tied_export                      # before tie-aware parity: ExportError, max |diff| ~1, argmax ~50%
    assert all(c.passed for c in r.parity)
    real, rand = r.parity
    assert len(real.near_ties) == 12 and {t.stage for t in real.near_ties} == {"plain"}
    assert all(t.gap == 0.0 and t.forced_max_abs_diff <= MAX_ABS_DIFF and t.forced_argmax_agreement == 1.0
               for t in real.near_ties)
    # every random input ties, so the redraws ran out: reported, and all of them checked with PyTorch's tokens
    assert rand.redrawn > 0 and len(rand.near_ties) == 4 + rand.redrawn and rand.samples == 0
    report = json.loads(r.report_path.read_text())
    assert report["tolerance"]["tie_rtol"] == TIE_RTOL
    assert len(report["near_ties"]) == 12 + len(rand.near_ties) and report["near_ties"][0]["stage"] == "plain"
    assert "near-ties" in r.format_report() and "plain x12" in r.format_report()


def test_a_near_tie_is_still_checked_with_pytorchs_tokens(crops):
    """A tie does not hide a broken graph: with a changed head weight the forced-token check fails."""
    net = _tied()
    graph = _torch_export(net, 1, 17)
    _change_weight(graph, _matmul_weights(graph)[-1])
    case = check_parity(net, graph.SerializeToString(), crops[0][:2], crops[1][:0], 1)[0]
    assert not case.passed and case.near_ties
    assert "near-tie at stage 'plain'" in case.failure() and "kept tokens forced" in case.failure()


def _change_weight(graph: onnx.ModelProto, name: str, everywhere: bool = False) -> None:
    """Change one element of weight ``name`` by 5 % + 0.05, or (``everywhere``) every element by ~50 % noise."""
    init = next(i for i in graph.graph.initializer if i.name == name)
    w = numpy_helper.to_array(init).copy()
    if everywhere:
        w += 0.5 * w.std() * np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype)
    else:
        w.flat[0] = w.flat[0] * 1.05 + 0.05
    init.CopyFrom(numpy_helper.from_array(w, name))


def _matmul_weights(graph: onnx.ModelProto) -> list[str]:
    """MatMul weights in graph order: the first is a transformer projection before any pruning stage, the last
    the y head's (after every stage)."""
    inits = {i.name for i in graph.graph.initializer}
    return [n.input[1] for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def test_one_changed_weight_after_pruning_fails_strictly(seed0_t_checkpoint, crops):
    net = create_model(checkpoint=seed0_t_checkpoint)
    graph = _torch_export(net, 1, 17)
    _change_weight(graph, _matmul_weights(graph)[-1])
    cases = check_parity(net, graph.SerializeToString(), *crops, 1)
    assert not any(c.passed for c in cases) and not any(c.near_ties for c in cases)
    assert "with the same kept tokens at every stage" in cases[0].failure()


def test_one_changed_weight_before_pruning_fails_at_its_stage(seed0_t_checkpoint, crops):
    net = create_model(checkpoint=seed0_t_checkpoint)
    graph = _torch_export(net, 1, 17)
    _change_weight(graph, _matmul_weights(graph)[0], everywhere=True)
    cases = check_parity(net, graph.SerializeToString(), *crops, 1)
    assert not any(c.passed for c in cases)
    assert re.search(r"kept tokens first differ at stage '(plain|transition|group)[^']*', where PyTorch's top-k "
                     r"boundary gap \S+ \(largest \|score\| \S+\) is no near-tie", cases[0].failure())


def test_a_wrong_k_fails_naming_the_stage(seed0_t_checkpoint, crops):
    net = create_model(checkpoint=seed0_t_checkpoint)
    wrong = create_model(checkpoint=seed0_t_checkpoint)
    wrong.ema_features.transformer.k = {**net.cfg.k_table, "transition": (75, 75, 75)}
    cases = check_parity(net, _torch_export(wrong, 1, 17).SerializeToString(), *crops, 1)
    assert not any(c.passed for c in cases)
    assert "first differ at stage 'transition': PyTorch keeps 76 tokens per row, the graph 75" in cases[0].failure()


def test_export_refuses_a_real_mismatch_naming_the_stage(seed0_t_checkpoint, tmp_path, monkeypatch):
    """Through export_onnx: a graph whose plain-stage scores differ from PyTorch's is refused with the stage."""
    import gtpt_deploy.export.onnx as ex

    real_export = ex._torch_export

    def broken(net, batch, opset):
        graph = real_export(net, batch, opset)
        _change_weight(graph, _matmul_weights(graph)[0], everywhere=True)
        return graph

    monkeypatch.setattr(ex, "_torch_export", broken)
    with pytest.raises(ExportError, match="kept tokens first differ at stage '(plain|transition|group)"):
        export_onnx(seed0_t_checkpoint, output=tmp_path / "t.onnx", simplify=False)
    assert list(tmp_path.iterdir()) == []


def test_stage_names_follow_the_topk_nodes():
    assert stage_names(create_model("gtpt_t_coco").cfg) == ["plain", "transition", "group"]
    assert stage_names(create_model("gtpt_t_wholebody").cfg) == [
        "plain", "transition0", "transition1", "transition2", "group0", "group1", "group2"]


def test_kept_tokens_compare_as_token_ids_not_positions():
    """Two runtimes that keep the same plain-stage set in another (score) order index the transition stage
    differently for the same tokens: compared as image-token ids they agree. (Positional comparison flagged the
    random-weight whole-body export of tests/test_export.py as a mismatch at 'group1'.)"""
    from gtpt_deploy.export.parity import token_ids

    torch_side = [np.array([[5, 3, 9, 1]]), np.array([[[0, 1], [2, 3], [1, 2]]]), np.array([[[1], [0], [1]]])]
    ort_side = [np.array([[3, 5, 9, 1]]), np.array([[[1, 0], [2, 3], [2, 0]]]), np.array([[[1], [0], [0]]])]
    stages = ["plain", "transition", "group"]
    for a, b in zip(token_ids(torch_side, stages), token_ids(ort_side, stages)):
        assert [set(r) for r in a.reshape(-1, a.shape[-1]).tolist()] == \
            [set(r) for r in b.reshape(-1, b.shape[-1]).tolist()]
    assert token_ids(torch_side, stages)[2].tolist() == [[[3], [9], [9]]]


def test_an_argmax_swap_between_tied_bins_is_an_output_near_tie():
    from gtpt_deploy.export.parity import _argmax_tie

    ref = np.zeros((1, 2, 6), np.float32)
    ref[0, 0, 2], ref[0, 0, 4] = 3.0, 3.0 - 5e-5          # bins 2 and 4 within 2 x 1e-4: may swap
    ref[0, 1, 1] = 2.0
    got = ref.copy()
    got[0, 0, 4] += 6e-5
    assert _argmax_tie(0, (ref,), (got,)) == ("output argmax", pytest.approx(5e-5, rel=1e-2), 3.0)
    far = ref.copy()
    far[0, 1, 5] = 2.0 + 1e-5                             # bin 5 was 2.0 below bin 1 in PyTorch: a real change
    assert _argmax_tie(0, (ref,), (far,)) is None


def test_an_input_on_a_topk_boundary_passes_like_the_issues_gtpt_s():
    """The issue's situation, made on purpose: bisect between two random inputs whose kept tokens differ until
    the last two float32 inputs keep different tokens at one stage (PyTorch's boundary gap ~1 eps, like the
    issue's 7e-7 at a score of 4.3). PyTorch's set flips between the two inputs, ONNX Runtime's flips at a slightly
    different point - so it keeps other tokens than PyTorch on one of them. The old strict check fails there;
    tie-aware parity passes and reports the near-tie."""
    from gtpt_deploy.eval.compare import compare_runners
    from gtpt_deploy.export.parity import token_ids
    from gtpt_deploy.metadata import ModelMeta, write_onnx_meta
    from gtpt_deploy.models.tokens import recording_topk
    from gtpt_deploy.runners import create_runner

    net = create_model(checkpoint=Path(__file__).resolve().parents[1] / "models" / "gtpt_t_coco_sample.pth")
    graph = _torch_export(net, 1, 17)
    write_onnx_meta(graph, ModelMeta.for_config(net.cfg, 1))
    stages = stage_names(net.cfg)

    def kept(x: np.ndarray) -> list:
        with recording_topk() as calls, torch.inference_mode():
            net(torch.from_numpy(x[None]))
        return [np.sort(i.reshape(-1, i.shape[-1]), -1).tolist() for i in token_ids([c[1].numpy() for c in calls],
                                                                                     stages)]

    a, b = np.random.default_rng(5).standard_normal((2, 3, 256, 192)).astype(np.float32)
    lo, hi, ka = 0.0, 1.0, kept(a)
    assert ka != kept(b)
    for _ in range(60):
        mid = (lo + hi) / 2
        if kept(((1 - mid) * a + mid * b).astype(np.float32)) == ka:
            lo = mid
        else:
            hi = mid
    ends = np.stack([((1 - t) * a + t * b).astype(np.float32) for t in (lo, hi)])
    cases = [check_parity(net, graph.SerializeToString(), x[None], x[:0], 1)[0] for x in ends]
    assert all(c.passed for c in cases)
    tied = [i for i, c in enumerate(cases) if c.near_ties]
    assert len(tied) == 1
    assert cases[tied[0]].near_ties[0].gap <= TIE_RTOL * cases[tied[0]].near_ties[0].score
    with create_runner(net) as r1, create_runner(graph.SerializeToString()) as r2:
        old = compare_runners(r1, r2, ends[tied[0]][None], batch=1)      # the check before issue 17
    assert old.max_abs_diff > MAX_ABS_DIFF
