"""Multi-label metrics against scikit-learn on random data, ties, empty classes and unknowns."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_curve,
)

from cvcraft.errors import DataError
from cvcraft.metrics.multilabel import (
    MultiLabelMetrics,
    average_precision,
    multilabel_metrics,
    precision_recall_curves,
    threshold_metrics,
    tune_thresholds,
)


def _data(seed, n=60, c=6, ties=False):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < 0.3).astype(np.int8)
    s = rng.random((n, c))
    s = np.clip(s + 0.3 * t, 0, 1)
    if ties:  # few distinct values: many tied scores across positives and negatives
        s = np.round(s * 4) / 4
    t[:, -1] = 0  # a class without positives
    return s, t


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_ap_equals_sklearn(seed, ties):
    s, t = _data(seed, ties=ties)
    ap = average_precision(s, t)
    assert np.isnan(ap[-1])  # no positives: undefined, left out of the mean
    ref = [average_precision_score(t[:, c], s[:, c]) for c in range(t.shape[1] - 1)]
    np.testing.assert_allclose(ap[:-1], ref, rtol=1e-12)
    m = multilabel_metrics(s, t)
    assert m["map"] == pytest.approx(average_precision_score(t[:, :-1], s[:, :-1], average="macro"))
    assert m["map_classes"] == t.shape[1] - 1 and m["ap_per_class"][-1] is None


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.5, 0.0, 1.0, "per-class"])
def test_threshold_metrics_equal_sklearn(seed, thr):
    s, t = _data(seed, ties=seed % 2 == 1)
    th = np.linspace(0.2, 0.8, t.shape[1]) if thr == "per-class" else thr
    pred = (s >= th).astype(int)  # at 0.25-step ties the boundary case score == thr occurs
    m = threshold_metrics(s, t, th)
    assert m["f1_micro"] == pytest.approx(f1_score(t, pred, average="micro", zero_division=0))
    assert m["f1_macro"] == pytest.approx(f1_score(t, pred, average="macro", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(t, pred))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(t, pred))


def test_unknown_entries_are_left_out():
    s, t = _data(7)
    rng = np.random.default_rng(1)
    unk = rng.random(t.shape) < 0.2
    tu = np.where(unk, -1, t).astype(np.int8)
    ap = average_precision(s, tu)
    for c in range(t.shape[1] - 1):  # per class on its known rows
        k = ~unk[:, c]
        assert ap[c] == pytest.approx(average_precision_score(t[k, c], s[k, c]))
    pred = s >= 0.5
    m = threshold_metrics(s, tu, 0.5)
    known = ~unk
    # micro F1 is binary F1 over the known entries; Hamming = error rate over them
    assert m["f1_micro"] == pytest.approx(f1_score(t[known], pred[known]))
    assert m["hamming_loss"] == pytest.approx(np.mean(t[known] != pred[known]))
    exact = [np.array_equal(t[i, known[i]], pred[i, known[i]]) for i in range(len(t))]
    assert m["subset_accuracy"] == pytest.approx(np.mean(exact))


@pytest.mark.parametrize("seed", range(3))
def test_pr_curves_equal_sklearn(seed):
    s, t = _data(seed, ties=True)
    for c, (p, r) in enumerate(precision_recall_curves(s, t)[:-1]):
        p_ref, r_ref, _ = precision_recall_curve(t[:, c], s[:, c])
        # sklearn lists low -> high threshold and appends (precision 1, recall 0)
        np.testing.assert_allclose(p, p_ref[:-1][::-1])
        np.testing.assert_allclose(r, r_ref[:-1][::-1])


@pytest.mark.parametrize("seed", range(4))
def test_tuned_thresholds_reach_the_best_f1_of_any_threshold(seed):
    s, t = _data(seed, ties=seed % 2 == 1)
    thr = tune_thresholds(s, t)
    assert thr[-1] == 0.5  # no positives: the default
    for c in range(t.shape[1] - 1):  # brute force over every candidate (each distinct score)
        cands = np.unique(np.r_[s[:, c], 2.0])
        best = max(f1_score(t[:, c], s[:, c] >= v, zero_division=0) for v in cands)
        got = f1_score(t[:, c], s[:, c] >= thr[c], zero_division=0)
        assert got == pytest.approx(best)


def test_streaming_evaluator_merges_like_one_pass():
    s, t = _data(3)
    whole = multilabel_metrics(s, t)
    a, b = MultiLabelMetrics(6), MultiLabelMetrics(6)
    a.update(torch.from_numpy(s[:25]), torch.from_numpy(t[:25]))
    b.update(s[25:40], t[25:40])
    b.update(s[40:], t[40:])
    a.merge(b.state_dict())
    got = a.compute()
    assert got["map"] == pytest.approx(whole["map"], rel=1e-6)
    assert got["f1_macro"] == pytest.approx(whole["f1_macro"])
    a.reset()
    assert a.compute()["map"] == 0.0 and a.compute()["map_classes"] == 0


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="one .N, C. shape"):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(DataError, match="1 .present., 0 .absent. or -1"):
        average_precision(np.zeros((2, 2)), np.full((2, 2), 2))
    with pytest.raises(DataError, match="NaN"):
        average_precision(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"\(B, 4\)"):
        MultiLabelMetrics(4).update(np.zeros((2, 3)), np.zeros((2, 3)))
