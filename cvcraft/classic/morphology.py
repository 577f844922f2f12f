"""Grey-level and binary morphology with a structuring element B: erosion, dilation and the
operators built from them, plus the morphological skeleton.

Pixels outside the image are ignored (OpenCV's default border: +inf for erosion, -inf for
dilation). B is a uint8 0/1 array centred on its middle pixel (odd sizes).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, check_ksize, choice
from cvcraft.errors import ConfigError, DataError

SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}


def structuring_element(shape: str = "rect", ksize: int = 3) -> np.ndarray:
    """A k x k 0/1 uint8 structuring element: "rect", "ellipse" (disc) or "cross"."""
    choice(shape, "shape", tuple(SHAPES))
    k = check_ksize(ksize)
    return cv2.getStructuringElement(SHAPES[shape], (k, k))


def _se(se: np.ndarray | None) -> np.ndarray:
    if se is None:
        return structuring_element()
    se = np.asarray(se)
    if se.ndim != 2 or se.shape[0] % 2 == 0 or se.shape[1] % 2 == 0 or not se.any():
        raise ConfigError(
            f"structuring element must be a non-empty 2-D 0/1 array of odd sizes, got shape "
            f"{se.shape}; make one with structuring_element(shape, ksize)"
        )
    return (se != 0).astype(np.uint8)


def _morph(op: int, image: np.ndarray, se: np.ndarray | None, iterations: int) -> np.ndarray:
    img = check_image(image)
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    return cv2.morphologyEx(img, op, _se(se), iterations=iterations)


def erode(image: np.ndarray, se: np.ndarray | None = None, iterations: int = 1) -> np.ndarray:
    """Erosion: min over the element. (I - B)(p) = min_{b in B} I(p + b)."""
    return _morph(cv2.MORPH_ERODE, image, se, iterations)


def dilate(image: np.ndarray, se: np.ndarray | None = None, iterations: int = 1) -> np.ndarray:
    """Dilation: max over the (symmetric) element. (I + B)(p) = max_{b in B} I(p - b)."""
    return _morph(cv2.MORPH_DILATE, image, se, iterations)


def opening(image: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """Opening = dilate(erode(I)): removes bright details smaller than B."""
    return _morph(cv2.MORPH_OPEN, image, se, 1)


def closing(image: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """Closing = erode(dilate(I)): fills dark holes smaller than B."""
    return _morph(cv2.MORPH_CLOSE, image, se, 1)


def morph_gradient(image: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """Morphological gradient = dilate(I) - erode(I): an outline of the objects."""
    return _morph(cv2.MORPH_GRADIENT, image, se, 1)


def tophat(image: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """White top-hat = I - opening(I): bright details smaller than B (uneven background gone)."""
    return _morph(cv2.MORPH_TOPHAT, image, se, 1)


def blackhat(image: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """Black-hat = closing(I) - I: dark details smaller than B."""
    return _morph(cv2.MORPH_BLACKHAT, image, se, 1)


def skeleton(mask: np.ndarray, se: np.ndarray | None = None) -> np.ndarray:
    """Morphological skeleton (Lantuejoul): union over k of the erosion residues.

    S = U_k [ (A - kB) - open(A - kB, B) ], k = 0.. until A - kB is empty; A is recovered as
    U_k (S_k + kB). mask: (H, W) bool/0-1 -> (H, W) bool.
    """
    m = check_image(np.asarray(mask), "mask", channels=(1,), dtypes=(np.bool_, np.uint8))
    if m.ndim == 3:
        m = m[..., 0]
    se = _se(se)
    a = (m != 0).astype(np.uint8)
    out = np.zeros(a.shape, dtype=bool)
    # the loop runs over erosion depth (at most ~min(H, W)/2 steps), not over pixels
    while a.any():
        eroded = cv2.erode(a, se)
        opened = cv2.dilate(eroded, se)
        out |= (a != 0) & (opened == 0)
        a = eroded
    return out


def skeleton_parts(mask: np.ndarray, se: np.ndarray | None = None) -> list[np.ndarray]:
    """The skeleton subsets S_k of ``skeleton`` (one bool (H, W) per erosion depth k)."""
    if np.asarray(mask).size == 0:
        raise DataError("mask is empty; pass an HxW mask with pixels")
    se = _se(se)
    a = (np.asarray(mask) != 0).astype(np.uint8)
    parts = []
    while a.any():
        eroded = cv2.erode(a, se)
        parts.append((a != 0) & (cv2.dilate(eroded, se) == 0))
        a = eroded
    return parts
