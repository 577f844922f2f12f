"""k-means (Lloyd's algorithm) with k-means++ seeding, and PCA by the SVD.

k-means minimises the inertia ``sum_i ||x_i - mu_{c(i)}||^2`` by alternating the two steps
that each lower it: assign every point to its nearest centre, then move every centre to
the mean of its points; it stops when the assignment no longer changes.
k-means++ (Arthur & Vassilvitskii 2007) seeds it: the first centre uniformly, each next one
drawn with probability ``D(x)^2 / sum D^2``, D the distance to the nearest centre so far,
which is O(log k)-competitive in expectation.
PCA: centre X, ``X_c = U S V^T``; the principal axes are the rows of ``V^T``, the variance
along axis j is ``S_j^2 / (n - 1)``, and the projection is ``X_c V = U S``.
Shapes: X (n, d); centres (k, d); components (k, d).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cvcraft.errors import ConfigError


def squared_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``||x_i - c_j||^2`` for x (n, d), c (k, d) -> (n, k)."""
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: (k, d) centres chosen among the rows of x."""
    if not 1 <= k <= len(x):
        raise ConfigError(f"k-means++ needs 1 <= k <= n = {len(x)}, got k={k}")
    centres = [x[rng.integers(len(x))]]
    d2 = squared_distances(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        i = rng.choice(len(x), p=d2 / d2.sum())  # far points are likelier
        centres.append(x[i])
        d2 = np.minimum(d2, squared_distances(x, x[i][None])[:, 0])
    return np.array(centres)


class KMeansResult(NamedTuple):
    centres: np.ndarray  # (k, d)
    labels: np.ndarray  # (n,)
    inertia: float
    iterations: int


def kmeans(x: np.ndarray, init: np.ndarray, max_iter: int = 300) -> KMeansResult:
    """Lloyd's k-means from the given initial centres (k, d). An empty cluster keeps its
    old centre."""
    x = np.asarray(x, dtype=np.float64)
    centres = np.array(init, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != x.shape[1]:
        raise ValueError(f"kmeans init {centres.shape} must be (k, {x.shape[1]})")
    labels = squared_distances(x, centres).argmin(axis=1)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        for j in range(len(centres)):  # update step: each centre to the mean of its points
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
        new = squared_distances(x, centres).argmin(axis=1)  # assignment step
        if (new == labels).all():
            break
        labels = new
    inertia = float(squared_distances(x, centres)[np.arange(len(x)), labels].sum())
    return KMeansResult(centres, labels, inertia, iterations)


class PCAResult(NamedTuple):
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), unit rows
    explained_variance: np.ndarray  # (k,)
    explained_variance_ratio: np.ndarray  # (k,)
    singular_values: np.ndarray  # (k,)


def pca(x: np.ndarray, k: int) -> PCAResult:
    """The top-k principal axes of x (n, d) by the SVD of the centred data.

    The sign of each axis is arbitrary; it is fixed so the entry of largest magnitude of
    every component is positive (scikit-learn's convention).
    """
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ConfigError(f"pca needs 1 <= k <= min(n, d) = {min(n, d)}, got k={k}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * signs[:, None]
    var = s**2 / (n - 1)
    return PCAResult(mean, vt[:k], var[:k], var[:k] / var.sum(), s[:k])


def pca_transform(x: np.ndarray, p: PCAResult) -> np.ndarray:
    """Coordinates of x (m, d) along the principal axes: ``(x - mean) V`` -> (m, k)."""
    return (x - p.mean) @ p.components.T


def pca_inverse_transform(z: np.ndarray, p: PCAResult) -> np.ndarray:
    """Back to the input space: ``z V^T + mean`` -> (m, d); exact when k = rank."""
    return z @ p.components + p.mean
