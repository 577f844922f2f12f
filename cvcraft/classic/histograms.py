"""Intensity histograms and what they are used for: equalisation, CLAHE, histogram matching,
global (Otsu) and adaptive thresholds.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_gray, check_image, check_ksize, check_positive, choice
from cvcraft.errors import ConfigError


def histogram(image: np.ndarray, bins: int = 256, value_range: tuple[float, float] = (0, 256)):
    """Counts of pixel values in ``bins`` equal bins over [lo, hi), one row per channel.

    h[c, b] = #{p : lo + b w <= I_c(p) < lo + (b+1) w}, w = (hi - lo) / bins. -> (C, bins) int64
    """
    img = check_image(image)
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    lo, hi = map(float, value_range)
    if not hi > lo:
        raise ConfigError(f"value_range must be (lo, hi) with lo < hi, got {value_range}")
    chans = img.reshape(img.shape[0], img.shape[1], -1)
    if img.dtype == np.float64:
        chans = chans.astype(np.float32)
    rows = [
        cv2.calcHist([np.ascontiguousarray(chans[..., c])], [0], None, [bins], [lo, hi]).reshape(-1)
        for c in range(chans.shape[2])
    ]
    return np.rint(np.stack(rows)).astype(np.int64)


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation: map each level through the normalized cumulative histogram.

    lut(v) = round(255 * (cdf(v) - cdf_min) / (N - cdf_min)). Grey uint8 directly; RGB uint8
    on the luma (Y of YCrCb) so colours do not shift.
    """
    img = check_image(image, channels=(1, 3), dtypes=(np.uint8,))
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.equalizeHist(img.reshape(img.shape[:2])).reshape(img.shape)
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive equalisation: per-tile equalisation, each tile's histogram
    clipped at clip_limit * (mean count) with the excess spread evenly, tiles blended
    bilinearly. uint8 grey, or RGB on the L of Lab.
    """
    img = check_image(image, channels=(1, 3), dtypes=(np.uint8,))
    c = check_positive(clip_limit, "clip_limit")
    if tiles < 1:
        raise ConfigError(f"tiles must be >= 1, got {tiles}")
    op = cv2.createCLAHE(clipLimit=c, tileGridSize=(tiles, tiles))
    if img.ndim == 2 or img.shape[2] == 1:
        return op.apply(img.reshape(img.shape[:2])).reshape(img.shape)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)


def match_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Remap ``image`` so each channel's histogram matches ``reference``'s.

    For every source value v with quantile q_s(v) = cdf_s(v) / N_s, the output is the
    reference value at the same quantile, linearly interpolated: F_r^{-1}(q_s(v)). uint8 in
    -> uint8 (rounded), float in -> float64.
    """
    img = check_image(image)
    ref = check_image(reference, "reference")
    ci = 1 if img.ndim == 2 else img.shape[2]
    cr = 1 if ref.ndim == 2 else ref.shape[2]
    if ci != cr:
        raise ConfigError(f"image has {ci} channels but reference has {cr}; they must agree")
    src = img.reshape(img.shape[0], img.shape[1], ci)
    dst = ref.reshape(ref.shape[0], ref.shape[1], cr)
    out = np.empty(src.shape, dtype=np.float64)
    for c in range(ci):  # loop over channels, each fully vectorized
        s_vals, s_idx, s_counts = np.unique(src[..., c], return_inverse=True, return_counts=True)
        r_vals, r_counts = np.unique(dst[..., c], return_counts=True)
        s_q = np.cumsum(s_counts) / src[..., c].size
        r_q = np.cumsum(r_counts) / dst[..., c].size
        out[..., c] = np.interp(s_q, r_q, r_vals)[s_idx.reshape(src.shape[:2])]
    out = out.reshape(img.shape)
    return np.rint(out).astype(np.uint8) if img.dtype == np.uint8 else out


def otsu_threshold(image: np.ndarray) -> tuple[float, np.ndarray]:
    """Otsu's global threshold: the t maximizing the between-class variance
    w0(t) w1(t) (mu0(t) - mu1(t))^2 of the grey histogram. -> (t, mask I > t as uint8 0/255).
    """
    img = check_gray(image, dtypes=(np.uint8,))
    t, mask = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return float(t), mask


def adaptive_threshold(
    image: np.ndarray, block_size: int = 11, offset: float = 2.0, method: str = "mean"
) -> np.ndarray:
    """Threshold each pixel against its neighbourhood: I(p) > T(p) - offset -> 255.

    T = mean ("mean") or Gaussian-weighted mean ("gaussian") of the block_size^2 window
    (replicated border), rounded to uint8 as OpenCV does. uint8 grey -> uint8 0/255.
    """
    img = check_gray(image, dtypes=(np.uint8,))
    k = check_ksize(block_size, "block_size", minimum=3)
    choice(method, "method", ("mean", "gaussian"))
    m = cv2.ADAPTIVE_THRESH_MEAN_C if method == "mean" else cv2.ADAPTIVE_THRESH_GAUSSIAN_C
    return cv2.adaptiveThreshold(img, 255, m, cv2.THRESH_BINARY, k, float(offset))
