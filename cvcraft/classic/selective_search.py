"""Selective search region proposals (Uijlings et al. 2013) for the R-CNN teaching pipeline.

Over-segment the image (Felzenszwalb graph segmentation), then greedily merge the most
similar neighbouring regions (colour, texture, size, fill); every region formed along the
way is a proposal. Needs OpenCV's contrib module ximgproc: install
``opencv-contrib-python-headless`` of the same version *in place of*
``opencv-python-headless`` (both ship the ``cv2`` package; pip cannot install them side by
side cleanly).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, choice
from cvcraft.errors import ConfigError


def available() -> bool:
    """True when this OpenCV build has the contrib ximgproc module."""
    return hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "segmentation")


def selective_search(image: np.ndarray, mode: str = "fast", max_boxes: int = 2000) -> np.ndarray:
    """Region proposals for an RGB uint8 image. mode "fast" (fewer strategies) or
    "quality". -> (N, 4) float32 xyxy boxes in pixels, in OpenCV's ranking order.
    """
    img = check_image(image, channels=(3,), dtypes=(np.uint8,))
    choice(mode, "mode", ("fast", "quality"))
    if max_boxes < 1:
        raise ConfigError(f"max_boxes must be >= 1, got {max_boxes}")
    if not available():
        raise ConfigError(
            "selective search needs OpenCV's contrib module (cv2.ximgproc); run "
            "`pip uninstall -y opencv-python-headless && pip install "
            f"opencv-contrib-python-headless=={cv2.__version__}`"
        )
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    xywh = np.asarray(ss.process(), dtype=np.float32).reshape(-1, 4)[:max_boxes]
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
