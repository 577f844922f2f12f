"""Multi-label evaluation plots: per-class precision-recall curves and an AP table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvcraft.viz.plots import _new_figure, _save


def plot_multilabel_pr(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    ap: Sequence[float | None],
    classes: Sequence[str],
    path: str | Path,
    max_classes: int = 20,
) -> Path:
    """One PR curve per class (the ``max_classes`` most frequent ones by curve length when
    there are more), labelled with its AP, plus the macro mean in the title."""
    fig = _new_figure(7, 6)
    ax = fig.add_subplot(1, 1, 1)
    have = [c for c in range(len(classes)) if ap[c] is not None and len(curves[c][0])]
    have = sorted(have, key=lambda c: -len(curves[c][0]))[:max_classes]
    for c in sorted(have):
        p, r = curves[c]
        # a step curve from (recall 0, precision of the first point)
        ax.step(np.r_[0.0, r], np.r_[p[:1], p], where="post", lw=1,
                label=f"{classes[c]} {ap[c]:.3f}")  # fmt: skip
    known = [a for a in ap if a is not None]
    mean = float(np.mean(known)) if known else float("nan")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"precision-recall per class (mAP {mean:.3f})")  # fmt: skip
    if have:
        ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return _save(fig, Path(path))


def format_ap_table(
    classes: Sequence[str],
    ap: Sequence[float | None],
    positives: Sequence[int],
    thresholds: Sequence[float] | None = None,
) -> str:
    """CSV text ``class,ap,positives,threshold`` (AP blank where a class has no positive)."""
    thr = list(thresholds) if thresholds is not None else [float("nan")] * len(classes)
    lines = ["class,ap,positives,threshold"]
    for name, a, n, t in zip(classes, ap, positives, thr):
        lines.append(f"{name},{'' if a is None else f'{a:.6f}'},{int(n)},{t:.6f}")
    return "\n".join(lines) + "\n"
