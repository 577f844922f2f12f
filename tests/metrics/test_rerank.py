"""k-reciprocal re-ranking against a reference loop written step by step from Zhong et al.
2017 (per-item neighbour sets, the 2/3 expansion rule, query expansion, the Jaccard sum)."""

import numpy as np
import pytest

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.rerank import k_reciprocal_rerank, rerank_square
from cvcraft.metrics.retrieval import retrieval_metrics


def reference(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    feats = np.concatenate([q, g])
    n, nq = len(feats), len(q)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            dist[i, j] = ((feats[i] - feats[j]) ** 2).sum()
    dist = np.transpose(dist / np.max(dist, axis=0))
    rank = np.argsort(dist)
    v = np.zeros((n, n))
    for i in range(n):
        fwd = rank[i, : k1 + 1]
        bwd = rank[fwd, : k1 + 1]
        recip = fwd[np.where(bwd == i)[0]]
        expansion = list(recip)
        half = int(np.around(k1 / 2.0)) + 1
        for c in recip:
            c_fwd = rank[c, :half]
            c_bwd = rank[c_fwd, :half]
            c_recip = c_fwd[np.where(c_bwd == c)[0]]
            if len(np.intersect1d(c_recip, recip)) > 2.0 / 3.0 * len(c_recip):
                expansion.extend(c_recip)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        v[i, expansion] = w / w.sum()
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = v[rank[i, :k2]].mean(0)
        v = v_qe
    jac = np.zeros((nq, n))
    for i in range(nq):
        s = 0.0 * jac[i]
        for k in np.where(v[i] != 0)[0]:
            for j in np.where(v[:, k] != 0)[0]:
                s[j] += min(v[i, k], v[j, k])
        jac[i] = 1.0 - s / (2.0 - s)
    final = jac * (1 - lam) + dist[:nq] * lam
    return final[:, nq:]


@pytest.mark.parametrize("k1,k2,lam", [(6, 3, 0.3), (5, 1, 0.0), (4, 2, 1.0), (9, 4, 0.5)])
def test_rerank_equals_reference_loop(k1, k2, lam):
    rng = np.random.default_rng(k1 * 10 + k2)
    centres = rng.normal(size=(6, 8)) * 2
    ids = rng.integers(0, 6, 40)
    feats = centres[ids] + rng.normal(size=(40, 8))
    q, g = feats[:12], feats[12:]
    got = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(got, reference(q, g, k1, k2, lam), rtol=1e-10, atol=1e-12)


def test_rerank_cosine_is_euclidean_of_normalised_features():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(5, 6)), rng.normal(size=(20, 6))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(
        k_reciprocal_rerank(q, g, k1=5, k2=2, metric="cosine"),
        reference(unit(q), unit(g), 5, 2, 0.3),
        rtol=1e-9, atol=1e-12,
    )  # fmt: skip


def test_rerank_helps_on_clustered_data_and_feeds_the_metrics():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(10, 16))
    gid = np.repeat(np.arange(10), 8)
    qid = np.arange(10)
    g = centres[gid] + 0.9 * rng.normal(size=(80, 16))
    q = centres[qid] + 0.9 * rng.normal(size=(10, 16))
    base = retrieval_metrics(q, g, qid, gid, metric="euclidean")
    d = k_reciprocal_rerank(q, g, k1=8, k2=3)
    rr = retrieval_metrics(q, g, qid, gid, distances=d)
    assert rr["map"] >= base["map"]  # re-ranking's point on clustered identities
    with pytest.raises(DataError, match="distances"):
        retrieval_metrics(q, g, qid, gid, distances=d[:, :5])


def test_bad_input():
    with pytest.raises(DataError, match="queries and gallery"):
        k_reciprocal_rerank(np.zeros((0, 3)), np.zeros((4, 3)))
    with pytest.raises(ConfigError, match="k1 >= 1"):
        rerank_square(np.ones((4, 4)), 2, k1=0)
    with pytest.raises(DataError, match=r"\(N, N\)"):
        rerank_square(np.ones((4, 3)), 2)
