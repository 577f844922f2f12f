"""Open-set evaluation: AUROC of the best gallery similarity, known vs unknown queries,
against scikit-learn's roc_auc_score (random scores, tied scores, leave-one-out)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cvcraft.errors import DataError
from cvcraft.metrics.retrieval import (
    RetrievalMetrics,
    auroc,
    distance_matrix,
    open_set_auroc,
    open_set_split,
)


def test_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.random(200) < 0.3
        s = rng.normal(size=200) + y
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        coarse = np.round(s)  # many ties
        assert auroc(coarse, y) == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)
    with pytest.raises(DataError, match="both classes"):
        auroc(np.ones(4), np.ones(4, bool))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_open_set_auroc_equals_sklearn(metric):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 12))
    gid = np.repeat(np.arange(5), 4)  # identities 0..4 in the gallery
    qid = rng.integers(0, 8, 30)  # 5..7 are unknown
    g = centres[gid] + 0.5 * rng.normal(size=(20, 12))
    q = centres[qid] + 0.5 * rng.normal(size=(30, 12))
    got = open_set_auroc(q, g, qid, gid, metric=metric)
    sim = -distance_matrix(q, g, metric).min(1)
    known = np.isin(qid, gid)
    assert got["open_set_auroc"] == pytest.approx(roc_auc_score(known, sim), abs=1e-12)
    assert (got["known"], got["unknown"]) == (int(known.sum()), int((~known).sum()))
    assert got["open_set_auroc"] > 0.8  # separable clusters
    with pytest.raises(DataError, match="known and unknown"):
        open_set_auroc(q, g, np.zeros(30, int), gid)
    with pytest.raises(DataError, match="queries and a gallery"):
        open_set_auroc(q[:0], g, qid[:0], gid)


def test_leave_one_out_open_set_in_the_streaming_metrics():
    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(10), 5)
    emb = rng.normal(size=(10, 16))[ids] + 0.7 * rng.normal(size=(50, 16))
    m = RetrievalMetrics(open_set=0.3, seed=4, rerank={"k1": 6, "k2": 3, "lambda_value": 0.3})
    m.update(emb[:20], ids[:20])
    m.update(emb[20:], ids[20:])
    out = m.compute()
    held = open_set_split(ids, 0.3, 4)
    assert len(np.unique(ids[held])) == 3
    # oracle: every item queries the kept gallery without itself
    d = distance_matrix(emb.astype(np.float32), emb[~held].astype(np.float32))
    d[np.arange(50)[:, None] == np.flatnonzero(~held)[None, :]] = np.inf
    known = ~held  # a kept identity has 4 other gallery items
    assert out["open_set_auroc"] == pytest.approx(roc_auc_score(known, -d.min(1)), abs=1e-9)
    assert {"rr_rank1", "rr_map", "rank1", "map"} <= set(out)
