"""Segmentation pictures: a class colour palette, colourised masks, overlays, a result grid.

The palette is the PASCAL VOC one: class k's colour spreads the bits of k over the high bits
of R, G and B (bit 0 -> R bit 7, bit 1 -> G bit 7, bit 2 -> B bit 7, bit 3 -> R bit 6, ...),
so neighbouring class ids get clearly different colours and class 0 is black. Ignored
pixels (255) are drawn white.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvcraft.viz.plots import _new_figure, _save

IGNORE_INDEX = 255
LEGEND_MAX = 24  # at most this many classes (lowest ids) are named in the legend


def color_palette(n: int = 256) -> np.ndarray:
    """uint8 (n, 3) PASCAL VOC colours (see the module docstring); entry 255 is white."""
    k = np.arange(n)
    pal = np.zeros((n, 3), np.int64)
    for j in range(8):  # 8 bit planes, vectorized over all classes
        for c in range(3):
            pal[:, c] |= ((k >> (3 * j + c)) & 1) << (7 - j)
    if n > IGNORE_INDEX:
        pal[IGNORE_INDEX] = 255
    return pal.astype(np.uint8)


def colorize_mask(mask: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W) class indices -> uint8 (H, W, 3) RGB via a palette lookup."""
    pal = color_palette(256) if palette is None else np.asarray(palette, np.uint8)
    return pal[np.asarray(mask, np.int64).clip(0, len(pal) - 1)]


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.5,
    palette: np.ndarray | None = None,
    background: int | None = 0,
) -> np.ndarray:
    """Blend class colours over an RGB image: ``out = (1 - a) image + a colour`` on every pixel
    whose class is not ``background`` (None = tint every pixel); 255 pixels are left as is."""
    colors = colorize_mask(mask, palette).astype(np.float32)
    tint = mask != IGNORE_INDEX
    if background is not None:
        tint &= mask != background
    a = np.float32(alpha) * tint[..., None]
    out = image.astype(np.float32) * (1 - a) + colors * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def plot_segmentation_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray] | None,
    preds: Sequence[np.ndarray],
    path: str | Path,
    classes: Sequence[str] | None = None,
) -> Path:
    """Rows of (image, ground truth, prediction) panels, or (image, prediction) without
    truths; a legend of the classes that appear."""
    n = len(images)
    cols = 3 if truths is not None else 2
    fig = _new_figure(2.2 * cols, 2.2 * n + 0.6)
    pal = color_palette(256)
    seen: set[int] = set()
    for i in range(n):
        panels = [images[i]]
        if truths is not None:
            panels.append(colorize_mask(truths[i], pal))
            seen |= set(np.unique(truths[i]).tolist())
        panels.append(colorize_mask(preds[i], pal))
        seen |= set(np.unique(preds[i]).tolist())
        titles = ["image", "truth", "prediction"] if truths is not None else ["image", "pred"]
        for j, (panel, title) in enumerate(zip(panels, titles)):
            ax = fig.add_subplot(n, cols, i * cols + j + 1)
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=8)
    bottom = 0.0
    if classes:
        from matplotlib.patches import Patch

        shown = [k for k in sorted(seen) if k < len(classes)][:LEGEND_MAX]
        handles = [Patch(color=pal[k] / 255.0, label=classes[k]) for k in shown]
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7)
        rows = math.ceil(len(handles) / 4)
        bottom = (0.18 * rows + 0.1) / fig.get_figheight()  # room for the legend rows
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, Path(path))
