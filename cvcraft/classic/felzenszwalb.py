"""Felzenszwalb-Huttenlocher graph segmentation (IJCV 2004), the over-segmentation that
selective search starts from.

The image is a graph: one node per pixel, an edge to each of the 8 neighbours weighted by
the Euclidean colour distance after Gaussian smoothing. Edges are visited by increasing
weight (Kruskal order); an edge joins its two components C1, C2 when its weight is below
``min(Int(C1) + k/|C1|, Int(C2) + k/|C2|)``, where ``Int`` is the largest weight inside a
component's minimum spanning tree (the weight of the edge that last grew it) and ``k``
(``scale``) favours larger components. A second pass over the same order joins every
component still smaller than ``min_size`` to its neighbour.

It follows scikit-image's ``skimage.segmentation.felzenszwalb`` choice for choice, so the
two give the same partition (tests/classic/test_felzenszwalb.py): uint8 becomes float64 in
[0, 1] (times 1/255) and ``scale`` is divided by 255 (the paper's k on 0-255 values);
``scipy.ndimage.gaussian_filter`` with ``mode="reflect"``, channels not smoothed together;
the same edge list order and ``np.argsort``, so equal weights are visited in the same
order; and the threshold rounded to float32, as skimage's Cython loop stores it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cvcraft.errors import ConfigError, DataError


def _as_float_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise DataError(f"felzenszwalb: expected an (H, W) or (H, W, C) array, got shape {shape}")
    img = image[..., None] if image.ndim == 2 else image
    if img.dtype == np.uint8:
        return np.multiply(img, 1.0 / 255, dtype=np.float64)
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64)
    raise DataError(f"felzenszwalb: image dtype {img.dtype} is not uint8 or float")


def grid_edges(height: int, width: int) -> np.ndarray:
    """(E, 2) pixel-index pairs of the 8-connected grid: right, down, down-right and
    up-right neighbours, in that order (each undirected edge once)."""
    idx = np.arange(height * width, dtype=np.intp).reshape(height, width)
    pairs = [
        (idx[:, 1:], idx[:, :-1]),  # right
        (idx[1:, :], idx[:-1, :]),  # down
        (idx[1:, 1:], idx[:-1, :-1]),  # down-right
        (idx[:-1, 1:], idx[1:, :-1]),  # up-right
    ]
    return np.concatenate([np.stack([a.ravel(), b.ravel()], 1) for a, b in pairs])


def edge_weights(smoothed: np.ndarray) -> np.ndarray:
    """Euclidean colour distance of each :func:`grid_edges` edge, same order."""
    h, w = smoothed.shape[:2]

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = a - b
        return np.sqrt(np.sum(d * d, axis=-1)).ravel()

    s = smoothed
    return np.concatenate(
        [
            dist(s[:, 1:], s[:, : w - 1]),
            dist(s[1:, :], s[: h - 1, :]),
            dist(s[1:, 1:], s[: h - 1, : w - 1]),
            dist(s[1:, : w - 1], s[: h - 1, 1:]),
        ]
    ).astype(np.float64)


def _flatten(parent: list[int]) -> np.ndarray:
    """The root of every node of a union-find forest (pointer jumping)."""
    roots = np.array(parent, dtype=np.int64)
    while True:
        up = roots[roots]
        if np.array_equal(up, roots):
            return roots
        roots = up


def felzenszwalb(
    image: np.ndarray, scale: float = 1.0, sigma: float = 0.8, min_size: int = 20
) -> np.ndarray:
    """Segment an (H, W) or (H, W, C) image (uint8, or float in any range) into connected
    regions. ``scale`` is the paper's k (on 0-255 values), ``sigma`` the Gaussian smoothing
    before the weights are taken, ``min_size`` the smallest region kept.

    -> (H, W) int64 labels 0..R-1, numbered by each region's first pixel in raster order.
    """
    if scale < 0 or sigma < 0 or min_size < 0:
        raise ConfigError(
            f"felzenszwalb: scale, sigma and min_size must be >= 0, got {scale}, {sigma}, "
            f"{min_size}"
        )
    img = _as_float_image(image)
    h, w = img.shape[:2]
    smoothed = ndi.gaussian_filter(img, (sigma, sigma, 0), mode="reflect", truncate=4.0)
    weights = edge_weights(smoothed)
    order = np.argsort(weights)  # same sort as skimage: ties visited in the same order
    edges = grid_edges(h, w)[order]
    a_list, b_list = edges[:, 0].tolist(), edges[:, 1].tolist()
    weight_list = weights[order].tolist()
    k = float(scale) / 255.0

    # union-find: the root of a component is its smallest pixel index
    parent = list(range(h * w))
    size = [1] * (h * w)
    internal = [0.0] * (h * w)  # Int(C): the largest MST weight inside C

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    # skimage stores the threshold as a C float: compare against it rounded to float32. The
    # rounding moves it by at most 2**-24 of itself, so only a weight within 2**-23 of it
    # needs the (slow) exact rounding
    lower, upper = 1.0 - 2.0**-23, 1.0 + 2.0**-23
    for a, b, wt in zip(a_list, b_list, weight_list):
        ra, rb = parent[a], parent[b]  # most nodes are roots or one step below one
        if parent[ra] != ra:
            ra = find(a)
        if parent[rb] != rb:
            rb = find(b)
        if ra == rb:
            continue
        ta, tb = internal[ra] + k / size[ra], internal[rb] + k / size[rb]
        threshold = ta if ta < tb else tb
        if wt < threshold * lower or (wt < threshold * upper and wt < float(np.float32(threshold))):
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
            size[lo] += size[hi]
            internal[lo] = wt
    # join the regions smaller than min_size, visiting the edges in the same order; an edge
    # inside one region now stays inside one, so only the edges between regions are visited
    roots = _flatten(parent)
    between = np.flatnonzero(roots[edges[:, 0]] != roots[edges[:, 1]])
    for a, b in edges[between].tolist():
        ra, rb = find(a), find(b)
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
            size[lo] += size[hi]
    roots = _flatten(parent)
    # roots are the smallest pixel of each region, so unique() numbers them in raster order
    return np.unique(roots, return_inverse=True)[1].reshape(h, w).astype(np.int64)
