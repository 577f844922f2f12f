import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.spatial.distance import cdist
from skimage.feature import match_descriptors as sk_match

from cvcraft.classic.features import (
    descriptor_distances,
    draw_keypoints,
    draw_matches,
    harris,
    harris_corners,
    match_descriptors,
    orb,
    register_features,
    sift,
)
from cvcraft.classic.geometry import apply_transform, warp
from cvcraft.errors import ConfigError, DataError


def scene(rng, size=200):
    """Shapes on a noisy background: corners and blobs for detectors."""
    img = np.full((size, size), 90, np.uint8)
    for _ in range(25):
        x, y = rng.integers(10, size - 30, 2)
        w, h = rng.integers(8, 30, 2)
        cv2.rectangle(
            img, (int(x), int(y)), (int(x + w), int(y + h)), int(rng.integers(0, 256)), -1
        )
        cv2.circle(
            img,
            tuple(int(v) for v in rng.integers(10, size - 10, 2)),
            int(rng.integers(3, 12)),
            int(rng.integers(0, 256)),
            -1,
        )
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_harris_matches_the_structure_tensor_formula(rng):
    img = cv2.GaussianBlur(rng.random((40, 44)).astype(np.float32), (0, 0), 1.0)
    r = harris(img, block_size=3, ksize=3, k=0.05)
    ix = ndi.sobel(img.astype(float), 1, mode="mirror")
    iy = ndi.sobel(img.astype(float), 0, mode="mirror")
    box = [ndi.uniform_filter(a, 3, mode="mirror") for a in (ix * ix, ix * iy, iy * iy)]
    ref = box[0] * box[2] - box[1] ** 2 - 0.05 * (box[0] + box[2]) ** 2
    # OpenCV scales the derivatives by a constant; compare the normalized responses
    np.testing.assert_allclose(r / np.abs(r).max(), ref / np.abs(ref).max(), atol=1e-4)


def test_harris_corners_find_the_corners_of_a_square():
    img = np.zeros((60, 60), np.uint8)
    img[20:40, 15:45] = 255
    pts = harris_corners(img, 0.1, 5, 10)
    want = np.array([[15, 20], [44, 20], [15, 39], [44, 39]])
    d = cdist(want, pts).min(1)
    assert len(pts) == 4 and d.max() <= 2


def test_sift_and_orb_wrap_opencv(rng):
    img = scene(rng)
    kp, desc = sift(img)
    ref_kp, ref_desc = cv2.SIFT_create().detectAndCompute(img, None)
    assert len(kp) == len(ref_kp) > 20 and desc.shape == (len(kp), 128)
    np.testing.assert_allclose(kp[:, :2], [k.pt for k in ref_kp])
    np.testing.assert_array_equal(desc, ref_desc)
    kp, desc = orb(img, 300)
    ref_kp, ref_desc = cv2.ORB_create(300).detectAndCompute(img, None)
    assert len(kp) == len(ref_kp) > 20 and desc.dtype == np.uint8
    np.testing.assert_array_equal(desc, ref_desc)
    # float input in [0, 1] is scaled to uint8
    assert len(sift(img / 255.0)[0]) == len(ref_kp) or len(sift(img / 255.0)[0]) > 0


def test_distances_match_scipy(rng):
    a, b = rng.random((20, 16)), rng.random((25, 16))
    np.testing.assert_allclose(descriptor_distances(a, b), cdist(a, b), atol=1e-9)
    ua = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    ub = rng.integers(0, 256, (25, 32), dtype=np.uint8)
    ref = cdist(np.unpackbits(ua, 1), np.unpackbits(ub, 1), "hamming") * 256
    np.testing.assert_allclose(descriptor_distances(ua, ub), ref)


@pytest.mark.parametrize("cross", [False, True])
def test_ratio_matching_matches_skimage_and_bfmatcher(rng, cross):
    a = rng.random((50, 128)).astype(np.float32)
    b = np.vstack([a[:30] + rng.normal(0, 0.05, (30, 128)), rng.random((30, 128))])
    b = b.astype(np.float32)[rng.permutation(60)]
    ours = {tuple(m) for m in match_descriptors(a, b, 0.8, cross).tolist()}
    ref = {tuple(m) for m in sk_match(a, b, max_ratio=0.8, cross_check=cross).tolist()}
    assert ours == ref and len(ours) == 30
    ua = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    ub = np.vstack(
        [
            ua[:20] ^ (rng.random((20, 32)) < 0.05).astype(np.uint8),
            rng.integers(0, 256, (25, 32), dtype=np.uint8),
        ]
    )
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ua, ub, k=2)
    ref = {(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < 0.8 * n.distance}
    assert {tuple(m) for m in match_descriptors(ua, ub, 0.8).tolist()} == ref


def test_register_features_recovers_a_homography(rng):
    img = scene(rng, 240)
    h = np.array([[1.05, 0.04, -6.0], [-0.03, 0.98, 4.0], [2e-5, -1e-5, 1.0]])
    moving = warp(img, np.linalg.inv(h))  # warp(moving, h) == img
    m, inl = register_features(moving, img, "homography")
    grid = np.array([[60, 60], [180, 60], [60, 180], [180, 180], [120, 120]])
    assert np.abs(apply_transform(m, grid) - apply_transform(h, grid)).max() < 1.0
    assert inl.sum() >= 20


def test_drawing(rng):
    img = scene(rng, 100)
    kp, d = orb(cv2.resize(img, (200, 200)))
    out = draw_keypoints(img, kp[:5])
    assert out.shape == (100, 100, 3) and (out != img[..., None]).any()
    both = draw_matches(
        np.dstack([img] * 3), kp[:3], np.dstack([img] * 3), kp[:3], np.array([[0, 0], [1, 1]])
    )
    assert both.shape == (100, 200, 3)


def test_feature_errors(rng):
    with pytest.raises(ConfigError, match="ratio"):
        match_descriptors(np.zeros((2, 4)), np.zeros((2, 4)), 1.5)
    with pytest.raises(DataError, match=r"\(N, D\)"):
        descriptor_distances(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(DataError, match="empty"):
        sift(np.zeros((0, 4), np.uint8))
    with pytest.raises(ConfigError, match="detector"):
        register_features(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), detector="surf")
    with pytest.raises(DataError, match="matches"):
        register_features(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))
    assert match_descriptors(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 2)
