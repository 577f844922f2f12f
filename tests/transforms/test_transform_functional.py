"""Kernel oracles: numpy flips, OpenCV resize/warp/border, hand-built matrices."""

import cv2
import numpy as np
import pytest

from cvcraft.transforms import functional as F


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


def test_flips_equal_numpy(image):
    assert np.array_equal(F.hflip_image(image), image[:, ::-1])
    assert np.array_equal(F.vflip_image(image), image[::-1])
    masks = np.random.default_rng(1).random((2, 37, 53)) > 0.5
    assert np.array_equal(F.hflip_masks(masks), masks[:, :, ::-1])
    assert np.array_equal(F.vflip_masks(masks), masks[:, ::-1])


def test_flip_boxes_and_keypoints():
    boxes = np.array([[3, 5, 10, 20], [0, 0, 53, 37]], np.float32)
    w, h = 53, 37
    hb = F.hflip_boxes(boxes, w)
    np.testing.assert_array_equal(
        hb, np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    )
    vb = F.vflip_boxes(boxes, h)
    np.testing.assert_array_equal(
        vb, np.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], 1)
    )
    kp = np.array([[[1.0, 2.0, 2], [40.0, 30.0, 1]]], np.float32)
    out = F.hflip_keypoints(kp, w, flip_index=[1, 0])
    # flipped then left/right swapped
    np.testing.assert_allclose(out[0, 0], [w - 40.0, 30.0, 1])
    np.testing.assert_allclose(out[0, 1], [w - 1.0, 2.0, 2])
    np.testing.assert_allclose(F.vflip_keypoints(kp, h)[0, :, 1], h - kp[0, :, 1])


def test_resize_equals_opencv(image):
    out = F.resize_image(image, (20, 30), "linear")
    assert np.array_equal(out, cv2.resize(image, (30, 20), interpolation=cv2.INTER_LINEAR))
    auto = F.resize_image(image, (20, 30), "auto")  # shrinking -> area
    assert np.array_equal(auto, cv2.resize(image, (30, 20), interpolation=cv2.INTER_AREA))
    gray = image[..., :1]
    assert F.resize_image(gray, (20, 30)).shape == (20, 30, 1)  # channel axis kept
    np.testing.assert_allclose(
        F.resize_boxes(np.array([[10, 5, 20, 15]]), (37, 53), (74, 106)), [[20, 10, 40, 30]]
    )


def test_crop_and_pad(image):
    assert np.array_equal(F.crop_image(image, 5, 7, 10, 12), image[5:15, 7:19])
    # out-of-bounds window pads with fill, content lands at the right offset
    out = F.crop_image(image, -2, -3, 41, 59, fill=(1, 2, 3))
    assert out.shape == (41, 59, 3)
    assert np.array_equal(out[2:39, 3:56], image)
    assert (out[0] == [1, 2, 3]).all() and (out[:, -1] == [1, 2, 3]).all()
    padded = F.pad_image(image, (1, 2, 3, 4), mode="reflect")
    assert np.array_equal(padded, np.pad(image, ((1, 2), (3, 4), (0, 0)), mode="reflect"))
    padded = F.pad_image(image, (1, 2, 3, 4), fill=9)
    assert np.array_equal(padded, np.pad(image, ((1, 2), (3, 4), (0, 0)), constant_values=9))
    masks = np.ones((200, 5, 6), bool)  # more channels than OpenCV takes at once
    pm = F.pad_masks(masks, (1, 1, 1, 1))
    assert pm.shape == (200, 7, 8) and pm.dtype == bool and pm.sum() == 200 * 30


def test_affine_matrix_matches_opencv_rotation():
    center = (26.0, 18.0)
    for angle, scale in [(30.0, 1.0), (-75.0, 1.0), (12.0, 1.4)]:
        ours = F.affine_matrix(angle, scale=scale, center=center)
        np.testing.assert_allclose(ours, cv2.getRotationMatrix2D(center, angle, scale), atol=1e-12)
    # translation adds to the offset; shear is [[1, tan sx], [tan sy, 1]] about the centre
    m = F.affine_matrix(0, translate=(3, -4), shear=(10, 0), center=center)
    t = np.tan(np.radians(10))
    np.testing.assert_allclose(m, [[1, t, 3 - t * center[1]], [0, 1, -4]], atol=1e-12)


