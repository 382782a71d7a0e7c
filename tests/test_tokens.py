"""Pruning-aware parity (kept tokens per stage) and validate's refusal of a broken baseline."""

from __future__ import annotations

import numpy as np
import pytest

from gtpt_deploy.errors import GtptError
from gtpt_deploy.eval.tokens import kept_token_agreement, topk_index_outputs
from gtpt_deploy.eval.validate import ValidationRow, _check_baseline


def test_kept_token_agreement_ignores_order_and_counts_overlap():
    base = [np.array([[0, 1, 2, 3], [4, 5, 6, 7]]), np.array([[[1, 2], [3, 4]]] * 2)]
    cand = [np.array([[3, 2, 1, 0], [4, 5, 8, 9]]), np.array([[[2, 1], [3, 9]]] * 2)]
    assert kept_token_agreement(base, cand) == pytest.approx((0.75, 0.75))
    with pytest.raises(ValueError):
        kept_token_agreement(base, cand[:1])


def test_topk_outputs_added_to_a_copy_only(fake_dyn):
    import onnx
    from onnx import helper

    m = onnx.load(str(fake_dyn))
    m.graph.node.append(helper.make_node("TopK", ["fx", "k"], ["v", "i"], axis=-1))
    copy, names = topk_index_outputs(m)
    assert names == ["i"] and "i" in {o.name for o in copy.graph.output}
    assert "i" not in {o.name for o in m.graph.output}


def _row(ap, agree):
    return ValidationRow("a.onnx", "ort", {}, ap, 0.0, agree, 0.0, 0.0, True, 1.0)


def test_broken_baseline_is_an_error_not_within_budget():
    _check_baseline([_row(0.8, 1.0), _row(0.8, 0.9)])
    with pytest.raises(GtptError, match="AP NaN"):
        _check_baseline([_row(float("nan"), 1.0), _row(0.8, 0.9)])
    with pytest.raises(GtptError, match="agrees with no candidate"):
        _check_baseline([_row(0.8, 1.0), _row(0.1, 0.0), _row(0.1, 0.0)])


def test_kept_token_agreement_of_gtpt_stages_compares_token_ids():
    """Later stages index their parent's score-sorted sequence: the same plain-stage set in another order must not
    read as different transition/group tokens (validate's INT8 row read 0.71 / 0.66 for the sample that way)."""
    base = [np.array([[5, 3, 9, 1]]), np.array([[[0, 1], [2, 3], [1, 2]]]), np.array([[[1], [0], [1]]])]
    cand = [np.array([[3, 5, 9, 1]]), np.array([[[1, 0], [2, 3], [2, 0]]]), np.array([[[1], [0], [0]]])]
    assert kept_token_agreement(base, cand) == pytest.approx((1.0, 1.0, 1.0))
    other = [cand[0], np.array([[[1, 0], [2, 3], [2, 3]]]), cand[2]]       # row 2 keeps token 1 instead of 3
    assert kept_token_agreement(base, other)[1] == pytest.approx((1 + 1 + 0.5) / 3)


def test_predictor_keeps_the_tokens_of_the_original_crops_only(sample_onnx):
    """Predictor.kept_tokens: the flip test's mirrored rows and a static batch's padding rows are left out, so the
    tokens of N crops are those of each crop run alone (issue 19: one crop -> pose path records them)."""
    import numpy as np

    from gtpt_deploy.runners import create_runner
    from gtpt_deploy.runtime.predictor import Predictor

    crops = np.random.default_rng(0).normal(size=(3, 3, 256, 192)).astype(np.float32)
    with create_runner(sample_onnx, kept_tokens=True, threads=1) as runner:
        alone = [runner.infer_kept(c[None])[2] for c in crops]
        predictor = Predictor(runner, flip=True, prefetch=0)
        assert predictor.kept_tokens() is None                      # nothing ran yet
        predictor.infer_crops(crops[:2])
        predictor.infer_crops(crops[2:])
        kept = predictor.kept_tokens()
    assert [k.shape[0] for k in kept] == [3, 3, 3]
    for i, one in enumerate(alone):
        assert all(np.array_equal(k[i], o[0]) for k, o in zip(kept, one))
    with create_runner(sample_onnx, threads=1) as runner:           # not recording: nothing kept
        predictor = Predictor(runner, flip=False, prefetch=0)
        predictor.infer_crops(crops[:1])
        assert predictor.kept_tokens() is None
