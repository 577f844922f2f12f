"""Training plots written to PNG: metric curves, confusion matrix, prediction grid.

Uses matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``: no global figure
state, no GUI backend, safe in headless runs and worker threads; figures are freed on return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_ACC_RE = re.compile(r"(^|_)(top\d+|acc|accuracy)($|_)")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A metric column as float64; blanks/None/non-numbers (CSV strings) become NaN."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        try:
            out[i] = float(row.get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    return out


def _plot_keys(
    rows: list[dict[str, Any]],
    keys: list[str],
    x: np.ndarray,
    xlabel: str,
    ylabel: str,
    path: Path,
    *,
    logy: bool = False,
) -> Path | None:
    cols = {k: _column(rows, k) for k in keys}
    cols = {k: v for k, v in cols.items() if np.isfinite(v).any()}
    if not cols:
        return None
    fig = _new_figure(7, 4.5)
    ax = fig.add_subplot()
    for k, v in cols.items():
        ok = np.isfinite(v)
        ax.plot(x[ok], v[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=k)
    if logy and all((v[np.isfinite(v)] > 0).all() for v in cols.values()):
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write ``loss.png`` (keys containing "loss"), ``accuracy.png`` (``top1``, ``top5``,
    ``ema_top1``, ``*acc*`` ...) and ``lr.png`` (``lr*`` keys) from ``metrics.csv`` rows.

    ``rows`` are dicts, one per epoch (values may be the strings ``csv.DictReader`` gives);
    the x axis is ``epoch`` when present, else the row number. A plot whose keys are all
    absent or empty is skipped. Returns the paths written.
    """
    out_dir = Path(out_dir)
    if not rows:
        return []
    keys = list(dict.fromkeys(k for row in rows for k in row))
    if "epoch" in keys and np.isfinite(_column(rows, "epoch")).all():
        x, xlabel = _column(rows, "epoch"), "epoch"
    else:
        x, xlabel = np.arange(len(rows), dtype=float), "row"
    plots = [
        ([k for k in keys if "loss" in k], "loss", "loss.png", False),
        ([k for k in keys if _ACC_RE.search(k)], "accuracy", "accuracy.png", False),
        ([k for k in keys if k == "lr" or k.startswith("lr_")], "learning rate", "lr.png", True),
    ]
    written = []
    for ks, ylabel, name, logy in plots:
        p = _plot_keys(rows, ks, x, xlabel, ylabel, out_dir / name, logy=logy)
        if p is not None:
            written.append(p)
    return written


def normalize_confusion(cm: np.ndarray) -> np.ndarray:
    """Row-normalize a confusion matrix (rows = true class): ``cm[i] / sum(cm[i])``, so the
    diagonal is per-class recall. Rows of a class that never occurs are all zeros (as
    scikit-learn's ``normalize="true"``)."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cm / totals
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def plot_confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], path: str | Path, normalize: bool = True
) -> Path:
    """Heatmap of a (C, C) confusion matrix, rows = true, columns = predicted.

    Cells show their values up to 20 classes; beyond that only colour (text would overlap),
    and tick labels shrink (every k-th label past 120 classes) so ~100 classes stay legible.
    """
    cm = np.asarray(cm)
    c = cm.shape[0]
    if cm.ndim != 2 or cm.shape[1] != c or len(class_names) != c:
        raise ValueError(
            f"confusion matrix must be (C, C) with C = len(class_names); got {cm.shape} and "
            f"{len(class_names)} names"
        )
    values = normalize_confusion(cm) if normalize else cm.astype(np.float64)
    side = float(np.clip(0.16 * c + 4.0, 6.0, 20.0))  # ~100 classes -> 2000 px
    fig = _new_figure(side, side * 0.9)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    font = float(np.clip(600.0 / max(c, 1), 5.0, 10.0))
    stride = max(1, math.ceil(c / 120))
    ticks = np.arange(0, c, stride)
    names = [str(class_names[i]) for i in ticks]
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalized)" if normalize else ""))
    if c <= 20:
        vmax = values.max() if values.size else 1.0
        for (i, j), v in np.ndenumerate(values):
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=font * 0.8,
                color="white" if v > 0.5 * vmax else "black",
            )
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_prediction_grid(
    images: np.ndarray,
    true_labels: Sequence[int],
    pred_labels: Sequence[int],
    probs: np.ndarray | Sequence[float] | None,
    class_names: Sequence[str],
    path: str | Path,
    max_images: int = 32,
) -> Path:
    """Grid of images (uint8 N,H,W,C RGB, or N,H,W) titled ``pred (prob)`` / ``true``, green
    when right and red when wrong. ``probs`` is per-image confidence (N,) or class
    probabilities (N, num_classes), from which the predicted class's is taken."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be (N, H, W[, C]) with C in 1/3/4, got {images.shape}")
    n = min(len(images), max_images)
    if n == 0:
        raise ValueError("plot_prediction_grid needs at least one image")
    true_labels = np.asarray(true_labels)[:n]
    pred_labels = np.asarray(pred_labels)[:n]
    conf = None
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)[:n]
        conf = p[np.arange(n), pred_labels] if p.ndim == 2 else p
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig = _new_figure(2.0 * cols, 2.3 * rows)
    for i in range(n):  # one subplot per image; n <= max_images
        ax = fig.add_subplot(rows, cols, i + 1)
        img = images[i]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        ax.set_axis_off()
        t, pr = int(true_labels[i]), int(pred_labels[i])
        title = f"{class_names[pr]}" + (f" ({conf[i]:.2f})" if conf is not None else "")
        title += f"\ntrue: {class_names[t]}"
        ax.set_title(title, fontsize=8, color="green" if t == pr else "red")
    fig.tight_layout()
    return _save(fig, Path(path))
