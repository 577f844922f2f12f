"""Detection run plots and drawings: boxes with labels and scores on an image, the label
statistics of a dataset (class counts, box sizes), and the end-of-run set (curves, mAP
curve, PR curves, detection confusion matrix, prediction grid) written in one call.

Box drawing uses OpenCV on a copy (fast, no figure); statistics use matplotlib's object API
like ``viz.plots``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvcraft.viz.detection import plot_pr_curves
from cvcraft.viz.plots import (
    _column,
    _new_figure,
    _plot_keys,
    _save,
    plot_confusion_matrix,
    plot_curves,
)


def class_color(k: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour for class ``k`` (golden-ratio hue steps)."""
    hue = int((k * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 220, 230]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def draw_detections(
    image: np.ndarray,
    boxes: Any,
    scores: Any | None,
    labels: Any,
    class_names: Sequence[str],
    *,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` (uint8 HWC RGB) with xyxy ``boxes`` (N, 4) outlined in their
    class colour and captioned ``name score``; ``scores`` None draws names only (ground
    truth). Line width and font scale grow with the image size."""
    out = np.ascontiguousarray(image.copy())
    b = _numpy(boxes, np.float64).reshape(-1, 4)
    lab = _numpy(labels, np.int64).reshape(-1)
    sc = None if scores is None else _numpy(scores, np.float64).reshape(-1)
    h, w = out.shape[:2]
    lw = thickness or max(1, round((h + w) / 600))
    font = max(0.3, (h + w) / 1600)
    for i in range(len(b)):  # one rectangle + caption per box: OpenCV draws one at a time
        x1, y1, x2, y2 = (int(round(v)) for v in b[i])
        color = class_color(int(lab[i]))
        cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, lw)
        k = int(lab[i])
        name = class_names[k] if 0 <= k < len(class_names) else str(k)
        text = name if sc is None else f"{name} {sc[i]:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - 1), (x1 + tw + 1, ty + base - 1), color, -1)
        cv2.putText(out, text, (x1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1)
    return out


def plot_label_stats(
    labels: np.ndarray, boxes: np.ndarray, class_names: Sequence[str], path: str | Path
) -> Path:
    """Three panels of a dataset's annotations: instances per class, a 2-D histogram of box
    width vs height (pixels), and a histogram of box size sqrt(w h).

    ``labels`` int (M,), ``boxes`` xyxy (M, 4) over all images.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    fig = _new_figure(15, 4.5)
    ax = fig.add_subplot(1, 3, 1)
    counts = np.bincount(labels, minlength=len(class_names))[: len(class_names)]
    colors = [np.array(class_color(k)) / 255 for k in range(len(class_names))]
    ax.bar(np.arange(len(class_names)), counts, color=colors)
    ax.set_xticks(np.arange(len(class_names)))
    ax.set_xticklabels(class_names, rotation=90 if len(class_names) > 10 else 0, fontsize=7)
    ax.set_ylabel("instances")
    ax.set_title(f"{len(labels)} boxes, {len(class_names)} classes")
    ax = fig.add_subplot(1, 3, 2)
    if len(wh):
        ax.hist2d(wh[:, 0], wh[:, 1], bins=30, cmap="Blues")
    ax.set_xlabel("box width (px)")
    ax.set_ylabel("box height (px)")
    ax.set_title("box width vs height")
    ax = fig.add_subplot(1, 3, 3)
    if len(wh):
        ax.hist(np.sqrt(wh[:, 0] * wh[:, 1]), bins=30, color="tab:blue")
    for edge in (32, 96):  # COCO's small / medium / large boundaries
        ax.axvline(edge, color="grey", ls="--", lw=1)
    ax.set_xlabel("box size sqrt(w h) (px); dashed: COCO small/medium/large")
    ax.set_ylabel("boxes")
    fig.tight_layout()
    return _save(fig, Path(path))


def write_detection_plots(
    folder: str | Path,
    *,
    labels_of: Any = None,
    classes: Sequence[str] = (),
    history: list[dict[str, Any]] | None = None,
    metrics: dict[str, Any] | None = None,
    grid: np.ndarray | None = None,
) -> list[Path]:
    """Whatever the arguments allow: ``labels.png`` (from a ``DetectionData``),
    ``loss.png``/``lr.png``/``map.png`` (history rows), ``pr_curve.png`` (metrics'
    ``precision``), ``confusion_matrix.png`` (metrics' ``confusion_matrix``),
    ``predictions.png`` (the grid image). Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if labels_of is not None and len(labels_of.images):
        recs = labels_of.images
        lab = np.concatenate([r.labels for r in recs])
        box = np.concatenate([r.boxes for r in recs])
        written.append(plot_label_stats(lab, box, list(classes), folder / "labels.png"))
    if history:
        written += plot_curves(history, folder)
        x = _column(history, "epoch")
        candidates = ("map", "map50", "map75", "raw_map", "raw_map50")
        keys = [k for k in candidates if any(k in r for r in history)]
        p = _plot_keys(history, keys, x, "epoch", "COCO AP", folder / "map.png")
        if p is not None:
            written.append(p)
    metrics = metrics or {}
    if metrics.get("precision") is not None:
        written.append(plot_pr_curves(metrics["precision"], list(classes), folder / "pr_curve.png"))
    if metrics.get("confusion_matrix") is not None:
        cm = np.asarray(metrics["confusion_matrix"])
        names = [*classes, "background"]
        written.append(plot_confusion_matrix(cm, names, folder / "confusion_matrix.png"))
    if grid is not None:
        p = folder / "predictions.png"
        cv2.imwrite(str(p), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        written.append(p)
    return written


__all__ = ["class_color", "draw_detections", "plot_label_stats", "write_detection_plots"]
