"""Histogram of Oriented Gradients (Dalal & Triggs 2005), vectorized over a batch of images.

Per pixel: central-difference gradient (0 on the image border), magnitude |g| and unsigned
orientation theta = atan2(g_y, g_x) mod 180. Per cell: hard-binned orientation histogram of
the magnitudes, divided by the cell's pixel count. Per block of b x b cells (stride 1 cell):
L2-Hys normalization v / sqrt(|v|^2 + eps^2), clip at 0.2, renormalize (or L1, L1-sqrt, L2).
For colour images each pixel uses the channel with the largest gradient magnitude.
Equals ``skimage.feature.hog`` (tested), several times faster on batches.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cvcraft.classic.checks import choice
from cvcraft.errors import ConfigError, DataError

NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
EPS = 1e-5


def _orientation_bins(g_row: np.ndarray, g_col: np.ndarray, orientations: int) -> np.ndarray:
    """Bin index of theta = atan2(g_row, g_col) mod 180 (degrees) in ``orientations`` bins.

    Bin b holds [180 b / n, 180 (b + 1) / n) with the edges in float32, as scikit-image
    computes them, so features match it bit for bit in the binning.
    """
    ang = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = (180.0 / orientations) * np.arange(1, orientations, dtype=np.float32)
    return np.searchsorted(edges.astype(np.float64), ang, side="right")


@lru_cache(maxsize=8)
def _uint8_tables(orientations: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and bin of every integer gradient pair in [-255, 255]^2 (uint8 images):
    a table lookup replaces hypot/atan2 per pixel. -> 2 x (511, 511)"""
    g = np.arange(-255, 256, dtype=np.float64)
    g_row, g_col = np.meshgrid(g, g, indexing="ij")
    return np.hypot(g_col, g_row), _orientation_bins(g_row, g_col, orientations).astype(np.intp)


