"""Clustering helpers on feature vectors: k-means++ with the number of clusters chosen by
the silhouette score, Gaussian mixtures (EM), agglomerative (hierarchical) clustering, and
PCA / SVD 2-D projections for plots.

silhouette(i) = (b_i - a_i) / max(a_i, b_i): a = mean distance to its own cluster, b = to
the nearest other cluster; the score is the mean over samples, in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.classic.checks import choice
from cvcraft.errors import ConfigError, DataError


def _features(x: Any) -> np.ndarray:
    f = np.asarray(x, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DataError(f"features must be an (N, D) array with N >= 2, got shape {f.shape}")
    return f


def kmeans_select(
    x: np.ndarray, ks: Sequence[int] = range(2, 11), random_state: int = 0
) -> dict[str, Any]:
    """k-means++ for each k in ``ks``; keep the k with the best silhouette score.

    -> {"k", "labels" (N,), "centers" (k, D), "scores" {k: silhouette}, "inertia"}
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    f = _features(x)
    ks = [int(k) for k in ks if 2 <= int(k) < len(f)]
    if not ks:
        raise ConfigError(f"ks must contain k with 2 <= k < N = {len(f)}")
    best, scores = None, {}
    for k in ks:
        km = KMeans(k, init="k-means++", n_init=4, random_state=random_state).fit(f)
        scores[k] = float(silhouette_score(f, km.labels_))
        if best is None or scores[k] > scores[best[0]]:
            best = (k, km)
    k, km = best
    return {
        "k": k,
        "labels": km.labels_,
        "centers": km.cluster_centers_,
        "scores": scores,
        "inertia": float(km.inertia_),
    }


def gmm(x: np.ndarray, k: int, covariance: str = "full", random_state: int = 0):
    """Gaussian mixture fitted by EM: p(x) = sum_j pi_j N(x; mu_j, Sigma_j).
    -> (labels (N,), responsibilities (N, k), fitted GaussianMixture)."""
    from sklearn.mixture import GaussianMixture

    f = _features(x)
    choice(covariance, "covariance", ("full", "tied", "diag", "spherical"))
    if not 1 <= k <= len(f):
        raise ConfigError(f"k must be in [1, {len(f)}], got {k}")
    g = GaussianMixture(k, covariance_type=covariance, random_state=random_state).fit(f)
    return g.predict(f), g.predict_proba(f), g


def hierarchical(x: np.ndarray, k: int, linkage: str = "ward") -> np.ndarray:
    """Agglomerative clustering: start from singletons, repeatedly merge the closest pair
    of clusters (ward: least increase of within-cluster variance) until k remain. -> (N,)"""
    from sklearn.cluster import AgglomerativeClustering

    f = _features(x)
    choice(linkage, "linkage", ("ward", "complete", "average", "single"))
    if not 1 <= k <= len(f):
        raise ConfigError(f"k must be in [1, {len(f)}], got {k}")
    return AgglomerativeClustering(k, linkage=linkage).fit_predict(f)


def project_2d(x: np.ndarray, method: str = "pca") -> np.ndarray:
    """2-D projection for plotting: PCA (centred SVD, axes of largest variance) or a plain
    truncated SVD (no centring; suits non-negative histograms). -> (N, 2)"""
    f = _features(x)
    choice(method, "method", ("pca", "svd"))
    if method == "pca":
        f = f - f.mean(0)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    out = u[:, :2] * s[:2]
    # a sign convention so results are reproducible: largest |loading| positive
    cols = np.arange(out.shape[1])
    signs = np.sign(out[np.abs(out).argmax(0), cols])
    return out * np.where(signs == 0, 1, signs)
