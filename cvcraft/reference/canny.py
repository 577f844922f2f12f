"""Canny's non-maximum suppression and hysteresis written pixel by pixel, straight from the
definition (the oracle for the vectorized ``cvcraft.classic.canny``)."""

from __future__ import annotations

import numpy as np


def nms_loop(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep m(p) if it beats both neighbours along the quantized gradient direction.

    Sectors by angle a = atan(|gy| / |gx|): a < 22.5 deg horizontal, a > 67.5 vertical, else
    the diagonal picked by sign(gx * gy). Ties: > the earlier neighbour, >= the later one
    (strict on diagonals). Outside the image the magnitude is 0. (H, W) -> (H, W)
    """
    h, w = magnitude.shape
    tg22 = 13573 / 2**15  # tan(22.5 deg) as OpenCV rounds it

    def mag(y: int, x: int) -> float:
        return float(magnitude[y, x]) if 0 <= y < h and 0 <= x < w else 0.0

    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            m, ax, ay = float(magnitude[y, x]), abs(float(gx[y, x])), abs(float(gy[y, x]))
            if ay < ax * tg22:
                keep = m > mag(y, x - 1) and m >= mag(y, x + 1)
            elif ay > ax * (tg22 + 2):
                keep = m > mag(y - 1, x) and m >= mag(y + 1, x)
            elif gx[y, x] * gy[y, x] < 0:
                keep = m > mag(y - 1, x + 1) and m > mag(y + 1, x - 1)
            else:
                keep = m > mag(y - 1, x - 1) and m > mag(y + 1, x + 1)
            out[y, x] = m if keep else 0.0
    return out


def hysteresis_loop(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Grow edges from every strong pixel into 8-connected weak pixels with a stack."""
    h, w = strong.shape
    edges = np.zeros((h, w), dtype=bool)
    stack = [(int(y), int(x)) for y, x in zip(*np.nonzero(strong))]
    for y, x in stack:
        edges[y, x] = True
    while stack:
        y, x = stack.pop()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                v, u = y + dy, x + dx
                if 0 <= v < h and 0 <= u < w and weak[v, u] and not edges[v, u]:
                    edges[v, u] = True
                    stack.append((v, u))
    return edges
