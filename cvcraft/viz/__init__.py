"""Plots and drawings: training curves, confusion matrices, prediction grids."""

from cvcraft.viz.plots import (
    normalize_confusion,
    plot_confusion_matrix,
    plot_curves,
    plot_prediction_grid,
)

__all__ = ["normalize_confusion", "plot_confusion_matrix", "plot_curves", "plot_prediction_grid"]
