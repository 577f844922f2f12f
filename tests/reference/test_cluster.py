"""Reference k-means, k-means++ and PCA vs scikit-learn: Lloyd's k-means from the same
initial centres, k-means++'s D^2 sampling law, and PCA's axes, variances and projections."""

from __future__ import annotations

import numpy as np
import pytest
from refcheck import close

from cvcraft.errors import ConfigError
from cvcraft.reference import cluster

sklearn_cluster = pytest.importorskip("sklearn.cluster")
sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


def blobs(rng, n_per=40, k=4, d=2, spread=0.6):
    centres = rng.uniform(-10, 10, size=(k, d))
    return np.concatenate([c + rng.normal(0, spread, size=(n_per, d)) for c in centres])


@pytest.mark.parametrize("seed,k,d,spread", [(0, 3, 2, 2.0), (1, 5, 3, 3.0), (2, 4, 5, 4.0)])
def test_kmeans_equals_sklearn_from_the_same_init(seed, k, d, spread):
    rng = np.random.default_rng(seed)
    x = blobs(rng, 30, k, d, spread)  # overlapping blobs: several Lloyd iterations
    init = x[rng.choice(len(x), k, replace=False)]
    ours = cluster.kmeans(x, init)
    sk = sklearn_cluster.KMeans(
        k, init=init, n_init=1, algorithm="lloyd", tol=0.0, max_iter=300
    ).fit(x)
    assert ours.iterations > 1
    close(ours.centres, sk.cluster_centers_, 1e-9)
    np.testing.assert_array_equal(ours.labels, sk.labels_)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-9)


def test_kmeans_plusplus_samples_by_squared_distance():
    # P(first = i, second = j) = 1/n * D(x_j, x_i)^2 / sum_l D(x_l, x_i)^2
    x = np.array([[0.0, 0], [1, 0], [0, 2], [5, 5], [6, 4]])
    n = len(x)
    d2 = cluster.squared_distances(x, x)
    exact = d2 / d2.sum(axis=1, keepdims=True) / n
    rng = np.random.default_rng(0)
    draws = 4000
    counts = np.zeros((n, n))
    for _ in range(draws):
        c = cluster.kmeans_plusplus(x, 2, rng)
        i, j = (int(np.flatnonzero((x == row).all(1))[0]) for row in c)
        counts[i, j] += 1
    sigma = np.sqrt(exact * (1 - exact) / draws)
    assert (np.abs(counts / draws - exact) <= 5 * sigma + 1e-12).all()
    assert counts.trace() == 0  # a chosen point has D = 0 and is never drawn again


def test_kmeans_plusplus_then_lloyd_finds_sklearns_optimum_on_separated_blobs():
    rng = np.random.default_rng(3)
    x = blobs(rng, 50, 5, 2, 0.5)
    ours = min(
        (cluster.kmeans(x, cluster.kmeans_plusplus(x, 5, rng)) for _ in range(5)),
        key=lambda r: r.inertia,
    )
    sk = sklearn_cluster.KMeans(5, n_init=10, random_state=0).fit(x)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-9)


@pytest.mark.parametrize("n,d,k", [(50, 5, 3), (20, 8, 8), (30, 4, 1)])
def test_pca_equals_sklearn(n, d, k):
    rng = np.random.default_rng(n + d + k)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 5
    ours = cluster.pca(x, k)
    sk = sklearn_decomposition.PCA(k, svd_solver="full").fit(x)
    close(ours.components, sk.components_, 1e-9)
    close(ours.explained_variance, sk.explained_variance_, 1e-9)
    close(ours.explained_variance_ratio, sk.explained_variance_ratio_, 1e-9)
    close(ours.singular_values, sk.singular_values_, 1e-9)
    z = cluster.pca_transform(x, ours)
    close(z, sk.transform(x), 1e-9)
    close(cluster.pca_inverse_transform(z, ours), sk.inverse_transform(sk.transform(x)), 1e-9)


def test_cluster_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ConfigError, match="k=5"):
        cluster.kmeans_plusplus(x, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"must be \(k, 2\)"):
        cluster.kmeans(x, np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="pca needs"):
        cluster.pca(x, 3)
