import warnings

import numpy as np
import pytest
from skimage.feature import hog as sk_hog
from skimage.feature import local_binary_pattern as sk_lbp

from cvcraft.classic.hog import hog
from cvcraft.classic.lbp import lbp_histogram, local_binary_pattern
from cvcraft.errors import ConfigError, DataError


@pytest.mark.parametrize("norm", ["L2-Hys", "L1", "L2", "L1-sqrt"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_hog_equals_skimage_grey(rng, norm, dtype):
    x = rng.integers(0, 256, (6, 34, 37)).astype(dtype)  # not a multiple of the cell size
    x[0, :10, :10] = 7  # flat area: zero gradients
    ours = hog(x, 9, 8, 2, norm)
    ref = np.stack([sk_hog(i, 9, (8, 8), (2, 2), norm) for i in x])
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(hog(x[1], 9, 8, 2, norm), ref[1], atol=1e-6)


@pytest.mark.parametrize("o,c,b", [(8, 4, 3), (12, 6, 2), (9, 7, 1), (4, 5, 2)])
def test_hog_equals_skimage_parameters_and_colour(rng, o, c, b):
    x = rng.integers(0, 256, (4, 32, 30, 3), dtype=np.uint8)
    ours = hog(x, o, c, b, channel_axis=-1)
    ref = np.stack([sk_hog(i, o, (c, c), (b, b), channel_axis=-1) for i in x])
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    f = x[..., 0] / 255.0
    np.testing.assert_allclose(
        hog(f, o, c, b, transform_sqrt=True),
        np.stack([sk_hog(i, o, (c, c), (b, b), transform_sqrt=True) for i in f]),
        atol=1e-6,
    )


@pytest.mark.parametrize("method", ["default", "ror", "uniform"])
@pytest.mark.parametrize("p,r", [(8, 1), (8, 2), (16, 2), (12, 1.5), (4, 1)])
def test_lbp_equals_skimage(rng, method, p, r):
    x = rng.integers(0, 256, (3, 21, 26), dtype=np.uint8)
    x[:, :6, :6] = 100  # flat: ties resolve like skimage's float arithmetic
    ours = local_binary_pattern(x, p, r, method)
    ref = np.stack([sk_lbp(i, p, r, method) for i in x])
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(local_binary_pattern(x[0], p, r, method), ref[0])


def test_lbp_float_input_matches_skimage(rng):
    x = rng.random((20, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk_lbp(x, 8, 1, "uniform")
    np.testing.assert_array_equal(local_binary_pattern(x, 8, 1), ref)


def test_lbp_histogram_counts_codes_per_cell(rng):
    x = rng.integers(0, 256, (2, 24, 24), dtype=np.uint8)
    h = lbp_histogram(x, 8, 1, "uniform", grid=2)
    assert h.shape == (2, 4 * 10)
    codes = sk_lbp(x[1], 8, 1, "uniform")
    ref = np.bincount(codes[12:, :12].astype(int).ravel(), minlength=10) / 144
    np.testing.assert_allclose(h[1, 20:30], ref)
    np.testing.assert_allclose(h.reshape(2, 4, 10).sum(-1), 1.0)


def test_hog_lbp_errors(rng):
    with pytest.raises(DataError, match="too small"):
        hog(np.zeros((10, 10), np.uint8), cell=8, block=2)
    with pytest.raises(ConfigError, match="norm"):
        hog(np.zeros((32, 32)), norm="L3")
    with pytest.raises(DataError, match="shape"):
        hog(np.zeros((2, 2, 32, 32, 3)), channel_axis=-1)
    with pytest.raises(DataError, match="grey"):
        local_binary_pattern(np.zeros((2, 2, 8, 8)))
    with pytest.raises(ConfigError, match="points"):
        local_binary_pattern(np.zeros((8, 8)), 30)
    with pytest.raises(ConfigError, match="method"):
        local_binary_pattern(np.zeros((8, 8)), method="var")
    with pytest.raises(DataError, match="non-empty"):
        hog(np.zeros((0, 0)))
