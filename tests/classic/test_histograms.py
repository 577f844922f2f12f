import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.exposure as ske
import skimage.filters as skf

from cvcraft.classic.histograms import (
    adaptive_threshold,
    clahe,
    equalize,
    histogram,
    match_histograms,
    otsu_threshold,
)
from cvcraft.errors import ConfigError, DataError


def test_histogram_matches_numpy(rng):
    x = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    h = histogram(x)
    for c in range(3):
        np.testing.assert_array_equal(h[c], np.bincount(x[..., c].ravel(), minlength=256))
    f = rng.random((10, 10))
    hf = histogram(f, bins=10, value_range=(0, 1))
    np.testing.assert_array_equal(hf[0], np.histogram(f, bins=10, range=(0, 1))[0])
    counts, centers = ske.histogram(x[..., 0], nbins=256, source_range="dtype")
    np.testing.assert_array_equal(h[0], counts)
    np.testing.assert_array_equal(histogram(x[..., 0], 64)[0], counts.reshape(64, 4).sum(1))


def _equalize_ref(g: np.ndarray) -> np.ndarray:
    hist = np.bincount(g.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    cmin = cdf[hist > 0][0]
    lut = np.clip(np.rint((cdf - cmin) * 255.0 / (g.size - cmin)), 0, 255)
    return lut[g].astype(np.uint8)


def test_equalize_matches_the_cdf_formula(rng):
    g = (rng.beta(2, 5, (40, 30)) * 200).astype(np.uint8)
    assert np.abs(equalize(g).astype(int) - _equalize_ref(g)).max() <= 1
    eq = equalize(g)
    # the equalised cdf is close to the identity (skimage's equalize_hist is the float version)
    np.testing.assert_allclose(eq / 255.0, ske.equalize_hist(g, nbins=256), atol=0.02)
    # RGB is equalised on the luma: a grey RGB image gives the grey result in every channel
    rgb = np.repeat(g[..., None], 3, axis=2)
    assert np.abs(equalize(rgb).astype(int) - _equalize_ref(g)[..., None]).max() <= 1


def test_clahe_wraps_opencv_and_limits_contrast(rng):
    g = (rng.beta(2, 5, (64, 64)) * 120).astype(np.uint8)
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(g)
    np.testing.assert_array_equal(clahe(g, 3.0, 4), ref)
    # a lower clip limit stretches less
    assert clahe(g, 1.0, 4).std() < clahe(g, 10.0, 4).std()
    assert clahe(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).shape == (16, 16, 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_match_histograms_equals_skimage(rng, dtype):
    a = rng.integers(0, 256, (30, 33, 3)).astype(dtype)
    b = (rng.beta(5, 2, (20, 21, 3)) * 255).astype(dtype)
    grey = ske.match_histograms(a[..., 0], b[..., 0])  # float64 for any input
    rgb = ske.match_histograms(a, b, channel_axis=-1)  # input dtype (uint8: truncated)
    if dtype == np.uint8:
        np.testing.assert_array_equal(match_histograms(a[..., 0], b[..., 0]), np.rint(grey))
        d = match_histograms(a, b).astype(int) - rgb
        assert d.min() >= 0 and d.max() <= 1
    else:
        np.testing.assert_allclose(match_histograms(a[..., 0], b[..., 0]), grey, atol=1e-9)
        np.testing.assert_allclose(match_histograms(a, b), rgb, atol=1e-9)


def test_otsu_matches_skimage(rng):
    for _ in range(3):
        g = (
            np.concatenate([rng.normal(70, 15, 500), rng.normal(170, 25, 700)])
            .clip(0, 255)
            .astype(np.uint8)
            .reshape(30, 40)
        )
        t, mask = otsu_threshold(g)
        assert t == skf.threshold_otsu(g)
        np.testing.assert_array_equal(mask > 0, g > skf.threshold_otsu(g))


@pytest.mark.parametrize("offset", [2, 2.5, -3, 0])
def test_adaptive_threshold_mean_matches_formula_and_skimage(rng, offset):
    g = rng.integers(0, 256, (50, 53), dtype=np.uint8)
    out = adaptive_threshold(g, 11, offset, "mean")
    # OpenCV's formula: the window mean rounded to uint8, offset rounded up
    mean = np.rint(ndi.uniform_filter(g.astype(float), 11, mode="nearest"))
    ref = (g - mean > -np.ceil(offset)) * 255
    np.testing.assert_array_equal(out, ref)
    sk = g > skf.threshold_local(g, 11, "mean", offset=offset, mode="nearest")
    assert ((out > 0) == sk).mean() > 0.99
    gs = adaptive_threshold(g, 11, offset, "gaussian")
    sig = 0.3 * ((11 - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given ksize
    sk = g > skf.threshold_local(g, 11, "gaussian", offset=offset, mode="nearest", param=sig)
    assert ((gs > 0) == sk).mean() > 0.99


def test_histogram_errors(rng):
    with pytest.raises(DataError, match="dtype"):
        equalize(rng.random((5, 5)))
    with pytest.raises(ConfigError, match="clip_limit"):
        clahe(np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ConfigError, match="odd"):
        adaptive_threshold(np.zeros((8, 8), np.uint8), 4)
    with pytest.raises(DataError, match="channels"):
        otsu_threshold(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="channels"):
        match_histograms(np.zeros((4, 4, 3)), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="lo < hi"):
        histogram(np.zeros((4, 4)), 4, (1, 0))
