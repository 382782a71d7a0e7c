"""evaluate / wholebody_eval: COCO AP reference, pinned xtcocotools whole-body numbers, rescoring, OKS NMS, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.errors import AnnotationError
from gtpt_deploy.coco import oks_nms, rescore, to_coco_results
from gtpt_deploy.eval.metrics import Metrics, WholeBodyMetrics, evaluate
from gtpt_deploy.keypoints import COCO, WHOLEBODY

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def coco_files(shared):
    d = shared / "data" / "coco_val2017_pose" / "originals"
    return d / "mmpose_tests_data_coco_test_coco.json", d / "xtcocoapi_annotations_example_coco_preds.json"


@pytest.fixture(scope="module")
def wb_dir(shared):
    return shared / "data" / "coco_wholebody_val_example"


def test_coco_reference_ap(coco_files):
    # pycocotools 2.0.11 reference in shared/data/coco_val2017_pose/SOURCE.md (xtcocotools gives the same).
    m = evaluate(*coco_files)
    assert isinstance(m, Metrics)
    assert m.to_dict() == pytest.approx({"AP": 0.8608896054440609, "AP50": 0.993145468392993,
                                         "AP75": 0.9108910891089109, "APm": 0.7755775577557756,
                                         "APl": 0.9372524752475248, "AR": 0.875}, abs=1e-9)
    assert [round(v, 3) for v in m.to_dict().values()] == [0.861, 0.993, 0.911, 0.776, 0.937, 0.875]


# Pinned from xtcocotools 1.14.3 built from source (pip --no-binary xtcocotools, numpy 1.26.4, Python 3.11) in a
# throwaway venv, running GTPT's lib/dataset/coco_wholebody.py `_do_python_keypoint_eval` calls:
# COCOeval(coco, coco.loadRes(pred), 'keypoints_<part>', sigmas[part], use_area=True) on
# coco_wholebody_val_v1.0_5img.json. Order: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl.
_BODY = [0.853921820753504, 1.0, 0.9352310231023103, 0.7765442972868715, 0.9227740905958729, 0.8958333333333334,
         1.0, 0.9583333333333334, 0.8272727272727272, 0.953846153846154]
_WHOLE = [0.6420759218779022, 1.0, 0.8410891089108912, 0.6764504307573613, 0.6303173394262502, 0.7041666666666666,
          1.0, 0.875, 0.7454545454545454, 0.6692307692307693]
XTCOCOTOOLS = {
    # has per-part scores (foot_score, ...): xtcocotools ranks each part by its own score
    "COCO-WholeBody_evaluation_example_pred.json": {
        "body": _BODY,
        "foot": [0.9696369636963696, 1.0, 1.0, 0.9574257425742574, 0.9791336633663366, 0.975, 1.0, 1.0,
                 0.9571428571428571, 0.9888888888888889],
        "face": [0.733007586472933, 1.0, 0.8415841584158416, 0.5277227722772277, 0.7500825082508251,
                 0.7461538461538462, 1.0, 0.8461538461538461, 0.7, 0.76],
        "lefthand": [0.5632763276327633, 0.8163816381638163, 0.5841584158415841, 0.7643564356435644,
                     0.4972772277227723, 0.575, 0.8333333333333334, 0.5833333333333334, 0.8, 0.4999999999999999],
        "righthand": [0.5349316360207449, 0.6623762376237624, 0.5683168316831683, 0.8267326732673267,
                      0.41753889674681754, 0.5615384615384615, 0.6923076923076923, 0.6153846153846154, 0.825,
                      0.44444444444444436],
        "wholebody": _WHOLE,
    },
    # same keypoints, no per-part scores: every part ranked by `score`
    "xtcocoapi_annotations_example_wholebody_preds.json": {
        "body": _BODY,
        "foot": [0.9571054164239954, 1.0, 0.9854397204426324, 0.9237623762376238, 0.9790664780763791, 0.975, 1.0,
                 1.0, 0.9571428571428571, 0.9888888888888889],
        "face": [0.727013201320132, 1.0, 0.8160066006600659, 0.699009900990099, 0.751909476661952,
                 0.7461538461538462, 1.0, 0.8461538461538461, 0.7, 0.76],
        "lefthand": [0.5487426599802838, 0.793729372937294, 0.5742574257425742, 0.7643564356435644,
                     0.4774917491749175, 0.575, 0.8333333333333334, 0.5833333333333334, 0.8, 0.4999999999999999],
        "righthand": [0.49784103410341035, 0.6445644564456446, 0.5262526252625263, 0.8267326732673267,
                      0.3630964167845356, 0.5615384615384615, 0.6923076923076923, 0.6153846153846154, 0.825,
                      0.44444444444444436],
        "wholebody": _WHOLE,
    },
}


@pytest.mark.parametrize("pred", sorted(XTCOCOTOOLS))
def test_wholebody_matches_xtcocotools(wb_dir, pred):
    m = evaluate(wb_dir / "coco_wholebody_val_v1.0_5img.json", wb_dir / "originals" / pred)
    assert isinstance(m, WholeBodyMetrics)
    got = m.to_dict(full=True)
    for part, ref in XTCOCOTOOLS[pred].items():
        assert list(got[part].values()) == pytest.approx(ref, abs=1e-6), part


def test_rescore():
    k = np.zeros((3, 4, 3))
    k[0, :, 2] = [0.5, 0.3, 0.005, 0.01]     # only 0.5 and 0.3 are > 0.01 -> mean 0.4
    k[1, :, 2] = [0.0, 0.0, 0.01, 0.0]       # none valid -> 0
    k[2, :, 2] = [1.0, 1.0, 1.0, 0.5]
    np.testing.assert_allclose(rescore(k, [0.5, 1.0, 0.8]), [0.2, 0.0, 0.7])


def _person(x0: float, y0: float, n: int = 17) -> np.ndarray:
    k = np.zeros((n, 3))
    k[:, 0] = x0 + np.arange(n) * 3.0
    k[:, 1] = y0 + np.arange(n) * 5.0
    k[:, 2] = 0.9
    return k


def test_oks_nms_suppresses_near_duplicates_only():
    sig = np.asarray(COCO.sigmas)
    a = _person(100, 100)
    dup = a.copy()
    dup[:, :2] += 0.5          # OKS ~ 1 with a
    far = _person(400, 100)    # OKS ~ 0
    mid = a.copy()
    mid[:, 0] += 9.0           # area 1e4: OKS between 0.5 and 0.9 -> kept
    kpts = np.stack([dup, a, far, mid])
    keep = oks_nms(kpts, scores=[0.8, 0.9, 0.5, 0.7], areas=[1e4] * 4, sigmas=sig, thresh=0.9)
    assert keep == [1, 3, 2]


def test_oks_nms_formula():
    # one joint, sigma 0.1: OKS = exp(-d^2 / (0.2^2) / ((a1 + a2)/2) / 2)
    from gtpt_deploy.coco import oks_iou
    d = 3.0
    oks = oks_iou(np.array([[0.0, 0.0]]), np.array([[[d, 0.0]]]), 100.0, np.array([300.0]), np.array([0.1]))
    assert oks[0] == pytest.approx(np.exp(-d * d / 0.04 / 200.0 / 2))
    # threshold is strict: OKS exactly at the threshold is kept
    assert oks_nms(np.array([[[0.0, 0.0]], [[d, 0.0]]]), [1.0, 0.5], [100.0, 300.0], [0.1], thresh=oks[0]) == [0, 1]


def test_to_coco_results_rescoring_nms_and_wholebody_split():
    a = _person(100, 100)
    kpts = np.stack([a, a + [0.2, 0.2, 0.0], _person(300, 50)])
    centers, scales = np.zeros((3, 2)), np.full((3, 2), 0.5)
    recs = to_coco_results([7, 7, 8], kpts, [0.5, 0.9, 1.0], centers, scales)
    assert [(r["image_id"], round(r["score"], 6)) for r in recs] == [(7, 0.81), (8, 0.9)]
    assert len(recs[0]["keypoints"]) == 51 and recs[0]["center"] == [0.0, 0.0] and recs[0]["scale"] == [0.5, 0.5]
    json.dumps(recs)  # JSON-ready

    wb = np.stack([_person(100, 100, 133)])
    (r,) = to_coco_results([1], wb, [1.0], np.zeros((1, 2)), np.ones((1, 2)), dataset=WHOLEBODY)
    assert [len(r[f]) for f in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")] == \
        [51, 18, 204, 63, 63]
    assert r["foot_kpts"][:2] == wb[0, 17, :2].tolist()


def test_results_round_trip_gives_ap_1(coco_files):
    gt = json.loads(coco_files[0].read_text())
    anns = [a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    kpts[..., 2] = 0.9
    recs = to_coco_results([a["image_id"] for a in anns], kpts, np.ones(len(anns)), np.zeros((len(anns), 2)),
                           np.ones((len(anns), 2)))
    assert evaluate(gt, recs).AP == pytest.approx(1.0)
    assert evaluate(gt, []).AP == 0.0


@pytest.mark.parametrize("case, match", [
    ("notjson", "invalid JSON"),
    ("noann", "'annotations' is a list"),
    ("noimages", "'images' is a list"),
    ("unknown_image", "image_id of the annotation file"),
    ("short_kpts", "flat list of 51 numbers"),
    ("swapped", "results file"),
    ("results_dict", "annotation file: pass ANN first"),
])
def test_malformed_files(tmp_path, coco_files, case, match):
    gt = json.loads(coco_files[0].read_text())
    res = json.loads(coco_files[1].read_text())
    ann_p, res_p = tmp_path / "ann.json", tmp_path / "res.json"
    if case == "notjson":
        ann_p.write_text("{not json")
    elif case in ("noann", "noimages"):
        del gt["annotations" if case == "noann" else "images"]
    elif case == "unknown_image":
        res[3]["image_id"] = 123456789
    elif case == "short_kpts":
        res[0]["keypoints"] = res[0]["keypoints"][:-3]
    if case != "notjson":
        ann_p.write_text(json.dumps(gt))
    res_p.write_text(json.dumps(res))
    a, r = (res_p, ann_p) if case == "swapped" else (ann_p, res_p)
    if case == "results_dict":
        r = ann_p
    with pytest.raises(AnnotationError, match=match) as e:
        evaluate(a, r)
    assert "\n" not in str(e.value)


def test_wholebody_results_need_part_fields(wb_dir, tmp_path):
    res = json.loads((wb_dir / "originals" / "xtcocoapi_annotations_example_wholebody_preds.json").read_text())
    del res[0]["face_kpts"]
    p = tmp_path / "res.json"
    p.write_text(json.dumps(res))
    with pytest.raises(AnnotationError, match="'face_kpts'"):
        evaluate(wb_dir / "coco_wholebody_val_v1.0_5img.json", p)


def test_cli_evaluate_json(coco_files, wb_dir):
    runner = CliRunner()
    r = runner.invoke(main, ["evaluate", str(coco_files[0]), str(coco_files[1]), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    # All ten stats the table shows (issue 19: AR50/AR75/ARm/ARl were missing from --json).
    assert set(d) == {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}
    assert round(d["AP"], 3) == 0.861

    r = runner.invoke(main, ["evaluate", str(wb_dir / "coco_wholebody_val_v1.0_5img.json"),
                             str(wb_dir / "originals" / "xtcocoapi_annotations_example_wholebody_preds.json"),
                             "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) == {"body", "foot", "face", "lefthand", "righthand", "wholebody"}
    assert d["wholebody"]["AP"] == pytest.approx(_WHOLE[0], abs=1e-6) and "AR" in d["foot"]

    r = runner.invoke(main, ["evaluate", str(coco_files[0]), str(coco_files[1])])
    assert r.exit_code == 0 and "AP50" in r.stdout and "0.861" in r.stdout


def test_cli_evaluate_error_is_one_line(tmp_path, coco_files):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    r = CliRunner().invoke(main, ["evaluate", str(coco_files[0]), str(bad)])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and r.output.startswith("error:") and "invalid JSON" in r.output
    assert "Examples" in CliRunner().invoke(main, ["evaluate", "--help"]).output


def test_cli_evaluate_empty_results_is_not_a_silent_zero(tmp_path, coco_files):
    """Issue 19: an empty results list printed AP 0.000 with exit 0 and no word; now a warning and exit 1."""
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    r = CliRunner().invoke(main, ["evaluate", str(coco_files[0]), str(empty), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["AP"] == 0.0
    assert "holds no results" in r.stderr and r.stderr.strip().count("\n") == 0
