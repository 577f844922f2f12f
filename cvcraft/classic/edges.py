"""Derivative filters for edges: Roberts, Prewitt, Sobel, Scharr (first order), Laplacian,
LoG, DoG (second order). Results are float (float32 for uint8/float32 input, else float64).

First-order operators return (gx, gy): gx responds to change along x (columns, left to
right), gy along y (rows, top to bottom); the kernels are applied as correlations, so a dark
to bright step from left to right gives gx > 0. ``magnitude`` combines them.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import border_flag, check_ksize, check_positive, to_gray
from cvcraft.classic.filters import gaussian_blur
from cvcraft.errors import ConfigError

ROBERTS_X = np.array([[1.0, 0.0], [0.0, -1.0]])  # d/d(diagonal), anchor top-left
ROBERTS_Y = np.array([[0.0, 1.0], [-1.0, 0.0]])
PREWITT_X = np.array([[-1.0, 0.0, 1.0]] * 3)


def _float(image: np.ndarray) -> np.ndarray:
    g = to_gray(image)
    return g.astype(np.float64 if g.dtype == np.float64 else np.float32)


def _correlate(img: np.ndarray, k: np.ndarray, border: str, anchor=(-1, -1)) -> np.ndarray:
    return cv2.filter2D(img, -1, k, anchor=anchor, borderType=border_flag(border))


def magnitude(gx: np.ndarray, gy: np.ndarray, norm: str = "l2") -> np.ndarray:
    """Gradient magnitude: sqrt(gx^2 + gy^2) ("l2") or |gx| + |gy| ("l1")."""
    if norm == "l1":
        return np.abs(gx) + np.abs(gy)
    return np.hypot(gx, gy)


def roberts(image: np.ndarray, border: str = "reflect101") -> tuple[np.ndarray, np.ndarray]:
    """Roberts cross: differences along the two diagonals of each 2x2 block.

    g1(y,x) = I(y,x) - I(y+1,x+1), g2(y,x) = I(y,x+1) - I(y+1,x). (H, W) -> 2 x (H, W)
    """
    img = _float(image)
    return (
        _correlate(img, ROBERTS_X, border, anchor=(0, 0)),
        _correlate(img, ROBERTS_Y, border, anchor=(0, 0)),
    )


def prewitt(image: np.ndarray, border: str = "reflect101") -> tuple[np.ndarray, np.ndarray]:
    """Prewitt: central difference [-1 0 1] averaged (unweighted) over 3 rows/columns.

    gx = [1 1 1]^T [-1 0 1], gy = its transpose (unnormalized). (H, W) -> 2 x (H, W)
    """
    img = _float(image)
    return _correlate(img, PREWITT_X, border), _correlate(img, PREWITT_X.T, border)


def sobel(
    image: np.ndarray, ksize: int = 3, border: str = "reflect101"
) -> tuple[np.ndarray, np.ndarray]:
    """Sobel: central difference smoothed by a binomial [1 2 1] across it (ksize 3, 5 or 7).

    gx = [1 2 1]^T [-1 0 1] for ksize 3 (unnormalized); larger ksize = binomial smoothing of
    the same. (H, W) -> 2 x (H, W)
    """
    img = _float(image)
    k = check_ksize(ksize, minimum=3)
    b = border_flag(border)
    return (
        cv2.Sobel(img, -1, 1, 0, ksize=k, borderType=b),
        cv2.Sobel(img, -1, 0, 1, ksize=k, borderType=b),
    )


def scharr(image: np.ndarray, border: str = "reflect101") -> tuple[np.ndarray, np.ndarray]:
    """Scharr: a 3x3 derivative with better rotation invariance than Sobel.

    gx = [3 10 3]^T [-1 0 1], gy its transpose. (H, W) -> 2 x (H, W)
    """
    img = _float(image)
    b = border_flag(border)
    return cv2.Scharr(img, -1, 1, 0, borderType=b), cv2.Scharr(img, -1, 0, 1, borderType=b)


def laplacian(image: np.ndarray, ksize: int = 1, border: str = "reflect101") -> np.ndarray:
    """Laplacian d2I/dx2 + d2I/dy2: zero crossings mark edges.

    ksize 1: the 4-neighbour kernel [[0 1 0] [1 -4 1] [0 1 0]]; ksize 3..: sum of Sobel second
    derivatives. (H, W) -> (H, W)
    """
    img = _float(image)
    k = check_ksize(ksize)
    return cv2.Laplacian(img, -1, ksize=k, borderType=border_flag(border))


def _gauss1d(sigma: float, order: int, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / (sigma * sigma))
    g /= g.sum()
    if order == 2:  # d2/dx2 of the Gaussian, sampled: (x^2 / s^4 - 1 / s^2) g
        g = g * (x * x / sigma**4 - 1.0 / sigma**2)
    return g


def log(image: np.ndarray, sigma: float, border: str = "reflect") -> np.ndarray:
    """Laplacian of Gaussian (Marr-Hildreth): blob/edge response at scale sigma.

    LoG = G''(x) G(y) + G(x) G''(y), G''(x) = (x^2/s^4 - 1/s^2) G(x), each 1-D kernel sampled
    on +-int(4 sigma + 0.5) (scipy's ``gaussian_laplace``). (H, W) -> (H, W) float64
    """
    s = check_positive(sigma, "sigma")
    img = to_gray(image).astype(np.float64)
    r = int(4.0 * s + 0.5)
    g0, g2 = _gauss1d(s, 0, r), _gauss1d(s, 2, r)
    b = border_flag(border)
    return cv2.sepFilter2D(img, -1, g2, g0, borderType=b) + cv2.sepFilter2D(
        img, -1, g0, g2, borderType=b
    )


def dog(
    image: np.ndarray, sigma_low: float, sigma_high: float, border: str = "replicate"
) -> np.ndarray:
    """Difference of Gaussians, a band-pass and cheap LoG approximation (ratio ~1.6).

    DoG = G_{sigma_low} * I - G_{sigma_high} * I with sigma_low < sigma_high. (H, W) -> float64
    """
    lo = check_positive(sigma_low, "sigma_low")
    hi = check_positive(sigma_high, "sigma_high")
    if hi <= lo:
        raise ConfigError(f"dog needs sigma_low < sigma_high, got {lo} and {hi}")
    img = to_gray(image).astype(np.float64)
    return gaussian_blur(img, lo, border=border) - gaussian_blur(img, hi, border=border)
