"""codec: SimCC flip test and decoding against the official `post` reference of the six GTPT fixtures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gtpt_deploy.runtime import codec
from gtpt_deploy.errors import ArtifactError
from gtpt_deploy.keypoints import COCO, dataset_for
from gtpt_deploy.runtime.transforms import box_to_center_scale

MODELS = [f"gtpt_{s}_{d}" for d in ("human", "wholebody") for s in ("t", "s", "b")]


@pytest.fixture(scope="module", params=MODELS)
def io_fixture(request, shared):
    torch = pytest.importorskip("torch")
    path = shared / "fixtures" / "gtpt_reference" / f"{request.param}_seed0_io.pt"
    d = torch.load(path, weights_only=True)
    return {k: d[k].numpy() for k in ("pred_x", "pred_y", "flip_input_pred_x", "flip_input_pred_y")} | {
        "post": {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in d["post"].items()}}


def test_center_scale_from_boxes(io_fixture):
    post = io_fixture["post"]
    center, scale = box_to_center_scale(post["boxes_xywh"])
    np.testing.assert_array_equal(center, post["center"])
    np.testing.assert_array_equal(scale, post["scale"])


def test_flip_back_matches_official(io_fixture):
    post = io_fixture["post"]
    ds = dataset_for(io_fixture["pred_x"].shape[1])
    assert [tuple(p) for p in post["flip_pairs"]] == list(ds.flip_pairs)
    fx, fy = codec.flip_back(io_fixture["flip_input_pred_x"], io_fixture["flip_input_pred_y"], ds.flip_index())
    np.testing.assert_array_equal(fx, post["flipback_x"])
    np.testing.assert_array_equal(fy, post["flipback_y"])


def test_decode_matches_official(io_fixture):
    post = io_fixture["post"]
    ds = dataset_for(io_fixture["pred_x"].shape[1])
    flipped = codec.flip_back(io_fixture["flip_input_pred_x"], io_fixture["flip_input_pred_y"], ds.flip_index())
    coords, conf = codec.decode(io_fixture["pred_x"], io_fixture["pred_y"], 2.0, flipped)
    np.testing.assert_array_equal(coords[..., 0] * 2, post["argmax_x"])
    np.testing.assert_array_equal(coords[..., 1] * 2, post["argmax_y"])
    np.testing.assert_array_equal(coords, post["coords_input_space"])
    ref = post["preds_image_space"]
    np.testing.assert_allclose(conf, ref[..., 2], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(conf, np.minimum(post["prob_x"].max(-1), post["prob_y"].max(-1)), rtol=1e-5)

    center, scale = box_to_center_scale(post["boxes_xywh"])
    pts = codec.decode_to_image(io_fixture["pred_x"], io_fixture["pred_y"], center, scale, ds.flip_index(),
                                (io_fixture["flip_input_pred_x"], io_fixture["flip_input_pred_y"]))
    assert pts.shape == ref.shape and pts.dtype == np.float32
    assert np.abs(pts[..., :2] - ref[..., :2]).max() < 1e-3


def test_decode_without_flip_differs_and_argmax_is_on_probabilities():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 17, 384)).astype(np.float32), rng.normal(size=(2, 17, 512)).astype(np.float32)
    coords, conf = codec.decode(x, y)
    np.testing.assert_array_equal(coords[..., 0], x.argmax(-1) / 2.0)
    np.testing.assert_array_equal(coords[..., 1], y.argmax(-1) / 2.0)
    assert np.all((conf > 0) & (conf <= 1))


def test_flip_back_shift_and_swap():
    x = np.arange(2 * 17 * 6, dtype=np.float32).reshape(2, 17, 6)
    y = np.arange(2 * 17 * 8, dtype=np.float32).reshape(2, 17, 8)
    fx, fy = codec.flip_back(x, y, COCO.flip_index())
    # joint 1 (left eye) takes joint 2's reversed x logits, shifted one bin to lower indices, last bin repeated
    rev = x[:, 2, ::-1]
    np.testing.assert_array_equal(fx[:, 1, :-1], rev[:, 1:])
    np.testing.assert_array_equal(fx[:, 1, -1], rev[:, -1])
    np.testing.assert_array_equal(fy[:, 1], y[:, 2])
    np.testing.assert_array_equal(fy[:, 0], y[:, 0])
    fx_noshift, _ = codec.flip_back(x, y, COCO.flip_index(), shift=False)
    np.testing.assert_array_equal(fx_noshift[:, 0], x[:, 0, ::-1])


def _official_inverse(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The official get_affine_transform(c, s, 0, (192, 256), inv=1): float32 three points, cv2."""
    src_w = scale[0] * 200.0
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0, src_w * -0.5])
    dst[0] = [96, 128]
    dst[1] = [96, 32]
    src[2] = src[1] + np.array([-(src[0] - src[1])[1], (src[0] - src[1])[0]], np.float32)
    dst[2] = dst[1] + np.array([-(dst[0] - dst[1])[1], (dst[0] - dst[1])[0]], np.float32)
    return cv2.getAffineTransform(np.float32(dst), np.float32(src))


def test_to_image_matches_official_three_point_affine():
    rng = np.random.default_rng(1)
    boxes = np.concatenate([rng.uniform(0, 2000, (50, 2)), rng.uniform(5, 800, (50, 2))], 1).astype(np.float32)
    center, scale = box_to_center_scale(boxes)
    coords = np.stack([rng.integers(0, 384, (50, 17)), rng.integers(0, 512, (50, 17))], -1) / 2.0
    mine = codec.to_image(coords, center, scale)
    for n in range(50):
        m = _official_inverse(center[n], scale[n])
        ref = coords[n] @ m[:, :2].T + m[:, 2]
        assert np.abs(mine[n] - ref).max() < 1e-3


def test_shape_errors():
    with pytest.raises(ArtifactError, match="expected SimCC logits"):
        codec.decode(np.zeros((1, 17, 384)), np.zeros((1, 16, 512)))
    with pytest.raises(ArtifactError, match="flip index"):
        codec.flip_back(np.zeros((1, 17, 384)), np.zeros((1, 17, 512)), np.arange(133))
    with pytest.raises(ArtifactError, match="centers"):
        codec.to_image(np.zeros((2, 17, 2)), np.zeros((1, 2)), np.ones((1, 2)))
