"""calibrate judges its budget on a bootstrap lower bound of ΔAP (calib.noise): known answers, a margin that grows as
the measured set shrinks and vanishes for FP32-equal predictions, and a search that engages on a small noisy set
where the point estimate alone would stop. Issue 17 item 2-3."""

from __future__ import annotations

import numpy as np
import pytest

from gtpt_deploy.calib.budget import bootstrap_judge, search
from gtpt_deploy.calib.evalset import CropScore
from gtpt_deploy.calib.int8 import Int8Recipe, collect_ranges
from gtpt_deploy.calib.noise import ApBound, MeasuredPersons, PersonRecords, lower_bound, resampled_ap
from gtpt_deploy.coco import load_annotations
from gtpt_deploy.keypoints import dataset_for
from gtpt_deploy.metadata import read_onnx_meta
from gtpt_deploy.runtime.crops import person_crops
from gtpt_fixtures import COCO_VAL, COCO_VAL_ANN
from test_calib import _grouped_model

IMAGES = COCO_VAL / "images"
SIGMAS = dataset_for(17).sigmas          # COCO OKS sigmas (0.026 ...)


def _records(score, oks):
    score, oks = np.asarray(score, float), np.asarray(oks, float)
    return PersonRecords(score, oks, np.full(len(score), -1.0))


def test_resampled_ap_known_answers():
    """All found: AP 1. One of two found, ranked first: precision 1 up to recall 0.5 (51 of 101 recall points)."""
    r = _records([0.9, 0.1], [1.0, 0.0])
    assert resampled_ap(r, np.array([[0, 0], [0, 1], [1, 1]])) == pytest.approx([1.0, 51 / 101, 0.0])
    ranked_last = _records([0.1, 0.9], [1.0, 0.0])        # the miss first: precision 1/2 at recall 1/2
    assert resampled_ap(ranked_last, np.array([[0, 1]]))[0] == pytest.approx(0.5 * 51 / 101)
    ignored = PersonRecords(np.array([0.9, 0.8]), np.array([1.0, 0.0]), np.array([-1.0, 1.0]))
    assert resampled_ap(ignored, np.array([[0, 1]]))[0] == pytest.approx(51 / 101)    # no false positive


def test_bound_known_answer_two_persons():
    """FP32 finds both, INT8 one (the better-scored): resample ΔAP* is 0, -50/101, -1 with probabilities 1/4, 1/2,
    1/4, so the 5% quantile is -1 and the margin is -50/101 - (-1) = 51/101 exactly."""
    b = lower_bound(_records([0.9, 0.8], [1, 1]), _records([0.9, 0.1], [1, 0]), delta_ap=-0.5, seed=3)
    assert b.margin == pytest.approx(51 / 101) and b.lower == pytest.approx(-0.5 - 51 / 101) and b.persons == 2


def _half_found(n, seed=0):
    """FP32 finds all n persons; INT8 finds a random half (found ones ranked first): ΔAP ~ -(1 - p), p ~ 0.5."""
    found = np.random.default_rng(seed).random(n) < 0.5
    return _records(np.ones(n), np.ones(n)), _records(np.where(found, 0.9, 0.1), found.astype(float)), found


def test_bound_matches_the_normal_margin_and_grows_as_the_set_shrinks():
    """AP here is the found share p (to COCO's 0.01 recall grid): the 95% one-sided margin is 1.645 sqrt(p(1-p)/n)."""
    margins = {}
    for n in (400, 25):
        base, cand, found = _half_found(n)
        b = lower_bound(base, cand, delta_ap=0.0, seed=0)
        p = found.mean()
        assert b.margin == pytest.approx(1.6449 * np.sqrt(p * (1 - p) / n), rel=0.2), n
        margins[n] = b.margin
    assert margins[25] > 3 * margins[400]                          # ~ sqrt(400 / 25) = 4


def test_bound_is_seeded_and_never_above_the_point():
    rng = np.random.default_rng(1)
    base, cand = _records(rng.random(29), rng.random(29)), _records(rng.random(29), rng.random(29))
    a, b = lower_bound(base, cand, 0.01, seed=7), lower_bound(base, cand, 0.01, seed=7)
    assert a == b and a.lower <= a.delta_ap
    assert lower_bound(base, cand, 0.01, confidence=0.99).lower < lower_bound(base, cand, 0.01, confidence=0.8).lower


def test_identical_predictions_have_no_margin_and_always_pass():
    """An all-float candidate predicts exactly what FP32 does: every resample is 0, the bound is the point (0)."""
    crops = person_crops(COCO_VAL_ANN, IMAGES, num=5)
    gt = load_annotations(COCO_VAL_ANN)
    kpts = np.random.default_rng(0).random((5, 17, 3)) * 300
    s = CropScore(0.7, kpts, np.zeros((5, 17, 2), np.int32))
    b = bootstrap_judge(crops, gt)(s, s)
    assert b == ApBound(0.0, 0.0, 5) and b.within(0.0)
    same = _records(np.random.default_rng(2).random(3), np.random.default_rng(3).random(3))
    assert lower_bound(same, same, 0.0).lower == 0.0


