"""Cross-validation folds: stratified k-fold for single labels, iterative stratification
(Sechidis et al. 2011) for multi-label targets. Both return a fold id per item (int64 (N,)),
deterministic in ``seed``; fold ``f``'s validation items are ``np.flatnonzero(ids == f)``.

- Single label: items of each class are shuffled and dealt round-robin over the folds
  (starting where the previous class stopped), so each class's count per fold differs by at
  most one and fold sizes stay within one of each other. Needs ``folds <= `` the smallest
  class (else a fold would miss the class).
- Multi-label: repeatedly take the label with the fewest items still unassigned and deal
  its items one by one to the fold that most wants that label (desired count left), ties to
  the fold that most wants items, then at random; items with no label go to the folds that
  most want items. Unknown (-1) entries count as absent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.data.classification import ClassificationData
from cvcraft.data.datasets import DataSplits
from cvcraft.errors import ConfigError, DataError


def _check_folds(folds: int, n: int) -> None:
    if folds < 2:
        raise ConfigError(f"folds={folds}: k-fold needs at least 2 folds")
    if folds > n:
        raise DataError(f"folds={folds} is more than the {n} items; lower folds")


def stratified_folds(labels: Any, folds: int, seed: int = 0) -> np.ndarray:
    """Fold id per item, stratified by class (see the module docstring)."""
    y = np.asarray(labels).reshape(-1)
    _check_folds(folds, len(y))
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < folds:
        c = int(np.argmin(counts))
        raise DataError(
            f"folds={folds} is larger than class {classes[c].item()!r} ({counts[c]} items): some "
            "fold would have none of it; lower folds or merge rare classes"
        )
    perm = np.random.default_rng([seed, 23]).permutation(len(y))
    order = perm[np.argsort(inv[perm], kind="stable")]  # class blocks, random inside
    # round-robin over the whole ordering: each class block deals consecutive fold ids
    ids = np.empty(len(y), np.int64)
    ids[order] = np.arange(len(y)) % folds
    return ids


def iterative_stratification(targets: Any, folds: int, seed: int = 0) -> np.ndarray:
    """Fold id per item for multi-hot ``targets`` (N, C) (see the module docstring)."""
    t = np.asarray(targets) == 1
    if t.ndim != 2:
        raise DataError(f"multi-label targets must be (N, C), got shape {t.shape}")
    n, c = t.shape
    _check_folds(folds, n)
    counts = t.sum(0)
    small = np.flatnonzero((counts > 0) & (counts < folds))
    if small.size:
        raise DataError(
            f"folds={folds} is larger than label {int(small[0])}'s {int(counts[small[0]])} "
            "positive items: some fold would have none; lower folds"
        )
    rng = np.random.default_rng([seed, 29])
    want_label = np.tile(counts / folds, (folds, 1)).astype(np.float64)  # (F, C)
    want_items = np.full(folds, n / folds)
    ids = np.full(n, -1, np.int64)
    left = t.copy()
    while left.any():  # one label per round; each round deals that label's items
        remaining = left.sum(0)
        label = int(np.argmin(np.where(remaining > 0, remaining, np.iinfo(np.int64).max)))
        for i in rng.permutation(np.flatnonzero(left[:, label])):
            f = _best_fold(want_label[:, label], want_items, rng)
            ids[i] = f
            want_label[f] -= t[i]
            want_items[f] -= 1
            left[i] = False
    for i in rng.permutation(np.flatnonzero(ids < 0)):  # items without any label
        f = _best_fold(want_items, want_items, rng)
        ids[i] = f
        want_items[f] -= 1
    return ids


def _best_fold(primary: np.ndarray, secondary: np.ndarray, rng: np.random.Generator) -> int:
    """The fold with the largest ``primary``, ties by ``secondary``, then at random."""
    cand = np.flatnonzero(primary == primary.max())
    if len(cand) > 1:
        cand = cand[secondary[cand] == secondary[cand].max()]
    return int(cand[rng.integers(len(cand))]) if len(cand) > 1 else int(cand[0])


class JoinedData(ClassificationData):
    """Two ``ClassificationData`` of one class list seen as one (``a`` then ``b``): the pool
    that k-fold cross-validation divides."""

    def __init__(self, a: ClassificationData, b: ClassificationData) -> None:
        self.a, self.b, self.classes = a, b, list(a.classes)
        self.labels = np.concatenate([a.labels, b.labels]).astype(np.int64)

    def load_image(self, i: int) -> np.ndarray:
        return self.a.load_image(i) if i < len(self.a) else self.b.load_image(i - len(self.a))

    def describe(self, i: int) -> str:
        return self.a.describe(i) if i < len(self.a) else self.b.describe(i - len(self.a))


def fold_of(splits: DataSplits, pool: Any, ids: np.ndarray, fold: int, folds: int) -> DataSplits:
    """``DataSplits`` with fold ``fold`` of ``pool`` as val and the other folds as train;
    ``fold_index`` holds the val rows of the pool (train rows first, then val)."""
    if fold < 0:
        raise ConfigError(
            f"fold={fold} means every one of the {folds} folds: `cvcraft train` (or "
            "tasks.kfold.run_kfold) trains them all; pass fold=i to train one"
        )
    if fold >= folds:
        raise ConfigError(f"fold={fold} must be in [0, {folds})")
    val_rows = np.flatnonzero(ids == fold)
    out = DataSplits(pool.subset(np.flatnonzero(ids != fold)), pool.subset(val_rows),
                     list(splits.classes), f"{splits.source} fold {fold}/{folds}")  # fmt: skip
    out.fold_index = val_rows  # type: ignore[attr-defined]
    return out


def single_label_fold(splits: DataSplits, folds: int, fold: int, seed: int) -> DataSplits:
    """Fold ``fold`` of ``folds`` stratified folds over train + val (single labels)."""
    pool = JoinedData(splits.train, splits.val)
    return fold_of(splits, pool, stratified_folds(pool.labels, folds, seed), fold, folds)
