import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.filters import difference_of_gaussians

from cvcraft.classic.edges import dog, laplacian, log, magnitude, prewitt, roberts, scharr, sobel
from cvcraft.errors import ConfigError


def test_sobel_prewitt_scharr_match_scipy(rng):
    x = rng.random((19, 22))
    for op, ref in [(sobel, ndi.sobel), (prewitt, ndi.prewitt)]:
        gx, gy = op(x)
        np.testing.assert_allclose(gx, ref(x, axis=1, mode="mirror"), atol=1e-12)
        np.testing.assert_allclose(gy, ref(x, axis=0, mode="mirror"), atol=1e-12)
    k = np.array([[-3.0, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    gx, gy = scharr(x)
    np.testing.assert_allclose(gx, ndi.correlate(x, k, mode="mirror"), atol=1e-12)
    np.testing.assert_allclose(gy, ndi.correlate(x, k.T, mode="mirror"), atol=1e-12)


def test_sobel_uint8_gives_float32_and_sign_convention():
    x = np.zeros((5, 6), np.uint8)
    x[:, 3:] = 200  # dark -> bright from left to right
    gx, gy = sobel(x)
    assert gx.dtype == np.float32 and gx[2, 2] == 800 and np.all(gy == 0)


def test_roberts_is_the_diagonal_difference(rng):
    x = rng.random((9, 11))
    g1, g2 = roberts(x)
    np.testing.assert_allclose(g1[:-1, :-1], x[:-1, :-1] - x[1:, 1:])
    np.testing.assert_allclose(g2[:-1, :-1], x[:-1, 1:] - x[1:, :-1])
    np.testing.assert_allclose(magnitude(g1, g2), np.hypot(g1, g2))
    np.testing.assert_allclose(magnitude(g1, g2, "l1"), np.abs(g1) + np.abs(g2))


def test_laplacian_log_dog_match_scipy_and_skimage(rng):
    x = rng.random((21, 19))
    np.testing.assert_allclose(laplacian(x), ndi.laplace(x, mode="mirror"), atol=1e-12)
    for s in (0.8, 1.7, 3.0):
        np.testing.assert_allclose(log(x, s), ndi.gaussian_laplace(x, s), atol=1e-12)
    np.testing.assert_allclose(dog(x, 1.0, 1.6), difference_of_gaussians(x, 1.0, 1.6), atol=1e-12)


def test_edge_errors(rng):
    x = rng.random((8, 8))
    with pytest.raises(ConfigError, match="odd"):
        sobel(x, ksize=4)
    with pytest.raises(ConfigError, match="sigma_low < sigma_high"):
        dog(x, 2.0, 1.0)
    with pytest.raises(ConfigError, match="sigma"):
        log(x, -1)
