"""Multi-label metrics: per-class average precision (mAP), micro/macro F1, Hamming loss,
subset accuracy, PR curves and F1-optimal per-class thresholds.

Conventions (scikit-learn's, the tests' oracle):

- ``scores`` (N, C) are probabilities (or any monotone score); ``targets`` (N, C) are 1
  present, 0 absent, -1 unknown. Unknown entries are left out of every metric (a class's AP
  and F1 use its known entries; Hamming loss counts known entries; a row is an exact match
  when all its known entries are right, rows with none are skipped).
- AP is sklearn's ``average_precision_score``: ``sum_k (R_k - R_(k-1)) P_k`` over the distinct
  score thresholds, so tied scores enter together. A class with no positive has no AP (NaN in
  ``ap_per_class``; sklearn would give 0 with a warning); ``map`` is the mean over the classes
  that have positives, and ``map_classes`` counts them.
- A prediction is ``score >= threshold`` (per class). A ratio with a zero denominator is 0
  (``zero_division=0``); macro F1 averages over all C classes (sklearn's multilabel macro).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cvcraft.errors import DataError


def ranked_rows(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each row of (R, N) ``scores`` sorted descending (stable): sorted scores, sorted
    targets, cumulative TP and FP, the last-of-tie-group flags, and for every position the
    position where its tie group ends. Rows are contiguous, so sorts and scans are too."""
    r, n = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, 1)
    t = np.take_along_axis(targets, order, 1)
    tp, fp = np.cumsum(t == 1, 1), np.cumsum(t == 0, 1)
    last = np.ones((r, n), dtype=bool)  # the last item of each run of equal scores
    last[:, :-1] = s[:, :-1] != s[:, 1:]
    idx = np.where(last, np.arange(n)[None, :], n - 1)
    end = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
    return s, t, tp, fp, last, end


