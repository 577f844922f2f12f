"""Classical pixel-level image fusion: the baselines a learned fusion network must beat.

- average:   f = (a + b) / 2
- max:       f = max(a, b) (the brighter source wins: keeps infrared targets)
- laplacian: Laplacian pyramids of both; per band keep the coefficient of larger |L| (the
  stronger detail), average the coarsest level; reconstruct (Burt & Adelson 1985 / Toet).

Inputs: two grey images of one shape (HxW, uint8 or float); output has a's dtype (uint8
rounded and clipped).
"""

from __future__ import annotations

import numpy as np

from cvcraft.classic.checks import check_image
from cvcraft.classic.pyramids import laplacian_pyramid, reconstruct
from cvcraft.errors import ConfigError, DataError

FUSION_RULES = ("average", "max", "laplacian")


def _sources(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_image(a, "a"), check_image(b, "b")
    if a.shape != b.shape:
        raise DataError(f"fusion needs two images of one shape, got {a.shape} and {b.shape}")
    return a, b


def _like(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    if ref.dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(ref.dtype)


def average_fusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel mean (a + b) / 2."""
    a, b = _sources(a, b)
    return _like((a.astype(np.float64) + b) / 2, a)


def max_fusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel maximum max(a, b)."""
    a, b = _sources(a, b)
    return np.maximum(a, b)


def laplacian_fusion(a: np.ndarray, b: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion: max-|L| on the band-pass levels, mean on the coarsest."""
    a, b = _sources(a, b)
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    bands = [np.where(np.abs(la) >= np.abs(lb), la, lb) for la, lb in zip(pa[:-1], pb[:-1])]
    return _like(reconstruct([*bands, (pa[-1] + pb[-1]) / 2]), a)


def fuse_classical(a: np.ndarray, b: np.ndarray, rule: str) -> np.ndarray:
    """Fuse with the named rule (``FUSION_RULES``)."""
    rules = {"average": average_fusion, "max": max_fusion, "laplacian": laplacian_fusion}
    if rule not in rules:
        raise ConfigError(f"fusion rule {rule!r} unknown; use one of {FUSION_RULES}")
    return rules[rule](a, b)
