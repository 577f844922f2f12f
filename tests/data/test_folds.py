"""Folds: stratified k-fold balance vs scikit-learn's StratifiedKFold, iterative
stratification's label balance, determinism and errors."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from cvcraft.data.folds import iterative_stratification, stratified_folds
from cvcraft.errors import ConfigError, DataError


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [2, 5])
def test_stratified_folds_balance_like_sklearn(seed, k):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, 203, p=[0.5, 0.3, 0.15, 0.05])
    ids = stratified_folds(y, k, seed)
    ours = np.array([[np.sum((ids == f) & (y == c)) for c in range(4)] for f in range(k)])
    skf = StratifiedKFold(k, shuffle=True, random_state=seed)
    ref = np.array([np.bincount(y[v], minlength=4) for _, v in skf.split(y, y)])
    # both put every class's count per fold within one of count / k
    assert (ours.max(0) - ours.min(0) <= 1).all() and (ref.max(0) - ref.min(0) <= 1).all()
    np.testing.assert_array_equal(ours.sum(0), np.bincount(y, minlength=4))
    sizes = np.bincount(ids, minlength=k)
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(stratified_folds(y, k, seed), ids)


def test_iterative_stratification_balances_every_label():
    rng = np.random.default_rng(0)
    t = (rng.random((300, 8)) < np.linspace(0.03, 0.5, 8)).astype(np.int8)
    t[rng.random(t.shape) < 0.05] = -1  # unknowns count as absent
    k = 5
    ids = iterative_stratification(t, k, seed=1)
    assert set(ids.tolist()) == set(range(k))
    per = np.array([(t[ids == f] == 1).sum(0) for f in range(k)])  # (F, C)
    want = (t == 1).sum(0) / k
    assert (np.abs(per - want) <= 1.0 + 1e-9).all()  # every label within one of its share
    sizes = np.bincount(ids, minlength=k)
    assert np.abs(sizes - 300 / k).max() <= 0.1 * 300 / k  # sizes are secondary: within 10 %
    # a plain random assignment is visibly worse on the rare labels
    rand = rng.integers(0, k, 300)
    per_r = np.array([(t[rand == f] == 1).sum(0) for f in range(k)])
    assert np.abs(per - want).max() < np.abs(per_r - want).max()
    np.testing.assert_array_equal(iterative_stratification(t, k, seed=1), ids)


def test_folds_larger_than_a_class_are_refused():
    with pytest.raises(DataError, match="larger than class 2 .3 items"):
        stratified_folds([0] * 10 + [1] * 10 + [2] * 3, 5)
    t = np.zeros((20, 2), np.int8)
    t[:2, 1] = 1
    with pytest.raises(DataError, match="larger than label 1's 2 positive items"):
        iterative_stratification(t, 3)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        stratified_folds([0, 1], 1)
