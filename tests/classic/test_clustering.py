import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture

from cvcraft.classic.clustering import gmm, hierarchical, kmeans_select, project_2d
from cvcraft.errors import ConfigError, DataError


@pytest.fixture
def blobs():
    return make_blobs(240, n_features=5, centers=4, cluster_std=0.7, random_state=0)


def test_kmeans_select_picks_the_true_k_by_silhouette(blobs):
    x, y = blobs
    r = kmeans_select(x, range(2, 8))
    assert r["k"] == 4 and adjusted_rand_score(y, r["labels"]) == 1.0
    assert r["scores"][4] == pytest.approx(silhouette_score(x, r["labels"]))
    assert max(r["scores"], key=r["scores"].get) == 4


def test_gmm_and_hierarchical_match_sklearn(blobs):
    x, y = blobs
    labels, resp, _ = gmm(x, 4)
    ref = GaussianMixture(4, random_state=0).fit(x)
    np.testing.assert_array_equal(labels, ref.predict(x))
    np.testing.assert_allclose(resp, ref.predict_proba(x))
    h = hierarchical(x, 4, "average")
    np.testing.assert_array_equal(h, AgglomerativeClustering(4, linkage="average").fit_predict(x))
    assert adjusted_rand_score(y, h) == 1.0


def test_projections_match_sklearn_up_to_sign(blobs):
    x, _ = blobs
    np.testing.assert_allclose(
        np.abs(project_2d(x, "pca")), np.abs(PCA(2).fit_transform(x)), atol=1e-9
    )
    ref = TruncatedSVD(2, algorithm="arpack").fit_transform(x)
    np.testing.assert_allclose(np.abs(project_2d(x, "svd")), np.abs(ref), atol=1e-6)


def test_clustering_errors(blobs):
    x, _ = blobs
    with pytest.raises(DataError, match=r"\(N, D\)"):
        kmeans_select(np.zeros(5))
    with pytest.raises(ConfigError, match="ks"):
        kmeans_select(x[:3], [5])
    with pytest.raises(ConfigError, match="linkage"):
        hierarchical(x, 3, "centroid")
    with pytest.raises(ConfigError, match="k must"):
        gmm(x, 0)
