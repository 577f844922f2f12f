"""Pictures of an attack: robust accuracy against the budget, and clean / adversarial /
perturbation triplets.

The perturbation is shown amplified to the full range: ``0.5 + delta / (2 max|delta|)``
per image (grey = unchanged), since at eps = 8/255 it is invisible at true scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cvcraft.errors import ConfigError


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_robustness(
    eps: Sequence[float], accuracy: dict[str, Sequence[float]], path: str | Path, unit: str = ""
) -> Path:
    """Accuracy (0-1) against eps, one line per attack."""
    fig = _figure(5.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for name, acc in accuracy.items():
        ax.plot(eps, np.asarray(acc) * 100, marker="o", label=name)
    ax.set_xlabel(f"eps{unit}")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("robust accuracy")
    return _save(fig, path)


def amplify(delta: np.ndarray) -> np.ndarray:
    """Perturbation (H, W, C) float -> uint8 image, 128 = no change, full range = max|delta|."""
    scale = float(np.abs(delta).max())
    shown = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
    return np.clip(shown * 255 + 0.5, 0, 255).astype(np.uint8)


def plot_adversarial_grid(
    clean: np.ndarray,
    adversarial: np.ndarray,
    titles_clean: Sequence[str],
    titles_adv: Sequence[str],
    path: str | Path,
    cols: int = 6,
    right_clean: Sequence[bool] | None = None,
    right_adv: Sequence[bool] | None = None,
) -> Path:
    """Columns of (clean, adversarial, amplified perturbation) for N images (N, H, W, C)
    floats in [0, 1]; titles say the prediction on each, green when right, red when wrong."""
    clean, adversarial = np.asarray(clean), np.asarray(adversarial)
    if clean.shape != adversarial.shape or clean.ndim != 4 or len(clean) == 0:
        raise ConfigError(
            f"need matching (N, H, W, C) batches, got {clean.shape}, {adversarial.shape}"
        )
    n = len(clean)
    cols = min(cols, n)
    blocks = math.ceil(n / cols)
    fig = _figure(1.9 * cols, 6.0 * blocks)

    def colour(flags: Sequence[bool] | None, i: int) -> str:
        return "black" if flags is None else ("green" if flags[i] else "red")

    for i in range(n):
        b, c = divmod(i, cols)
        delta = adversarial[i] - clean[i]
        peak = float(np.abs(delta).max())
        gain = f"x{0.5 / peak:.0f}" if peak > 0 else ""
        shown = [clean[i], adversarial[i], amplify(delta)]
        labels = [titles_clean[i], titles_adv[i], f"perturbation {gain}\nmax {peak * 255:.1f}/255"]
        colours = [colour(right_clean, i), colour(right_adv, i), "black"]
        for r in range(3):
            ax = fig.add_subplot(3 * blocks, cols, (3 * b + r) * cols + c + 1)
            img = shown[r]
            img = img if img.dtype == np.uint8 else np.clip(img, 0, 1)
            gray = img.shape[-1] == 1
            ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None)
            ax.set_axis_off()
            ax.set_title(labels[r], fontsize=7, color=colours[r])
    return _save(fig, path)
