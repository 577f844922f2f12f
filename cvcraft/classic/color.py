"""Colour-space conversions from and to RGB (images are RGB in cvcraft).

uint8 in -> uint8 out in OpenCV's 8-bit encodings; float32 in [0, 1] -> float32 in natural
units (H in degrees [0, 360), S/V/L in [0, 1], Lab L in [0, 100], a/b about [-128, 127]).
YCbCr is full-range BT.601 (JPEG): Y = .299R + .587G + .114B, Cb = .564(B - Y) + d,
Cr = .713(R - Y) + d, d = 128 (uint8) or 0.5 (float). YUV is analog BT.601:
U = .492(B - Y) + d, V = .877(R - Y) + d.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, choice

SPACES = ("gray", "hsv", "hls", "lab", "ycbcr", "yuv")
_TO = {
    "gray": cv2.COLOR_RGB2GRAY,
    "hsv": cv2.COLOR_RGB2HSV,
    "hls": cv2.COLOR_RGB2HLS,
    "lab": cv2.COLOR_RGB2Lab,
    "ycbcr": cv2.COLOR_RGB2YCrCb,
    "yuv": cv2.COLOR_RGB2YUV,
}
_FROM = {
    "gray": cv2.COLOR_GRAY2RGB,
    "hsv": cv2.COLOR_HSV2RGB,
    "hls": cv2.COLOR_HLS2RGB,
    "lab": cv2.COLOR_Lab2RGB,
    "ycbcr": cv2.COLOR_YCrCb2RGB,
    "yuv": cv2.COLOR_YUV2RGB,
}


def rgb_to(image: np.ndarray, space: str) -> np.ndarray:
    """RGB (H, W, 3) uint8 or float32 -> ``space`` (H, W, 3), or (H, W) for "gray".

    uint8 HSV/HLS store H/2 (0..179) so it fits a byte; YCbCr channels are Y, Cb, Cr.
    """
    choice(space, "space", SPACES)
    img = check_image(image, channels=(3,), dtypes=(np.uint8, np.float32))
    out = cv2.cvtColor(img, _TO[space])
    if space == "ycbcr":
        out = out[..., [0, 2, 1]]  # OpenCV orders it Y, Cr, Cb
    return out


def to_rgb(image: np.ndarray, space: str) -> np.ndarray:
    """Inverse of ``rgb_to``: ``space`` -> RGB (H, W, 3), same dtype."""
    choice(space, "space", SPACES)
    chans = (1,) if space == "gray" else (3,)
    img = check_image(image, channels=chans, dtypes=(np.uint8, np.float32))
    if space == "ycbcr":
        img = np.ascontiguousarray(img[..., [0, 2, 1]])
    return cv2.cvtColor(img, _FROM[space])


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """Luma Y = 0.299 R + 0.587 G + 0.114 B (BT.601). (H, W, 3) -> (H, W)."""
    return rgb_to(image, "gray")
