"""Canny's edge detector, one function per step so each can be looked at:

    smooth -> gradient (magnitude, direction) -> non_max_suppression -> double_threshold
    -> hysteresis

``canny`` chains them; with ``sigma=0`` (no smoothing) its edges equal ``cv2.Canny``'s. The
steps follow OpenCV's conventions so they match it bit for bit: Sobel gradients with a
replicated border, the direction quantized with tan(22.5 deg) in 15-bit fixed point, a pixel
survives NMS if it is > its "before" neighbour and >= its "after" one (strictly > both on
diagonals), thresholds are strict (> low, > high), hysteresis is 8-connected.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from cvcraft.classic.checks import check_ksize, check_positive, to_gray
from cvcraft.classic.filters import gaussian_blur
from cvcraft.errors import ConfigError

# OpenCV's fixed-point tan(22.5 deg): round(0.41421356 * 2^15); tan(67.5) = tan(22.5) + 2.
TG22 = 13573
SHIFT = 15


class CannyGradient(NamedTuple):
    """Sobel derivatives, their magnitude and direction (degrees in (-180, 180])."""

    gx: np.ndarray
    gy: np.ndarray
    magnitude: np.ndarray
    direction: np.ndarray


class CannySteps(NamedTuple):
    """Every intermediate image of ``canny`` (for teaching and ``imgproc canny steps=true``)."""

    smoothed: np.ndarray
    gradient: CannyGradient
    nms: np.ndarray
    strong: np.ndarray
    weak: np.ndarray
    edges: np.ndarray


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Step 1: Gaussian smoothing to keep noise from becoming edges (sigma 0 = no smoothing).

    I_s = G_sigma * I; grey float64 (H, W).
    """
    img = to_gray(image).astype(np.float64)
    s = check_positive(sigma, "sigma", strict=False)
    return img if s == 0 else gaussian_blur(img, s)


def gradient(image: np.ndarray, aperture: int = 3, l2: bool = False) -> CannyGradient:
    """Step 2: Sobel gradient, magnitude and direction.

    gx, gy = Sobel(I) (replicated border); |g| = |gx| + |gy| (l2=False, OpenCV's default) or
    sqrt(gx^2 + gy^2); theta = atan2(gy, gx) in degrees. All (H, W) float64.
    """
    img = to_gray(image).astype(np.float64)
    k = check_ksize(aperture, "aperture", minimum=3)
    if k > 7:
        raise ConfigError(f"Canny's aperture must be 3, 5 or 7, got {k}")
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=k, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=k, borderType=cv2.BORDER_REPLICATE)
    mag = np.hypot(gx, gy) if l2 else np.abs(gx) + np.abs(gy)
    return CannyGradient(gx, gy, mag, np.degrees(np.arctan2(gy, gx)))


def direction_sector(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Quantize the gradient direction: 0 horizontal, 1 vertical, 2 diagonal "\\", 3 "/".

    |gy| < |gx| tan 22.5 -> 0; |gy| > |gx| tan 67.5 -> 1; else diagonal by the sign of gx*gy
    (same signs: down-right "\\" = 2). (H, W) int8.
    """
    ax = np.abs(gx).astype(np.float64)
    ay = np.abs(gy).astype(np.float64) * (1 << SHIFT)
    tg22x = ax * TG22
    tg67x = tg22x + ax * (1 << (SHIFT + 1))
    sector = np.where(ay < tg22x, 0, np.where(ay > tg67x, 1, np.where(gx * gy < 0, 3, 2)))
    return sector.astype(np.int8)


def non_max_suppression(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Step 3: thin edges to one pixel by keeping only maxima along the gradient direction.

    m(p) is kept if m(p) > m(p - d) and m(p) >= m(p + d) (both > on diagonals), d the unit
    step along the quantized direction; outside the image m = 0. (H, W) -> (H, W), 0 where
    suppressed.
    """
    m = np.asarray(magnitude, dtype=np.float64)
    if m.ndim != 2 or m.shape != np.shape(gx) or m.shape != np.shape(gy):
        raise ConfigError(
            f"magnitude, gx and gy must be HxW of one shape, got {m.shape}, "
            f"{np.shape(gx)}, {np.shape(gy)}"
        )
    h, w = m.shape
    p = np.pad(m, 1)  # zeros outside, as OpenCV's magnitude buffer

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    sector = direction_sector(gx, gy)
    keep = np.select(
        [sector == 0, sector == 1, sector == 2],
        [
            (m > at(0, -1)) & (m >= at(0, 1)),  # left / right
            (m > at(-1, 0)) & (m >= at(1, 0)),  # up / down
            (m > at(-1, -1)) & (m > at(1, 1)),  # "\" diagonal
        ],
        (m > at(-1, 1)) & (m > at(1, -1)),  # "/" diagonal
    )
    return np.where(keep, m, 0.0)


def double_threshold(nms: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: split the thinned magnitudes into strong (> high) and weak (low < m <= high).

    With l2 magnitudes, OpenCV compares squared values; the results are the same. -> 2 x bool
    """
    lo, hi = _thresholds(low, high)
    return nms > hi, (nms > lo) & (nms <= hi)


def hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Step 5: keep weak pixels 8-connected (through weak pixels) to a strong one.

    Label the components of strong | weak once; a component is an edge if it holds a strong
    pixel. (H, W) bool -> (H, W) bool
    """
    strong = np.asarray(strong, dtype=bool)
    cand = strong | np.asarray(weak, dtype=bool)
    n, labels = cv2.connectedComponents(cand.view(np.uint8), connectivity=8)
    has_strong = np.zeros(n, dtype=bool)
    has_strong[labels[strong]] = True
    has_strong[0] = False  # background
    return has_strong[labels]


def _thresholds(low: float, high: float) -> tuple[float, float]:
    lo = check_positive(low, "low", strict=False)
    hi = check_positive(high, "high", strict=False)
    if lo > hi:
        lo, hi = hi, lo  # OpenCV swaps them too
    return lo, hi


def canny_steps(
    image: np.ndarray,
    low: float,
    high: float,
    sigma: float = 0.0,
    aperture: int = 3,
    l2: bool = False,
) -> CannySteps:
    """Run all five steps and return every intermediate image (see the module docstring)."""
    _thresholds(low, high)
    s = smooth(image, sigma)
    g = gradient(s, aperture, l2)
    nms = non_max_suppression(g.magnitude, g.gx, g.gy)
    strong, weak = double_threshold(nms, low, high)
    return CannySteps(s, g, nms, strong, weak, hysteresis(strong, weak))


def canny(
    image: np.ndarray,
    low: float,
    high: float,
    sigma: float = 0.0,
    aperture: int = 3,
    l2: bool = False,
) -> np.ndarray:
    """Canny edges as uint8 0/255 (H, W): smoothing, Sobel, NMS, double threshold, hysteresis.

    Thresholds are on the Sobel magnitude (|gx| + |gy|, or L2 with ``l2``). sigma=0 skips
    smoothing, as ``cv2.Canny`` does.
    """
    return canny_steps(image, low, high, sigma, aperture, l2).edges.astype(np.uint8) * 255
