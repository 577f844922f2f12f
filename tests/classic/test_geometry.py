import cv2
import numpy as np
import pytest
import skimage.transform as skt
from sklearn.linear_model import LinearRegression

from cvcraft.classic.geometry import (
    apply_transform,
    fit_transform,
    ransac_transform,
    register_ecc,
    warp,
)
from cvcraft.errors import ConfigError, DataError

SK = {
    "rigid": skt.EuclideanTransform,
    "similarity": skt.SimilarityTransform,
    "affine": skt.AffineTransform,
    "homography": skt.ProjectiveTransform,
}


def _truth(kind):
    th, s = 0.3, (1.0 if kind == "rigid" else 1.2)
    m = np.array(
        [[s * np.cos(th), -s * np.sin(th), 5], [s * np.sin(th), s * np.cos(th), -3], [0, 0, 1]]
    )
    if kind in ("affine", "homography"):
        m[0, 1] += 0.2
    if kind == "homography":
        m[2, :2] = [1e-3, -5e-4]
    return m


@pytest.mark.parametrize("kind", list(SK))
def test_exact_points_recover_the_transform(rng, kind):
    s = rng.random((12, 2)) * 100
    m = _truth(kind)
    np.testing.assert_allclose(fit_transform(s, apply_transform(m, s), kind), m, atol=1e-8)


@pytest.mark.parametrize("kind", ["rigid", "similarity", "homography"])
def test_noisy_fit_matches_skimage(rng, kind):
    s = rng.random((30, 2)) * 100
    d = apply_transform(_truth(kind), s) + rng.normal(0, 0.5, s.shape)
    ref = SK[kind].from_estimate(s, d).params
    # both are normalized DLTs; their normalizations differ slightly (1e-5 relative)
    np.testing.assert_allclose(fit_transform(s, d, kind), ref, rtol=1e-4, atol=1e-6)


def test_noisy_affine_is_ordinary_least_squares(rng):
    s = rng.random((30, 2)) * 100
    d = apply_transform(_truth("affine"), s) + rng.normal(0, 0.5, s.shape)
    lr = LinearRegression().fit(s, d)
    m = fit_transform(s, d, "affine")
    np.testing.assert_allclose(m[:2, :2], lr.coef_, atol=1e-9)
    np.testing.assert_allclose(m[:2, 2], lr.intercept_, atol=1e-8)


def test_minimal_samples_and_reflection_handling(rng):
    s = rng.random((2, 2)) * 10
    m = fit_transform(s, s[:, ::-1], "rigid")  # a reflection: best proper rotation
    assert np.linalg.det(m[:2, :2]) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", list(SK))
