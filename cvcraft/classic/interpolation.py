"""Resizing with each interpolation kind, and when to use it.

- nearest: copies the closest pixel (half-pixel centres, OpenCV's INTER_NEAREST_EXACT):
  label maps and masks, pixel art; never mixes values.
- bilinear: weighted mean of the 2x2 neighbours; the fast general default for upscaling.
- bicubic: 4x4 neighbours with Keys' cubic (a = -0.75); sharper upscaling, slight overshoot.
- area: mean of the source pixels each output pixel covers; the right choice for
  downscaling (no aliasing, no moire).
- lanczos: 8x8 windowed sinc (a = 4); sharpest upscaling, most ringing, slowest.
Output pixel x samples the source at (x + 0.5) * (w_in / w_out) - 0.5 (pixel centres aligned).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, choice
from cvcraft.errors import ConfigError

KINDS = {
    "nearest": cv2.INTER_NEAREST_EXACT,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def resize(image: np.ndarray, size: tuple[int, int], kind: str = "bilinear") -> np.ndarray:
    """Resize to ``size`` = (H, W) with interpolation ``kind`` (see the module docstring)."""
    img = check_image(image)
    choice(kind, "kind", tuple(KINDS))
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ConfigError(f"size must be (H, W) with positive sides, got {size}")
    out = cv2.resize(img, (w, h), interpolation=KINDS[kind])
    return out.reshape(h, w, *img.shape[2:])
