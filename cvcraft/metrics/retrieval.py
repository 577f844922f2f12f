"""Retrieval evaluation on a query / gallery split: CMC rank-k, mAP and MRR (re-ID protocol).

For each query the gallery is ranked by distance (ascending; ties keep gallery order, a
stable sort). Gallery items of the query's identity seen by the same camera are "junk"
(Market-1501: they are too easy) and are removed from that query's ranking, as are the
pairs ``exclude`` marks (leave-one-out evaluation on one set excludes each item itself).
A query with no remaining true match is skipped and counted (``skipped_queries``).

- CMC rank-k: the share of queries whose first true match is among the first k.
- AP per query: scikit-learn's ``average_precision_score`` of the matches against
  ``-distance`` (tied distances enter together, as in ``metrics.multilabel``);
  mAP is its mean over queries. MRR: mean of 1 / (rank of the first match).
  One stable sort per query serves CMC, AP and MRR (``metrics.multilabel.ranked_rows``).
- P@k / R@k: true matches among the first k over k / over the query's matches (Hit@k is
  CMC rank-k). NDCG@k with binary relevance: ``sum_(i<k) rel_i / log2(i + 2)`` over its
  ideal ``sum_(i < min(k, P)) 1 / log2(i + 2)``; tied distances keep gallery order (sklearn's
  ``ndcg_score`` averages tied items instead; the two agree when no distances tie).
- Open-set AUROC: a query whose identity has a gallery item is "known", else "unknown";
  its score is its largest similarity to the gallery (-smallest distance); the AUROC of known
  against unknown by that score (the Mann-Whitney U with tied scores averaged, what
  ``sklearn.metrics.roc_auc_score`` computes).
query (Q, D), gallery (G, D) embeddings, ids (Q,), (G,), cameras optional.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from cvcraft.errors import DataError
from cvcraft.metrics.multilabel import ap_of_rows, ranked_rows


def distance_matrix(query: np.ndarray, gallery: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """(Q, G) distances: ``cosine`` = 1 - cos similarity, ``euclidean`` = L2 distance."""
    q, g = np.asarray(query, np.float64), np.asarray(gallery, np.float64)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    if metric == "euclidean":
        d2 = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2 * q @ g.T
        return np.sqrt(np.maximum(d2, 0.0))
    raise DataError(f"retrieval metric {metric!r} unknown; use cosine or euclidean")


def retrieval_metrics(
    query: Any,
    gallery: Any,
    query_ids: Any,
    gallery_ids: Any,
    *,
    query_cams: Any = None,
    gallery_cams: Any = None,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "cosine",
    distances: np.ndarray | None = None,
) -> dict[str, Any]:
    """``rank{k}`` for k in ``ks``, ``map``, ``mrr``, ``queries`` (scored) and
    ``skipped_queries`` (no true match left in the gallery). ``distances`` (Q, G) replaces
    the ``metric`` distances of the embeddings (e.g. k-reciprocal re-ranked ones)."""
    q, g = np.asarray(query), np.asarray(gallery)
    qid, gid = np.asarray(query_ids).reshape(-1), np.asarray(gallery_ids).reshape(-1)
    if len(q) == 0 or len(g) == 0:
        raise DataError(
            f"retrieval needs a non-empty query and gallery, got {len(q)} queries and "
            f"{len(g)} gallery items; check the split"
        )
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise DataError(f"query {q.shape} and gallery {g.shape} must be (N, D) with one D")
    if len(qid) != len(q) or len(gid) != len(g):
        raise DataError("one identity per query and per gallery item is needed")
    dist = distance_matrix(q, g, metric) if distances is None else np.asarray(distances)
    if dist.shape != (len(q), len(g)):
        raise DataError(f"distances {dist.shape} must be (Q, G) = ({len(q)}, {len(g)})")
    same = qid[:, None] == gid[None, :]  # (Q, G)
    junk = np.zeros_like(same) if exclude is None else np.asarray(exclude, bool).copy()
    if query_cams is not None and gallery_cams is not None:
        qc, gc = np.asarray(query_cams).reshape(-1), np.asarray(gallery_cams).reshape(-1)
        junk |= same & (qc[:, None] == gc[None, :])
    match = same & ~junk
    valid = match.any(1)
    if not valid.any():
        raise DataError("no query has a true match in the gallery; retrieval is undefined")
    dist, match, junk = dist[valid], match[valid], junk[valid]
    targets = np.where(junk, -1, match.astype(np.int8))  # (Q, G): junk is "unknown"
    _, t, tp, fp, _, end = ranked_rows(-dist, targets)  # one stable sort per query
    ap = ap_of_rows(t, tp, fp, end)
    # rank of the first true match among the non-junk items (0-based)
    kept_rank = np.cumsum(t >= 0, 1) - 1
    first = np.where(t == 1, kept_rank, np.iinfo(np.int64).max).min(1)
    out: dict[str, Any] = {f"rank{k}": float((first < k).mean()) for k in ks}
    npos = (t == 1).sum(1)
    rel_rank = np.where(t == 1, kept_rank, np.iinfo(np.int64).max)  # kept rank of matches
    gain = 1.0 / np.log2(np.arange(t.shape[1]) + 2.0)  # gain of kept rank i
    ideal = np.cumsum(gain)  # ideal DCG of the first i + 1 ranks all relevant
    for k in ks:
        hits = (rel_rank < k).sum(1)
        dcg = np.where(rel_rank < k, gain[np.minimum(rel_rank, len(gain) - 1)], 0.0).sum(1)
        out[f"p{k}"] = float((hits / k).mean())
        out[f"r{k}"] = float((hits / npos).mean())
        out[f"ndcg{k}"] = float((dcg / ideal[np.minimum(k, npos) - 1]).mean())
    out.update(
        {
            "map": float(ap.mean()),
            "mrr": float((1.0 / (first + 1)).mean()),
            "queries": int(valid.sum()),
            "skipped_queries": int((~valid).sum()),
        }
    )
    return out


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (N,) for the boolean labels ``positive`` (N,):
    ``(sum of the positives' ranks - P (P + 1) / 2) / (P N_neg)``, ties at their mean rank."""
    pos = np.asarray(positive, bool)
    p, n = int(pos.sum()), int((~pos).sum())
    if p == 0 or n == 0:
        raise DataError(f"AUROC needs both classes, got {p} positives and {n} negatives")
    ranks = rankdata(np.asarray(scores, np.float64))  # average ranks of ties
    return float((ranks[pos].sum() - p * (p + 1) / 2.0) / (p * n))


