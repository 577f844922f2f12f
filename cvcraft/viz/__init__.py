"""Plots and drawings: training curves, confusion matrices, prediction grids."""

from cvcraft.viz.plots import (
    normalize_confusion,
    plot_confusion_matrix,
    plot_curves,
    plot_prediction_grid,
)
from cvcraft.viz.segmentation import (
    color_palette,
    colorize_mask,
    overlay_mask,
    plot_segmentation_grid,
)

__all__ = [
    "color_palette",
    "colorize_mask",
    "normalize_confusion",
    "overlay_mask",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_prediction_grid",
    "plot_segmentation_grid",
]
