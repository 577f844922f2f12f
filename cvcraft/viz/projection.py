"""2-D projection plot of feature vectors (PCA or SVD), coloured by class or cluster: a first
look at whether features separate the classes before training anything on them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cvcraft.classic.clustering import project_2d
from cvcraft.errors import DataError


def plot_projection(
    features: np.ndarray,
    labels: np.ndarray | None = None,
    method: str = "pca",
    class_names: Sequence[str] | None = None,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Scatter the (N, D) features projected to 2-D (``project_2d``), one colour per label.

    Writes a PNG when ``path`` is given; returns the figure (the points are in
    ``fig.axes[0].collections``, one per label, in sorted label order).
    """
    xy = project_2d(features, method)
    lab = np.zeros(len(xy), np.int64) if labels is None else np.asarray(labels)
    if lab.shape != (len(xy),):
        raise DataError(f"labels must be ({len(xy)},), got {lab.shape}")
    fig = Figure(figsize=(5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, value in enumerate(np.unique(lab)):
        sel = lab == value
        name = class_names[int(value)] if class_names is not None else str(value)
        ax.scatter(
            xy[sel, 0],
            xy[sel, 1],
            s=8,
            alpha=0.7,
            color=f"C{k % 10}",
            label=name if labels is not None else None,
        )
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    ax.set_title(title or f"{method.upper()} projection of {features.shape[1]}-d features")
    if labels is not None:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