def ap_of_rows(t: np.ndarray, tp: np.ndarray, fp: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per-row AP from ``ranked_rows``' outputs: ``(1 / P) sum_{positives} precision at the
    end of their tie group``; NaN for a row without positives. -> (R,)"""
    denom = tp + fp
    precision = np.divide(tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    at_end = np.take_along_axis(precision, end, 1)
    pos = t == 1
    npos = pos.sum(1)
    total = (pos * at_end).sum(1)
    return np.divide(total, npos, out=np.full(len(t), np.nan), where=npos > 0)


def _sorted(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """``ranked_rows`` of the (C, N) transpose, returned as (N, C) views: sorted scores,
    positive / negative flags, cumulative TP and FP, last-of-group flags, group ends."""
    s, t, tp, fp, last, end = ranked_rows(
        np.ascontiguousarray(scores.T), np.ascontiguousarray(targets.T)
    )
    return s.T, (t == 1).T, (t == 0).T, tp.T, fp.T, last.T, end.T


def _check(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise DataError(
            f"multi-label metrics need scores and targets of one (N, C) shape, got "
            f"{s.shape} and {t.shape}"
        )
    if t.size and not np.isin(t, (-1, 0, 1)).all():
        raise DataError("multi-label targets must be 1 (present), 0 (absent) or -1 (unknown)")
    if not np.isfinite(s).all():
        raise DataError("multi-label scores contain NaN or inf; check the model's outputs")
    return s, t.astype(np.int8)


def average_precision(scores: Any, targets: Any) -> np.ndarray:
    """Per-class AP (C,) float64; NaN for a class without a known positive.

    ``AP_c = (1 / P_c) sum_{i positive} precision(at the end of i's tie group)``, which is
    sklearn's step-wise sum over distinct thresholds. (N, C), (N, C) -> (C,)
    """
    s, t = _check(scores, targets)
    if s.shape[0] == 0:
        return np.full(s.shape[1], np.nan)
    _, ts, tp, fp, _, end = ranked_rows(np.ascontiguousarray(s.T), np.ascontiguousarray(t.T))
    return ap_of_rows(ts, tp, fp, end)


def precision_recall_curves(scores: Any, targets: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class ``(precision, recall)`` at every distinct threshold (high to low), the
    points sklearn's ``precision_recall_curve`` gives (without its final (1, 0) point)."""
    s, t = _check(scores, targets)
    _, pos, _, tp, fp, last, _ = _sorted(s, t)
    npos = pos.sum(0)
    curves = []
    for c in range(s.shape[1]):  # one curve per class, for plots; each is vectorized
        k = last[:, c] & (tp[:, c] + fp[:, c] > 0)
        p = tp[k, c] / (tp[k, c] + fp[k, c])
        r = tp[k, c] / npos[c] if npos[c] else np.zeros(int(k.sum()))
        curves.append((p, r))
    return curves


def tune_thresholds(scores: Any, targets: Any, default: float = 0.5) -> np.ndarray:
    """Per-class threshold (C,) maximizing that class's F1 on (scores, targets).

    Every distinct score is a candidate: F1 = 2 TP / (TP + FP + P) at the end of each tie
    group; the threshold is the midpoint between the best group's score and the next lower
    score (the lowest score itself when every item is predicted positive), so
    ``score >= threshold`` reproduces the best split. Classes without a known positive keep
    ``default``; ties between F1 values pick the highest threshold (fewest positives).
    """
    s_all, t = _check(scores, targets)
    c = s_all.shape[1]
    if s_all.shape[0] == 0:
        return np.full(c, float(default))
    s, pos, _, tp, fp, last, _ = _sorted(s_all, t)
    npos = pos.sum(0)
    f1 = np.where(last, 2 * tp / np.maximum(tp + fp + npos, 1), -1.0)
    best = f1.argmax(0)  # (C,) first (highest-score) maximum
    cols = np.arange(c)
    nxt = np.concatenate([s[1:], np.full((1, c), -np.inf)], 0)[best, cols]
    here = s[best, cols]
    thr = np.where(np.isfinite(nxt), (here + nxt) / 2, here)
    return np.where(npos > 0, thr, float(default))


def threshold_metrics(scores: Any, targets: Any, thresholds: Any = 0.5) -> dict[str, float]:
    """F1 (micro, macro), micro precision/recall, Hamming loss and subset accuracy of the
    predictions ``score >= threshold`` (a float or a (C,) array)."""
    s, t = _check(scores, targets)
    pred = s >= np.broadcast_to(np.asarray(thresholds, np.float64), s.shape[1:])
    known = t >= 0
    truth = t == 1
    tp = (pred & truth).sum(0)
    fp = (pred & ~truth & known).sum(0)
    fn = (~pred & truth).sum(0)

    def ratio(a: Any, b: Any) -> Any:
        return np.divide(a, b, out=np.zeros(np.shape(a)), where=np.asarray(b) > 0)

    f1_c = ratio(2.0 * tp, 2 * tp + fp + fn)
    wrong = (pred != truth) & known
    rows = known.any(1)
    return {
        "f1_micro": float(ratio(2.0 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "f1_macro": float(f1_c.mean()) if f1_c.size else 0.0,
        "precision_micro": float(ratio(1.0 * tp.sum(), tp.sum() + fp.sum())),
        "recall_micro": float(ratio(1.0 * tp.sum(), tp.sum() + fn.sum())),
        "hamming_loss": float(ratio(1.0 * wrong.sum(), known.sum())),
        "subset_accuracy": float(ratio(1.0 * (~wrong.any(1) & rows).sum(), rows.sum())),
    }


def multilabel_metrics(
    scores: Any, targets: Any, threshold: float = 0.5, tune: bool = True
) -> dict[str, Any]:
    """Every metric of this module: ``map``, ``ap_per_class`` (None where undefined), the
    threshold metrics at ``threshold`` and, with ``tune``, the per-class ``thresholds``
    tuned for F1 on these same data and ``f1_micro_tuned`` / ``f1_macro_tuned`` under them
    (optimistic on the data they were tuned on: tune on val, apply to new data)."""
    ap = average_precision(scores, targets)
    has = ~np.isnan(ap)
    out: dict[str, Any] = {
        "map": float(ap[has].mean()) if has.any() else 0.0,
        "map_classes": int(has.sum()),
        "ap_per_class": [float(a) if ok else None for a, ok in zip(ap, has)],
    }
    out.update(threshold_metrics(scores, targets, threshold))
    if tune:
        thr = tune_thresholds(scores, targets, threshold)
        tuned = threshold_metrics(scores, targets, thr)
        out["thresholds"] = thr.tolist()
        out["f1_micro_tuned"] = tuned["f1_micro"]
        out["f1_macro_tuned"] = tuned["f1_macro"]
    return out


class MultiLabelMetrics:
    """Streaming multi-label metrics: keeps every sample's scores (float32) and targets
    (int8), merges across processes by concatenation, and computes ``multilabel_metrics``."""

    def __init__(self, num_classes: int, threshold: float = 0.5, tune: bool = True) -> None:
        self.num_classes, self.threshold, self.tune = int(num_classes), threshold, tune
        self.reset()

    def reset(self) -> None:
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def update(self, scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> None:
        """Add a batch: ``scores`` (B, C) probabilities, ``targets`` (B, C) in {1, 0, -1}."""
        s = torch.as_tensor(scores).detach().float().cpu().numpy()
        t = torch.as_tensor(targets).detach().cpu().numpy().astype(np.int8)
        if s.shape != t.shape or s.ndim != 2 or s.shape[1] != self.num_classes:
            raise DataError(
                f"multi-label batch: scores {s.shape} and targets {t.shape} must both be "
                f"(B, {self.num_classes})"
            )
        self.scores.append(s)
        self.targets.append(t)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All scores (N, C) float32 and targets (N, C) int8 seen so far."""
        c = self.num_classes
        s = np.concatenate(self.scores) if self.scores else np.zeros((0, c), np.float32)
        t = np.concatenate(self.targets) if self.targets else np.zeros((0, c), np.int8)
        return s, t

    def state_dict(self) -> dict[str, Any]:
        s, t = self.arrays()
        return {"scores": s, "targets": t}

    def merge(self, state: dict[str, Any]) -> None:
        self.scores.append(np.asarray(state["scores"], np.float32))
        self.targets.append(np.asarray(state["targets"], np.int8))

    def compute(self) -> dict[str, Any]:
        s, t = self.arrays()
        return multilabel_metrics(s, t, self.threshold, self.tune)
