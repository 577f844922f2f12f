"""Stratified split vs scikit-learn's train_test_split, plus the documented rounding rule."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from cvcraft.data.split import stratified_split
from cvcraft.errors import ConfigError


def _per_class(labels, idx, k):
    return np.bincount(labels[idx], minlength=k)


def test_matches_sklearn_per_class_counts():
    # class sizes chosen so n * f is an integer: the proportions are unambiguous
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    np.random.default_rng(0).shuffle(labels)
    tr, va = stratified_split(labels, 0.2, seed=3)
    _, sk_va = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    np.testing.assert_array_equal(_per_class(labels, va, 4), _per_class(labels, sk_va, 4))
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == len(labels)


def test_rounding_rule_and_small_classes():
    sizes = np.array([7, 13, 2, 1, 25])
    labels = np.repeat(np.arange(5), sizes)
    _, va = stratified_split(labels, 0.25, seed=0)
    # floor(n * 0.25 + 0.5) -> [2, 3, 1, 0, 6]; clipped to [1, n - 1] for n >= 2; n=1 -> 0
    assert _per_class(labels, va, 5).tolist() == [2, 3, 1, 0, 6]
    # sklearn allocates the same total within one item per class
    _, sk_va = train_test_split(
        np.arange(len(labels)),
        test_size=0.25,
        stratify=np.where(labels == 3, 0, labels),
        random_state=0,
    )
    diff = _per_class(labels, va, 5) - _per_class(labels, sk_va, 5)
    assert np.abs(diff[[0, 1, 4]]).max() <= 1


def test_deterministic_and_seed_dependent():
    labels = np.random.default_rng(1).integers(0, 5, 500)
    a = stratified_split(labels, 0.1, seed=7)
    b = stratified_split(labels, 0.1, seed=7)
    c = stratified_split(labels, 0.1, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    np.testing.assert_array_equal(_per_class(labels, a[1], 5), _per_class(labels, c[1], 5))
    assert np.all(np.diff(a[0]) > 0) and a[1].dtype == np.int64


def test_bad_fraction():
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split([0, 1], 1.0, 0)
