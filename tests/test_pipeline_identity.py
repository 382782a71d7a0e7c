"""The batched, read-ahead run path gives the same results.json, to the last digit, as posing each person crop
on its own (one runner call per crop and one per flipped crop, no read-ahead: the pipeline before batching)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gtpt_deploy.coco import to_coco_results
from gtpt_deploy.runners import create_runner
from gtpt_deploy.runtime.detect import PersonDetector
from gtpt_deploy.runtime.images import expand_inputs
from gtpt_deploy.runtime.predictor import ImagePoses, Predictor, read_frames
from gtpt_deploy.runtime.core import assign_image_ids, stack_poses
from gtpt_deploy.runtime.options import BoxSpec, OutputSpec, RunnerSpec
from gtpt_deploy.runtime.run import run_inputs
from gtpt_fixtures import DETECTOR, export_test_onnx

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGES = REPO / "demo" / "images"


@pytest.fixture(scope="module")
def sample_dyn(tmp_path_factory) -> Path:
    """The memorized GTPT-T sample checkpoint as a dynamic-batch ONNX."""
    return export_test_onnx(REPO / "models" / "gtpt_t_coco_sample.pth",
                            tmp_path_factory.mktemp("dyn") / "sample_dyn.onnx", batch=None)


def _one_crop_at_a_time(artifact: Path, paths: list[Path]) -> list[dict]:
    """Reference: every crop and its flipped copy in calls of their own, decoded by the predictor's decoder."""
    ids = assign_image_ids(paths)
    poses = []
    with create_runner(artifact, threads=1) as runner:
        pred = Predictor(runner, prefetch=0)
        pad = runner.static_batch or 1
        k = runner.meta.num_keypoints

        def infer(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            batch = np.zeros((pad, *crop.shape), np.float32)
            batch[0] = crop
            x, y = runner.infer(batch)
            return x[:1], y[:1]

        for frame in read_frames(paths, PersonDetector(DETECTOR), ids):
            shell, crops = pred._prepare(frame)
            assert isinstance(shell, ImagePoses)
            outs = [infer(c) + infer(np.ascontiguousarray(c[..., ::-1])) for c in crops]
            if outs:
                x, y, fx, fy = (np.concatenate(o) for o in zip(*outs))
                shell.keypoints, shell.bins = pred.decode(x, y, fx, fy, shell.centers, shell.scales)
            poses.append(shell)
    return to_coco_results(*stack_poses(poses, k), file_names={p.image_id: Path(p.path).name for p in poses})


@pytest.mark.parametrize("which", ["dynamic", "static_b1"])
def test_run_results_equal_one_crop_at_a_time(which, sample_dyn, seed0_t_onnx_b1, tmp_path):
    artifact = sample_dyn if which == "dynamic" else seed0_t_onnx_b1
    paths = expand_inputs([DEMO_IMAGES])
    summary = run_inputs(artifact, [DEMO_IMAGES], tmp_path / "run", RunnerSpec(threads=1),
                         BoxSpec(detector=DETECTOR), OutputSpec(draw=False))
    assert summary.persons >= 8 and summary.ok
    expected = json.dumps(_one_crop_at_a_time(artifact, paths), indent=2) + "\n"
    assert (tmp_path / "run" / "results.json").read_text() == expected


def test_flipped_copies_share_the_call_of_their_originals(sample_dyn):
    """Dynamic batch: one call of at most ``batch`` rows holds a chunk of batch/2 crops and its flipped copies (the
    call never exceeds --batch: an engine profile or a Triton max batch bounds it)."""
    with create_runner(sample_dyn, threads=1) as runner:
        pred = Predictor(runner, batch=4, prefetch=0)
        crops = np.random.default_rng(0).standard_normal((7, 3, 256, 192)).astype(np.float32)
        rows, infer = [], runner.infer
        runner.infer = lambda batch: (rows.append(len(batch)), infer(batch))[1]  # type: ignore[method-assign]
        x, y, fx, fy = pred.infer_crops(crops)
        assert rows == [4, 4, 4, 2]  # chunks of 2, 2, 2 and 1 crops, each with its flipped copies
        runner.infer = infer  # type: ignore[method-assign]
        ref = [runner.infer(crops[i:i + 1]) + runner.infer(np.ascontiguousarray(crops[i:i + 1, ..., ::-1]))
               for i in range(7)]
    for got, want in zip((x, y, fx, fy), zip(*ref)):
        assert np.array_equal(got, np.concatenate(want))
