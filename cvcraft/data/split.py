"""Deterministic stratified train/validation split.

Rule, per class with ``n`` items: ``n_val = floor(n * val_fraction + 0.5)`` (round half up),
then clipped to ``[1, n - 1]`` when ``n >= 2`` so every class with two or more items is in
both splits; a class with a single item goes to train. Which items go to validation is a
random permutation from ``seed`` — the same (labels, fraction, seed) always gives the same
split. Up to the rounding rule, the per-class counts are those of scikit-learn's
``train_test_split(stratify=labels)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import ConfigError


def stratified_split(
    labels: Any, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split item indices into (train_idx, val_idx), both sorted int64, stratified by label.

    Vectorized: shuffle once, stable-sort the shuffled positions by label, and send the first
    ``n_val[c]`` positions of each class block to validation.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    y = np.asarray(labels).reshape(-1)
    n = len(y)
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_val = np.floor(counts * val_fraction + 0.5).astype(np.int64)
    n_val = np.where(counts >= 2, np.clip(n_val, 1, counts - 1), 0)

    perm = np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(inv[perm], kind="stable")]  # class blocks, random within a block
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts[inv[order]]  # position of each item inside its class block
    is_val = np.zeros(n, dtype=bool)
    is_val[order] = rank < n_val[inv[order]]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
