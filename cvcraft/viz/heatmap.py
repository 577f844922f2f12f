"""Heat maps over images: a colour overlay and a figure of image | overlay pairs.

Overlay: ``(1 - a) * image + a * colormap(heat)`` with OpenCV's JET colormap (blue = 0,
red = 1); ``heat`` is (H, W) in [0, 1] at the image's size, e.g. a CAM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cvcraft.errors import ConfigError


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the JET-coloured ``heat`` (H, W) in [0, 1] over ``image`` (uint8 HWC RGB, or
    HW gray); ``heat`` is resized to the image if needed. Returns uint8 HWC RGB."""
    if not 0 <= alpha <= 1:
        raise ConfigError(f"overlay alpha={alpha} must be in [0, 1]")
    img = np.asarray(image)
    if img.ndim == 2 or img.shape[-1] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"overlay needs a uint8 RGB image, got {img.dtype} {img.shape}")
    h = np.asarray(heat, dtype=np.float32)
    if h.shape != img.shape[:2]:
        h = cv2.resize(h, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(np.clip(h, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    out = (1 - alpha) * img.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def plot_heatmaps(
    images: Sequence[np.ndarray],
    heats: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    cols: int = 4,
    alpha: float = 0.45,
) -> Path:
    """A figure of (image, overlay) pairs, ``cols`` pairs per row, each titled."""
    n = len(images)
    if n == 0 or len(heats) != n or len(titles) != n:
        raise ConfigError("plot_heatmaps needs as many images, heat maps and titles, at least 1")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.0 * cols, 2.3 * rows))
    FigureCanvasAgg(fig)
    for i, (img, heat, title) in enumerate(zip(images, heats, titles)):
        r, c = divmod(i, cols)
        for j, shown in enumerate((img, overlay_heatmap(img, heat, alpha))):
            ax = fig.add_subplot(rows, 2 * cols, r * 2 * cols + 2 * c + j + 1)
            ax.imshow(shown if shown.ndim == 3 else shown, cmap=None if shown.ndim == 3 else "gray")
            ax.set_axis_off()
            if j == 0:
                ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
