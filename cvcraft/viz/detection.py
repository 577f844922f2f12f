"""Detection evaluation plots: per-class precision-recall curves from COCO's precision
array, and a plain-text per-class AP table. The detection confusion matrix is drawn by
``cvcraft.viz.plots.plot_confusion_matrix`` (pass ``class_names + ["background"]``).

matplotlib's object API with the Agg canvas (no pyplot), as ``viz.plots``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.viz.plots import _new_figure, _save


def plot_pr_curves(
    precision: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    iou_index: int = 0,
    area_index: int = 0,
    maxdet_index: int = -1,
    max_labelled: int = 20,
) -> Path:
    """Precision vs recall per class at one IoU threshold (default 0.5), plus their mean.

    ``precision`` is ``COCOEvaluator.compute()["precision"]`` (T, R, K, A, M), or an (R, K)
    slice; recall levels are ``linspace(0, 1, R)``. Classes marked -1 (no gt) are skipped.
    The legend names each class with its AP when there are at most ``max_labelled``.
    """
    p = np.asarray(precision, dtype=np.float64)
    if p.ndim == 5:
        p = p[iou_index, :, :, area_index, maxdet_index]
    if p.ndim != 2 or p.shape[1] != len(class_names):
        raise ValueError(
            f"precision must be (T, R, K, A, M) or (R, K) with K = len(class_names); got "
            f"{np.shape(precision)} and {len(class_names)} names"
        )
    recall = np.linspace(0.0, 1.0, p.shape[0])
    valid = (p > -1).all(0)
    fig = _new_figure(8, 6)
    ax = fig.add_subplot()
    label = valid.sum() <= max_labelled
    for k in np.flatnonzero(valid):  # one line per class
        kw = {"label": f"{class_names[k]} {p[:, k].mean():.3f}"} if label else {}
        ax.plot(
            recall,
            p[:, k],
            lw=1,
            alpha=0.8 if label else 0.3,
            color=None if label else "grey",
            **kw,
        )
    if valid.any():
        mean = p[:, valid].mean(1)
        ax.plot(recall, mean, lw=3, color="blue", label=f"all classes {mean.mean():.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(
        "precision-recall" + (" (IoU 0.5)" if np.ndim(precision) == 5 and iou_index == 0 else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, Path(path))


def format_ap_table(
    per_class: Sequence[dict[str, Any]], keys: Sequence[str] = ("AP", "AP50", "AP75")
) -> str:
    """Per-class rows (``COCOEvaluator.compute()["per_class"]``) as an aligned text table;
    undefined values (-1 or NaN) print as ``-``."""
    cols = [k for k in keys if any(k in row for row in per_class)]
    width = max([len("class")] + [len(str(r.get("name", ""))) for r in per_class])
    lines = [f"{'class':<{width}}" + "".join(f"{k:>9}" for k in cols)]
    for r in per_class:
        cells = []
        for k in cols:
            v = r.get(k)
            ok = v is not None and np.isfinite(v) and v > -1
            cells.append(f"{v:>9.4f}" if ok else f"{'-':>9}")
        lines.append(f"{str(r.get('name', '')):<{width}}" + "".join(cells))
    return "\n".join(lines)


__all__ = ["format_ap_table", "plot_pr_curves"]
