import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.transform as skt

from cvcraft.classic.pyramids import (
    blend,
    gaussian_pyramid,
    laplacian_pyramid,
    pyr_down,
    pyr_up,
    reconstruct,
)
from cvcraft.errors import ConfigError, DataError

W = np.array([1, 4, 6, 4, 1]) / 16


def test_pyr_down_is_binomial_blur_then_decimate(rng):
    x = rng.random((21, 30))
    ref = ndi.correlate1d(ndi.correlate1d(x, W, 0, mode="mirror"), W, 1, mode="mirror")
    np.testing.assert_allclose(pyr_down(x), ref[::2, ::2], atol=1e-12)


def test_pyr_up_is_zero_insert_then_4x_blur(rng):
    x = rng.random((8, 11))
    up = np.zeros((16, 22))
    up[::2, ::2] = x
    # OpenCV's pyrUp reflects the *upsampled* grid about its last sample; compare inside
    ref = 4 * ndi.correlate1d(ndi.correlate1d(up, W, 0, mode="mirror"), W, 1, mode="mirror")
    np.testing.assert_allclose(pyr_up(x, (16, 22))[1:-2, 1:-2], ref[1:-2, 1:-2], atol=1e-12)


def test_pyramid_shapes_match_skimage(rng):
    x = rng.random((37, 50))
    ours = [a.shape for a in gaussian_pyramid(x, 5)]
    ref = [a.shape for a in skt.pyramid_gaussian(x, max_layer=4)]
    assert ours == ref
    assert [a.shape for a in laplacian_pyramid(x, 5)] == [
        a.shape for a in skt.pyramid_laplacian(x, max_layer=4)
    ]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_laplacian_pyramid_reconstructs_exactly(rng, dtype):
    x = (rng.random((33, 47, 3)) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    rec = reconstruct(laplacian_pyramid(x, 4))
    np.testing.assert_allclose(rec, x, atol=1e-3 if dtype != np.float64 else 1e-12)


def test_blend_takes_each_side_far_from_the_seam(rng):
    a = np.full((64, 64, 3), 200, np.uint8)
    b = np.full((64, 64, 3), 40, np.uint8)
    a[::4] = 230  # texture
    m = np.zeros((64, 64))
    m[:, :32] = 1
    out = blend(a, b, m, levels=4)
    np.testing.assert_array_equal(out[:, :8], a[:, :8])
    np.testing.assert_array_equal(out[:, -8:], b[:, -8:])
    seam = out[:, 28:36, 0].astype(float).mean(0)
    assert np.all(np.diff(seam) <= 0) and seam[0] > seam[-1]  # a smooth transition
    np.testing.assert_array_equal(blend(a, b, np.ones((64, 64))), a)


def test_pyramid_errors(rng):
    with pytest.raises(ConfigError, match="levels"):
        gaussian_pyramid(rng.random((8, 8)), 5)
    with pytest.raises(DataError, match="one shape"):
        blend(np.zeros((8, 8)), np.zeros((8, 9)), np.zeros((8, 8)))
    with pytest.raises(DataError, match="mask"):
        blend(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="twice"):
        pyr_up(np.zeros((4, 4)), (20, 8))
