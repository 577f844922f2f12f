"""Test images for the classic tests (a module of its own: `from conftest import` picks
whichever conftest was imported first when several test folders run together)."""

import numpy as np


def textured(rng: np.random.Generator, h: int = 48, w: int = 56) -> np.ndarray:
    """A uint8 grey image with edges at many orientations (smoothed noise, contrast-stretched)."""
    import cv2

    x = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 1.5)
    return np.clip((x - x.mean()) / (x.std() + 1e-9) * 50 + 128, 0, 255).astype(np.uint8)
