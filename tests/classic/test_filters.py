import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.filters import unsharp_mask as sk_unsharp

from cvcraft.classic.filters import (
    bilateral_filter,
    box_filter,
    filter2d,
    gaussian_blur,
    median_blur,
    unsharp_mask,
)
from cvcraft.errors import ConfigError, DataError


@pytest.mark.parametrize("shape", [(3, 4), (5, 5), (2, 2), (1, 3)])
@pytest.mark.parametrize("mode", ["correlate", "convolve"])
def test_filter2d_matches_scipy_for_odd_and_even_kernels(rng, shape, mode):
    x = rng.random((19, 23))
    k = rng.normal(size=shape)
    ours = filter2d(x, k, mode)
    ref = getattr(ndi, mode)(x, k, mode="mirror")  # mirror = OpenCV's reflect101
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_correlation_and_convolution_differ_for_an_asymmetric_kernel(rng):
    x = rng.random((10, 10))
    k = np.array([[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(filter2d(x, k, "convolve"), -filter2d(x, k, "correlate"))


@pytest.mark.parametrize(
    "border,mode", [("reflect101", "mirror"), ("reflect", "reflect"), ("replicate", "nearest")]
)
def test_gaussian_and_box_match_scipy_per_border(rng, border, mode):
    x = rng.random((17, 21))
    np.testing.assert_allclose(
        gaussian_blur(x, 1.3, border=border), ndi.gaussian_filter(x, 1.3, mode=mode), atol=1e-12
    )
    np.testing.assert_allclose(
        box_filter(x, 5, border=border), ndi.uniform_filter(x, 5, mode=mode), atol=1e-12
    )


def test_uint8_box_filter_rounds(rng):
    x = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    ref = np.rint(ndi.uniform_filter(x.astype(float), 3, mode="mirror"))
    assert np.abs(box_filter(x, 3).astype(int) - ref).max() <= 1
    assert box_filter(x, 3).dtype == np.uint8


@pytest.mark.parametrize("k", [3, 5, 7])
def test_median_matches_scipy(rng, k):
    x = rng.integers(0, 256, (20, 17), dtype=np.uint8)
    np.testing.assert_array_equal(median_blur(x, k), ndi.median_filter(x, k, mode="nearest"))


def test_median_rgb_per_channel(rng):
    x = rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)
    ref = np.stack([ndi.median_filter(x[..., c], 3, mode="nearest") for c in range(3)], -1)
    np.testing.assert_array_equal(median_blur(x, 3), ref)


def test_unsharp_matches_skimage(rng):
    x = rng.random((20, 23))
    ref = sk_unsharp(x, radius=1.5, amount=0.7, preserve_range=True)
    np.testing.assert_allclose(unsharp_mask(x, 1.5, 0.7), ref, atol=1e-12)
    u = (x * 255).astype(np.uint8)
    out = unsharp_mask(u, 1.0, 2.0)
    assert out.dtype == np.uint8
    ref8 = sk_unsharp(u.astype(float), 1.0, 2.0, preserve_range=True)
    assert np.abs(out.astype(float) - np.clip(ref8, 0, 255)).max() <= 0.5 + 1e-9


def test_bilateral_against_a_direct_formula(rng):
    x = rng.random((12, 13)).astype(np.float32)
    d, sc, ss = 5, 0.3, 2.0
    out = bilateral_filter(x, d, sc, ss)
    # direct formula on an interior pixel (OpenCV's window is the disc of radius d//2)
    y0, x0, r = 6, 6, d // 2
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
    disc = ys**2 + xs**2 <= r * r
    patch = x[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(float)
    w = np.exp(-(ys**2 + xs**2) / (2 * ss**2)) * np.exp(-((patch - x[y0, x0]) ** 2) / (2 * sc**2))
    w = w * disc
    assert out[y0, x0] == pytest.approx((w * patch).sum() / w.sum(), abs=2e-3)


def test_bad_inputs_raise_clear_errors(rng):
    x = rng.random((8, 8))
    with pytest.raises(ConfigError, match="odd"):
        gaussian_blur(x, 1.0, ksize=4)
    with pytest.raises(ConfigError, match="odd"):
        box_filter(x, 2)
    with pytest.raises(DataError, match="empty"):
        box_filter(np.zeros((0, 5)), 3)
    with pytest.raises(DataError, match="dtype"):
        median_blur(x, 3)  # float64
    with pytest.raises(ConfigError, match="float32"):
        median_blur(x.astype(np.float32), 7)
    with pytest.raises(DataError, match="channels"):
        box_filter(np.zeros((4, 4, 2)), 3)
    with pytest.raises(ConfigError, match="sigma"):
        gaussian_blur(x, 0)
    with pytest.raises(DataError, match="numpy"):
        box_filter([[1, 2]], 3)
    with pytest.raises(ConfigError, match="border"):
        box_filter(x, 3, border="wrap")
