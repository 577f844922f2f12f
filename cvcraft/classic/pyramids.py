"""Gaussian and Laplacian pyramids, reconstruction and pyramid (multi-band) blending.

Down: blur with the 5-tap binomial w = [1 4 6 4 1] / 16 (separable, reflect101 border) and
keep every second pixel -> size ceil(n / 2). Up: zero-upsample to the requested size, blur
with 2w (4 x the 2-D kernel) so the mean is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image
from cvcraft.errors import ConfigError, DataError


def _levels(image: np.ndarray, levels: int) -> int:
    if levels < 1:
        raise ConfigError(f"levels must be >= 1, got {levels}")
    max_levels = int(np.floor(np.log2(min(image.shape[:2])))) + 1
    if levels > max_levels:
        raise ConfigError(
            f"{levels} levels need an image of at least {2 ** (levels - 1)} px per side; "
            f"this {image.shape[:2]} image allows {max_levels}"
        )
    return levels


def pyr_down(image: np.ndarray) -> np.ndarray:
    """One Gaussian pyramid step: G_{k+1} = (w * G_k)[::2, ::2]. (H, W) -> (ceil H/2, ceil W/2)"""
    img = check_image(image)
    return cv2.pyrDown(img)


def pyr_up(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Expand to ``size`` = (H, W): zero-insert then blur with 4 w w^T. (h, w) -> (H, W)"""
    img = check_image(image)
    h, w = size
    if not (abs(2 * img.shape[0] - h) <= 1 and abs(2 * img.shape[1] - w) <= 1):
        raise ConfigError(f"pyr_up size {size} must be about twice {img.shape[:2]}")
    return cv2.pyrUp(img, dstsize=(w, h))


def gaussian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """[G_0 = image, G_1, ..., G_{levels-1}], each half the size of the previous."""
    img = check_image(image)
    out = [img]
    for _ in range(_levels(img, levels) - 1):
        out.append(cv2.pyrDown(out[-1]))
    return out


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels L_k = G_k - up(G_{k+1}) plus the coarsest G as the last level.

    Computed in float32 (float64 kept) so ``reconstruct`` is exact up to rounding.
    """
    img = check_image(image)
    f = img if img.dtype == np.float64 else img.astype(np.float32)
    g = gaussian_pyramid(f, levels)
    lap = [g[k] - pyr_up(g[k + 1], g[k].shape[:2]) for k in range(len(g) - 1)]
    return lap + [g[-1]]


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    """Invert ``laplacian_pyramid``: G_k = L_k + up(G_{k+1}) from the top down (float)."""
    if not pyramid:
        raise DataError("reconstruct got an empty pyramid")
    g = pyramid[-1]
    for lap in reversed(pyramid[:-1]):
        g = lap + pyr_up(g, lap.shape[:2])
    return g


def blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray, levels: int = 5) -> np.ndarray:
    """Multi-band blending (Burt & Adelson): blend each Laplacian band with the mask's
    Gaussian level, so low frequencies mix over a wide seam and fine detail over a narrow one.

    out = reconstruct_k( G_k(m) L_k(a) + (1 - G_k(m)) L_k(b) ); mask in [0, 1], HxW.
    Returns a's dtype (uint8 rounded and clipped).
    """
    a = check_image(a, "a")
    b = check_image(b, "b")
    if a.shape != b.shape:
        raise DataError(f"blend needs images of one shape, got {a.shape} and {b.shape}")
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != a.shape[:2]:
        raise DataError(f"mask must be HxW = {a.shape[:2]}, got {m.shape}")
    if a.ndim == 3:
        m = np.repeat(m[..., None], a.shape[2], axis=2)
    la, lb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    gm = gaussian_pyramid(m, levels)
    out = reconstruct([g * x + (1 - g) * y for g, x, y in zip(gm, la, lb)])
    if a.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(a.dtype)
