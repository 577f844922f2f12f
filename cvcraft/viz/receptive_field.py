"""The effective receptive field as a picture: the gradient map with the theoretical field.

Luo et al. (2016): the input pixels an output unit actually depends on, ``|d y / d x|``,
fill a roughly Gaussian blob far smaller than the theoretical field (the square every
path can reach). The plot shows the map (``cvcraft.models.profile.effective_receptive_field``)
in a perceptual colormap, with the theoretical field's square outlined when given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cvcraft.errors import ConfigError


def plot_effective_receptive_field(
    erf: np.ndarray,
    path: str | Path | None = None,
    rf: int | tuple[int, int] | None = None,
    title: str = "effective receptive field",
) -> np.ndarray:
    """Draw ``erf`` (H, W) in [0, 1] with the centred theoretical ``rf`` square; writes
    ``path`` (PNG) when given and returns the rendered figure as uint8 RGB (h, w, 3)."""
    erf = np.asarray(erf, dtype=np.float64)
    if erf.ndim != 2 or erf.size == 0:
        raise ConfigError(f"effective receptive field map must be (H, W), got {erf.shape}")
    fig = Figure(figsize=(4.2, 4.2 * erf.shape[0] / erf.shape[1] + 0.4))
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(erf, cmap="magma", vmin=0.0, vmax=max(float(erf.max()), 1e-12))
    if rf is not None:
        rh, rw = (rf, rf) if isinstance(rf, int) else rf
        cy, cx = erf.shape[0] // 2, erf.shape[1] // 2
        ax.add_patch(Rectangle((cx - (rw - 1) / 2 - 0.5, cy - (rh - 1) / 2 - 0.5), rw, rh,
                               fill=False, edgecolor="cyan", linewidth=1.2,
                               label=f"theoretical RF {rh}x{rw}"))  # fmt: skip
        ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return rgb
