"""Noise models (to simulate sensors) and the denoisers that suit each.

All take a ``numpy.random.Generator`` and return the input dtype (uint8 clipped to [0, 255],
float clipped to [0, 1]). Gaussian: I + n, n ~ N(0, sigma^2) (sigma in the image's units).
Salt-and-pepper: a fraction ``amount`` of pixels set to max (share ``salt``) or 0. Poisson:
photon counting, I ~ Poisson(peak * I / max) * max / peak. Speckle (multiplicative):
I (1 + n), n ~ N(0, sigma^2).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, check_ksize, check_positive
from cvcraft.errors import ConfigError


def _finish(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.clip(x, 0.0, 1.0).astype(like.dtype)


def _max(img: np.ndarray) -> float:
    return 255.0 if img.dtype == np.uint8 else 1.0


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise: I + N(0, sigma^2)."""
    img = check_image(image)
    s = check_positive(sigma, "sigma", strict=False)
    return _finish(img + rng.normal(0.0, s, img.shape), img)


def salt_pepper_noise(
    image: np.ndarray, amount: float, rng: np.random.Generator, salt: float = 0.5
) -> np.ndarray:
    """Impulse noise: each pixel (all channels) hit with probability ``amount``; a hit is
    white with probability ``salt`` else black."""
    img = check_image(image)
    if not (0 <= amount <= 1 and 0 <= salt <= 1):
        raise ConfigError(f"amount and salt must be in [0, 1], got {amount}, {salt}")
    hit = rng.random(img.shape[:2]) < amount
    white = rng.random(img.shape[:2]) < salt
    out = img.copy()
    out[hit & white] = _max(img)
    out[hit & ~white] = 0
    return out


def poisson_noise(image: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: I' = Poisson(peak * I / max) * max / peak (peak = photons at full white;
    lower peak = noisier; the variance of I' is I * max / peak)."""
    img = check_image(image)
    p = check_positive(peak, "peak")
    m = _max(img)
    return _finish(rng.poisson(img.astype(np.float64) * (p / m)) * (m / p), img)


def speckle_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise (ultrasound, radar): I (1 + n), n ~ N(0, sigma^2)."""
    img = check_image(image)
    s = check_positive(sigma, "sigma", strict=False)
    return _finish(img * (1.0 + rng.normal(0.0, s, img.shape)), img)


def nl_means(image: np.ndarray, h: float = 10.0, template: int = 7, search: int = 21) -> np.ndarray:
    """Non-local means: average pixels whose surrounding *patches* look alike.

    out(p) = sum_q w(p,q) I(q) / sum_q w(p,q), w = exp(-||P(p) - P(q)||^2 / h^2) over a
    search x search window, P = template x template patches. uint8 grey or RGB (colour on
    Lab with the same h for colour).
    """
    img = check_image(image, channels=(1, 3), dtypes=(np.uint8,))
    hh = check_positive(h, "h")
    t = check_ksize(template, "template")
    s = check_ksize(search, "search")
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.fastNlMeansDenoisingColored(img, None, hh, hh, t, s)
    return cv2.fastNlMeansDenoising(img, None, hh, t, s)
