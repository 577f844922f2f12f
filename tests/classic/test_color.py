import colorsys

import numpy as np
import pytest
import skimage.color as skc

from cvcraft.classic.color import SPACES, rgb_to, rgb_to_gray, to_rgb
from cvcraft.errors import ConfigError, DataError


@pytest.fixture
def rgb(rng):
    x = rng.random((12, 14, 3)).astype(np.float32)
    x[0, :8] = [
        [0, 0, 0],
        [1, 1, 1],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0.5, 0.5, 0.5],
        [0, 1, 1],
    ]  # boundaries: black, white, primaries, grey
    return x


def test_float_conversions_match_skimage_and_colorsys(rng, rgb):
    np.testing.assert_allclose(rgb_to_gray(rgb), rgb @ [0.299, 0.587, 0.114], atol=1e-6)
    hsv, ref = rgb_to(rgb, "hsv"), skc.rgb2hsv(rgb)
    np.testing.assert_allclose(hsv[..., 0] / 360, ref[..., 0], atol=1e-5)
    np.testing.assert_allclose(hsv[..., 1:], ref[..., 1:], atol=1e-5)
    hls = rgb_to(rgb, "hls")
    ref = np.array([colorsys.rgb_to_hls(*p) for p in rgb.reshape(-1, 3).astype(float)])
    ref = ref.reshape(rgb.shape)
    np.testing.assert_allclose(hls[..., 0] / 360, ref[..., 0], atol=1e-5)
    np.testing.assert_allclose(hls[..., 1:], ref[..., 1:], atol=1e-5)
    # OpenCV's float Lab linearizes sRGB with a spline: within 0.5 of the exact formula
    np.testing.assert_allclose(rgb_to(rgb, "lab"), skc.rgb2lab(rgb), atol=0.5)
    np.testing.assert_allclose(rgb_to(rgb, "ycbcr"), skc.rgb2ypbpr(rgb) + [0, 0.5, 0.5], atol=5e-4)
    np.testing.assert_allclose(rgb_to(rgb, "yuv"), skc.rgb2yuv(rgb) + [0, 0.5, 0.5], atol=5e-4)


def test_uint8_conversions_match_skimage(rng):
    u = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    f = u / 255.0
    ycc = skc.rgb2ypbpr(f) * 255 + [0, 128, 128]
    assert np.abs(rgb_to(u, "ycbcr") - ycc).max() <= 1
    yuv = np.clip(np.rint(skc.rgb2yuv(f) * 255 + [0, 128, 128]), 0, 255)  # saturated bytes
    assert np.abs(rgb_to(u, "yuv") - yuv).max() <= 1
    hsv = rgb_to(u, "hsv").astype(float)
    sk = skc.rgb2hsv(u)
    hue_err = np.abs(hsv[..., 0] * 2 - sk[..., 0] * 360)
    assert np.minimum(hue_err, 360 - hue_err).max() <= 2.01  # H stored halved
    assert np.abs(hsv[..., 1:] - sk[..., 1:] * 255).max() <= 1


@pytest.mark.parametrize("space", [s for s in SPACES if s != "gray"])
def test_round_trips(rng, rgb, space):
    np.testing.assert_allclose(to_rgb(rgb_to(rgb, space), space), rgb, atol=5e-3)
    u = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    # 8-bit YUV saturates V (0.877 (R - Y) + 128 can pass 255): strong reds don't round-trip
    tol = {"hsv": 6, "hls": 6, "lab": 10, "ycbcr": 2, "yuv": 8}[space]
    assert np.abs(to_rgb(rgb_to(u, space), space).astype(int) - u).max() <= tol


def test_color_errors(rgb):
    with pytest.raises(ConfigError, match="space"):
        rgb_to(rgb, "xyz")
    with pytest.raises(DataError, match="channels"):
        rgb_to(rgb[..., 0], "hsv")
    with pytest.raises(DataError, match="dtype"):
        rgb_to(rgb.astype(np.float64), "hsv")
