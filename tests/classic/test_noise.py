import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as sk_psnr

from cvcraft.classic.filters import median_blur
from cvcraft.classic.noise import (
    gaussian_noise,
    nl_means,
    poisson_noise,
    salt_pepper_noise,
    speckle_noise,
)
from cvcraft.errors import ConfigError, DataError


@pytest.fixture
def flat():
    return np.full((200, 200), 0.5)


def test_noise_statistics(rng, flat):
    g = gaussian_noise(flat, 0.05, rng) - 0.5
    assert abs(g.mean()) < 0.002 and g.std() == pytest.approx(0.05, rel=0.03)
    s = speckle_noise(flat, 0.1, rng) / 0.5 - 1
    assert s.std() == pytest.approx(0.1, rel=0.03)
    p = poisson_noise(flat, 100.0, rng)  # var = I * max / peak
    assert p.mean() == pytest.approx(0.5, abs=0.003)
    assert p.var() == pytest.approx(0.5 / 100, rel=0.05)
    sp = salt_pepper_noise(flat, 0.1, rng, salt=0.3)
    assert (sp != 0.5).mean() == pytest.approx(0.1, abs=0.01)
    assert (sp == 1).sum() / (sp != 0.5).sum() == pytest.approx(0.3, abs=0.05)


def test_noise_keeps_dtype_and_range(rng):
    u = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    for f in (gaussian_noise(u, 40, rng), speckle_noise(u, 0.5, rng), poisson_noise(u, 5, rng)):
        assert f.dtype == np.uint8
    x = rng.random((10, 10)).astype(np.float32)
    out = gaussian_noise(x, 2.0, rng)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    # salt-and-pepper hits all channels of a pixel together
    sp = salt_pepper_noise(u, 0.5, rng)
    hit = (sp == 0).all(2) | (sp == 255).all(2)
    assert hit.mean() > 0.4


def test_denoisers_wrap_opencv_and_improve_psnr(rng):
    clean = cv2.GaussianBlur(rng.integers(0, 256, (64, 64), dtype=np.uint8), (0, 0), 3)
    noisy = gaussian_noise(clean, 15, rng)
    den = nl_means(noisy, 15, 7, 21)
    np.testing.assert_array_equal(den, cv2.fastNlMeansDenoising(noisy, None, 15, 7, 21))
    assert sk_psnr(clean, den) > sk_psnr(clean, noisy) + 3
    sp = salt_pepper_noise(clean, 0.05, rng)
    assert sk_psnr(clean, median_blur(sp, 3)) > sk_psnr(clean, sp) + 10


def test_noise_errors(rng):
    with pytest.raises(ConfigError, match="amount"):
        salt_pepper_noise(np.zeros((4, 4)), 1.5, rng)
    with pytest.raises(ConfigError, match="peak"):
        poisson_noise(np.zeros((4, 4)), 0, rng)
    with pytest.raises(DataError, match="dtype"):
        nl_means(np.zeros((8, 8)), 10)
    with pytest.raises(ConfigError, match="odd"):
        nl_means(np.zeros((8, 8), np.uint8), 10, template=4)
