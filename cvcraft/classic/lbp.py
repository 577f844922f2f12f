"""Local Binary Patterns (Ojala et al. 2002), vectorized over a batch of grey images.

Each pixel c is compared with P neighbours on a circle of radius R, sampled bilinearly at
(y - R sin(2 pi p / P), x + R cos(2 pi p / P)) (zero outside the image); bit p is
s_p = [I_p - I_c >= 0] and the code is sum_p s_p 2^p ("default"). "ror" is the minimum
over the P circular bit rotations (rotation invariant); "uniform" maps patterns with at most
two 0/1 transitions to their number of ones (0..P) and all others to P + 1 (rotation
invariant, P + 2 values). Equals ``skimage.feature.local_binary_pattern`` (tested).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cvcraft.classic.checks import check_positive, choice
from cvcraft.errors import ConfigError, DataError

METHODS = ("default", "ror", "uniform")


@lru_cache(maxsize=16)
def _code_table(p: int, method: str) -> np.ndarray:
    """Map every P-bit code to its "ror" or "uniform" value. -> (2^P,) int64"""
    codes = np.arange(1 << p, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(p)) & 1  # (2^P, P)
    if method == "uniform":
        transitions = (bits != np.roll(bits, -1, axis=1)).sum(1)
        return np.where(transitions <= 2, bits.sum(1), p + 1)
    # rotations of the bit string: code rotated right by k
    rots = [((codes >> k) | (codes << (p - k))) & ((1 << p) - 1) for k in range(p)]
    return np.min(np.stack(rots), axis=0)


def _codes(x: np.ndarray, pad: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """ "default" LBP codes of a chunk (n, H, W) -> (n, H, W) int32.

    Works on each padded image flattened to one row, so a neighbour at offset (oy, ox) is
    the row shifted by oy * Wp + ox: every operation runs on contiguous memory. Only the
    columns of the real image are kept; the pad columns absorb the wrap-around.
    """
    n, h, w = x.shape
    wp = w + 2 * pad
    xp = np.zeros((n, h + 2 * pad, wp))  # zeros outside, as scikit-image
    xp[:, pad : pad + h, pad : pad + w] = x
    flat = xp.reshape(n, -1)
    lo, length = pad * wp, h * wp
    centre = flat[:, lo : lo + length]
    code = np.zeros((n, length), dtype=np.int32)
    bit = np.empty((n, length), dtype=bool)
    top, bottom, tmp = (np.empty((n, length)) for _ in range(3))
    weight = np.empty((n, length), dtype=np.int32)

    def shifted(oy: int, ox: int) -> np.ndarray:
        o = lo + oy * wp + ox
        return flat[:, o : o + length]

    rows = np.arange(h, dtype=np.float64)[:, None]  # (h, 1)
    cols = np.arange(-pad, w + pad, dtype=np.float64)[None, :]  # (1, Wp)
    # loop over the P neighbours (not pixels): each is a bilinear blend of shifted planes.
    # The weights come from the absolute position (y + dy) - floor(y + dy), per row and
    # column, exactly as scikit-image rounds them, so ties in flat areas resolve the same way.
    for p in range(len(dy)):
        y0, x0 = int(np.floor(dy[p])), int(np.floor(dx[p]))
        y1, x1 = int(np.ceil(dy[p])), int(np.ceil(dx[p]))
        if y0 == y1 and x0 == x1:  # on the pixel grid: no interpolation
            np.greater_equal(shifted(y0, x0), centre, out=bit)
        else:
            fy = np.broadcast_to((rows + dy[p]) - np.floor(rows + dy[p]), (h, wp)).ravel()
            fx = np.broadcast_to((cols + dx[p]) - np.floor(cols + dx[p]), (h, wp)).ravel()
            # top = (1 - fx) tl + fx tr; bottom likewise; v = (1 - fy) top + fy bottom
            np.multiply(1 - fx, shifted(y0, x0), out=top)
            np.multiply(fx, shifted(y0, x1), out=tmp)
            top += tmp
            np.multiply(1 - fx, shifted(y1, x0), out=bottom)
            np.multiply(fx, shifted(y1, x1), out=tmp)
            bottom += tmp
            top *= 1 - fy
            bottom *= fy
            top += bottom
            top -= centre
            np.greater_equal(top, 0, out=bit)
        np.multiply(bit, np.int32(1 << p), out=weight)
        code |= weight
    return code.reshape(n, h, wp)[:, :, pad : pad + w]


def local_binary_pattern(
    images: np.ndarray, points: int = 8, radius: float = 1.0, method: str = "uniform"
) -> np.ndarray:
    """LBP codes per pixel. images (H, W) or (N, H, W) grey -> same shape, float64 codes."""
    choice(method, "method", METHODS)
    if points < 1 or points > 24:
        raise ConfigError(f"points must be in [1, 24], got {points}")
    r = check_positive(radius, "radius")
    x = np.asarray(images)
    if x.dtype.kind not in "uif" or x.ndim not in (2, 3) or x.size == 0:
        raise DataError(
            f"local_binary_pattern needs a non-empty grey (H, W) or (N, H, W) numeric array, "
            f"got {x.dtype} {x.shape} (convert colour images to grey first)"
        )
    single = x.ndim == 2
    x = x[None] if single else x
    n, h, w = x.shape
    pad = int(np.ceil(r)) + 1
    ang = 2 * np.pi * np.arange(points) / points
    dy = np.round(-r * np.sin(ang), 5)
    dx = np.round(r * np.cos(ang), 5)
    # chunks of images small enough to stay in cache
    step = max(1, 32768 // ((h + 2 * pad) * (w + 2 * pad)))
    code = np.concatenate([_codes(x[i : i + step], pad, dy, dx) for i in range(0, n, step)])
    out = code if method == "default" else _code_table(points, method)[code]
    out = out.astype(np.float64)
    return out[0] if single else out


def lbp_histogram(
    images: np.ndarray,
    points: int = 8,
    radius: float = 1.0,
    method: str = "uniform",
    grid: int = 1,
) -> np.ndarray:
    """Normalized histograms of LBP codes over a grid x grid of cells, concatenated (the
    usual texture / face descriptor). (H, W) or (N, H, W) -> (D,) or (N, D) float64,
    D = grid^2 * bins, bins = P + 2 (uniform) or 2^P.
    """
    codes = local_binary_pattern(images, points, radius, method)
    single = codes.ndim == 2
    codes = codes[None] if single else codes
    n, h, w = codes.shape
    if grid < 1 or grid > min(h, w):
        raise ConfigError(f"grid must be in [1, {min(h, w)}], got {grid}")
    bins = points + 2 if method == "uniform" else 1 << points
    cy = np.minimum(np.arange(h) * grid // h, grid - 1)
    cx = np.minimum(np.arange(w) * grid // w, grid - 1)
    cell = (cy[:, None] * grid + cx[None, :])[None] + (np.arange(n) * grid * grid)[:, None, None]
    hist = (
        np.bincount(
            (cell * bins + codes.astype(np.int64)).ravel(), minlength=n * grid * grid * bins
        )
        .reshape(n, grid * grid, bins)
        .astype(np.float64)
    )
    hist /= np.maximum(hist.sum(-1, keepdims=True), 1)
    hist = hist.reshape(n, -1)
    return hist[0] if single else hist
