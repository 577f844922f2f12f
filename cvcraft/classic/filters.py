"""Linear and non-linear smoothing filters: box, Gaussian, median, bilateral, any 2-D kernel,
unsharp masking. All keep the input's shape and dtype (uint8 results are rounded/saturated).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import (
    border_flag,
    check_image,
    check_ksize,
    check_positive,
    choice,
)
from cvcraft.errors import ConfigError, DataError


def gaussian_ksize(sigma: float) -> int:
    """The odd kernel size covering +-4 sigma: 2 * int(4 sigma + 0.5) + 1 (scipy's truncate=4)."""
    return 2 * int(4.0 * sigma + 0.5) + 1


def box_filter(image: np.ndarray, ksize: int, border: str = "reflect101") -> np.ndarray:
    """Mean of the k x k window around each pixel.

    out(y, x) = 1/k^2 * sum_{|i|,|j| <= k//2} img(y+i, x+j). Shape/dtype kept.
    """
    img = check_image(image)
    k = check_ksize(ksize)
    return cv2.blur(img, (k, k), borderType=border_flag(border))


def gaussian_blur(
    image: np.ndarray, sigma: float, ksize: int | None = None, border: str = "reflect101"
) -> np.ndarray:
    """Convolution with a sampled, normalized Gaussian (separable).

    g(i) = exp(-i^2 / (2 sigma^2)) / sum_j exp(-j^2 / (2 sigma^2)), |i| <= ksize // 2;
    ksize defaults to 2 * int(4 sigma + 0.5) + 1 (scipy's ``gaussian_filter`` support).
    """
    img = check_image(image)
    s = check_positive(sigma, "sigma")
    k = gaussian_ksize(s) if ksize is None else check_ksize(ksize)
    return cv2.GaussianBlur(img, (k, k), s, sigmaY=s, borderType=border_flag(border))


def median_blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """Median of the k x k window (robust to salt-and-pepper noise); border replicated.

    out(y, x) = median{img(y+i, x+j) : |i|,|j| <= k//2}. float32 only for k in {3, 5}.
    """
    img = check_image(image, dtypes=(np.uint8, np.float32))
    k = check_ksize(ksize, minimum=3)
    if img.dtype == np.float32 and k > 5:
        raise ConfigError(f"median_blur on float32 supports ksize 3 or 5 only, got {k}; use uint8")
    return cv2.medianBlur(img, k)


def bilateral_filter(
    image: np.ndarray, diameter: int, sigma_color: float, sigma_space: float
) -> np.ndarray:
    """Edge-preserving smoothing: neighbours weighted by distance in space *and* in value.

    out(p) = sum_q w(p,q) img(q) / sum_q w(p,q),
    w = exp(-|p-q|^2 / 2 sigma_space^2) * exp(-|img(p)-img(q)|^2 / 2 sigma_color^2).
    """
    img = check_image(image, channels=(1, 3), dtypes=(np.uint8, np.float32))
    d = check_ksize(diameter, "diameter")
    sc = check_positive(sigma_color, "sigma_color")
    ss = check_positive(sigma_space, "sigma_space")
    return cv2.bilateralFilter(img, d, sc, ss)


def filter2d(
    image: np.ndarray,
    kernel: np.ndarray,
    mode: str = "correlate",
    border: str = "reflect101",
) -> np.ndarray:
    """Apply any 2-D kernel. float images give float results, uint8 is rounded and saturated.

    correlate: out(y,x) = sum_{i,j} K(i,j) img(y+i-ay, x+j-ax)   (cv2.filter2D, scipy.correlate)
    convolve:  the same with K flipped in both axes (true convolution, scipy.convolve);
    the anchor (ay, ax) is the kernel centre (kh//2, kw//2). The two differ only for
    non-symmetric kernels (e.g. Sobel's sign flips).
    """
    img = check_image(image)
    choice(mode, "mode", ("correlate", "convolve"))
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise DataError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    if mode == "convolve":
        k = k[::-1, ::-1]
        # Flipping moves the centre of an even-sized kernel; keep scipy's convolve anchor.
        anchor = ((k.shape[1] - 1) // 2, (k.shape[0] - 1) // 2)
    else:
        anchor = (k.shape[1] // 2, k.shape[0] // 2)
    return cv2.filter2D(img, -1, k, anchor=anchor, borderType=border_flag(border))


def unsharp_mask(
    image: np.ndarray, sigma: float = 1.0, amount: float = 1.0, border: str = "reflect"
) -> np.ndarray:
    """Sharpen by adding back the detail a Gaussian blur removes.

    out = img + amount * (img - G_sigma * img); uint8 is rounded and clipped to [0, 255],
    float is left unclipped.
    """
    img = check_image(image)
    amt = check_positive(amount, "amount", strict=False)
    x = img.astype(np.float64)
    blurred = gaussian_blur(x, sigma, border=border)
    out = x + amt * (x - blurred)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(img.dtype)