def open_set_auroc(
    query: Any,
    gallery: Any,
    query_ids: Any,
    gallery_ids: Any,
    *,
    metric: str = "cosine",
    exclude: np.ndarray | None = None,
) -> dict[str, Any]:
    """``open_set_auroc`` (known vs unknown queries by their best gallery similarity),
    ``known`` and ``unknown`` query counts. ``exclude`` (Q, G) marks pairs left out (a
    query's own item in a leave-one-out gallery)."""
    q, g = np.asarray(query), np.asarray(gallery)
    qid, gid = np.asarray(query_ids).reshape(-1), np.asarray(gallery_ids).reshape(-1)
    if len(q) == 0 or len(g) == 0:
        raise DataError(f"open-set evaluation needs queries and a gallery, got {len(q)}, {len(g)}")
    dist = distance_matrix(q, g, metric)
    keep = np.ones(dist.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    best = np.where(keep, dist, np.inf).min(1)  # (Q,) nearest kept gallery item
    known = ((qid[:, None] == gid[None, :]) & keep).any(1)
    if known.all() or not known.any():
        raise DataError(
            f"open-set AUROC needs known and unknown queries, got {int(known.sum())} known and "
            f"{int((~known).sum())} unknown; hold some identities out of the gallery"
        )
    return {"open_set_auroc": auroc(-best, known), "known": int(known.sum()),
            "unknown": int((~known).sum())}  # fmt: skip


def open_set_split(ids: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean (N,): the items whose identity is held out of the gallery (a seeded
    ``round(fraction * identities)`` of the identities, at least one)."""
    uniq = np.unique(ids)
    k = min(len(uniq) - 1, max(1, int(round(fraction * len(uniq)))))
    held = np.random.default_rng([seed, 61]).choice(uniq, size=k, replace=False)
    return np.isin(ids, held)


class RetrievalMetrics:
    """Streaming leave-one-out retrieval over one set: keeps every embedding (float32) and
    identity; at ``compute`` each item queries all the others (itself excluded).

    ``rerank`` ({k1, k2, lambda_value}) scores k-reciprocal re-ranked distances
    (``metrics/rerank.py``) as well, as ``rr_*`` keys; ``open_set`` > 0 holds that fraction of
    the identities out of the gallery and adds ``open_set_auroc``."""

    def __init__(
        self,
        ks: Sequence[int] = (1, 5, 10),
        metric: str = "cosine",
        *,
        rerank: dict[str, Any] | None = None,
        open_set: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.ks, self.metric = tuple(ks), metric
        self.rerank, self.open_set, self.seed = rerank, float(open_set), seed
        self.reset()

    def reset(self) -> None:
        self.emb: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.cams: list[np.ndarray] = []

    def update(self, emb: Any, ids: Any, cams: Any = None) -> None:
        e = np.asarray(emb, np.float32)
        i = np.asarray(ids, np.int64).reshape(-1)
        if e.ndim != 2 or len(e) != len(i):
            raise DataError(f"retrieval batch: embeddings {e.shape} and ids {i.shape} differ")
        self.emb.append(e)
        self.ids.append(i)
        self.cams.append(np.full(len(i), -1, np.int64) if cams is None
                         else np.asarray(cams, np.int64).reshape(-1))  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        cat = np.concatenate
        if not self.emb:
            return {"emb": np.zeros((0, 0), np.float32), "ids": np.zeros(0, np.int64),
                    "cams": np.zeros(0, np.int64)}  # fmt: skip
        return {"emb": cat(self.emb), "ids": cat(self.ids), "cams": cat(self.cams)}

    def merge(self, state: dict[str, Any]) -> None:
        if len(state["ids"]):
            self.update(state["emb"], state["ids"], state["cams"])

    def compute(self) -> dict[str, Any]:
        s = self.state_dict()
        n = len(s["ids"])
        cams = s["cams"] if (s["cams"] >= 0).any() else None
        kw = {"query_cams": cams, "gallery_cams": cams, "exclude": np.eye(n, dtype=bool),
              "ks": self.ks, "metric": self.metric}  # fmt: skip
        out = retrieval_metrics(s["emb"], s["emb"], s["ids"], s["ids"], **kw)
        if self.rerank is not None:
            from cvcraft.metrics.rerank import rerank_square, square_distances

            d = rerank_square(square_distances(s["emb"], self.metric), n, **self.rerank)
            rr = retrieval_metrics(s["emb"], s["emb"], s["ids"], s["ids"], distances=d, **kw)
            out.update({f"rr_{k}": v for k, v in rr.items() if k.startswith(("rank", "map"))})
        if self.open_set > 0:
            held = open_set_split(s["ids"], self.open_set, self.seed)
            gal = np.flatnonzero(~held)
            own = np.arange(n)[:, None] == gal[None, :]  # each query's own gallery item
            out.update(open_set_auroc(s["emb"], s["emb"][gal], s["ids"], s["ids"][gal],
                                      metric=self.metric, exclude=own))  # fmt: skip
        return out


class QueryGalleryMetrics(RetrievalMetrics):
    """Streaming query-vs-gallery retrieval (re-ID): each item comes with ``[pid, cam,
    is_query]``; at ``compute`` the queries rank the gallery with the same-camera junk rule,
    and gallery items of id -1 are junk for every query (Market-1501's protocol)."""

    def update(self, emb: Any, ids: Any, cams: Any = None) -> None:
        """``ids`` is (B, 3) ``[pid, cam, is_query]`` here (``cams`` unused)."""
        m = np.asarray(ids, np.int64).reshape(-1, 3)
        super().update(emb, m[:, 0] * 2 + m[:, 2], m[:, 1])  # pid and role packed in one id

    def compute(self) -> dict[str, Any]:
        s = self.state_dict()
        pid, is_q = s["ids"] // 2, s["ids"] % 2 == 1
        q, g = is_q, ~is_q
        junk = np.broadcast_to(pid[g][None, :] == -1, (int(q.sum()), int(g.sum())))
        kw = {"query_cams": s["cams"][q], "gallery_cams": s["cams"][g], "exclude": junk,
              "ks": self.ks, "metric": self.metric}  # fmt: skip
        out = retrieval_metrics(s["emb"][q], s["emb"][g], pid[q], pid[g], **kw)
        if self.rerank is not None:
            from cvcraft.metrics.rerank import k_reciprocal_rerank

            d = k_reciprocal_rerank(s["emb"][q], s["emb"][g], metric=self.metric, **self.rerank)
            rr = retrieval_metrics(s["emb"][q], s["emb"][g], pid[q], pid[g], distances=d, **kw)
            out.update({f"rr_{k}": v for k, v in rr.items() if k.startswith(("rank", "map"))})
        return out
