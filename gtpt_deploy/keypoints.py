"""Keypoint definitions of the two datasets: names, flip pairs, OKS sigmas, skeleton. Pure Python / numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SIGMAS = (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

_FOOT = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
_FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


def _hand(side: str) -> tuple[str, ...]:
    return (f"{side}_hand_root",) + tuple(f"{side}_{f}{i}" for f in _FINGERS for i in range(1, 5))


WHOLEBODY_NAMES = COCO_NAMES + _FOOT + tuple(f"face-{i}" for i in range(68)) + _hand("left") + _hand("right")

_FACE_PAIRS = (
    (23, 39), (24, 38), (25, 37), (26, 36), (27, 35), (28, 34), (29, 33), (30, 32), (40, 49), (41, 48), (42, 47),
    (43, 46), (44, 45), (54, 58), (55, 57), (59, 68), (60, 67), (61, 66), (62, 65), (63, 70), (64, 69), (71, 77),
    (72, 76), (73, 75), (78, 82), (79, 81), (83, 87), (84, 86), (88, 90),
)
WHOLEBODY_FLIP_PAIRS = COCO_FLIP_PAIRS + ((17, 20), (18, 21), (19, 22)) + _FACE_PAIRS + tuple(
    (91 + i, 112 + i) for i in range(21))

_WB_SIGMAS_FOOT = (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)
_WB_SIGMAS_FACE = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041,
    0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012,
    0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034,
    0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008,
    0.008, 0.008, 0.01, 0.008,
)
_WB_SIGMAS_HAND = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021,
    0.032, 0.02, 0.019, 0.022, 0.031,
)
WHOLEBODY_SIGMAS = tuple(s / 10 for s in COCO_SIGMAS) + _WB_SIGMAS_FOOT + _WB_SIGMAS_FACE + _WB_SIGMAS_HAND * 2

# Index ranges of each part in the flat 133-point order; also the COCO-WholeBody results/annotation field names.
WHOLEBODY_PARTS = {
    "body": (0, 17, "keypoints"),
    "foot": (17, 23, "foot_kpts"),
    "face": (23, 91, "face_kpts"),
    "lefthand": (91, 112, "lefthand_kpts"),
    "righthand": (112, 133, "righthand_kpts"),
}
_HAND_SKELETON = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
                  (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))
WHOLEBODY_SKELETON = COCO_SKELETON + ((15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22)) + tuple(
    (a + 91, b + 91) for a, b in _HAND_SKELETON) + tuple((a + 112, b + 112) for a, b in _HAND_SKELETON)


@dataclass(frozen=True)
class DatasetInfo:
    """Everything that depends on the keypoint layout (17 COCO or 133 COCO-WholeBody points)."""

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]          # OKS sigmas (already divided by 10 for COCO)
    skeleton: tuple[tuple[int, int], ...]

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_index(self) -> np.ndarray:
        """Permutation that swaps every left/right pair: flipped[:, i] = original[:, perm[i]]."""
        return flip_permutation(self.flip_pairs, self.num_keypoints)


def flip_permutation(flip_pairs: Iterable[Sequence[int]], num_keypoints: int) -> np.ndarray:
    """int (K,) permutation swapping every (a, b) pair: flipped[:, i] = original[:, perm[i]]."""
    perm = np.arange(num_keypoints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


COCO = DatasetInfo("coco", COCO_NAMES, COCO_FLIP_PAIRS, tuple(s / 10 for s in COCO_SIGMAS), COCO_SKELETON)
WHOLEBODY = DatasetInfo("coco_wholebody", WHOLEBODY_NAMES, WHOLEBODY_FLIP_PAIRS, WHOLEBODY_SIGMAS, WHOLEBODY_SKELETON)


def dataset_for(num_keypoints: int) -> DatasetInfo:
    """The dataset definition for 17 or 133 keypoints."""
    return {17: COCO, 133: WHOLEBODY}[num_keypoints]
