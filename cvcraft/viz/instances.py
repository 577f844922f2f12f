"""Instance-segmentation overlays: each object's mask tinted in its class colour, then its box
and caption (``draw_detections``).

Where masks overlap, the pixel takes the colour of the first listed object (detections are
sorted by score, so the most confident one shows): ``out = (1 - a) image + a colour``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.viz.detection_plots import _numpy, class_color, draw_detections


def tint_masks(image: np.ndarray, masks: Any, labels: Any, alpha: float = 0.5) -> np.ndarray:
    """uint8 HWC RGB ``image`` with bool ``masks`` (N, H, W) tinted in their ``labels``'
    class colours (the first listed object wins where masks overlap)."""
    m = _numpy(masks, bool).reshape(-1, *image.shape[:2])
    lab = _numpy(labels, np.int64).reshape(-1)
    out = image.astype(np.float32)
    if len(m):
        covered = m.any(0)  # (H, W)
        first = m.argmax(0)  # (H, W) the first object covering each pixel
        colors = np.array([class_color(int(k)) for k in lab], np.float32)  # (N, 3)
        a = np.float32(alpha) * covered[..., None]
        out = out * (1 - a) + colors[first] * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_instances(
    image: np.ndarray,
    masks: Any,
    boxes: Any,
    scores: Any | None,
    labels: Any,
    class_names: Sequence[str],
    alpha: float = 0.5,
) -> np.ndarray:
    """``tint_masks`` then ``draw_detections``: masks (N, H, W), xyxy ``boxes`` (N, 4);
    ``scores`` None draws ground truth (names only)."""
    return draw_detections(tint_masks(image, masks, labels, alpha), boxes, scores, labels,
                           class_names)  # fmt: skip


__all__ = ["draw_instances", "tint_masks"]