def test_ransac_rejects_outliers_like_opencv(rng, kind):
    n = 60
    s = rng.random((n, 2)) * 200
    d = apply_transform(_truth(kind), s) + rng.normal(0, 0.3, s.shape)
    out = rng.random(n) < 0.3
    d[out] += rng.uniform(20, 60, (out.sum(), 2)) * rng.choice([-1, 1], (out.sum(), 2))
    m, inl = ransac_transform(s, d, kind, threshold=2.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(inl, ~out)
    np.testing.assert_allclose(m, fit_transform(s[~out], d[~out], kind), atol=1e-9)
    if kind == "homography":
        _, mask = cv2.findHomography(s, d, cv2.RANSAC, 2.0)
    elif kind == "affine":
        _, mask = cv2.estimateAffine2D(s, d, ransacReprojThreshold=2.0)
    elif kind == "similarity":
        _, mask = cv2.estimateAffinePartial2D(s, d, ransacReprojThreshold=2.0)
    else:
        return
    np.testing.assert_array_equal(inl, mask.ravel().astype(bool))


def test_warp_moves_a_point_where_the_matrix_says(rng):
    img = np.zeros((60, 80), np.float32)
    img[20, 30] = 1.0
    m = _truth("similarity")
    out = warp(img, m, interpolation="bilinear")
    y, x = np.unravel_index(np.argmax(out), out.shape)
    px, py = apply_transform(m, [[30, 20]])[0]
    assert abs(x - px) <= 1 and abs(y - py) <= 1
    np.testing.assert_allclose(out, cv2.warpAffine(img, m[:2], (80, 60)))
    h = _truth("homography")
    np.testing.assert_allclose(warp(img, h), cv2.warpPerspective(img, h, (80, 60)))
    # skimage.warp takes the inverse map; same interior values
    ref = skt.warp(img, skt.ProjectiveTransform(h).inverse, order=1, preserve_range=True)
    np.testing.assert_allclose(warp(img, h)[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-5)


def test_ecc_recovers_a_known_affine(rng):
    x = cv2.GaussianBlur(rng.random((160, 160)), (0, 0), 3)  # ECC needs smooth structure
    big = np.clip((x - x.mean()) / x.std() * 50 + 128, 0, 255).astype(np.uint8)
    t = np.array([[1.02, 0.03, 2.5], [-0.02, 0.99, -1.5], [0, 0, 1]])
    moving_big = warp(big, np.linalg.inv(t))  # so warp(moving, t) == fixed
    # crop both (no black borders); in crop coordinates the transform is S t S^-1
    fixed, moving = big[32:128, 32:128], moving_big[32:128, 32:128]
    sh = np.array([[1, 0, -32], [0, 1, -32], [0, 0, 1.0]])
    want = sh @ t @ np.linalg.inv(sh)
    m, rho = register_ecc(moving, fixed, "affine")
    grid = np.stack(np.meshgrid(np.arange(0, 96, 8), np.arange(0, 96, 8)), -1).reshape(-1, 2)
    err = np.linalg.norm(apply_transform(m, grid) - apply_transform(want, grid), axis=1)
    assert err.max() < 0.2
    assert rho > 0.95


def test_geometry_errors(rng):
    with pytest.raises(DataError, match="needs >= 4"):
        fit_transform(np.zeros((3, 2)), np.zeros((3, 2)), "homography")
    with pytest.raises(DataError, match=r"\(N, 2\)"):
        fit_transform(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="kind"):
        fit_transform(np.zeros((5, 2)), np.zeros((5, 2)), "projective")
    with pytest.raises(ConfigError, match="2x3 or 3x3"):
        warp(np.zeros((4, 4)), np.eye(2))
    with pytest.raises(DataError, match="one size"):
        register_ecc(np.zeros((8, 8)), np.zeros((9, 9)))
    with pytest.raises(DataError, match="RANSAC found no"):
        s = rng.random((10, 2)) * 1000
        ransac_transform(s, rng.random((10, 2)) * 1000, "homography", threshold=1e-6, iterations=20)


def test_ecc_on_gradients_registers_infrared_onto_visible(shared_data):
    from cvcraft.metrics.image import mutual_information

    ir = cv2.imread(str(shared_data / "roadscene/infrared/FLIR_00060.jpg"), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(shared_data / "roadscene/visible/FLIR_00060.jpg"), cv2.IMREAD_GRAYSCALE)
    t = np.array([[1.0, 0.02, 6.0], [-0.02, 1.0, -4.0], [0, 0, 1]])
    m = 16
    h, w = ir.shape
    moving = warp(ir, np.linalg.inv(t))[m : h - m, m : w - m]
    fixed = vis[m : h - m, m : w - m]
    with pytest.raises(DataError, match="converge"):
        register_ecc(moving, fixed, "affine")  # intensities differ across modalities
    est, _ = register_ecc(moving, fixed, "affine", on="gradient")
    sh = np.array([[1, 0, -m], [0, 1, -m], [0, 0, 1.0]])
    want = sh @ t @ np.linalg.inv(sh)
    grid = np.array([[50, 50], [400, 50], [50, 250], [400, 250]])
    # the pair itself is aligned only to a pixel or so
    assert np.abs(apply_transform(est, grid) - apply_transform(want, grid)).max() < 2.0
    registered = warp(moving, est)[20:-20, 20:-20]
    assert mutual_information(registered, fixed[20:-20, 20:-20]) > mutual_information(
        moving[20:-20, 20:-20], fixed[20:-20, 20:-20]
    )