def test_warp_image_equals_cv2_warpaffine(image):
    h, w = image.shape[:2]
    center = ((w - 1) / 2, (h - 1) / 2)
    ref_m = cv2.getRotationMatrix2D(center, 25.0, 1.0)
    ref = cv2.warpAffine(image, ref_m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    ours = F.warp_affine_image(image, F.affine_matrix(25.0, center=center), (h, w))
    assert np.array_equal(ours, ref)


def test_warp_masks_stay_binary():
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:20, 5:30] = True
    masks[2, 25:35, 10:45] = True
    m = F.affine_matrix(33.0, (2.5, -1.5), 1.3, (8.0, 3.0), (24.5, 19.5))
    out = F.warp_affine_masks(masks, m, (40, 50))
    assert out.dtype == bool and out.shape == (3, 40, 50)
    assert out[1].sum() == 0 and out[0].sum() > 0
    # nearest sampling: every output pixel equals the input at M^-1 (x, y), rounded
    ref = cv2.warpAffine(masks[0].astype(np.uint8), m, (50, 40), flags=cv2.INTER_NEAREST)
    assert np.array_equal(out[0], ref > 0)


def test_affine_points_agree_with_opencv_pixels():
    # a single lit pixel moves where the point map says (within nearest rounding)
    img = np.zeros((60, 60, 1), np.uint8)
    img[10, 40] = 255
    m = F.affine_matrix(90.0, center=(29.5, 29.5))
    out = F.warp_affine_image(img, m, (60, 60), "nearest")
    ys, xs = np.nonzero(out[..., 0])
    moved = F.affine_points(np.array([[40.5, 10.5]]), m)[0]  # pixel centre, continuous coords
    np.testing.assert_allclose(moved, [xs[0] + 0.5, ys[0] + 0.5], atol=1e-6)


def test_filter_boxes_visibility():
    moved = np.array(
        [[-10, 0, 10, 10], [5, 5, 6, 6], [100, 0, 120, 10], [0, 0, 10, 10]], np.float32
    )
    clipped, keep = F.filter_boxes(moved, (50, 50), min_area=2.0, min_visibility=0.6)
    np.testing.assert_array_equal(clipped[0], [0, 0, 10, 10])
    # half visible < 0.6; area 1 < 2; fully outside; fully inside
    assert keep.tolist() == [False, False, False, True]


def test_keypoints_leaving_image_become_invisible():
    kp = np.array([[[5, 5, 2], [45, 5, 2], [20, 20, 0]]], np.float32)
    out = F.crop_keypoints(kp, 0, 10, 30, 30)
    np.testing.assert_allclose(out[0, :, :2], [[-5, 5], [35, 5], [10, 20]])
    assert out[0, :, 2].tolist() == [0, 0, 0]  # out left, out right, was invisible


def test_erase_and_rects_mask_against_loop():
    rng = np.random.default_rng(3)
    rects = np.concatenate([rng.integers(-5, 30, (6, 2)), rng.integers(0, 40, (6, 2))], 1)
    rects[:, 2:] += rects[:, :2]
    ref = np.zeros((30, 35), bool)
    for x1, y1, x2, y2 in rects:  # the obvious loop as the oracle
        ref[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    assert np.array_equal(F.rects_mask(rects, (30, 35)), ref)
    img = np.full((30, 35, 3), 7, np.uint8)
    out = F.erase(img, rects, fill=(1, 2, 3))
    assert (out[ref] == [1, 2, 3]).all() and (out[~ref] == 7).all() and (img == 7).all()


def test_hsv_lut_oracles():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    green = F.hsv_jitter(red, hue_shift=1 / 3)  # 120 degrees round the wheel
    assert np.abs(green.astype(int) - [0, 255, 0]).max() <= 1
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = F.hsv_jitter(img, sat_gain=0.0)  # saturation 0 -> grey at V = max(R, G, B)
    assert np.abs(gray.astype(int) - img.max(-1, keepdims=True)).max() <= 1
    darker = F.hsv_jitter(np.full((2, 2, 3), 200, np.uint8), val_gain=0.5)
    assert np.abs(darker.astype(int) - 100).max() <= 1
    assert F.hsv_jitter(img) is img  # identity gains do not round-trip through HSV
    f = F.hsv_jitter(red.astype(np.float32), hue_shift=1 / 3)
    np.testing.assert_allclose(f[0, 0], [0, 255, 0], atol=0.5)


def test_bad_interpolation_raises():
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match="interpolation"):
        F.resize_image(np.zeros((4, 4, 3), np.uint8), (2, 2), "bicubicc")
