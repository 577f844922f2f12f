"""k-reciprocal re-ranking (Zhong et al. 2017, "Re-ranking Person Re-identification with
k-reciprocal Encoding"): a query and a gallery item are close when their k-reciprocal
neighbourhoods overlap, not only when their features are.

Over all N = Q + G items with squared distances d (rows divided by their maximum):
- R(i, k): the j among i's k + 1 nearest whose own k + 1 nearest contain i (reciprocal).
- R*(i): R(i, k1) plus every R(c, k1/2) (c in R(i, k1)) that shares more than 2/3 of its
  items with R(i, k1).
- V[i, j] = exp(-d_ij) / sum over R*(i) for j in R*(i), else 0; then local query expansion:
  V[i] = mean of V over i's k2 nearest.
- Jaccard distance d_J(i, j) = 1 - sum_k min(V_ik, V_jk) / sum_k max(V_ik, V_jk), where the
  max sum is 2 - the min sum (rows of V sum to 1).
- final = (1 - lambda) d_J + lambda d, for the query rows and gallery columns.

Built with sparse neighbourhood matrices: reciprocity is ``A & A.T`` of the k-NN adjacency A,
the 2/3 overlap test one sparse product. query (Q, D), gallery (G, D) -> distances (Q, G).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.retrieval import distance_matrix


def _knn_adjacency(rank: np.ndarray, k: int) -> sparse.csr_matrix:
    """Boolean (N, N): A[i, j] = j among the first k of row i of ``rank``."""
    n = len(rank)
    cols = rank[:, :k].reshape(-1)
    rows = np.repeat(np.arange(n), min(k, rank.shape[1]))
    return sparse.csr_matrix((np.ones(len(cols), bool), (rows, cols)), shape=(n, n))


def rerank_square(dist: np.ndarray, num_query: int, k1: int = 20, k2: int = 6,
                  lambda_value: float = 0.3) -> np.ndarray:  # fmt: skip
    """Re-ranked distances (num_query, N) from the squared distances (N, N) of all items
    (queries first). ``k1`` neighbourhood size, ``k2`` query-expansion size, ``lambda_value``
    the weight of the original distance."""
    n = len(dist)
    if dist.ndim != 2 or dist.shape[1] != n or not 0 < num_query <= n:
        raise DataError(f"re-ranking needs an (N, N) distance matrix and 0 < Q <= N, got "
                        f"{dist.shape} and Q={num_query}")  # fmt: skip
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ConfigError(
            f"re-ranking: need k1 >= 1, k2 >= 1 and 0 <= lambda <= 1, got {k1}, {k2}, "
            f"{lambda_value}"
        )
    d = dist / np.maximum(dist.max(1, keepdims=True), 1e-12)  # (N, N), rows scaled to max 1
    rank = np.argsort(d)  # (N, N): each row's items from nearest
    a = _knn_adjacency(rank, k1 + 1)
    recip = a.multiply(a.T).tocsr()  # R(i, k1): mutual k1 + 1 nearest
    half = int(np.around(k1 / 2.0)) + 1
    b = _knn_adjacency(rank, half)
    recip_half = b.multiply(b.T).tocsr()  # R(c, k1/2) per row c
    # overlap[i, c] = |R(c, k1/2) & R(i, k1)|, kept where c is in R(i, k1)
    overlap = (recip.astype(np.float64) @ recip_half.T.astype(np.float64)).multiply(recip)
    size_half = np.asarray(recip_half.sum(1)).reshape(-1)  # |R(c, k1/2)|
    ov = overlap.tocoo()
    keep = ov.data > (2.0 / 3.0) * size_half[ov.col]
    chosen = sparse.csr_matrix((np.ones(keep.sum()), (ov.row[keep], ov.col[keep])), shape=(n, n))
    expanded = (recip.astype(np.float64) + chosen @ recip_half.astype(np.float64)) > 0
    ex = expanded.tocoo()
    w = np.exp(-d[ex.row, ex.col])
    sums = np.bincount(ex.row, weights=w, minlength=n)
    v = np.zeros((n, n))
    v[ex.row, ex.col] = w / sums[ex.row]  # (N, N) encodings V
    if k2 > 1:  # local query expansion: mean of the k2 nearest items' encodings
        v = (_knn_adjacency(rank, k2).astype(np.float64) / k2) @ v
    vs = sparse.csr_matrix(v)
    jaccard = np.empty((num_query, n))
    for i in range(num_query):  # per query: the min-sum over its non-zero columns only
        row = vs.getrow(i)
        cols, vals = row.indices, row.data
        mins = np.minimum(vals[None, :], v[:, cols]).sum(1)  # (N,)
        jaccard[i] = 1.0 - mins / (2.0 - mins)
    return (1.0 - lambda_value) * jaccard + lambda_value * d[:num_query]


def k_reciprocal_rerank(
    query: np.ndarray,
    gallery: np.ndarray,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
) -> np.ndarray:
    """Re-ranked (Q, G) distances of ``query`` against ``gallery`` embeddings. The base
    distance is squared Euclidean (``metric=cosine``: of the L2-normalised embeddings)."""
    q, g = np.asarray(query, np.float64), np.asarray(gallery, np.float64)
    if len(q) == 0 or len(g) == 0:
        raise DataError(f"re-ranking needs queries and gallery items, got {len(q)} and {len(g)}")
    feats = np.concatenate([q, g])
    final = rerank_square(square_distances(feats, metric), len(q), k1, k2, lambda_value)
    return final[:, len(q) :]


def square_distances(feats: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """(N, N) squared Euclidean distances (``cosine``: 2 - 2 cos, the same of the normalised
    features; the per-row scaling of re-ranking makes the factor 2 irrelevant)."""
    if metric == "cosine":
        return 2.0 * distance_matrix(feats, feats, "cosine")
    return distance_matrix(feats, feats, metric) ** 2