def _gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along rows and columns, zero on the border. (..., H, W)"""
    g_row = np.zeros_like(x)
    g_col = np.zeros_like(x)
    g_row[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    g_col[..., :, 1:-1] = x[..., :, 2:] - x[..., :, :-2]
    return g_row, g_col


def hog(
    images: np.ndarray,
    orientations: int = 9,
    cell: int = 8,
    block: int = 3,
    norm: str = "L2-Hys",
    channel_axis: int | None = None,
    transform_sqrt: bool = False,
    return_cells: bool = False,
) -> np.ndarray:
    """HOG feature vectors (``return_cells=True``: the per-cell histograms before blocks,
    (N, H // cell, W // cell, orientations)).

    images: (H, W), (N, H, W), or with channel_axis=-1 (H, W, C) / (N, H, W, C).
    -> (D,) or (N, D) float64, D = blocks_y * blocks_x * block^2 * orientations, ordered
    (block row, block col, cell row, cell col, orientation) like scikit-image.
    """
    choice(norm, "norm", NORMS)
    if orientations < 1 or cell < 1 or block < 1:
        raise ConfigError(
            f"orientations, cell and block must be >= 1, got {orientations}, {cell}, {block}"
        )
    x = np.asarray(images)
    if x.dtype.kind not in "uif" or x.size == 0:
        raise DataError(f"hog needs a non-empty numeric image array, got {x.dtype} {x.shape}")
    colour = channel_axis is not None
    if colour and channel_axis not in (-1, x.ndim - 1):
        raise ConfigError("hog supports channel_axis=-1 (channels last) only")
    spatial = x.ndim - (1 if colour else 0)
    if spatial not in (2, 3):
        raise DataError(f"hog expects (H, W[, C]) or (N, H, W[, C]), got shape {x.shape}")
    single = spatial == 2
    x = x[None] if single else x
    # uint8 gradients are integers in [-255, 255]: look their magnitude and bin up
    lut = x.dtype == np.uint8 and not transform_sqrt
    x = x.astype(np.int16 if lut else np.float64)
    if transform_sqrt:
        x = np.sqrt(x)
    if lut:
        mag_t, bin_t = (t.ravel() for t in _uint8_tables(orientations))

        def polar(gr: np.ndarray, gc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            flat = gr.astype(np.intp) * 511 + gc + (255 * 511 + 255)
            return mag_t[flat], bin_t[flat]
    else:

        def polar(gr: np.ndarray, gc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.hypot(gc, gr), _orientation_bins(gr, gc, orientations)

    if colour:  # pick, per pixel, the channel with the strongest gradient
        gr, gc = _gradients(np.moveaxis(x, -1, 1))  # (N, C, H, W)
        mags, binss = polar(gr, gc)
        best = np.argmax(mags, axis=1)[:, None]
        mag = np.take_along_axis(mags, best, 1)[:, 0]
        bins = np.take_along_axis(binss, best, 1)[:, 0]
    else:
        mag, bins = polar(*_gradients(x))
    n, h, w = mag.shape
    cy, cx = h // cell, w // cell
    by, bx = cy - block + 1, cx - block + 1
    if by < 1 or bx < 1:
        raise DataError(
            f"image {h}x{w} is too small for {block}x{block} blocks of {cell}x{cell} cells; "
            f"it needs at least {block * cell}x{block * cell}"
        )
    hist = _cell_histograms(mag, bins, cell, orientations)
    if return_cells:
        return hist[0] if single else hist
    # blocks as a strided view: (N, by, bx, block, block, orientations)
    blocks = np.lib.stride_tricks.sliding_window_view(hist, (block, block), axis=(1, 2))
    blocks = np.moveaxis(blocks, 3, -1)  # (N, by, bx, block, block, orient)
    blocks = blocks.reshape(n, by, bx, -1)
    if norm == "L1":
        out = blocks / (np.abs(blocks).sum(-1, keepdims=True) + EPS)
    elif norm == "L1-sqrt":
        out = np.sqrt(blocks / (np.abs(blocks).sum(-1, keepdims=True) + EPS))
    else:
        out = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + EPS**2)
        if norm == "L2-Hys":
            out = np.minimum(out, 0.2)
            out = out / np.sqrt((out**2).sum(-1, keepdims=True) + EPS**2)
    out = out.reshape(n, -1)
    return out[0] if single else out


def _cell_histograms(mag: np.ndarray, bins: np.ndarray, cell: int, orientations: int):
    """Per-cell orientation histograms of the magnitudes, divided by the cell's pixel count.
    (N, H, W) -> (N, H // cell, W // cell, orientations)"""
    n, h, w = mag.shape
    cy, cx = h // cell, w // cell
    mag, bins = mag[:, : cy * cell, : cx * cell], bins[:, : cy * cell, : cx * cell]
    # one bincount fills every histogram: index = ((image, cell row, cell col), bin)
    rows = np.arange(cy * cell) // cell
    cols = np.arange(cx * cell) // cell
    cell_id = (rows[:, None] * cx + cols[None, :])[None] + (np.arange(n) * cy * cx)[:, None, None]
    hist = np.bincount(
        (cell_id * orientations + bins).ravel(),
        weights=mag.ravel(),
        minlength=n * cy * cx * orientations,
    ).reshape(n, cy, cx, orientations) / (cell * cell)
    return hist


def line_pixels(r0, c0, r1, c1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bresenham lines from (r0, c0) to (r1, c1), all at once (M lines, integer arrays).

    Along the major axis step i = 0..L the minor offset is floor((2 m i + L) / (2 L)),
    L = max(|dr|, |dc|), m = min(...): the closed form of the error-term loop (the pixels
    ``skimage.draw.line`` draws). -> rows, cols (M, Lmax + 1) and a validity mask."""
    r0, c0, r1, c1 = (np.asarray(v, np.int64).reshape(-1) for v in (r0, c0, r1, c1))
    dr, dc = np.abs(r1 - r0), np.abs(c1 - c0)
    sr, sc = np.where(r1 > r0, 1, -1), np.where(c1 > c0, 1, -1)
    steep = dr > dc
    big, small = np.maximum(dr, dc), np.minimum(dr, dc)
    i = np.arange(int(big.max()) + 1)[None, :]  # (1, Lmax + 1)
    k = (2 * small[:, None] * i + big[:, None]) // np.maximum(2 * big[:, None], 1)
    major_r = np.where(steep[:, None], sr[:, None] * i, sr[:, None] * k)
    major_c = np.where(steep[:, None], sc[:, None] * k, sc[:, None] * i)
    rows, cols = r0[:, None] + major_r, c0[:, None] + major_c
    valid = i <= big[:, None]
    return rows, cols, valid


def hog_image(
    image: np.ndarray,
    orientations: int = 9,
    cell: int = 8,
    channel_axis: int | None = None,
    transform_sqrt: bool = False,
) -> np.ndarray:
    """The HOG picture of one image: in each cell, per orientation bin, a line through the
    cell centre perpendicular to the bin's mid-angle gradient (along the edge it stands
    for), as bright as the cell's histogram value; lines of radius min(cell) // 2 - 1.
    Equals ``skimage.feature.hog(..., visualize=True)``'s image. -> (H, W) float64"""
    x = np.asarray(image)
    if x.ndim != (3 if channel_axis is not None else 2):
        raise DataError(f"hog_image takes one image, got shape {x.shape}")
    hist = hog(x, orientations, cell, 1, channel_axis=channel_axis,
               transform_sqrt=transform_sqrt, return_cells=True)  # fmt: skip
    cy, cx = hist.shape[:2]
    radius = cell // 2 - 1
    mid = np.pi * (np.arange(orientations) + 0.5) / orientations
    d_r, d_c = radius * np.sin(mid), radius * np.cos(mid)  # (O,)
    centre_r = (np.arange(cy) * cell + cell // 2)[:, None, None].astype(np.float64)
    centre_c = (np.arange(cx) * cell + cell // 2)[None, :, None].astype(np.float64)
    shape = (cy, cx, orientations)
    ends = [np.broadcast_to(v, shape) for v in (centre_r - d_c, centre_c + d_r,
                                                centre_r + d_c, centre_c - d_r)]  # fmt: skip
    rows, cols, valid = line_pixels(*(np.trunc(e).astype(np.int64) for e in ends))
    values = np.broadcast_to(hist.reshape(-1, 1), rows.shape)
    out = np.zeros(x.shape[:2])
    np.add.at(out, (rows[valid], cols[valid]), values[valid])
    return out
