"""Drawing: mmpose's left/right palette, confidence as radius, whole-body detail scaled to the person, line
thickness scaled to the image, box score labels."""

from __future__ import annotations

import numpy as np

from gtpt_deploy.keypoints import COCO, WHOLEBODY
from gtpt_deploy.runtime.draw import BOX, CENTER, FACE, LEFT, RIGHT, draw_poses, image_unit, limb_colors


def _one_point(dataset, index: int, xy: tuple[float, float], conf: float = 0.1) -> np.ndarray:
    kp = np.zeros((1, dataset.num_keypoints, 3), np.float32)
    kp[0, index] = (*xy, conf)
    return kp


def _area(image: np.ndarray) -> int:
    return int(image.any(axis=-1).sum())


def test_left_right_and_centre_colours_follow_mmpose():
    img = np.zeros((300, 300, 3), np.uint8)
    kp = np.zeros((1, 17, 3), np.float32)
    names = COCO.keypoint_names
    for name, xy in (("left_wrist", (50, 50)), ("right_wrist", (250, 50)), ("nose", (150, 250))):
        kp[0, names.index(name)] = (*xy, 0.1)
    out = draw_poses(img, kp, COCO)
    assert tuple(out[50, 50]) == LEFT and tuple(out[50, 250]) == RIGHT and tuple(out[250, 150]) == CENTER
    colours = dict(zip(COCO.skeleton, limb_colors(COCO)))
    assert colours[(15, 13)] == LEFT and colours[(16, 14)] == RIGHT        # legs by side
    assert colours[(5, 11)] == CENTER and colours[(5, 6)] == CENTER        # torso in the centre colour


def test_confidence_sets_the_radius_and_threshold_hides_points():
    img = np.zeros((400, 400, 3), np.uint8)
    box = np.array([[0, 0, 400, 400]], np.float32)
    frame_only = _area(draw_poses(img, _one_point(COCO, 0, (200, 200), 0.0), COCO, box))   # the box outline
    sure, unsure, hidden = (_area(draw_poses(img, _one_point(COCO, 0, (200, 200), c), COCO, box, kpt_thr=0.03))
                            - frame_only for c in (0.1, 0.04, 0.02))
    assert sure > unsure > 0 and hidden == 0


def test_wholebody_face_points_scale_with_the_person_and_lines_with_the_image():
    img = np.zeros((1000, 1000, 3), np.uint8)
    face, body = WHOLEBODY.keypoint_names.index("face-30"), WHOLEBODY.keypoint_names.index("nose")
    small = np.array([[400, 400, 80, 120]], np.float32)     # a person ~100 px tall: face points stay tiny
    face_small = _area(draw_poses(img, _one_point(WHOLEBODY, face, (440, 420)), WHOLEBODY, small))
    body_small = _area(draw_poses(img, _one_point(WHOLEBODY, body, (440, 420)), WHOLEBODY, small))
    big = np.array([[0, 0, 900, 1000]], np.float32)
    face_big = _area(draw_poses(img, _one_point(WHOLEBODY, face, (440, 420)), WHOLEBODY, big))
    assert 0 < face_small < body_small and face_small < face_big
    assert tuple(draw_poses(img, _one_point(WHOLEBODY, face, (440, 420)), WHOLEBODY, big)[420, 440]) == FACE
    assert image_unit(480, 640) == 1 and image_unit(2160, 3840) == 6


def test_box_score_label():
    img = np.zeros((300, 300, 3), np.uint8)
    kp = np.zeros((1, 17, 3), np.float32)
    plain = draw_poses(img, kp, COCO, np.array([[100, 100, 80, 150]]))
    labelled = draw_poses(img, kp, COCO, np.array([[100, 100, 80, 150]]), box_scores=np.array([0.87]))
    above = labelled[80:100, 100:170]        # the label sits on the box's top edge
    assert not plain[80:99, 100:170].any() and (above == BOX).all(axis=-1).sum() > 100
