"""Retrieval metrics against a per-query loop written from the Market-1501 protocol, with
scikit-learn's average_precision_score per query."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, ndcg_score
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalPrecision, RetrievalRecall

from cvcraft.errors import DataError
from cvcraft.metrics.retrieval import RetrievalMetrics, distance_matrix, retrieval_metrics


def _reference(dist, qid, gid, qcam=None, gcam=None, exclude=None, ks=(1, 5, 10)):
    """One query at a time: drop junk, sort (stable), first match, sklearn AP."""
    cmc, aps, rr = [], [], []
    for i in range(len(qid)):
        junk = np.zeros(len(gid), bool) if exclude is None else exclude[i].copy()
        if qcam is not None:
            junk |= (gid == qid[i]) & (gcam == qcam[i])
        d, m = dist[i, ~junk], gid[~junk] == qid[i]
        if not m.any():
            continue
        order = np.argsort(d, kind="stable")
        first = int(np.flatnonzero(m[order])[0])
        cmc.append([first < k for k in ks])
        rr.append(1 / (first + 1))
        aps.append(average_precision_score(m, -d))
    cmc = np.mean(cmc, 0)
    return {f"rank{k}": cmc[j] for j, k in enumerate(ks)} | {
        "map": np.mean(aps),
        "mrr": np.mean(rr),
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cams", [False, True])
def test_query_gallery_metrics_equal_the_protocol_loop(seed, cams):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(15, 4)), rng.normal(size=(40, 4))
    if seed % 2:  # coarse embeddings: many tied distances
        q, g = np.round(q), np.round(g)
    qid, gid = rng.integers(0, 6, 15), rng.integers(0, 6, 40)
    qc, gc = (rng.integers(0, 3, 15), rng.integers(0, 3, 40)) if cams else (None, None)
    got = retrieval_metrics(q, g, qid, gid, query_cams=qc, gallery_cams=gc, metric="euclidean")
    ref = _reference(distance_matrix(q, g, "euclidean"), qid, gid, qc, gc)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k


def test_distances_and_leave_one_out_streaming():
    rng = np.random.default_rng(9)
    e, ids = rng.normal(size=(30, 8)), rng.integers(0, 5, 30)
    cos = distance_matrix(e, e)
    en = e / np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, 1 - en @ en.T, atol=1e-12)
    m = RetrievalMetrics(ks=(1, 5))
    m.update(e[:10], ids[:10])
    other = RetrievalMetrics(ks=(1, 5))
    other.update(e[10:], ids[10:])
    m.merge(other.state_dict())
    got = m.compute()
    ref = _reference(cos, ids, ids, exclude=np.eye(30, dtype=bool), ks=(1, 5))
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k
    assert got["queries"] + got["skipped_queries"] == 30


def test_perfect_and_skipped_queries_and_bad_input():
    e = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9], [-1, 0]])
    ids = np.array([0, 0, 1, 1, 2])  # id 2 has no other image: skipped
    m = retrieval_metrics(e, e, ids, ids, exclude=np.eye(5, dtype=bool))
    assert m["rank1"] == 1.0 and m["map"] == 1.0 and m["skipped_queries"] == 1
    with pytest.raises(DataError, match="non-empty query and gallery"):
        retrieval_metrics(np.zeros((0, 2)), e, [], ids)
    with pytest.raises(DataError, match="no query has a true match"):
        retrieval_metrics(e[:1], e[2:], ids[:1], ids[2:])
    with pytest.raises(DataError, match="cosine or euclidean"):
        distance_matrix(e, e, "manhattan")


@pytest.mark.parametrize("seed", range(3))
def test_precision_recall_ndcg_at_k_equal_torchmetrics_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(12, 6)), rng.normal(size=(30, 6))  # continuous: no tied distances
    qid, gid = rng.integers(0, 4, 12), rng.integers(0, 4, 30)
    got = retrieval_metrics(q, g, qid, gid, ks=(1, 5, 10))
    dist = distance_matrix(q, g)
    keep = [i for i in range(12) if (gid == qid[i]).any()]
    # a similarity >= 0 (torchmetrics' top-k scores came out 0 for negative preds)
    preds = torch.from_numpy(2.0 - dist[keep]).flatten()
    target = torch.from_numpy(gid[None, :] == qid[keep][:, None]).flatten()
    index = torch.arange(len(keep)).repeat_interleave(30)
    for k in (1, 5, 10):
        assert got[f"p{k}"] == pytest.approx(
            float(RetrievalPrecision(top_k=k)(preds, target, index))
        )
        assert got[f"r{k}"] == pytest.approx(float(RetrievalRecall(top_k=k)(preds, target, index)))
        tm = float(RetrievalNormalizedDCG(top_k=k)(preds, target, index))
        sk = np.mean([ndcg_score([gid == qid[i]], [-dist[i]], k=k) for i in keep])
        assert got[f"ndcg{k}"] == pytest.approx(tm, rel=1e-5)
        assert got[f"ndcg{k}"] == pytest.approx(sk, rel=1e-9)
