"""runtime.crops: GT person crops through the inference preprocessing, seeded selection, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gtpt_deploy.errors import GtptError, InputImageError
from gtpt_deploy.runtime.boxes import GroundTruthBoxes
from gtpt_deploy.runtime.crops import person_crops
from gtpt_deploy.runtime.images import load_image
from gtpt_deploy.runtime.predictor import Frame
from gtpt_deploy.runtime.transforms import box_to_center_scale, crop_and_normalize


@pytest.fixture(scope="module")
def val(shared):
    d = shared / "data" / "coco_val2017_pose"
    return d / "person_keypoints_val2017_subset.json", d / "images"


def test_all_crops_equal_the_predictors_crops(val):
    ann, images = val
    got = person_crops(ann, images)
    gt = GroundTruthBoxes(ann)
    assert len(got) == got.available == 137  # the same non-crowd, labelled persons as the GT box source
    # The first image's crops are bit-identical to what the predictor would feed the model.
    name = got.file_names[0]
    image = load_image(images / name)
    boxes = gt(images / name, image).xywh
    c, s = box_to_center_scale(boxes, (256, 192))
    ref = crop_and_normalize(image[..., ::-1].copy(), c, s, (256, 192))
    assert np.array_equal(got.crops[:len(ref)], ref)
    assert got.crops.dtype == np.float32 and got.crops.shape[1:] == (3, 256, 192)


def test_selection_is_seeded_and_reproducible(val):
    ann, images = val
    a, b, c = person_crops(ann, images, 16, seed=0), person_crops(ann, images, 16, seed=0), \
        person_crops(ann, images, 16, seed=1)
    assert len(a) == 16 and np.array_equal(a.crops, b.crops) and a.manifest() == b.manifest()
    assert a.manifest() != c.manifest()
    assert a.manifest()["ann_sha256"] == c.manifest()["ann_sha256"] and len(a.manifest()["ann_sha256"]) == 64


def test_too_few_crops_no_persons_and_missing_images_are_one_line_errors(val, tmp_path):
    ann, images = val
    with pytest.raises(GtptError, match=r"found only 137 usable person boxes .*; pass --num 137") as e:
        person_crops(ann, images, 500)
    assert "\n" not in str(e.value)
    assert len(person_crops(ann, images, 500, at_most=True)) == 137
    empty = json.loads(ann.read_text())
    empty["annotations"] = []
    with pytest.raises(GtptError, match="found none"):
        person_crops(empty, images)
    with pytest.raises(InputImageError, match="no such file"):
        person_crops(ann, tmp_path, 4)


def test_frame_core_takes_arrays(fake_dyn):
    from gtpt_deploy.runners import create_runner
    from gtpt_deploy.runtime.boxes import Boxes
    from gtpt_deploy.runtime.predictor import Predictor

    image = np.full((300, 200, 3), 127, np.uint8)
    with create_runner(fake_dyn) as runner:
        p = Predictor(runner)
        one = p.pose_image(image, Boxes.of([[10, 20, 100, 200], [0, 0, 50, 50]], [1.0, 0.5]), image_id=7)
        many = list(p.predict_frames([Frame(Path("f0"), image, Boxes.of([[10, 20, 100, 200]], [1.0]), 1)]))
    assert one.keypoints.shape == (2, 17, 3) and one.image_id == 7
    assert np.array_equal(many[0].keypoints[0], one.keypoints[0])
