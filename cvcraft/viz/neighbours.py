"""Nearest-neighbour grid of a retrieval model: each row is a query image followed by its k
nearest gallery images, framed green (same identity) or red (another) when it is known.

queries uint8 (Q, H, W, 3), neighbours uint8 (Q, k, H, W, 3), correct bool (Q, k) or None
-> one RGB image of Q rows x (k + 1) cells (``augment_grid.make_grid`` tiling, white gaps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvcraft.data.io import write_image
from cvcraft.viz.augment_grid import make_grid

GREEN, RED, GREY = (40, 180, 60), (220, 40, 40), (128, 128, 128)


def framed(image: np.ndarray, colour: tuple[int, int, int] | None, width: int) -> np.ndarray:
    """``image`` inside a ``width``-pixel frame of ``colour`` (white when None)."""
    h, w = image.shape[:2]
    out = np.empty((h + 2 * width, w + 2 * width, 3), np.uint8)
    out[:] = (255, 255, 255) if colour is None else colour
    out[width : width + h, width : width + w] = image
    return out


def neighbour_grid(
    queries: np.ndarray,
    neighbours: np.ndarray,
    correct: np.ndarray | None = None,
    *,
    frame: int = 3,
    pad: int = 4,
) -> np.ndarray:
    """The grid image (module docstring); queries get a grey frame."""
    q, nb = np.asarray(queries), np.asarray(neighbours)
    if q.ndim != 4 or nb.ndim != 5 or nb.shape[0] != len(q) or q.shape[-1] != 3:
        raise ValueError(
            f"neighbour_grid: queries (Q, H, W, 3) and neighbours (Q, k, H, W, 3) needed, got "
            f"{q.shape} and {nb.shape}"
        )
    if len(q) == 0 or nb.shape[1] == 0:
        raise ValueError("neighbour_grid needs at least one query and one neighbour")
    k = nb.shape[1]
    ok = None if correct is None else np.asarray(correct, bool).reshape(len(q), k)
    cells = []
    for i in range(len(q)):  # one row per query; a handful of rows in a plot
        cells.append(framed(q[i], GREY, frame))
        for j in range(k):
            colour = None if ok is None else (GREEN if ok[i, j] else RED)
            cells.append(framed(nb[i, j], colour, frame))
    return make_grid(cells, k + 1, pad)


def write_neighbour_grid(path: str | Path, queries: np.ndarray, neighbours: np.ndarray,
                         correct: np.ndarray | None = None) -> Path:  # fmt: skip
    """Write ``neighbour_grid`` to ``path`` (PNG/JPEG by suffix); the path."""
    write_image(path, neighbour_grid(queries, neighbours, correct))
    return Path(path)