@pytest.mark.parametrize("noise, tol", [(0.02, 1e-9), (0.05, 0.01)])
def test_records_reproduce_cocoeval_on_the_val_subset(noise, tol):
    """The bootstrap's AP of the whole set equals COCOeval's (OKS, rescoring, NMS, ignored annotations included)
    for predictions within a few % of the box size of their person; far-off ones (5%) can match another person in
    COCOeval's greedy matching, which the bootstrap leaves out: still within 0.01."""
    from gtpt_deploy.coco import to_coco_results
    from gtpt_deploy.eval.metrics import evaluate

    gt = load_annotations(COCO_VAL_ANN)
    crops = person_crops(gt, IMAGES)
    measured = MeasuredPersons(crops, gt)
    kpts = np.stack([np.asarray(p["keypoints"], float).reshape(17, 3) for p in measured.persons])
    rng = np.random.default_rng(0)
    area = np.array([p["area"] for p in measured.persons])[:, None, None]
    kpts[..., :2] += rng.normal(0, 1, kpts[..., :2].shape) * np.sqrt(area) * noise
    kpts[..., 2] = rng.random(kpts.shape[:2])                     # confidences: the ranking COCO AP depends on
    want = evaluate(gt, to_coco_results(crops.image_ids, kpts, np.ones(len(kpts)), crops.centers, crops.scales)).AP
    got = resampled_ap(measured.records(kpts), np.arange(len(kpts))[None])[0]
    assert 0.5 < want < 0.95 and got == pytest.approx(want, abs=tol)


def _persons_score(persons, quantized_of, spread):
    """A scorer: AP 0.8 - 0.001 per quantized layer (the point estimate alone meets 0.005 for every recipe), and
    per-person keypoints moved (alternately nearer to and farther from the GT) by ``spread`` per quantized layer
    beyond two, confidences from the same OKS-like falloff (so the ranking moves too)."""
    gt = np.stack([np.asarray(p["keypoints"], float).reshape(17, 3) for p in persons])
    area = np.array([p["area"] for p in persons])[:, None]
    base = np.sqrt(-np.log(0.75) * 2 * area * (2 * np.asarray(SIGMAS)) ** 2)    # OKS 0.75 for FP32
    sign = np.where(np.arange(len(persons)) % 2 == 0, 1.0, -1.0)[:, None]

    def score(model):
        q = quantized_of(model)
        k = gt.copy()
        k[..., 0] += base * (1 + sign * spread * max(0, q - 2))
        k[..., 2] = 1 / (1 + np.abs(k[..., 0] - gt[..., 0]) / np.sqrt(area))
        return CropScore(0.8 - 0.001 * q, k, np.zeros(k.shape[:2] + (2,), np.int32))

    return score


def _quantized(model):
    consts = {t.name for t in model.graph.initializer}
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    return sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in dq)


def test_search_engages_on_a_small_noisy_set_where_the_point_estimate_would_not(tmp_path):
    """8 persons, point ΔAP -0.004 (within 0.005), but persons swing ±: the bound misses, the search runs until the
    predictions equal FP32's (margin 0). Judged on the point alone, the default recipe would have been kept."""
    model = _grouped_model(tmp_path / "g.onnx")
    gt = load_annotations(COCO_VAL_ANN)
    crops = person_crops(gt, IMAGES, num=8)
    data = collect_ranges(model, crops.crops, "minmax")
    persons = MeasuredPersons(crops, gt).persons
    scorer = _persons_score(persons, _quantized, 0.5)
    lines: list[str] = []
    res = search(model, data, Int8Recipe(), crops, read_onnx_meta(model), gt, 0.005, report=lines.append,
                 scorer=scorer, judge=bootstrap_judge(crops, gt))
    first = res.steps[0]
    assert first.delta_ap == pytest.approx(-0.004) and first.lower < -0.005       # point met, bound missed
    assert len(res.steps) >= 2 and res.bound.within(0.005) and res.bound.margin == 0.0
    assert any("lower bound" in x and "on 8 persons" in x for x in lines)

    def point_only(f, s):
        return ApBound(s.ap - f.ap, s.ap - f.ap, len(persons))

    res = search(model, data, Int8Recipe(), crops, read_onnx_meta(model), gt, 0.005, report=lines.append,
                 scorer=scorer, judge=point_only)
    assert len(res.steps) == 1                                                       # the old rule stopped here


def test_persons_needed_to_resolve_a_budget():
    """One person lost moves AP by ~1/n: a set resolves the budget from ceil(1 / budget) persons on."""
    from gtpt_deploy.calib.calibrate import persons_to_resolve

    assert persons_to_resolve(0.005) == 200 and persons_to_resolve(0.01) == 100 and persons_to_resolve(0.003) == 334
    assert persons_to_resolve(None) == 0 and persons_to_resolve(0.0) == 0
